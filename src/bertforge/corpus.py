"""Corpus readers: every reader yields documents, each a list of sentence strings.

The demo language is generated from a seed so that `dvc repro` runs offline with no file
outside the repository. It is built to be *learnable*: topic-specific Zipfian vocabularies
(documents stay on one topic, so NSP negatives from another document are detectable),
subject-verb number agreement (also across an intervening "of" phrase), and discourse
continuity (a sentence's object often becomes the next sentence's subject).
"""
from __future__ import annotations

import bz2
import glob
import gzip
import io
import lzma
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .config import ConfigError, resolve_path

Document = list[str]

# ---------------------------------------------------------------- demo language
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
        self._w = {n: _zipf(n) for n in {len(x) for g in (self.lex.nouns, self.lex.verbs, self.lex.adjectives) for x in g}}

    def _pick(self, rng: random.Random, table: tuple[tuple[str, ...], ...], topic: int) -> str:
        words = table[topic] if rng.random() < self.topic_rate else table[-1]
        return rng.choices(words, weights=self._w[len(words)])[0]

    def noun_phrase(self, rng: random.Random, topic: int, plural: bool, noun: str | None = None) -> str:
        noun = noun or self._pick(rng, self.lex.nouns, topic)
        det = rng.choice(["the", "these", "some"] if plural else ["the", "this", "a", "every"])
        adj = self._pick(rng, self.lex.adjectives, topic) + " " if rng.random() < 0.4 else ""
        return f"{det} {adj}{noun}{'s' if plural else ''}"

    def sentence(self, rng: random.Random, topic: int, subject: str | None = None, agree: bool = True) -> tuple[str, str]:
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


# ---------------------------------------------------------------- local text files
_OPENERS = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'“‘(\[]?[A-Z0-9가-힣])")


def expand_files(patterns: list[str], key: str = "corpus.files") -> list[Path]:
    files: list[Path] = []
    for pat in patterns:
        hits = sorted(glob.glob(str(resolve_path(pat)), recursive=True))
        if not hits:
            raise ConfigError(f"{key}: pattern {pat!r} matches no file (resolved to {resolve_path(pat)})")
        files.extend(Path(h) for h in hits)
    return files


def open_text(path: Path) -> io.TextIOBase:
    """Open plain or compressed UTF-8 text as a stream; bad bytes raise UnicodeDecodeError."""
    opener = _OPENERS.get(path.suffix)
    raw = opener(path, "rb") if opener else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline=None)


def split_sentences(paragraph: str) -> list[str]:
    """Rule-based fallback splitter: break after . ! ? when a capital, digit or Hangul follows."""
    return [s.strip() for s in _SENTENCE_END.split(paragraph) if s.strip()]


def text_documents(
    files: list[str],
    sentence_per_line: bool = True,
    doc_start_regex: str | None = None,
    skip_regex: str | None = None,
) -> Iterator[Document]:
    """Google's format (one sentence per line, blank line between documents), or paragraphs per
    line that need sentence splitting; `doc_start_regex` marks lines that open a new document
    (e.g. WikiText article titles), in which case blank lines do not split documents."""
    start = re.compile(doc_start_regex) if doc_start_regex else None
    skip = re.compile(skip_regex) if skip_regex else None
    for path in expand_files(files):
        doc: Document = []
        with open_text(path) as fh:
            lineno = 0
            try:
                for lineno, line in enumerate(fh, 1):
                    if start is not None and start.search(line):
                        if doc:
                            yield doc
                        doc = []
                        continue
                    if skip is not None and skip.search(line):
                        continue
                    text = line.strip()
                    if not text:
                        if start is None and doc:
                            yield doc
                            doc = []
                        continue
                    doc.extend([text] if sentence_per_line else split_sentences(text))
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{lineno + 1}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
        if doc:
            yield doc


def read_corpus(cfg) -> Iterator[Document]:
    """Documents for the `corpus` config group."""
    kind = cfg.format
    if kind == "demo":
        return demo_documents(cfg.seed, cfg.num_documents, cfg.min_sentences, cfg.max_sentences)
    if kind == "text":
        docs = text_documents(list(cfg.files), cfg.sentence_per_line, cfg.get("doc_start_regex"), cfg.get("skip_regex"))
        least = int(cfg.get("min_doc_sentences") or 1)
        return (d for d in docs if len(d) >= least) if least > 1 else docs
    raise ConfigError(f"corpus.format: unknown reader {kind!r} (known: demo, text)")
