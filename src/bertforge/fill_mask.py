"""What a pre-trained BERT predicts at each [MASK] of a sentence: the quick look at what MLM
learned, with the directory's own tokenizer (morpheme cuts included, which transformers'
`pipeline("fill-mask")` only applies when given `load_tokenizer(...)`)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from bertforge.config import ConfigError, check_bert_dir, command_line_dir
from bertforge.progress_items import ItemProgress

Prediction = list[tuple[str, float]]  # (token, probability), likeliest first


def load_mlm(model_dir: Path):
    """BertForMaskedLM from a pre-training directory; one clear error for a directory without an
    MLM head (a fine-tuned classifier, a sentence-embedding model such as MiniLM)."""
    from transformers import BertForMaskedLM

    from bertforge.pretraining.model import load_weights

    check_bert_dir(model_dir, "--model")
    hint = "an MLM head (cls.predictions.*): fill-mask needs a pre-trained directory such as outputs/pretrain"
    return load_weights(BertForMaskedLM, model_dir, "--model", hints={"cls.predictions.": hint}).eval()


@torch.inference_mode()
def fill_mask(
    model_dir: str | Path, sentences: list[str], top_k: int = 5, max_length: int = 128, place=None
) -> list[list[Prediction]]:
    """For each sentence, for each of its [MASK] tokens in order, the `top_k` likeliest tokens.
    Each sentence runs alone (no padding), so a prediction does not depend on its neighbours."""
    from bertforge.data.tokenization import load_tokenizer
    from bertforge.embeddings import check_model_inputs

    model_dir = command_line_dir(model_dir)
    if top_k < 1:
        raise ConfigError(f"--top-k={top_k}: must be >= 1")
    model = load_mlm(model_dir)
    tokenizer = load_tokenizer(model_dir)
    check_model_inputs(tokenizer, model, model_dir, max_length)
    if place is not None:
        model = model.to(place.device)
    device = next(model.parameters()).device
    results, progress = [], ItemProgress("fill-mask", len(sentences), "sentences")
    for i, sentence in enumerate(sentences, 1):
        ids = tokenizer(sentence, truncation=True, max_length=max_length, return_tensors="pt")
        where = (ids["input_ids"][0] == tokenizer.mask_token_id).nonzero().squeeze(1)
        if where.numel() == 0:
            raise ConfigError(
                f"sentence {i} ({sentence[:60]!r}) has no {tokenizer.mask_token} within its first {max_length} tokens"
            )
        with place.autocast() if place is not None else contextlib.nullcontext():
            logits = model(**{k: v.to(device) for k, v in ids.items()}).logits[0, where.to(device)]
        probs, top = logits.float().softmax(-1).topk(min(top_k, logits.shape[-1]))
        results.append(
            [
                list(zip(tokenizer.convert_ids_to_tokens(row.tolist()), p.tolist()))
                for row, p in zip(top.cpu(), probs.cpu())
            ]
        )
        progress.update(1)
    progress.close()
    return results
