"""The `evaluate` stage: metrics, predictions and a confusion matrix for a fine-tuned model."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .finetune_module import encode, make_loader, predict
from .tasks import TaskData, compute_metrics, task_score
from .tokenization import load_tokenizer


def evaluate_model(model_dir: Path, task, data: TaskData, split: str, max_seq_length: int):
    from transformers import AutoModelForSequenceClassification

    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    examples = data.splits[split]
    loader = make_loader(tokenizer, encode(tokenizer, examples, data, max_seq_length), 128, False, 0)
    regression = data.labels is None
    preds, _ = predict(model, loader, regression)
    gold = [data.label_id(e) for e in examples]
    metrics = compute_metrics(list(task.metrics), preds, np.asarray(gold))
    return metrics, task_score(metrics, list(task.metrics)), examples, preds


def write_predictions(path: Path, examples, preds, data: TaskData) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
        w.writerow(["source", "label", "prediction", "text_a", "text_b"])
        for ex, p in zip(examples, preds):
            pred = f"{float(p):.4f}" if data.labels is None else data.labels[int(p)]
            w.writerow([ex.source, ex.label, pred, ex.text_a, ex.text_b or ""])


def write_confusion(path: Path, examples, preds, data: TaskData) -> None:
    """One row per example (actual, predicted): the input DVC's confusion template expects.
    Regression scores are rounded to the nearest integer (STS-B: 0-5 similarity bands)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["actual", "predicted"])
        for ex, p in zip(examples, preds):
            if data.labels is None:
                w.writerow([round(float(ex.label)), round(float(p))])
            else:
                w.writerow([ex.label, data.labels[int(p)]])
