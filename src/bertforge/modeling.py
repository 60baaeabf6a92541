"""BERT built on transformers' `BertForPreTraining`, so exported directories keep its parameter
names and load with every `AutoModel*` class; our forward runs the MLM head only where tokens
were masked (gather first), which is most of the pre-training speed-up on CPU."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import BertConfig, BertForPreTraining

from .config import ConfigError

ARCH_KEYS = (
    "num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "hidden_act",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
    "initializer_range",
)


def bert_config(model_cfg, vocab_size: int, pad_token_id: int) -> BertConfig:
    h, heads = model_cfg.hidden_size, model_cfg.num_attention_heads
    if h % heads:
        raise ConfigError(f"model.hidden_size={h} is not divisible by model.num_attention_heads={heads}")
    kwargs = {k: model_cfg[k] for k in ARCH_KEYS}
    return BertConfig(vocab_size=vocab_size, pad_token_id=pad_token_id, **kwargs)


def build_pretraining_model(config: BertConfig) -> BertForPreTraining:
    return BertForPreTraining._from_config(config, attn_implementation="sdpa").train()


@dataclass
class PretrainingOutput:
    mlm_logits: torch.Tensor  # [n_masked, vocab]
    mlm_labels: torch.Tensor  # [n_masked]
    nsp_logits: torch.Tensor  # [batch, 2]


def sparse_pretraining_forward(model: BertForPreTraining, batch: dict[str, torch.Tensor]) -> PretrainingOutput:
    out = model.bert(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"]
    )
    hidden, pooled = out[0], out[1]
    labels = batch["labels"]
    where = labels != -100
    mlm_logits = model.cls.predictions(hidden[where])
    nsp_logits = model.cls.seq_relationship(pooled)
    return PretrainingOutput(mlm_logits, labels[where], nsp_logits)
