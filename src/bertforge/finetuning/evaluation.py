"""The `evaluate` stage: metrics, predictions and a confusion matrix for a fine-tuned model."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from bertforge.data.tokenization import load_tokenizer
from bertforge.finetuning.bi_encoder import sentence_model_config
from bertforge.finetuning.metrics import score_predictions
from bertforge.finetuning.module import encode, make_loader, predict
from bertforge.finetuning.tasks import TaskData
from bertforge.hardware import Placement
from bertforge.predict import predict as predict_texts


def predict_examples(model_dir: Path, data: TaskData, examples, max_seq_length: int, place: Placement) -> np.ndarray:
    """Label ids (or regression scores) of a fine-tuned model for `examples`, in order."""
    from transformers import AutoModelForSequenceClassification

    if sentence_model_config(model_dir) is not None:  # a bi-encoder: its cosines on the task's scale
        pairs = [(e.text_a, e.text_b) for e in examples]
        return predict_texts(model_dir, pairs, max_length=max_seq_length, batch_size=128, place=place).values

    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).to(place.device)
    loader = make_loader(tokenizer, encode(tokenizer, examples, data, max_seq_length), 128, False, 0)
    with place.autocast():
        preds, _ = predict(model, loader, data.labels is None)
    return preds


def evaluate_model(model_dir: Path, task, data: TaskData, split: str, max_seq_length: int, place: Placement):
    examples = data.splits[split]
    preds = predict_examples(model_dir, data, examples, max_seq_length, place)
    gold = [data.label_id(e) for e in examples]
    metrics, score = score_predictions(task, preds, np.asarray(gold))
    return metrics, score, examples, preds


def write_submission(path: Path, examples, preds, data: TaskData) -> None:
    """GLUE's submission format: `index<TAB>prediction`, label names as the task lists them
    (GLUE's own: 0/1 for CoLA, SST-2, MRPC, QQP; entailment/... for RTE, QNLI, MNLI, WNLI),
    STS-B's score with 3 decimals."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        fh.write("index\tprediction\n")
        for ex, p in zip(examples, preds):
            fh.write(f"{ex.index}\t{float(p):.3f}\n" if data.labels is None else f"{ex.index}\t{data.labels[int(p)]}\n")


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


def confusion_figure(examples, preds, data: TaskData, title: str):
    """Confusion matrix (rows: gold, columns: predicted) as a matplotlib figure, for MLflow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(data.labels)
    counts = np.zeros((k, k), dtype=np.int64)
    for ex, p in zip(examples, preds):
        counts[data.labels.index(str(ex.label)), int(p)] += 1
    fig, ax = plt.subplots(figsize=(1.2 * k + 2.5, 1.2 * k + 2))
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(k), data.labels, rotation=30, ha="right")
    ax.set_yticks(range(k), data.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                color="white" if counts[i, j] > counts.max() / 2 else "black",
            )
    fig.tight_layout()
    plt.close(fig)
    return fig
