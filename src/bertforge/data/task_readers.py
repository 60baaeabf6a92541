"""Row sources for labelled tasks: TSV/CSV (GLUE format included), JSONL, Hugging Face datasets.

Each yields `(where, text_a, text_b, label)` with raw values; `where` ("train.tsv:12",
"validation[7]") and the configured column names make every error point at the bad cell.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

from bertforge.config import ConfigError, DataError
from bertforge.data.records import delimited_records, format_suffix, json_array_records, jsonl_records, open_dataset

Row = tuple[str, Any, Any, Any]


def setting(what: str, names: dict[str, str] | None) -> str:
    """The name a reader's error gives the setting `what`: the task's `task.local.<what>`, or the
    caller's own (`bertforge predict` reads a file's columns with `--file` and `--columns`)."""
    return (names or {}).get(what, f"task.local.{what}")


def _index(header: list[str] | None, col, path: Path, key: str) -> int:
    if isinstance(col, int):
        return col
    if header is None:
        raise ConfigError(f"{key}={col!r}: {path} has no header row; give a column index")
    if col not in header:
        raise DataError(f"{path}:1: no column {col!r} for {key} (columns: {header})")
    return header.index(col)


def delimited_rows(path: Path, spec, delimiter: str, names: dict[str, str] | None = None) -> Iterator[Row]:
    """GLUE-style TSV/CSV rows (records.delimited_records: TSV quotes are literal, a BOM is dropped).
    With `skip_malformed` (QQP has a few short rows) rows with too few columns are counted, not fatal."""
    skipped, first = 0, None
    rows = delimited_records(path, delimiter)
    header = next(rows, (1, None))[1] if spec.header else None
    ia = _index(header, spec.text_a, path, setting("text_a", names))
    ib = None if spec.text_b is None else _index(header, spec.text_b, path, setting("text_b", names))
    il = None if spec.label is None else _index(header, spec.label, path, setting("label", names))
    need = max(i for i in (ia, ib, il) if i is not None)
    for lineno, row in rows:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) <= need:
            if spec.skip_malformed:
                skipped, first = skipped + 1, first or lineno
                continue
            raise DataError(f"{path}:{lineno}: expected at least {need + 1} columns, found {len(row)}")
        yield (
            f"{path.name}:{lineno}",
            row[ia],
            (row[ib] if ib is not None else None),
            (row[il] if il is not None else None),
        )
    if skipped:
        print(f"{path}: skipped {skipped} malformed rows (first at line {first})", file=sys.stderr)


def field(obj: dict, key: str):
    """`obj[key]`; a dotted key reaches into nested objects (KLUE-STS: `labels.label`)."""
    if key in obj:
        return obj[key]
    value = obj
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(key)
        value = value[part]
    return value


def _object_row(where: str, obj, spec, names: dict[str, str] | None = None) -> Row:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, found {type(obj).__name__}")
    values = {}
    for what in ("text_a", "text_b", "label"):
        key = spec[what]
        if key is None:
            values[what] = None
            continue
        try:
            values[what] = field(obj, key)
        except KeyError:
            raise DataError(f"{where}: no key {key!r} for {setting(what, names)} (keys: {list(obj)})") from None
    return where, values["text_a"], values["text_b"], values["label"]


ARRAY_HINT = " (one JSON array in the file? set task.local.format=json)"


def jsonl_rows(path: Path, spec, names: dict[str, str] | None = None) -> Iterator[Row]:
    for where, obj in jsonl_records(path, array_hint=ARRAY_HINT):
        yield _object_row(where.replace(str(path), path.name, 1), obj, spec, names)


def json_array_rows(path: Path, spec, names: dict[str, str] | None = None) -> Iterator[Row]:
    """One JSON array of objects (KLUE's official release files); rows are named `file.json[i]`."""
    for where, obj in json_array_records(path):
        yield _object_row(where.replace(str(path), path.name, 1), obj, spec, names)


FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}  # .json: lines unless format=json


def file_format(path: Path, spec) -> str:
    """`task.local.format`, or (null / auto) the one the file's extension names."""
    fmt = spec.format or "auto"
    if fmt == "auto":
        fmt = FORMATS.get(format_suffix(path))
        if fmt is None:
            raise ConfigError(
                f"task.local.format: cannot tell the format of {path.name} from its extension; "
                "set it to tsv, csv or jsonl"
            )
    if fmt not in ("tsv", "csv", "jsonl", "json"):
        raise ConfigError(f"task.local.format: unknown format {fmt!r} (known: auto, tsv, csv, jsonl, json)")
    return fmt


def file_rows(path: Path, spec, names: dict[str, str] | None = None) -> Iterator[Row]:
    """Rows of a task file; `names` renames settings in the errors (see `setting`)."""
    if not path.is_file():
        raise ConfigError(f"{setting('files', names)}: {path} does not exist")
    fmt = file_format(path, spec)
    if fmt in ("jsonl", "json"):
        rows = jsonl_rows(path, spec, names) if fmt == "jsonl" else json_array_rows(path, spec, names)
    else:
        rows = delimited_rows(path, spec, "\t" if fmt == "tsv" else ",", names)
    return _decoded(rows, path, fmt)


def _decoded(rows: Iterator[Row], path: Path, fmt: str) -> Iterator[Row]:
    """A format that does not fit the file (a .tsv read as JSONL) says which setting to change."""
    try:
        yield from rows
    except DataError as e:
        declared = FORMATS.get(format_suffix(path))
        if declared and declared != fmt and {declared, fmt} != {"jsonl", "json"}:
            raise DataError(
                f"{e} (task.local.format is {fmt}, but the file is named {path.name}: set task.local.format={declared})"
            ) from None
        raise


def hf_rows(spec, split: str, labels: list[str] | None) -> Iterator[Row]:
    """A Hugging Face dataset by path/name/split (the hub for users with a network, or a local
    directory of data files). Integer labels become the task's label strings: "0"/"1" where the
    task lists those (as GLUE's TSV files do), else the dataset's ClassLabel names, else the
    task's labels by position. A dotted label column reaches into a struct (KLUE-STS `labels.label`)."""
    where, ds = open_dataset(spec.path, spec.name, split, spec.streaming, "task.hf.path")
    columns = ds.column_names
    for what in ("text_a", "text_b", "label"):
        col = spec[what]
        if col is not None and columns is not None and col.split(".")[0] not in columns:
            raise DataError(f"{where}: no column {col!r} for task.hf.{what} (columns: {columns})")
    feature = (ds.features or {}).get(spec.label)
    names = getattr(feature, "names", None)
    for i, row in enumerate(ds):
        y = field(row, spec.label)
        if isinstance(y, int) and not isinstance(y, bool) and not (labels and str(y) in labels):
            if y < 0:
                raise DataError(f"{split}[{i}]: column {spec.label!r}: label {y} (unlabelled split?)")
            if names:
                y = names[y]
            elif labels and y < len(labels):  # no ClassLabel (e.g. plain JSON files): the task's labels by position
                y = labels[y]
        yield f"{split}[{i}]", row[spec.text_a], (row[spec.text_b] if spec.text_b else None), y
