"""Task metrics as GLUE and KLUE report them (accuracy, F1, macro-F1, Matthews, Pearson, Spearman)
and a task's score: the mean of its score metrics."""

from __future__ import annotations

import numpy as np

from bertforge.config import ConfigError


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


def _f1(preds: np.ndarray, gold: np.ndarray, positive) -> float:
    tp = float(((preds == positive) & (gold == positive)).sum())
    fp = float(((preds == positive) & (gold != positive)).sum())
    fn = float(((preds != positive) & (gold == positive)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def compute_metrics(
    names: list[str], preds: np.ndarray, gold: np.ndarray, num_labels: int | None = None, threshold: float = 3.0
) -> dict[str, float]:
    """`num_labels`: the classes macro-F1 averages over (default: those in gold or predictions);
    `threshold`: where binary_f1 cuts a regression score (KLUE-STS: 3.0 of 0-5)."""
    out = {}
    for name in names:
        if name == "accuracy":
            out[name] = float((preds == gold).mean())
        elif name == "f1":  # of the positive class (label id 1), as GLUE reports for MRPC/QQP
            out[name] = _f1(preds, gold, 1)
        elif name == "macro_f1":  # the unweighted mean over classes (KLUE-YNAT)
            classes = range(num_labels) if num_labels else np.union1d(preds, gold)
            out[name] = float(np.mean([_f1(preds, gold, c) for c in classes]))
        elif name == "binary_f1":  # F1 of "similar" (score >= threshold) as KLUE-STS reports it
            out[name] = _f1((preds >= threshold).astype(int), (gold >= threshold).astype(int), 1)
        elif name == "matthews_corr":
            out[name] = _pearson((preds == 1).astype(float), (gold == 1).astype(float))
        elif name == "pearson":
            out[name] = _pearson(preds.astype(float), gold.astype(float))
        elif name == "spearman":
            out[name] = _pearson(_ranks(preds.astype(float)), _ranks(gold.astype(float)))
        else:
            raise ConfigError(f"task.metrics: unknown metric {name!r}")
    return out


METRICS = {
    "classification": ("accuracy", "f1", "macro_f1", "matthews_corr"),
    "regression": ("pearson", "spearman", "binary_f1"),
}
DEFAULT_METRICS = {"classification": ["accuracy"], "regression": ["pearson", "spearman"]}


def task_metrics(task) -> list[str]:
    """`task.metrics`, or (null) the problem type's defaults; a metric that cannot apply to the
    problem type (accuracy of a regression) is a config error, as is a score metric not computed."""
    problem = task.problem
    if problem not in METRICS:
        raise ConfigError(f"task.problem: {problem!r} is not classification or regression")
    names = list(task.metrics or DEFAULT_METRICS[problem])
    unknown = [n for n in names if n not in METRICS["classification"] + METRICS["regression"]]
    if unknown:
        raise ConfigError(f"task.metrics: unknown metric {unknown[0]!r}")
    wrong = [n for n in names if n not in METRICS[problem]]
    if wrong:
        raise ConfigError(
            f"task.metrics: {', '.join(wrong)} cannot score a {problem} task "
            f"(use {', '.join(METRICS[problem])}, or null for {', '.join(DEFAULT_METRICS[problem])})"
        )
    missing = [n for n in task.score_metrics or [] if n not in names]
    if missing:
        raise ConfigError(f"task.score_metrics: {', '.join(missing)} is not in task.metrics {names}")
    return names


def task_score(metrics: dict[str, float], task) -> float:
    """GLUE's per-task score: the mean of the task's `score_metrics` (default: all its metrics), so MRPC averages
    F1 and accuracy while CoLA, which also reports accuracy, is scored on Matthews correlation alone."""
    return float(np.mean([metrics[n] for n in (task.score_metrics or task_metrics(task))]))


def score_predictions(task, preds: np.ndarray, gold: np.ndarray) -> tuple[dict[str, float], float]:
    """The task's metrics on these predictions, and its GLUE score."""
    labels = task.labels
    metrics = compute_metrics(task_metrics(task), preds, gold, len(labels) if labels else None, task.binary_threshold)
    return metrics, task_score(metrics, task)
