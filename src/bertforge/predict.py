"""What a fine-tuned model says about new text (`bertforge predict`): each example's label and
the probability of every label, or its score for a regression task (STS-B), encoded with the
directory's own tokenizer (morpheme cuts included) as the task's sentences or sentence pairs."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
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


def read_columns(path: Path, columns: list[str], header: bool = True) -> tuple[list[Example], list[str]]:
    """Examples from a task file's columns, read as a task's TSV/CSV/JSONL/JSON files are (GLUE's
    TSV quoting, nested JSON keys): `columns` names the text's column and, for pairs, the second
    text's (0-based indices in a file without a header row); with where each row came from."""
    from omegaconf import OmegaConf

    from bertforge.data.records import format_suffix
    from bertforge.data.task_readers import FORMATS, file_rows

    if not 1 <= len(columns) <= 2:
        raise ConfigError(f"--columns {' '.join(columns)}: give one column (sentences) or two (pairs)")
    if format_suffix(path) not in FORMATS:
        raise ConfigError(f"--columns: {path} is not a .tsv, .csv, .jsonl or .json file")
    cols = [int(c) if not header and c.isdigit() else c for c in columns]
    spec = {"format": "auto", "header": header, "text_a": cols[0], "text_b": cols[1] if len(cols) == 2 else None}
    spec = OmegaConf.create({**spec, "label": None, "skip_malformed": False})
    examples, names = [], []
    options = {"files": "--file", "text_a": "--columns", "text_b": "--columns"}  # the errors name these
    for where, first, second, _ in file_rows(path, spec, options):
        if first is None or (len(cols) == 2 and second is None):
            raise DataError(f"{where}: no text in column {columns[0 if first is None else 1]!r}")
        examples.append((str(first), None if len(cols) == 1 else str(second)))
        names.append(where)
    return examples, names


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
    `place` (hardware.place(...)) sets device and precision; default: fp32 on the CPU."""
    from bertforge.data.tokenization import load_tokenizer
    from bertforge.embeddings import DEFAULT_MAX_LENGTH, batches_by_length, check_model_inputs, encode

    model_dir = command_line_dir(model_dir)
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
    return Predictions(examples, names, labels, values)
