"""Fine-tuning tasks: readers for GLUE-format and custom TSV/CSV files, the demo task, metrics."""
from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import ConfigError, resolve_path
from .corpus import N_TOPICS, DemoLanguage


@dataclass(frozen=True)
class Example:
    text_a: str
    text_b: str | None
    label: str | float
    source: str  # "file:line", for error messages and predictions


@dataclass
class TaskData:
    splits: dict[str, list[Example]]
    labels: list[str] | None  # None: regression

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    def label_id(self, ex: Example) -> int | float:
        return float(ex.label) if self.labels is None else self.labels.index(str(ex.label))


def _column(header: list[str] | None, col, path: Path, key: str) -> int:
    if isinstance(col, int):
        return col
    if header is None:
        raise ConfigError(f"{key}={col!r}: {path} has no header row; give a column index")
    if col not in header:
        raise ConfigError(f"{path}:1: no column {col!r} for {key} (columns: {header})")
    return header.index(col)


def read_delimited(path: Path, task, labels: list[str] | None, delimiter: str = "\t") -> list[Example]:
    """Tab-separated GLUE files are read without CSV quoting: quotes there are literal text."""
    if not path.exists():
        raise ConfigError(f"task.files: {path} does not exist")
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = csv.reader(fh, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
        header = next(rows, None) if task.header else None
        ia = _column(header, task.text_a, path, "task.text_a")
        ib = None if task.text_b is None else _column(header, task.text_b, path, "task.text_b")
        il = _column(header, task.label, path, "task.label")
        need = max(i for i in (ia, ib, il) if i is not None)
        out = []
        for lineno, row in enumerate(rows, 2 if task.header else 1):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) <= need:
                raise ValueError(f"{path}:{lineno}: expected at least {need + 1} columns, found {len(row)}")
            label = row[il].strip()
            if labels is not None and label not in labels:
                raise ValueError(f"{path}:{lineno}: column {il + 1}: label {label!r} is not one of {labels}")
            if labels is None:
                try:
                    label = float(label)
                except ValueError:
                    raise ValueError(f"{path}:{lineno}: column {il + 1}: {label!r} is not a number (regression task)") from None
            text_b = row[ib] if ib is not None else None
            if ib is not None and not text_b.strip():
                raise ValueError(f"{path}:{lineno}: column {ib + 1}: empty second text in a pair task")
            out.append(Example(row[ia], text_b, label, f"{path.name}:{lineno}"))
    if not out:
        raise ValueError(f"{path}: the split is empty")
    return out


def demo_task(task) -> TaskData:
    """`kind: agreement`: is the sentence grammatical (does the verb agree with its subject)?
    `kind: topic`: which of the 8 topics is the sentence about? Classes are balanced."""
    lang = DemoLanguage()
    kind = task.get("kind", "agreement")
    if kind not in ("agreement", "topic"):
        raise ConfigError(f"task.kind: unknown demo task {kind!r} (known: agreement, topic)")
    labels = ["ungrammatical", "grammatical"] if kind == "agreement" else [f"topic{t}" for t in range(N_TOPICS)]
    rng = random.Random(task.seed)

    def split(n: int, name: str) -> list[Example]:
        out = []
        for i in range(n):
            topic, y = rng.randrange(N_TOPICS), i % len(labels)
            if kind == "agreement":
                text = lang.sentence(rng, topic, agree=bool(y))[0]
            else:
                text = lang.sentence(rng, y)[0]
            out.append(Example(text, None, labels[y], f"{name}:{i + 1}"))
        rng.shuffle(out)
        return out

    return TaskData({"train": split(task.num_train, "train"), "dev": split(task.num_dev, "dev")}, labels)


def load_task(task) -> TaskData:
    if task.format == "demo":
        return demo_task(task)
    if task.format in ("tsv", "csv"):
        labels = None if task.labels is None else [str(x) for x in task.labels]
        base = resolve_path(task.data_dir)
        splits = {}
        for name, fname in task.files.items():
            rows = read_delimited(base / fname, task, labels, "\t" if task.format == "tsv" else ",")
            splits[name] = rows[: task.max_examples] if task.get("max_examples") else rows
        for required in ("train", "dev"):
            if required not in splits:
                raise ConfigError(f"task.files.{required}: missing for task {task.name}")
        return TaskData(splits, labels)
    raise ConfigError(f"task.format: unknown format {task.format!r} (known: demo, tsv, csv)")


# ---------------------------------------------------------------- metrics (GLUE's official ones)
def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    return (sums / counts)[inv]  # average ranks for ties


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    d = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / d) if d else 0.0


def compute_metrics(names: list[str], preds: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    out = {}
    for name in names:
        if name == "accuracy":
            out[name] = float((preds == gold).mean())
        elif name == "f1":  # of the positive class (label id 1), as GLUE reports for MRPC/QQP
            tp = float(((preds == 1) & (gold == 1)).sum())
            fp = float(((preds == 1) & (gold != 1)).sum())
            fn = float(((preds != 1) & (gold == 1)).sum())
            out[name] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        elif name == "matthews_corr":
            out[name] = _pearson((preds == 1).astype(float), (gold == 1).astype(float))
        elif name == "pearson":
            out[name] = _pearson(preds.astype(float), gold.astype(float))
        elif name == "spearman":
            out[name] = _pearson(_ranks(preds.astype(float)), _ranks(gold.astype(float)))
        else:
            raise ConfigError(f"task.metrics: unknown metric {name!r}")
    return out


def task_score(metrics: dict[str, float], names: list[str]) -> float:
    """GLUE's per-task score: the mean of the task's metrics."""
    return float(np.mean([metrics[n] for n in names]))
