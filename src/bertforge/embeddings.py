"""Sentence and token embeddings from any BERT directory: the classic TF-Hub sample as a function.

`pooled` is BERT's `pooled_output` ([CLS] through the pre-trained dense + tanh pooler), `cls`
the last layer's [CLS] vector, `mean` the mask-weighted mean of the last layer's token vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bertforge.config import ConfigError, check_bert_dir, command_line_dir
from bertforge.progress_items import ItemProgress

POOLINGS = ("pooled", "cls", "mean")


@dataclass
class Embeddings:
    sentences: np.ndarray  # [n, hidden], float32
    tokens: list[np.ndarray] | None  # per sentence [length_i, hidden], special tokens included
    token_strings: list[list[str]] | None


def load_encoder(model_dir: str | Path, need_pooler: bool):
    """BertModel from a pre-training, classifier or plain BERT directory, with one clear error for
    anything else (including a pooler that the checkpoint does not have: it would be random)."""
    from transformers import BertModel

    from bertforge.pretraining.model import load_weights

    model_dir = check_bert_dir(Path(model_dir), "--model")
    return load_weights(
        BertModel,
        model_dir,
        "--model",
        () if need_pooler else ("pooler.",),
        hints={"pooler.": "pooler weights (use --pooling cls or mean)"},
        attn_implementation="sdpa",
    ).eval()


def check_model_inputs(tokenizer, model, model_dir, max_length: int) -> None:
    """The tokenizer belongs to the model, and `--max-length` fits its positions (a longer input
    would fail deep in the forward, a length of 0 would cut nothing)."""
    if len(tokenizer) > model.config.vocab_size:
        raise ConfigError(
            f"--model: {model_dir}: tokenizer has {len(tokenizer)} tokens but the model's "
            f"vocab_size is {model.config.vocab_size}; they do not belong together"
        )
    limit = model.config.max_position_embeddings
    if not 5 <= max_length <= limit:  # 5: [CLS], [SEP], a pair's second [SEP] and a token of each text
        raise ConfigError(f"--max-length={max_length}: must be between 5 and {limit}, the model's positions")


def batches_by_length(tokenizer, enc, batch_size: int, device, label: str, unit: str):
    """(indices, padded batch on `device`) over the encodings `enc`, shortest first so that padding
    costs little, with a progress line for long runs (`embed`, `predict`)."""
    lengths = [len(ids) for ids in enc["input_ids"]]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    progress = ItemProgress(label, len(order), unit)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenizer.pad([{k: enc[k][i] for k in enc.keys()} for i in idx], return_tensors="pt")
        yield idx, {k: v.to(device) for k, v in batch.items()}
        progress.update(len(idx))
    progress.close()


@torch.inference_mode()
def embed(
    model_dir: str | Path,
    sentences: list[str],
    pooling: str = "pooled",
    tokens: bool = False,
    max_length: int = 128,
    batch_size: int = 32,
    model=None,
    tokenizer=None,
    place=None,
) -> Embeddings:
    """Embed `sentences` (order kept). Batches are built from length-sorted sentences so that
    padding costs little; `model`/`tokenizer` may be passed in to embed many lists with one load.
    `place` (hardware.place(...)) sets device and precision; default: fp32 on the model's device."""
    import contextlib

    from bertforge.data.tokenization import load_tokenizer

    model_dir = command_line_dir(model_dir)
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling: {pooling!r} is not one of {', '.join(POOLINGS)}")
    if model is None:
        model = load_encoder(model_dir, need_pooler=pooling == "pooled")
        if place is not None:
            model = model.to(place.device)
    if tokenizer is None:
        tokenizer = load_tokenizer(model_dir)
    check_model_inputs(tokenizer, model, model_dir, max_length)
    enc = tokenizer(list(sentences), truncation=True, max_length=max_length)
    hidden = model.config.hidden_size
    out = np.zeros((len(sentences), hidden), dtype=np.float32)
    per_token: list[np.ndarray | None] = [None] * len(sentences)
    device = next(model.parameters()).device
    for idx, batch in batches_by_length(tokenizer, enc, batch_size, device, "embed", "sentences"):
        with place.autocast() if place is not None else contextlib.nullcontext():
            res = model(**batch)
        last = res.last_hidden_state.float()
        if pooling == "pooled":
            vec = res.pooler_output.float()
        elif pooling == "cls":
            vec = last[:, 0]
        else:
            m = batch["attention_mask"].unsqueeze(-1).to(last.dtype)
            vec = (last * m).sum(1) / m.sum(1).clamp(min=1)
        out[idx] = vec.cpu().numpy()
        if tokens:
            lengths = batch["attention_mask"].sum(1).tolist()
            for row, i in enumerate(idx):
                per_token[i] = last[row, : lengths[row]].cpu().numpy()
    strings = [tokenizer.convert_ids_to_tokens(ids) for ids in enc["input_ids"]] if tokens else None
    return Embeddings(out, per_token if tokens else None, strings)  # type: ignore[arg-type]
