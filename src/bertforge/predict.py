"""What a fine-tuned model says about new text (`bertforge predict`): each example's label and
the probability of every label, or its score for a regression task (STS-B), encoded with the
directory's own tokenizer (morpheme cuts included) as the task's sentences or sentence pairs."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from bertforge.config import ConfigError, DataError, check_bert_dir, command_line_dir

Example = tuple[str, str | None]  # a text, and its pair's second text or None


@dataclass
class Predictions:
    examples: list[Example]  # as read
    names: list[str] | None  # where each example came from (file:line), if from a file's columns
    labels: list[str] | None  # the model's label names, by id; None: a regression model
    values: np.ndarray  # [n, len(labels)] class probabilities, or [n] scores
    how: str | None = None  # how the scores were made, where it is worth a line (similarity)
    gold: list | None = None  # each example's reference label or score (`with_gold`), if given
    # how the finetune stage scored the task (config.json's `finetuning_metrics`): metrics,
    # score_metrics, binary_threshold; None: by problem type (`metrics`)
    scoring: dict | None = None

    def metrics(self) -> dict[str, float]:
        """The predictions scored against `gold`: for a model the finetune stage wrote, its task's
        metrics and score, as the evaluate stage reports them; else a regression's (or a
        similarity's) Pearson and Spearman, a classifier's accuracy, and F1 of its second label
        (GLUE's positive class) with Matthews correlation for two labels, macro-F1 for more."""
        from types import SimpleNamespace

        from bertforge.finetuning.metrics import compute_metrics, score_predictions

        if self.gold is None:
            raise ValueError("no gold labels or scores to score against (with_gold)")
        gold = np.asarray(self.gold)
        values = self.values if self.labels is None else self.values.argmax(-1)
        num_labels = None if self.labels is None else len(self.labels)
        if self.scoring and self.scoring.get("metrics"):  # the task as the evaluate stage scores it
            task = SimpleNamespace(
                problem="regression" if self.labels is None else "classification",
                labels=self.labels,
                metrics=list(self.scoring["metrics"]),
                score_metrics=list(self.scoring.get("score_metrics") or []),
                binary_threshold=float(self.scoring.get("binary_threshold", 3.0)),
            )
            out, score = score_predictions(task, values, gold)
            return out | {"score": score}
        if self.labels is None:
            names = ["pearson", "spearman"]
        else:
            names = ["accuracy", *(("f1", "matthews_corr") if len(self.labels) == 2 else ("macro_f1",))]
        return compute_metrics(names, values, gold, num_labels)

    def best(self) -> list[tuple[str, float]]:
        """(label, its probability) per example; a regression model's (score, score)."""
        if self.labels is None:
            return [(f"{v:.4f}", float(v)) for v in self.values]
        top = self.values.argmax(-1)
        return [(self.labels[int(k)], float(row[k])) for k, row in zip(top, self.values)]


def parse_examples(texts: list, sep: str, names: list[str] | None = None) -> list[Example]:
    """Each text is one example, a string (`sep`, a tab by default, divides a pair's two texts) or
    a (text, second text or None) tuple; a string with more separators is one error naming it
    (`names[i]`, else "example i")."""
    examples = []
    for i, text in enumerate(texts):
        if isinstance(text, str):
            parts = text.split(sep)
            if len(parts) > 2:
                raise ConfigError(
                    f"{example_name(names, i)} ({text[:60]!r}) holds {len(parts) - 1} "
                    f"separators {sep!r}, but a pair is two texts (a file with columns: --columns)"
                )
            text = (parts[0], parts[1] if len(parts) == 2 else None)
        examples.append(text)
    return examples


def example_name(names: list[str] | None, i: int) -> str:
    return names[i] if names else f"example {i + 1}"


def split_examples(
    texts: list, sep: str, pairs: bool | None, task: str | None, names: list[str] | None = None
) -> list[Example]:
    """`parse_examples`, all of the kind the model reads: its fine-tuning task fixes whether it reads
    pairs; one clear error, naming the example, for one of the other kind."""
    examples = parse_examples(texts, sep, names)
    if pairs is None and examples:  # no record: the first example decides
        pairs = examples[0][1] is not None
    trained_on = f" (fine-tuned on {task})" if task else ""
    for i, (first, second) in enumerate(examples):
        name = example_name(names, i)
        if pairs and second is None:
            raise ConfigError(
                f"{name} ({first[:60]!r}): the model reads sentence pairs{trained_on}; give both texts, "
                f"separated by {sep!r} (--sep), or two --columns"
            )
        if not pairs and second is not None:
            raise ConfigError(
                f"{name} ({(first + sep + second)[:60]!r}) is a pair, but the model reads single sentences{trained_on}"
            )
    return examples


def read_columns(
    path: Path, columns: list[str], header: bool = True, gold: str | None = None
) -> tuple[list[Example], list[str], list | None]:
    """Examples from a task file's columns, read as a task's TSV/CSV/JSONL/JSON files are (GLUE's
    TSV quoting, nested JSON keys): `columns` names the text's column and, for pairs, the second
    text's (0-based indices in a file without a header row); with where each row came from, and
    the raw values of the `gold` column (a label or score per row) if one is named."""
    from omegaconf import OmegaConf

    from bertforge.data.records import format_suffix
    from bertforge.data.task_readers import FORMATS, file_rows

    if not 1 <= len(columns) <= 2:
        raise ConfigError(f"--columns {' '.join(columns)}: give one column (sentences) or two (pairs)")
    if format_suffix(path) not in FORMATS:
        raise ConfigError(f"--columns: {path} is not a .tsv, .csv, .jsonl or .json file")
    cols = [int(c) if not header and c and c.isdigit() else c for c in [*columns, gold]]
    spec = {"format": "auto", "header": header, "text_a": cols[0], "text_b": cols[1] if len(columns) == 2 else None}
    spec = OmegaConf.create({**spec, "label": cols[-1], "skip_malformed": False})
    examples, names, golds = [], [], []
    # the errors name these options
    options = {"files": "--file", "text_a": "--columns", "text_b": "--columns", "label": "--gold"}
    for where, first, second, label in file_rows(path, spec, options):
        if first is None or (len(columns) == 2 and second is None):
            raise DataError(f"{where}: no text in column {columns[0 if first is None else 1]!r}")
        if gold is not None and label is None:
            raise DataError(f"{where}: no value in column {gold!r} (--gold)")
        examples.append((str(first), None if len(columns) == 1 else str(second)))
        names.append(where)
        golds.append(label)
    return examples, names, golds if gold is not None else None


def with_gold(preds: Predictions, raw: list, column: str) -> Predictions:
    """`preds` with each example's reference from the `column` a task file holds (`--gold`): a score
    for a regression model or a similarity, one of the model's labels for a classifier; one error
    naming the row for a value that is neither."""
    from bertforge.finetuning.tasks import label_value

    if not raw:
        raise DataError(f"--gold {column}: no examples to score")
    names = preds.names or [example_name(None, i) for i in range(len(raw))]
    problem = "regression" if preds.labels is None else "classification"
    gold = [label_value(name, value, problem, column) for name, value in zip(names, raw)]
    if preds.labels is not None:
        for name, label in zip(names, gold):
            if label not in preds.labels:
                raise DataError(f"{name}: column {column!r}: label {label!r} is not one of the model's {preds.labels}")
        gold = [preds.labels.index(label) for label in gold]
    return replace(preds, gold=gold)


def load_finetuned(model_dir: Path):
    """BertForSequenceClassification with its trained head; one clear error for a directory without one."""
    from transformers import AutoModelForSequenceClassification

    from bertforge.pretraining.model import load_weights

    check_bert_dir(model_dir, "--model")
    hint = "a task head (classifier.*): predict needs a fine-tuned directory such as outputs/finetune/<task>/model"
    return load_weights(AutoModelForSequenceClassification, model_dir, "--model", hints={"classifier.": hint}).eval()


@torch.inference_mode()
def predict(
    model_dir: str | Path,
    texts: list,
    sep: str = "\t",
    max_length: int | None = None,
    batch_size: int = 32,
    place=None,
    names: list[str] | None = None,
) -> Predictions:
    """Predictions for `texts` (strings, or (text, second text) tuples; order kept), batched by
    length so that padding costs little. Each is cut to `max_length` tokens, by default the length
    the model was fine-tuned at (else 128); `names` name the examples in errors (file:line);
    `place` (hardware.place(...)) sets device and precision; default: fp32 on the CPU. A bi-encoder
    the finetune stage wrote (`finetune.objective=bi_encoder`) predicts each pair's cosine times
    the score a cosine of 1 stands for, as the evaluate stage scores it."""
    from bertforge.data.tokenization import load_tokenizer
    from bertforge.embeddings import DEFAULT_MAX_LENGTH, batches_by_length, check_model_inputs, encode
    from bertforge.finetuning.bi_encoder import sentence_model_config

    model_dir = command_line_dir(model_dir)
    sentence_model = sentence_model_config(model_dir)
    if sentence_model is not None:  # a bi-encoder the finetune stage wrote: its cosine, on the task's scale
        from bertforge.similarity import similarity

        preds = similarity(
            model_dir, texts, sep, max_length=max_length, batch_size=batch_size, place=place, names=names
        )
        scale = float(sentence_model["finetuning_similarity"]["scale"])
        how = f"{preds.how}, times {scale:g} (the score a cosine of 1 stands for)"
        return replace(preds, values=preds.values * scale, how=how, scoring=sentence_model.get("finetuning_metrics"))
    model = load_finetuned(model_dir)
    # what the finetune stage recorded in config.json (None from a classifier trained elsewhere)
    recorded = {k: getattr(model.config, k, None) for k in ("text_pairs", "finetuning_task", "finetuning_max_length")}
    examples = split_examples(texts, sep, recorded["text_pairs"], recorded["finetuning_task"], names)
    max_length = (recorded["finetuning_max_length"] or DEFAULT_MAX_LENGTH) if max_length is None else max_length
    tokenizer = load_tokenizer(model_dir)
    check_model_inputs(tokenizer, model, model_dir, max_length)
    if place is not None:
        model = model.to(place.device)
    device = next(model.parameters()).device
    second = [b for _, b in examples] if examples and examples[0][1] is not None else None
    enc = encode(tokenizer, [a for a, _ in examples], second, max_length)
    regression = model.config.problem_type == "regression" or model.num_labels == 1
    values = np.zeros((len(examples),) if regression else (len(examples), model.num_labels), dtype=np.float32)
    for idx, batch in batches_by_length(tokenizer, enc, batch_size, device, "predict", "examples"):
        with place.autocast() if place is not None else contextlib.nullcontext():
            logits = model(**batch).logits.float()
        values[idx] = (logits[:, 0] if regression else logits.softmax(-1)).cpu().numpy()
    labels = None if regression else [str(model.config.id2label[i]) for i in range(model.num_labels)]
    scoring = getattr(model.config, "finetuning_metrics", None)
    return Predictions(examples, names, labels, values, scoring=scoring if isinstance(scoring, dict) else None)
