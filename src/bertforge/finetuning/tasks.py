"""Fine-tuning tasks: splits and labels from a task config (GLUE, custom files, HF datasets, the demo)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from bertforge.config import ConfigError, DataError, resolve_path
from bertforge.data.demo_language import N_TOPICS, DemoLanguage
from bertforge.data.task_readers import file_rows, hf_rows
from bertforge.finetuning.metrics import task_metrics
from bertforge.schema import check_task


@dataclass(frozen=True)
class Example:
    text_a: str
    text_b: str | None
    label: str | float | None  # None: an unlabelled split (GLUE's test files)
    source: str  # "file:line", for error messages and predictions
    index: str | None = None  # the row's id in an unlabelled split (GLUE's `index` column)


@dataclass
class TaskData:
    splits: dict[str, list[Example]]
    labels: list[str] | None  # None: regression

    @property
    def pairs(self) -> bool:
        """Whether the examples are sentence pairs (every split has the task's columns)."""
        return any(split and split[0].text_b is not None for split in self.splits.values())

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    def label_id(self, ex: Example) -> int | float:
        if ex.label is None:  # unlabelled: a placeholder the loader carries and prediction ignores
            return 0.0 if self.labels is None else 0
        return float(ex.label) if self.labels is None else self.labels.index(str(ex.label))


def demo_task(task) -> TaskData:
    """`kind: agreement`: is the sentence grammatical (does the verb agree with its subject)?
    `kind: topic`: which of the 8 topics is the sentence about? Classes are balanced."""
    lang = DemoLanguage()
    kind = task.kind
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


def label_value(where: str, raw, problem: str, column) -> str | float:
    """A label as read from a file (a regression's number, a class's name), or one error naming the row."""
    if problem == "regression":
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise DataError(f"{where}: column {column!r}: {raw!r} is not a number (regression task)") from None
    return str(raw).strip()


def _examples(rows, task, split: str, known: list[str] | None, where_split: str) -> list[Example]:
    spec_b = task.local.text_b if task.source == "local" else task.hf.text_b
    column = task.local.label if task.source == "local" else task.hf.label
    limit = task.max_examples
    if limit is not None and not isinstance(limit, int):  # a mapping: per split, e.g. {train: 8000}
        limit = limit.get(split)
    out = []
    for where, a, b, y in rows:
        if not isinstance(a, str) or (spec_b is not None and not isinstance(b, str)):
            raise DataError(
                f"{where}: a text column holds {type(a if not isinstance(a, str) else b).__name__}, not text"
            )
        if spec_b is not None and not b.strip():
            raise DataError(f"{where}: column {spec_b!r}: empty second text in a pair task")
        label = label_value(where, y, task.problem, column)
        if known is not None and label not in known:
            raise DataError(f"{where}: column {column!r}: label {label!r} is not one of {known}")
        out.append(Example(a, b, label, where))
        if limit and len(out) == limit:
            break
    if not out:
        raise DataError(f"{where_split}: the {split} split is empty")
    return out


def _discover_labels(train: list[Example]) -> list[str]:
    """Labels found in the training split, in numeric order if they are all numbers."""
    found = set(str(e.label) for e in train)
    try:
        labels = sorted(found, key=float)
    except ValueError:
        labels = sorted(found)
    if len(labels) < 2:
        raise DataError(f"task.labels: the training split has only the label(s) {labels}; need at least 2")
    return labels


def _seeded_split(splits: dict[str, list[Example]], task) -> None:
    """No dev file: hold out `split.dev_fraction` of train, chosen with `split.seed`."""
    frac = float(task.split.dev_fraction)
    if not 0 < frac < 1:
        raise ConfigError(f"task.split.dev_fraction: {frac} must be between 0 and 1")
    train = list(splits["train"])
    random.Random(task.split.seed).shuffle(train)
    n_dev = max(1, round(frac * len(train)))
    if n_dev >= len(train):
        raise DataError(f"task.split: {len(train)} training examples are too few to hold out a dev split")
    splits["dev"], splits["train"] = train[:n_dev], train[n_dev:]


def load_task(task) -> TaskData:
    """Train and evaluation splits of a task config (source `demo`, `local` files or `hf` dataset)."""
    check_task(task)  # as at stage start (fills the optional keys), for callers outside a stage
    source = task.source
    if source == "demo":
        return demo_task(task)
    task_metrics(task)  # problem type and metrics fit together, before any file is read
    known = None if task.labels is None else [str(x) for x in task.labels]
    if task.problem == "regression" and known is not None:
        raise ConfigError("task.labels: a regression task has no label set (set task.labels=null)")
    if source == "local":
        base = resolve_path(task.local.data_dir)
        files = {k: v for k, v in task.local.files.items() if v is not None}
        where = {name: str(base / f) for name, f in files.items()}
        read = lambda name, labels: file_rows(base / files[name], task.local)  # noqa: E731
    else:
        files = {k: v for k, v in task.hf.splits.items() if v is not None}
        where = {name: f"{task.hf.path}[{s}]" for name, s in files.items()}
        read = lambda name, labels: hf_rows(task.hf, files[name], labels)  # noqa: E731
    if "train" not in files:
        raise ConfigError(
            f"task.{source}.{'files' if source == 'local' else 'splits'}.train: missing for task {task.name}"
        )
    splits = {"train": _examples(read("train", known), task, "train", known, where["train"])}
    if task.problem == "classification" and known is None:
        known = _discover_labels(splits["train"])
    for name in files:
        if name != "train":
            splits[name] = _examples(read(name, known), task, name, known, where[name])
    if "dev" not in splits:
        if task.split is None:
            raise ConfigError(f"task: no dev split for {task.name}: list a dev file or set task.split.dev_fraction")
        _seeded_split(splits, task)
    for name in eval_splits(task):
        if name not in splits:
            raise ConfigError(f"task.eval_splits: no split {name!r} (splits: {list(splits)})")
    return TaskData(splits, known)


def predict_splits(task) -> dict[str, tuple[str, list[Example]]]:
    """Unlabelled splits to predict, from `task.predict` (GLUE's test files): {name: (submission
    file name, examples with their index)}. A local file that is not there is skipped with a note:
    ../shared/data and many GLUE copies hold train and dev only."""
    import sys

    from omegaconf import OmegaConf

    out = {}
    for name, p in task.predict.items():
        index = p.index
        if task.source == "local":
            if p.file is None:
                raise ConfigError(f"task.predict.{name}.file: missing (a local task predicts a file)")
            path = resolve_path(task.local.data_dir) / p.file
            if not path.is_file():
                print(f"{path}: not found, so no {p.submission} predictions", file=sys.stderr)
                continue
            overrides = {k: p[k] for k in ("header", "text_a", "text_b", "format") if p[k] is not None}
            spec = OmegaConf.merge(task.local, overrides, {"label": index})
            rows = file_rows(path, spec)
        elif task.source == "hf" and p.hf_split:
            spec = OmegaConf.merge(task.hf, {"label": p.hf_index})
            rows = hf_rows(spec, p.hf_split, None)
        else:
            continue
        examples = [
            Example(
                a,
                b if spec.text_b is not None else None,
                None,
                where,
                str(i if index is None and task.source == "local" else idx),
            )
            for i, (where, a, b, idx) in enumerate(rows)
        ]
        if not examples:
            raise DataError(f"task.predict.{name}: the split is empty")
        out[name] = (str(p.submission), examples)
    return out


def eval_splits(task) -> list[str]:
    """Splits the task is scored on; GLUE scores MNLI on matched and mismatched dev sets."""
    return list(task.eval_splits)


def selection_splits(splits: list[str]) -> list[str]:
    """The evaluation splits a task's score averages: dev splits only. A labelled test split is
    reported beside it, never averaged into a score that picks models or summarizes tasks."""
    return [s for s in splits if not s.startswith("test")]
