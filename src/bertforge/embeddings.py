"""Sentence and token embeddings from any BERT directory: the classic TF-Hub sample as a function.

`pooled` is BERT's `pooled_output` ([CLS] through the pre-trained dense + tanh pooler), `cls`
the last layer's [CLS] vector, `mean` the mask-weighted mean of the last layer's token vectors,
`max` their maximum (and under `auto`, every mode of sentence-transformers' Pooling).
`auto` is the directory's own recipe: a sentence-transformers model (MiniLM-L6 and its kind, whose
`modules.json` names the pooling it was trained with, a normalisation, a length, maybe a prompt and
lowercasing) gets that, anything else BERT's `pooled_output`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from bertforge.config import ConfigError, check_bert_dir, command_line_dir
from bertforge.progress_items import ItemProgress
from bertforge.sentence_models import (
    DEFAULT_MAX_LENGTH,
    Recipe,
    encoder_subdir,
    load_head,
    prompt_positions,
    sentence_model_prompts,
    sentence_model_recipe,
)

POOLINGS = ("auto", "pooled", "cls", "mean", "max")


@dataclass
class Embeddings:
    sentences: np.ndarray  # [n, dim] float32: hidden, a concatenation's or a Dense projection's size
    tokens: list[np.ndarray] | None  # per sentence [length_i, hidden], special tokens included
    token_strings: list[list[str]] | None
    recipe: Recipe | None = None


def choose_recipe(
    model_dir: Path,
    pooling: str = "auto",
    normalize: bool | None = None,
    max_length: int | None = None,
    prompt: str | None = None,
    prompt_name: str | None = None,
) -> Recipe:
    """`auto` pooling takes the directory's recipe (a sentence model's own, else BERT's pooled_output);
    a pooling named outright is that pooling alone. A `normalize`, `max_length` or prompt (the text
    itself, or the name of one of the directory's prompts) given wins either way."""
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling: {pooling!r} is not one of {', '.join(POOLINGS)}")
    if prompt is not None and prompt_name is not None:
        raise ConfigError("--prompt and --prompt-name: give one or the other")
    if pooling != "auto":
        own = Recipe(pooling, False, DEFAULT_MAX_LENGTH, "as asked", encoder=encoder_subdir(model_dir))
    else:
        own = sentence_model_recipe(model_dir) or Recipe("pooled", False, DEFAULT_MAX_LENGTH, "BERT's pooled_output")
    if prompt_name is not None:
        prompts, _ = sentence_model_prompts(model_dir)
        if prompt_name not in prompts:
            raise ConfigError(
                f"--prompt-name: {model_dir} names no prompt {prompt_name!r} "
                f"(its prompts: {', '.join(sorted(prompts)) or 'none'})"
            )
        prompt = prompts[prompt_name]
    return replace(
        own,
        normalize=own.normalize if normalize is None else normalize,
        max_length=own.max_length if max_length is None else max_length,
        prompt=own.prompt if prompt is None else prompt,
    )


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


def encode(tokenizer, texts: list[str], second: list[str] | None = None, max_length: int = DEFAULT_MAX_LENGTH):
    """The texts' (or pairs') encodings, cut at `max_length`; none for no texts, on which the
    tokenizer fails (an empty list gives empty results)."""
    if not texts:
        return {"input_ids": []}
    return tokenizer(texts, second, truncation=True, max_length=max_length)


def batches_by_length(tokenizer, enc, batch_size: int, device, label: str, unit: str):
    """(indices, padded batch on `device`) over the encodings `enc`, shortest first so that padding
    costs little, with a progress line for long runs (`embed`, `predict`)."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size={batch_size}: must be >= 1")
    lengths = [len(ids) for ids in enc["input_ids"]]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    progress = ItemProgress(label, len(order), unit)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenizer.pad([{k: enc[k][i] for k in enc.keys()} for i in idx], return_tensors="pt")
        yield idx, {k: v.to(device) for k, v in batch.items()}
        progress.update(len(idx))
    progress.close()


def pool(last: torch.Tensor, attention_mask: torch.Tensor, modes: list[str], skip: int = 0) -> torch.Tensor:
    """Sentence vectors from the last layer's token vectors [batch, length, hidden] (padded on the
    right), as sentence-transformers' Pooling computes each mode, concatenated in the order given;
    the first `skip` positions (a prompt not pooled) are left out."""
    mask = attention_mask.clone()
    mask[:, :skip] = 0
    weights = mask.unsqueeze(-1).to(last.dtype)
    out = []
    for mode in modes:
        if mode == "cls":  # the first position pooled
            out.append(last[:, skip])
        elif mode == "max":
            out.append(last.masked_fill(weights == 0, float("-inf")).max(1).values)
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            count = weights.sum(1).clamp(min=1e-9)
            out.append((last * weights).sum(1) / (count if mode == "mean" else count.sqrt()))
        elif mode == "weightedmean":  # position-weighted: later tokens count more
            w = weights * torch.arange(1, last.shape[1] + 1, device=last.device, dtype=last.dtype).view(1, -1, 1)
            out.append((last * w).sum(1) / w.sum(1).clamp(min=1e-9))
        elif mode == "lasttoken":  # the last position pooled ([SEP] in BERT)
            lastpos = last.shape[1] - 1 - mask.flip(1).int().argmax(1)
            out.append((last * weights)[torch.arange(last.shape[0], device=last.device), lastpos])
        else:
            raise ConfigError(f"pooling: {mode!r} is not a mode bertforge computes")
    return torch.cat(out, -1)


@torch.inference_mode()
def embed(
    model_dir: str | Path,
    sentences: list[str],
    pooling: str = "auto",
    tokens: bool = False,
    max_length: int | None = None,
    batch_size: int = 32,
    model=None,
    tokenizer=None,
    place=None,
    normalize: bool | None = None,
    prompt: str | None = None,
    prompt_name: str | None = None,
) -> Embeddings:
    """Embed `sentences` (order kept). Batches are built from length-sorted sentences so that
    padding costs little; `model`/`tokenizer` may be passed in to embed many lists with one load.
    `pooling`, `normalize`, `max_length` and the prompt default to the directory's recipe (`choose_recipe`).
    `place` (hardware.place(...)) sets device and precision; default: fp32 on the model's device."""
    import contextlib

    from bertforge.data.tokenization import load_tokenizer

    model_dir = command_line_dir(model_dir)
    recipe = choose_recipe(model_dir, pooling, normalize, max_length, prompt, prompt_name)
    pooling, max_length = recipe.pooling, recipe.max_length
    # the modules after the pooling, read first: a bad one is one error before the encoder loads
    heads = [load_head(kind, model_dir / path) for kind, path in recipe.heads]
    encoder_dir = model_dir / recipe.encoder
    if model is None:
        model = load_encoder(encoder_dir, need_pooler=pooling == "pooled")
        if place is not None:
            model = model.to(place.device)
    if tokenizer is None:
        tokenizer = load_tokenizer(encoder_dir)
    check_model_inputs(tokenizer, model, encoder_dir, max_length)
    texts = [recipe.prompt + s for s in sentences]  # as sentence-transformers prepends it
    enc = encode(tokenizer, [t.lower() for t in texts] if recipe.lowercase else texts, max_length=max_length)
    skip = prompt_positions(tokenizer, recipe)
    device = next(model.parameters()).device
    heads = [head.to(device) for head in heads]  # fp32, as sentence-transformers applies them
    modes = pooling.split("+")
    size = model.config.hidden_size * len(modes)
    for head in heads:  # what each does to the size (a Dense may change it)
        size = head(torch.zeros(1, size, device=device)).shape[-1]
    out = np.zeros((len(sentences), size), dtype=np.float32)
    per_token: list[np.ndarray | None] = [None] * len(sentences)
    for idx, batch in batches_by_length(tokenizer, enc, batch_size, device, "embed", "sentences"):
        with place.autocast() if place is not None else contextlib.nullcontext():
            res = model(**batch)
        last = res.last_hidden_state.float()
        vec = res.pooler_output.float() if pooling == "pooled" else pool(last, batch["attention_mask"], modes, skip)
        for head in heads:
            vec = head(vec)
        if recipe.normalize:  # as sentence-transformers' Normalize module
            vec = torch.nn.functional.normalize(vec, dim=-1)
        out[idx] = vec.cpu().numpy()
        if tokens:
            lengths = batch["attention_mask"].sum(1).tolist()
            for row, i in enumerate(idx):
                per_token[i] = last[row, : lengths[row]].cpu().numpy()
    strings = [tokenizer.convert_ids_to_tokens(ids) for ids in enc["input_ids"]] if tokens else None
    return Embeddings(out, per_token if tokens else None, strings, recipe)  # type: ignore[arg-type]
