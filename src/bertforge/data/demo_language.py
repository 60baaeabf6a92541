"""The demo language: generated from a seed so that `dvc repro` runs offline with no file
outside the repository. It is built to be *learnable*: topic-specific Zipfian vocabularies
(documents stay on one topic, so NSP negatives from another document are detectable),
subject-verb number agreement (also across an intervening "of" phrase), and discourse
continuity (a sentence's object often becomes the next sentence's subject).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

Document = list[str]

N_TOPICS = 8
_LEXICON_SEED = 20181011  # fixed: the demo *language* never changes; corpus/task seeds sample from it
_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kl", "st", "tr", "pl"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]
_CODAS = ["", "", "n", "l", "r", "m", "k"]
_FUNCTION = {"the", "a", "this", "these", "every", "some", "and", "of", "near", "with", "then", "because", "it", "they"}


@dataclass(frozen=True)
class Lexicon:
    nouns: tuple[tuple[str, ...], ...]  # per topic, then the shared list last
    verbs: tuple[tuple[str, ...], ...]
    adjectives: tuple[tuple[str, ...], ...]
    adverbs: tuple[str, ...]


def _make_words(rng: random.Random, n: int, syllables: int, taken: set[str]) -> tuple[str, ...]:
    words: list[str] = []
    while len(words) < n:
        w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables))
        if w not in taken and w + "s" not in taken and not w.endswith("s"):
            taken.update((w, w + "s"))
            words.append(w)
    return tuple(words)


def demo_lexicon() -> Lexicon:
    rng = random.Random(_LEXICON_SEED)
    taken = set(_FUNCTION)
    groups = {"nouns": (70, 2), "verbs": (30, 2), "adjectives": (30, 3)}
    out: dict[str, list[tuple[str, ...]]] = {k: [] for k in groups}
    for _ in range(N_TOPICS + 1):  # the last list is shared by all topics
        for kind, (n, syl) in groups.items():
            out[kind].append(_make_words(rng, n, syl, taken))
    adverbs = tuple(w + "ly" for w in _make_words(rng, 25, 2, taken))
    return Lexicon(*(tuple(out[k]) for k in groups), adverbs=adverbs)


def _zipf(n: int, s: float = 1.1) -> list[float]:
    return [1.0 / (r + 1) ** s for r in range(n)]


class DemoLanguage:
    def __init__(self, topic_rate: float = 0.7):
        self.lex = demo_lexicon()
        self.topic_rate = topic_rate
        self._w = {
            n: _zipf(n) for n in {len(x) for g in (self.lex.nouns, self.lex.verbs, self.lex.adjectives) for x in g}
        }

    def _pick(self, rng: random.Random, table: tuple[tuple[str, ...], ...], topic: int) -> str:
        words = table[topic] if rng.random() < self.topic_rate else table[-1]
        return rng.choices(words, weights=self._w[len(words)])[0]

    def noun_phrase(self, rng: random.Random, topic: int, plural: bool, noun: str | None = None) -> str:
        noun = noun or self._pick(rng, self.lex.nouns, topic)
        det = rng.choice(["the", "these", "some"] if plural else ["the", "this", "a", "every"])
        adj = self._pick(rng, self.lex.adjectives, topic) + " " if rng.random() < 0.4 else ""
        return f"{det} {adj}{noun}{'s' if plural else ''}"

    def sentence(
        self, rng: random.Random, topic: int, subject: str | None = None, agree: bool = True
    ) -> tuple[str, str]:
        """One sentence; returns it with its object noun (the next sentence may continue from it).
        `agree=False` gives the main verb the wrong number (an ungrammatical sentence)."""
        plural = rng.random() < 0.5
        subj = self.noun_phrase(rng, topic, plural, subject)
        if rng.random() < 0.25:  # agreement across an attractor: "the X of the Ys runs"
            subj += " of " + self.noun_phrase(rng, topic, rng.random() < 0.5)
        verb = self._pick(rng, self.lex.verbs, topic) + ("" if plural == agree else "s")
        obj = self._pick(rng, self.lex.nouns, topic)
        words = [subj, verb, self.noun_phrase(rng, topic, rng.random() < 0.5, obj)]
        r = rng.random()
        if r < 0.2:
            words.append("near " + self.noun_phrase(rng, topic, rng.random() < 0.5))
        elif r < 0.35:
            words.append(rng.choice(self.lex.adverbs))
        return " ".join(words) + " .", obj

    def document(self, rng: random.Random, topic: int, n_sentences: int) -> Document:
        sents, carry = [], None
        for _ in range(n_sentences):
            s, obj = self.sentence(rng, topic, carry)
            sents.append(s)
            carry = obj if rng.random() < 0.5 else None
        return sents


def demo_documents(seed: int, num_documents: int, min_sentences: int, max_sentences: int) -> Iterator[Document]:
    lang, rng = DemoLanguage(), random.Random(seed)
    for _ in range(num_documents):
        yield lang.document(rng, rng.randrange(N_TOPICS), rng.randint(min_sentences, max_sentences))
