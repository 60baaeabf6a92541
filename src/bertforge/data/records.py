"""Records from files and datasets, for corpora and tasks alike: JSONL, one JSON array, CSV/TSV
(each plain or `.gz/.xz/.bz2`), Hugging Face datasets (hub name, local files or `save_to_disk`).

Every reader yields `(where, record)`, `where` being `path:line` (`path[i]` in a JSON array,
`name[split][i]` in a dataset), and every error is one `DataError` naming the place as
`path:line:column: message`.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
from collections import Counter
from pathlib import Path
from typing import Iterator

from bertforge.config import ConfigError, DataError, resolve_path

_OPENERS = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}


def format_suffix(path: Path) -> str:
    """The extension that names the format, under any compression: `.tsv` for `train.tsv.gz`."""
    s = path.suffixes
    return (s[-2] if len(s) > 1 and s[-1] in _OPENERS else path.suffix).lower()


def open_text(path: Path) -> io.TextIOBase:
    """Open plain or compressed UTF-8 text as a stream; bad bytes raise UnicodeDecodeError."""
    opener = _OPENERS.get(path.suffix)
    raw = opener(path, "rb") if opener else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline=None)


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


def not_utf8(path: Path, error: UnicodeDecodeError) -> DataError:
    return DataError(
        f"{path}:{utf8_error_position(path, error)}: not valid UTF-8 ({error.reason}); "
        "convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)"
    )


def read_lines(path: Path, max_chars: int, stats: Counter | None = None) -> Iterator[tuple[int, str]]:
    """(line number, line) of a text file. A line longer than `max_chars` is skipped (counted in
    `stats['skipped_long_lines']`) without ever being held in memory whole."""
    stats = Counter() if stats is None else stats
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
            raise not_utf8(path, e) from None


def jsonl_records(
    path: Path, max_chars: int = 1_000_000, stats: Counter | None = None, array_hint: str = ""
) -> Iterator[tuple[str, dict]]:
    """One JSON object per line; blank lines are skipped. `array_hint` is added to the error when
    the file turns out to hold one JSON array instead."""
    for lineno, line in read_lines(path, max_chars, stats):
        if not line.strip():
            continue
        try:
            rec = json.loads(line.rstrip("\r\n"))  # a column on this line, not on a "line 2" after it
        except json.JSONDecodeError as e:
            hint = array_hint if lineno == 1 and line.lstrip().startswith("[") else ""
            raise DataError(f"{path}:{lineno}:{e.colno}: invalid JSON ({e.msg}){hint}") from None
        if not isinstance(rec, dict):
            hint = array_hint if isinstance(rec, list) else ""
            raise DataError(f"{path}:{lineno}:1: expected a JSON object per line, found {type(rec).__name__}{hint}")
        yield f"{path}:{lineno}", rec


def read_json(path: Path):
    """A whole JSON file, or one error naming the file, line and column (or that it is unreadable)."""
    try:
        with open_text(path) as fh:
            return json.load(fh)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}:{e.colno}: invalid JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise not_utf8(path, e) from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def json_array_records(path: Path) -> Iterator[tuple[str, dict]]:
    """One JSON array of objects (KLUE's official release files); records are named `path[i]`."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}:1:1: expected a JSON array of objects, found {type(data).__name__}")
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise DataError(f"{path}[{i}]: expected a JSON object, found {type(rec).__name__}")
        yield f"{path}[{i}]", rec


def delimited_records(
    path: Path, delimiter: str, max_chars: int = 1_000_000, stats: Counter | None = None
) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of a CSV/TSV file, the header row included. Tab-separated files are
    read without CSV quoting: quotes there are literal text (GLUE's MRPC and STS-B, KorSTS);
    a byte-order mark before the header is dropped. Line numbers are physical lines, so a quoted
    cell spanning lines does not shift the ones after it."""
    csv.field_size_limit(max_chars)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with open_text(path) as fh:
        reader = csv.reader(fh, delimiter=delimiter, quoting=quoting)
        start = 1
        try:
            for row in reader:
                yield start, row
                start = reader.line_num + 1
        except csv.Error as e:
            if "field larger than field limit" in str(e):
                if stats is not None:
                    stats["skipped_long_lines"] += 1  # csv cannot resume after this: the rest is unread
                raise DataError(f"{path}:{reader.line_num}: a field is longer than {max_chars:,} characters") from None
            raise DataError(f"{path}:{reader.line_num}: {e}") from None
        except UnicodeDecodeError as e:
            raise not_utf8(path, e) from None


def open_dataset(name: str, config_name: str | None, split: str, streaming: bool, key: str):
    """(where, dataset) of a Hugging Face dataset: a directory written by `save_to_disk`, a local
    directory of data files, or a hub name (needs a network). `key` names the config entry for errors."""
    import datasets

    if not name:
        raise ConfigError(f"{key}: name a Hugging Face dataset (e.g. wikimedia/wikipedia) or a local directory")
    local = resolve_path(name)
    if (local / "dataset_info.json").exists() and (local / "state.json").exists():  # save_to_disk
        ds = datasets.load_from_disk(str(local))
        ds = ds[split] if isinstance(ds, datasets.DatasetDict) else ds
    else:
        ds = datasets.load_dataset(
            str(local) if local.exists() else name, config_name, split=split, streaming=streaming
        )
    return f"{name}{'/' + config_name if config_name else ''}[{split}]", ds


def hf_records(name: str, config_name: str | None, split: str, streaming: bool, key: str) -> Iterator[tuple[str, dict]]:
    """The rows of `open_dataset(...)`, each named `name[split][i]`."""
    where, ds = open_dataset(name, config_name, split, streaming, key)
    for i, rec in enumerate(ds):
        yield f"{where}[{i}]", rec
