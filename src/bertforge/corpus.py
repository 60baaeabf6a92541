"""Corpus readers: every reader yields documents, each a list of clean, normalized sentences.

Formats (`corpus.format`): `text` (local files; `layout` says how sentences and documents are
laid out), `jsonl` / `csv` (one record per row, a text column, optional title and document id),
`hf` (a Hugging Face dataset by name or local path, streamed), `mix` (several profiles in
order, e.g. books + Wikipedia) and `demo` (the generated language, see demo_language.py).
Files may be globs and `.gz/.xz/.bz2` streams. Skipped input is counted in `stats`, never silent.
"""

from __future__ import annotations

import bz2
import csv
import glob
import gzip
import io
import json
import lzma
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Iterator

from omegaconf import OmegaConf

from .config import ConfigError, DataError, resolve_path
from .demo_language import demo_documents

Document = list[str]
LAYOUTS = ("sentences", "paragraphs", "wrapped")

_OPENERS = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}
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


def open_text(path: Path) -> io.TextIOBase:
    """Open plain or compressed UTF-8 text as a stream; bad bytes raise UnicodeDecodeError."""
    opener = _OPENERS.get(path.suffix)
    raw = opener(path, "rb") if opener else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline=None)


def read_lines(path: Path, max_chars: int, stats: Counter) -> Iterator[tuple[int, str]]:
    """(line number, line) of a text file. A line longer than `max_chars` is skipped (counted in
    `stats['skipped_long_lines']`) without ever being held in memory whole."""
    with open_text(path) as fh:
        lineno = 0
        try:
            while True:
                line = fh.readline(max_chars + 1)
                if not line:
                    return
                lineno += 1
                if len(line) > max_chars and not line.endswith("\n"):
                    while (rest := fh.readline(max_chars)) and not rest.endswith("\n"):
                        pass
                    stats["skipped_long_lines"] += 1
                    continue
                if "\x00" in line:
                    raise DataError(f"{path}:{lineno}: binary data (NUL byte); not a text file")
                yield lineno, line
        except UnicodeDecodeError as e:
            raise DataError(
                f"{path}:{utf8_error_position(path, e)}: not valid UTF-8 ({e.reason}); "
                "is this a binary or non-UTF-8 file?"
            ) from None


def utf8_error_position(path: Path, error: UnicodeDecodeError) -> str:
    """`line:column` of the first undecodable byte (the text layer decodes ahead in blocks)."""
    opener = _OPENERS.get(path.suffix, open)
    with opener(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return f"{lineno}:{len(raw[: e.start].decode('utf-8')) + 1}"
    return f"? ({error.reason})"


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
    name = cfg.get("sentence_splitter", "sentencex")
    if name == "rules":
        return rule_split
    if name == "sentencex":
        from sentencex import segment

        lang = cfg.get("language", "en")
        return lambda p: [s.strip() for s in segment(lang, p) if s.strip()]
    raise ConfigError(f"corpus.sentence_splitter: unknown splitter {name!r} (known: sentencex, rules)")


# ---------------------------------------------------------------- text files
def _text_blocks(path: Path, cfg, stats: Counter) -> Iterator[list[str]]:
    """Raw documents of one file as lists of blocks (a sentence, or a paragraph to split)."""
    layout = cfg.get("layout", "sentences")
    _check_layout(layout)
    start = re.compile(cfg.doc_start_regex) if cfg.get("doc_start_regex") else None
    skip = re.compile(cfg.skip_regex) if cfg.get("skip_regex") else None
    max_chars = int(cfg.get("max_line_chars", 1_000_000))
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
def _jsonl_records(path: Path, cfg, stats: Counter) -> Iterator[tuple[str, dict]]:
    for lineno, line in read_lines(path, int(cfg.get("max_line_chars", 1_000_000)), stats):
        if not line.strip():
            continue
        try:
            rec = json.loads(line.rstrip("\r\n"))  # a column on this line, not on a "line 2" after it
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}:{e.colno}: invalid JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{lineno}: a JSON object per line is expected, got {type(rec).__name__}")
        yield f"{path}:{lineno}", rec


def _csv_records(path: Path, cfg, stats: Counter) -> Iterator[tuple[str, dict]]:
    csv.field_size_limit(int(cfg.get("max_line_chars", 1_000_000)))
    delimiter = cfg.get("delimiter") or ("\t" if ".tsv" in path.suffixes else ",")
    with open_text(path) as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        try:
            for rec in reader:
                yield f"{path}:{reader.line_num}", rec
        except csv.Error as e:
            if "field larger than field limit" in str(e):
                stats["skipped_long_lines"] += 1  # csv cannot resume after this: the rest is unread
                raise DataError(f"{path}:{reader.line_num}: a field is longer than corpus.max_line_chars") from None
            raise DataError(f"{path}:{reader.line_num}: {e}") from None
        except UnicodeDecodeError as e:
            raise DataError(f"{path}:{reader.line_num + 1}: not valid UTF-8 ({e.reason})") from None


def _hf_records(cfg) -> Iterator[tuple[str, dict]]:
    """A Hugging Face dataset: a hub name (needs network) or a local directory, streamed."""
    import datasets

    name = "" if OmegaConf.is_missing(cfg, "dataset") else str(cfg.get("dataset") or "")
    if not name:
        raise ConfigError("corpus.dataset: name a Hugging Face dataset (e.g. wikimedia/wikipedia) or a local directory")
    local = resolve_path(name)
    if (local / "dataset_info.json").exists() and (local / "state.json").exists():  # save_to_disk
        ds = datasets.load_from_disk(str(local))
        ds = ds[cfg.split] if isinstance(ds, datasets.DatasetDict) else ds
    else:
        ds = datasets.load_dataset(
            str(local) if local.exists() else name,
            cfg.get("config_name"),
            split=cfg.split,
            streaming=bool(cfg.get("streaming", True)),
        )
    for i, rec in enumerate(ds):
        yield f"{name}[{cfg.split}][{i}]", rec


def _record_blocks(records: Iterator[tuple[str, dict]], cfg, stats: Counter) -> Iterator[list[str]]:
    """Documents from records: consecutive records with the same `id_column` value form one
    document (else each record is one); `title_column` opens the document."""
    text_col, title_col, id_col = cfg.text_column, cfg.get("title_column"), cfg.get("id_column")
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
        if not corpus.get("sources"):
            raise ConfigError("corpus.sources: a mix needs at least one source profile")
        return [(name, unit) for name, src in corpus.sources.items() for _, unit in read_units(src)]
    plain = OmegaConf.to_container(corpus, resolve=True)
    if corpus.format in ("text", "jsonl", "csv"):
        return [(None, {**plain, "files": [str(f)]}) for f in expand_files(corpus.files)]
    return [(None, plain)]


def _check_reader(kind: str) -> None:
    if kind not in ("text", "jsonl", "csv", "hf", "demo"):
        raise ConfigError(f"corpus.format: unknown reader {kind!r} (known: text, jsonl, csv, hf, mix, demo)")


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ConfigError(f"corpus.layout: {layout!r} is not one of {', '.join(LAYOUTS)}")


def check_corpus_config(corpus) -> None:
    """What can be checked before reading: readers, layouts, splitters and file patterns (a glob
    matching nothing), so that the stage fails before it creates an MLflow run or an output."""
    for _, unit in read_units(corpus):
        unit = OmegaConf.create(unit)
        _check_reader(unit.format)
        if unit.format != "demo":
            sentence_splitter(unit)
        if unit.format == "text":
            _check_layout(unit.get("layout", "sentences"))


def _raw_documents(cfg, stats: Counter) -> Iterator[list[str]]:
    kind = cfg.format
    if kind == "text":
        for path in expand_files(cfg.files):
            yield from _text_blocks(path, cfg, stats)
    elif kind in ("jsonl", "csv"):
        reader = _jsonl_records if kind == "jsonl" else _csv_records
        for path in expand_files(cfg.files):
            yield from _record_blocks(reader(path, cfg, stats), cfg, stats)
    elif kind == "hf":
        yield from _record_blocks(_hf_records(cfg), cfg, stats)
    else:
        _check_reader(kind)


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
    split = sentence_splitter(cfg) if cfg.get("layout", "sentences") != "sentences" else None
    form = cfg.get("unicode_normalization")
    body_start = re.compile(cfg.body_start_regex) if cfg.get("body_start_regex") else None
    body_end = re.compile(cfg.body_end_regex) if cfg.get("body_end_regex") else None
    least = int(cfg.get("min_doc_sentences") or 1)
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
