"""BERT built on transformers' `BertForPreTraining`, so exported directories keep its parameter
names and load with every `AutoModel*` class; our forward runs the MLM head only where tokens
were masked (gather first), which is most of the pre-training speed-up on CPU."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import BertConfig, BertForPreTraining

from bertforge.config import ConfigError
from bertforge.quiet import dropped


def load_weights(
    cls,
    model_dir,
    key: str,
    may_miss: tuple[str, ...] = (),
    hints: dict[str, str] | None = None,
    fresh: list[str] | None = None,
    **kwargs,
):
    """`cls.from_pretrained(model_dir)` without transformers' multi-line LOAD REPORT (the `cls.*`
    pre-training heads a BERT directory carries are expected to go unused); missing weights other
    than those starting with `may_miss` (a new task head) are a ConfigError naming `key`, worded by
    `hints[prefix]` when every missing weight starts with that prefix. `fresh` receives the names
    of the weights initialised anew (the `may_miss` ones the directory lacks)."""
    # a filter, not a raised level: at WARNING or above transformers checks (and warns about)
    # tensor-parallel plans
    # (and, for a checkpoint without heads, its note that the heads' tied bias is absent too)
    with dropped("transformers.modeling_utils", "LOAD REPORT", "seem corrupted. The tied weights"):
        model, info = cls.from_pretrained(str(model_dir), output_loading_info=True, **kwargs)
    missing = [k for k in info["missing_keys"] if not k.startswith(may_miss)]
    if fresh is not None:
        fresh.extend(k for k in info["missing_keys"] if k.startswith(may_miss))
    if missing:
        hint = next((h for p, h in (hints or {}).items() if all(k.startswith(p) for k in missing)), None)
        listed = ", ".join(sorted(missing)[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise ConfigError(f"{key}: {model_dir} lacks {hint or 'weights: ' + listed}")
    return model


ARCH_KEYS = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "initializer_range",
    "tie_word_embeddings",
)


def bert_config(model_cfg, vocab_size: int, pad_token_id: int) -> BertConfig:
    h, heads = model_cfg.hidden_size, model_cfg.num_attention_heads
    if h % heads:
        raise ConfigError(f"model.hidden_size={h} is not divisible by model.num_attention_heads={heads}")
    kwargs = {k: model_cfg[k] for k in ARCH_KEYS}
    return BertConfig(vocab_size=vocab_size, pad_token_id=pad_token_id, **kwargs)


def build_pretraining_model(
    config: BertConfig, dropout: float | None = None, init: Path | None = None, fresh: list[str] | None = None
) -> BertForPreTraining:
    """`dropout`: every dropout rate while pre-training, when it should differ from the model's
    (Cramming trains without: a model that underfits its budget gains nothing from it). Only the
    modules change, not `config`, so the exported directory keeps the model's rates for
    fine-tuning. `init`: a BERT directory to continue pre-training from; heads or a pooler it
    lacks (a sentence encoder, an MLM-only checkpoint) start as BERT initialises them, named in `fresh`."""
    if init is None:
        model = BertForPreTraining._from_config(config, attn_implementation="sdpa")
    else:
        heads = ("cls.", "bert.pooler.")
        model = load_weights(
            BertForPreTraining, init, "pretrain.init", heads, fresh=fresh, config=config, attn_implementation="sdpa"
        )
    model.train()
    if dropout is not None:
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = dropout
    return model


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


def unpad_indices(
    attention_mask: torch.Tensor, labels: torch.Tensor | None = None, max_predictions: int | None = None
) -> dict[str, torch.Tensor]:
    """Where the real tokens are, for the unpadded forward: `token_index` (flat positions of the
    non-padding tokens, row-major), `row_starts` (each row's [CLS] in that order; rows are
    right-padded) and, with `labels`, `mlm_index` (the masked tokens in that order) and
    `mlm_labels`; `cu_seqlens`, where each row starts and the last ends in that order (int32,
    as FlashAttention's variable-length kernels take it). The collator computes them on the
    host, so the step needs no device sync. With `max_predictions` (per row), every index is
    padded to a shape that repeats from batch to batch (`fixed_shapes`)."""
    token_index = attention_mask.flatten().nonzero().squeeze(1)
    lengths = attention_mask.sum(1)
    ends = lengths.cumsum(0)
    out = {
        "token_index": token_index,
        "row_starts": ends - lengths,
        "cu_seqlens": torch.cat([ends.new_zeros(1), ends]).int(),  # for variable-length attention
    }
    if labels is not None:
        flat = labels.flatten()[token_index]
        out["mlm_index"] = (flat != -100).nonzero().squeeze(1)
        out["mlm_labels"] = flat[out["mlm_index"]]
    return out if max_predictions is None else fixed_shapes(out, attention_mask, max_predictions)


TOKEN_BUCKETS = 32  # fixed shapes: the real-token count is rounded up to 1/32 of the batch's positions


def fixed_shapes(indices: dict[str, torch.Tensor], attention_mask: torch.Tensor, max_predictions: int) -> dict:
    """`unpad_indices` padded to shapes that depend on the batch's [B, S] alone (up to a few
    buckets of token counts), as CUDA graphs need: a graph replays only the shapes it recorded.
    - `token_index` grows to the next multiple of B*S/32 positions (at most B*S) with padding
      positions, which every attention path keeps apart from the real tokens: the padded layout
      masks them as keys, and `cu_seqlens` gains ceil(bucket/S) sequences of <= S tokens (the
      last ones empty) that hold them; the padding computed stays under 1/32 of B*S (1.8% of
      the positions computed on English Wikipedia's pairs of <= 128 tokens, batch 128 or 256).
    - `mlm_index` and `mlm_labels` grow to B * max_predictions (Google's reference pads
      `masked_lm_positions` alike) with position 0 and label -100, which the loss ignores.
    `real_tokens` (an int) keeps the real count for throughput and tokens-seen."""
    b, s = attention_mask.shape
    real = indices["token_index"].numel()
    bucket = -(-b * s // TOKEN_BUCKETS)
    total = min(b * s, -(-real // bucket) * bucket)
    spare = (attention_mask.flatten() == 0).nonzero().squeeze(1)[: total - real]
    ends = (torch.arange(1, -(-bucket // s) + 1) * s).clamp(max=total - real) + real
    out = dict(indices, token_index=torch.cat([indices["token_index"], spare]), real_tokens=real)
    out["cu_seqlens"] = torch.cat([indices["cu_seqlens"], ends.int()])
    if "mlm_index" in indices:
        extra = b * max_predictions - indices["mlm_index"].numel()
        if extra < 0:
            raise ValueError(f"{-extra} more masked tokens than {b} rows x max_predictions {max_predictions}")
        out["mlm_index"] = torch.cat([indices["mlm_index"], indices["mlm_index"].new_zeros(extra)])
        out["mlm_labels"] = torch.cat([indices["mlm_labels"], indices["mlm_labels"].new_full((extra,), -100)])
    return out


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout. On CPU the keep mask comes from numpy's SFC64 generator, seeded by one
    draw from torch's RNG (so runs stay seeded and a resumed run draws the same masks): torch's
    CPU bernoulli is a serial Mersenne Twister, measured 2-3x slower here and 10-15% of a whole
    BERT-Tiny/Mini training step on a 2-core AMD CPU. Keep probability resolution: 2^-16."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return torch.nn.functional.dropout(x, p, True)
    import numpy as np

    seed = int(torch.randint(0, 2**62, (1,)))
    bits = np.random.Generator(np.random.SFC64(seed)).integers(-(2**15), 2**15, size=x.numel(), dtype=np.int16)
    keep = torch.from_numpy(bits).view(x.shape) >= (round(p * 2**16) - 2**15)
    return (x * keep).mul_(1.0 / (1.0 - p))


def _attention(q, k, v, key_mask: torch.Tensor, p: float, training: bool, scale: float) -> torch.Tensor:
    if not training or p == 0.0 or q.device.type != "cpu":  # a GPU's fused kernels draw their own dropout
        p = p if training else 0.0
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=p, scale=scale)
    # on CPU SDPA's dropout path is the unfused maths; written out to use the faster dropout above
    scores = torch.matmul(q, k.transpose(-1, -2)).mul_(scale).masked_fill_(~key_mask, float("-inf"))
    return torch.matmul(dropout(scores.softmax(-1), p, True), v)


class _FlashVarlen(torch.autograd.Function):
    """FlashAttention over the real tokens of every row packed end to end ([N, heads, d]; rows
    bounded by `cu_seqlens`), attention dropout drawn inside the kernel. torch's public
    `varlen_attn` has no dropout, which BERT's attention needs, so this calls the kernels it wraps."""

    @staticmethod
    def forward(ctx, q, k, v, cu, max_len: int, p: float, scale: float):
        out, lse, rng, unused, _ = torch.ops.aten._flash_attention_forward(
            q, k, v, cu, cu, max_len, max_len, p, False, False, scale=scale
        )
        ctx.save_for_backward(q, k, v, out, lse, cu, rng, unused)
        ctx.max_len, ctx.p, ctx.scale = max_len, p, scale
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, out, lse, cu, rng, unused = ctx.saved_tensors
        m = ctx.max_len
        dq, dk, dv = torch.ops.aten._flash_attention_backward(
            grad.contiguous(), q, k, v, out, lse, cu, cu, m, m, ctx.p, False, rng, unused, scale=ctx.scale
        )
        return dq, dk, dv, None, None, None, None


# where variable-length FlashAttention runs (a CUDA GPU of compute capability 8.0 or newer, half
# precision); the switch is for benchmarks that compare it with padded attention
VARLEN_ATTENTION = True


def _varlen_ok(qkv: torch.Tensor, d: int) -> bool:
    return (
        VARLEN_ATTENTION
        and qkv.is_cuda
        and qkv.dtype in (torch.bfloat16, torch.float16)
        and d % 8 == 0
        and d <= 256
        and torch.cuda.get_device_properties(qkv.device).major >= 8  # torch.compile folds this call
    )


def _unpadded_layer(layer, x: torch.Tensor, index: torch.Tensor, b: int, s: int, key_mask: torch.Tensor, cu=None):
    """One BertLayer on the real tokens only ([N, H]). Attention too where the GPU has
    variable-length FlashAttention and `cu` (`cu_seqlens`) is given; else only attention sees the
    [B, S] layout, padded keys masked."""
    att, training = layer.attention.self, layer.training
    heads, d = att.num_attention_heads, att.attention_head_size
    weight = torch.cat([att.query.weight, att.key.weight, att.value.weight])
    bias = torch.cat([att.query.bias, att.key.bias, att.value.bias])
    qkv = torch.nn.functional.linear(x, weight, bias)  # one matmul instead of three
    if cu is not None and _varlen_ok(qkv, d):
        q, k, v = qkv.view(-1, 3, heads, d).unbind(1)
        p = att.dropout.p if training else 0.0
        ctx = _FlashVarlen.apply(q, k, v, cu, s, p, att.scaling).reshape(-1, heads * d)
    else:
        padded = qkv.new_zeros(b * s, qkv.shape[1]).index_copy(0, index, qkv)
        q, k, v = padded.view(b, s, 3, heads, d).permute(2, 0, 3, 1, 4)
        ctx = _attention(q, k, v, key_mask, att.dropout.p, training, att.scaling)
        ctx = ctx.transpose(1, 2).reshape(b * s, heads * d).index_select(0, index)
    so, out = layer.attention.output, layer.output
    attended = so.LayerNorm(dropout(so.dense(ctx), so.dropout.p, training) + x)
    return out.LayerNorm(dropout(out.dense(layer.intermediate(attended)), out.dropout.p, training) + attended)


def unpadded_encoder(bert, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """`BertModel`'s last hidden states for the real tokens only, [N, H] in `batch["token_index"]`
    order: embeddings, every dense layer and LayerNorm skip the padding, and so does attention
    where `_varlen_ok` (else it runs on the padded layout with padded keys masked). Uses the
    model's own modules and parameters."""
    ids, mask, index = batch["input_ids"], batch["attention_mask"], batch["token_index"]
    types = batch.get("token_type_ids")
    b, s = ids.shape
    emb = bert.embeddings
    positions = torch.arange(s, device=ids.device).repeat(b).index_select(0, index)
    segments = (  # without token types BertModel puts every token in segment 0
        emb.token_type_embeddings(types.flatten().index_select(0, index))
        if types is not None
        else emb.token_type_embeddings.weight[0]
    )
    x = emb.word_embeddings(ids.flatten().index_select(0, index)) + segments + emb.position_embeddings(positions)
    x = dropout(emb.LayerNorm(x), emb.dropout.p, emb.training)
    key_mask = mask.bool()[:, None, None, :]
    cu = batch.get("cu_seqlens")
    for layer in bert.encoder.layer:
        x = _unpadded_layer(layer, x, index, b, s, key_mask, cu)
    return x


def pooled(bert, x: torch.Tensor, row_starts: torch.Tensor) -> torch.Tensor:
    """The pooler (dense + tanh) over each row's [CLS], from `unpadded_encoder`'s output."""
    return bert.pooler.activation(bert.pooler.dense(x.index_select(0, row_starts)))


def unpadded_pretraining_forward(model: BertForPreTraining, batch: dict[str, torch.Tensor]) -> PretrainingOutput:
    """The same maths as `sparse_pretraining_forward`, computed on real tokens only
    (`unpadded_encoder`: about a fifth of the positions of pairs <= 128 tokens are padding), and
    the heads at the [CLS] and masked positions. Checkpoints and exports are unchanged."""
    if "token_index" not in batch:
        batch = {**batch, **unpad_indices(batch["attention_mask"], batch["labels"])}
    x = unpadded_encoder(model.bert, batch)
    mlm_logits = model.cls.predictions(x.index_select(0, batch["mlm_index"]))
    nsp_logits = model.cls.seq_relationship(pooled(model.bert, x, batch["row_starts"]))
    return PretrainingOutput(mlm_logits, batch["mlm_labels"], nsp_logits)
