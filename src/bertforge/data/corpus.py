"""Corpus readers: every reader yields documents, each a list of clean, normalized sentences.

Formats (`corpus.format`): `text` (local files; `layout` says how sentences and documents are
laid out), `jsonl` / `csv` (one record per row, a text column, optional title and document id),
`hf` (a Hugging Face dataset by name or local path, streamed), `mix` (several profiles in
order, e.g. books + Wikipedia) and `demo` (the generated language, see demo_language.py).
Files may be globs and `.gz/.xz/.bz2` streams. Skipped input is counted in `stats`, never silent.
"""

from __future__ import annotations

import glob
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Iterator

from omegaconf import OmegaConf

from bertforge.config import ConfigError, DataError, resolve_path
from bertforge.data.demo_language import demo_documents
from bertforge.data.records import delimited_records, hf_records, jsonl_records, read_lines
from bertforge.schema import CORPUS_READERS, check_corpus

Document = list[str]
LAYOUTS = ("sentences", "paragraphs", "wrapped")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'“‘(\[]?[A-Z0-9가-힣])")
# control and zero-width characters (tab/newline become spaces below); NUL means binary input
_INVISIBLE = re.compile("[\x01-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u2060\ufeff]")
_SPACES = re.compile(r"\s+")


def expand_files(patterns: Iterable[str], key: str = "corpus.files") -> list[Path]:
    files: list[Path] = []
    for pat in patterns:
        hits = sorted(glob.glob(str(resolve_path(pat)), recursive=True))
        if not hits:
            raise ConfigError(f"{key}: pattern {pat!r} matches no file (resolved to {resolve_path(pat)})")
        files.extend(Path(h) for h in hits if Path(h).is_file())
    return files


def clean_text(text: str, form: str | None) -> str:
    """Unicode normalization (NFC/NFKC/none), control and zero-width characters removed,
    whitespace runs collapsed to one space."""
    if form:
        text = unicodedata.normalize(form, text)
    return _SPACES.sub(" ", _INVISIBLE.sub("", text)).strip()


def rule_split(paragraph: str) -> list[str]:
    """Fallback splitter: break after . ! ? when a capital, digit or Hangul follows."""
    return [s.strip() for s in _SENTENCE_END.split(paragraph) if s.strip()]


def sentence_splitter(cfg) -> Callable[[str], list[str]]:
    """`corpus.sentence_splitter`: `sentencex` (Wikimedia's rule-based splitter, Rust, ~300
    languages incl. Korean; `corpus.language`) or `rules` (the regex above, no dependency)."""
    name = cfg.sentence_splitter
    if name == "rules":
        return rule_split
    if name == "sentencex":
        from sentencex import segment

        lang = cfg.language
        return lambda p: [s.strip() for s in segment(lang, p) if s.strip()]
    raise ConfigError(f"corpus.sentence_splitter: unknown splitter {name!r} (known: sentencex, rules)")


# ---------------------------------------------------------------- text files
def _text_blocks(path: Path, cfg, max_chars: int, stats: Counter) -> Iterator[list[str]]:
    """Raw documents of one file as lists of blocks (a sentence, or a paragraph to split)."""
    layout = cfg.layout
    _check_layout(layout)
    start = re.compile(cfg.doc_start_regex) if cfg.doc_start_regex else None
    skip = re.compile(cfg.skip_regex) if cfg.skip_regex else None
    doc: list[str] = []
    para: list[str] = []  # the hard-wrapped lines of the paragraph being read (layout=wrapped)
    for _, line in read_lines(path, max_chars, stats):
        if start is not None and start.search(line):
            if para:
                doc.append(" ".join(para))
                para = []
            if doc:
                yield doc
            doc = []
            continue
        if skip is not None and skip.search(line):
            continue
        text = line.strip()
        if layout == "wrapped":
            if text:
                para.append(text)
            elif para:
                doc.append(" ".join(para))
                para = []
            continue
        if text:
            doc.append(text)
        elif start is None and doc:  # a blank line ends a document unless a regex marks them
            yield doc
            doc = []
    if para:
        doc.append(" ".join(para))
    if doc:
        yield doc


def _body(blocks: list[str], start: re.Pattern | None, end: re.Pattern | None, stats: Counter) -> list[str]:
    """The text between the last start marker and the next end marker (e.g. a Gutenberg licence
    header and footer); a document without a start marker is kept whole and counted."""
    first, last = 0, len(blocks)
    if start is not None:
        hits = [i for i, b in enumerate(blocks) if start.search(b)]
        if hits:
            first = hits[-1] + 1
        else:
            stats["documents_without_body_start"] += 1
    if end is not None:
        last = next((i for i in range(first, len(blocks)) if end.search(blocks[i])), len(blocks))
    return blocks[first:last]


# ---------------------------------------------------------------- records (JSONL, CSV, HF datasets)
def _csv_records(path: Path, cfg, max_chars: int, stats: Counter) -> Iterator[tuple[str, dict]]:
    """Rows of a CSV/TSV file with a header, as records keyed by column name."""
    delimiter = cfg.delimiter or ("\t" if ".tsv" in path.suffixes else ",")
    rows = delimited_records(path, delimiter, max_chars, stats)
    _, header = next(rows, (0, []))
    for lineno, row in rows:
        yield f"{path}:{lineno}", dict(zip(header, row))


def _hf_records(cfg) -> Iterator[tuple[str, dict]]:
    name = "" if OmegaConf.is_missing(cfg, "dataset") else str(cfg.dataset or "")
    yield from hf_records(name, cfg.config_name, cfg.split, cfg.streaming, "corpus.dataset")


def _record_blocks(records: Iterator[tuple[str, dict]], cfg, stats: Counter) -> Iterator[list[str]]:
    """Documents from records: consecutive records with the same `id_column` value form one
    document (else each record is one); `title_column` opens the document."""
    text_col, title_col, id_col = cfg.text_column, cfg.title_column, cfg.id_column
    doc: list[str] = []
    current = object()
    wanted = {"text_column": text_col, "title_column": title_col, "id_column": id_col}
    for where, rec in records:
        for key, col in wanted.items():
            if col is not None and col not in rec:
                raise DataError(
                    f"{where}: no column {col!r} (corpus.{key}); the record has: {', '.join(map(str, rec))}"
                )
        doc_id = rec[id_col] if id_col else object()
        if doc_id != current and doc:
            yield doc
            doc = []
        current = doc_id
        text = rec[text_col]
        if not isinstance(text, str) or not text.strip():
            stats["skipped_empty_records"] += 1
            continue
        if title_col and not doc and isinstance(rec[title_col], str) and rec[title_col].strip():
            doc.append(rec[title_col])
        doc.extend(t for t in text.split("\n") if t.strip())
    if doc:
        yield doc


# ---------------------------------------------------------------- documents
def read_units(corpus) -> list[tuple[str | None, dict]]:
    """Independent reading tasks: one per file of a file-based reader (documents never span files),
    the whole stream otherwise; (mix source name, resolved reader config)."""
    if corpus.format == "mix":
        if not corpus.sources:
            raise ConfigError("corpus.sources: a mix needs at least one source profile")
        return [(name, unit) for name, src in corpus.sources.items() for _, unit in read_units(src)]
    plain = OmegaConf.to_container(corpus, resolve=True)
    if corpus.format in ("text", "jsonl", "csv"):
        return [(None, {**plain, "files": [str(f)]}) for f in expand_files(corpus.files)]
    return [(None, plain)]


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ConfigError(f"corpus.layout: {layout!r} is not one of {', '.join(LAYOUTS)}")


def check_corpus_config(corpus) -> None:
    """What can be checked before reading: readers, layouts, splitters and file patterns (a glob
    matching nothing), so that the stage fails before it creates an MLflow run or an output."""
    check_corpus(corpus)
    for _, unit in read_units(corpus):
        unit = OmegaConf.create(unit)
        if unit.format != "demo":
            sentence_splitter(unit)
            _check_layout(unit.layout)


def _raw_documents(cfg, stats: Counter) -> Iterator[list[str]]:
    kind = cfg.format
    max_chars = cfg.max_line_chars
    if kind == "text":
        for path in expand_files(cfg.files):
            yield from _text_blocks(path, cfg, max_chars, stats)
    elif kind in ("jsonl", "csv"):
        for path in expand_files(cfg.files):
            records = (
                jsonl_records(path, max_chars, stats) if kind == "jsonl" else _csv_records(path, cfg, max_chars, stats)
            )
            yield from _record_blocks(records, cfg, stats)
    elif kind == "hf":
        yield from _record_blocks(_hf_records(cfg), cfg, stats)
    else:
        raise ConfigError(f"corpus.format: unknown reader {kind!r} (known: {', '.join(CORPUS_READERS)})")


def read_corpus(cfg, stats: Counter | None = None) -> Iterator[Document]:
    """Documents for the `corpus` config group: cleaned, normalized, split into sentences."""
    stats = Counter() if stats is None else stats
    if cfg.format == "demo":
        yield from demo_documents(cfg.seed, cfg.num_documents, cfg.min_sentences, cfg.max_sentences)
        return
    if cfg.format == "mix":
        for source, unit in read_units(cfg):
            before = stats["documents"]
            yield from read_corpus(OmegaConf.create(unit), stats)
            stats[f"documents_{source}"] += stats["documents"] - before
        return
    split = sentence_splitter(cfg) if cfg.layout != "sentences" else None
    form = cfg.unicode_normalization
    body_start = re.compile(cfg.body_start_regex) if cfg.body_start_regex else None
    body_end = re.compile(cfg.body_end_regex) if cfg.body_end_regex else None
    least = cfg.min_doc_sentences
    for blocks in _raw_documents(cfg, stats):
        if body_start is not None or body_end is not None:
            blocks = _body(blocks, body_start, body_end, stats)
        sents: Document = []
        for block in blocks:
            block = clean_text(block, form)
            if block:
                sents.extend(split(block) if split else [block])
        if len(sents) < least:
            stats["skipped_short_documents"] += 1
            continue
        stats["documents"] += 1
        yield sents
