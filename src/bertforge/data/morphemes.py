"""Morpheme pre-segmentation of Korean (`tokenizer.pre_segmentation: mecab-ko`), as KLUE-BERT does.

WordPiece over raw Korean words (eojeol) learns pieces that straddle a stem and its particle or
ending ("모델을" -> 모델 + ##을 or worse). With pre-segmentation every Hangul word is cut at its
morpheme boundaries before WordPiece sees it ("모델을 공유합니다" -> "모델 을 공유 합니다"): the
vocabulary is trained on cut text, and the same cuts are made wherever text is encoded.

The cuts are positions in the surface string (never lemmas), made only where Hangul is on at least
one side, so other scripts, numbers and punctuation are left as WordPiece would see them. The
analyser is MeCab-ko (python-mecab-ko with python-mecab-ko-dic: BSD-3 and Apache-2.0 wheels, the
dictionary included, 0.05 s to load, so every worker process loads its own).

A tokenizer directory made this way carries `bertforge_pre_segmentation.json`; `load_tokenizer`
then cuts inside the tokenizer (a pre-tokenizer step on the normalized text), so fine-tuning,
evaluation, `bertforge embed` and `pipeline("fill-mask", tokenizer=load_tokenizer(...))` encode
exactly as pre-training did. `prepare` cuts the same normalized text before training WordPiece.
"""

from __future__ import annotations

import json
from pathlib import Path

from bertforge.config import ConfigError

ANALYZERS = ("mecab-ko",)
MARKER = "bertforge_pre_segmentation.json"
_ANALYZER = None


def is_hangul(ch: str) -> bool:
    """A Hangul syllable, jamo or compatibility jamo: the one definition the tokenizers' checks share."""
    o = ord(ch)
    return 0xAC00 <= o <= 0xD7A3 or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F


def check_analyzer(name, key: str = "tokenizer.pre_segmentation") -> str | None:
    if name is None:
        return None
    if name not in ANALYZERS:
        raise ConfigError(f"{key}={name!r}: unknown analyser; choose one of {list(ANALYZERS)} or null")
    return name


def mecab():
    global _ANALYZER
    if _ANALYZER is None:
        try:
            from mecab import MeCab
        except ImportError:
            raise ConfigError(
                "tokenizer.pre_segmentation=mecab-ko needs MeCab-ko: pip install 'bertforge[korean]' "
                "(python-mecab-ko and python-mecab-ko-dic)"
            ) from None
        _ANALYZER = MeCab()
    return _ANALYZER


def cuts(text: str) -> list[int]:
    """Positions inside whitespace-free runs where a morpheme starts, with Hangul on one side."""
    if not any(is_hangul(c) for c in text):
        return []
    out, pos = [], 0
    for m in mecab().parse(text):
        # MeCab's spans skip leading whitespace; find each surface in order instead
        at = text.find(m.surface, pos)
        if at < 0:
            continue
        pos = at + len(m.surface)
        if 0 < at and not text[at - 1].isspace() and (is_hangul(text[at - 1]) or is_hangul(text[at])):
            out.append(at)
    return out


def spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of the pieces between the cuts, covering the whole text."""
    edges = [0, *cuts(text), len(text)]
    return list(zip(edges, edges[1:]))


def segment(text: str) -> str:
    """The text with a space at every cut."""
    return " ".join(text[a:b] for a, b in spans(text))


class _MorphemeSplit:
    """A `tokenizers` pre-tokenizer step: split at the cuts, keeping offsets into the original text."""

    def _split(self, _i, normalized):
        pieces = spans(str(normalized))
        return [normalized[a:b] for a, b in pieces] if len(pieces) > 1 else [normalized]

    def pre_tokenize(self, pretok) -> None:
        pretok.split(self._split)


def attach(tok, analyzer: str) -> None:
    """Make a loaded BERT tokenizer cut morphemes before its own (BERT) pre-tokenizer."""
    from tokenizers import pre_tokenizers

    check_analyzer(analyzer, f"{MARKER}: analyzer")
    mecab()
    backend = tok.backend_tokenizer
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.PreTokenizer.custom(_MorphemeSplit()), pre_tokenizers.BertPreTokenizer()]
    )
    tok.bertforge_pre_segmentation = analyzer


def read_marker(tokenizer_dir: Path) -> str | None:
    path = Path(tokenizer_dir) / MARKER
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))["analyzer"]
    except (ValueError, KeyError) as e:
        raise ConfigError(f"{path}: not a pre-segmentation marker ({e})") from None


def write_marker(tokenizer_dir: Path, analyzer: str) -> None:
    from importlib.metadata import PackageNotFoundError, version

    def _v(pkg: str) -> str | None:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return None

    (Path(tokenizer_dir) / MARKER).write_text(
        json.dumps(
            {
                "analyzer": analyzer,
                "cuts": "morpheme starts inside Hangul words (surface positions), after the BERT normalizer",
                "python-mecab-ko": _v("python-mecab-ko"),
                "python-mecab-ko-dic": _v("python-mecab-ko-dic"),
                "plain_AutoTokenizer": "does not cut: apply bertforge.data.morphemes.segment to the text first",
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
