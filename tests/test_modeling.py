import contextlib

import pytest
import torch
from omegaconf import OmegaConf

from bertforge.config import ConfigError, compose
from bertforge.pretraining.model import bert_config, build_pretraining_model, sparse_pretraining_forward


@pytest.mark.parametrize("tie", [True, False])
def test_sparse_mlm_matches_dense_bert_for_pretraining(tmp_path, tie):
    """Also with `model.tie_word_embeddings=false`: the decoder is a matrix of its own, saved and
    loaded as such by transformers."""
    from transformers import BertForPreTraining

    torch.manual_seed(0)
    cfg = OmegaConf.merge(compose().model, {"tie_word_embeddings": tie})
    model = build_pretraining_model(bert_config(cfg, 300, 0)).eval()
    ids = torch.randint(5, 300, (3, 20))
    labels = torch.full_like(ids, -100)
    labels[:, [2, 7, 11]] = ids[:, [2, 7, 11]]
    batch = dict(
        input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids), labels=labels
    )
    with torch.no_grad():
        ours = sparse_pretraining_forward(model, batch)
        model.save_pretrained(tmp_path)
        ref = BertForPreTraining.from_pretrained(tmp_path).eval()
        dense = ref(input_ids=ids, attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"])
    assert ours.mlm_logits.shape == (9, 300)
    # tolerance: fp32 reassociation between gathered and full-sequence matmuls
    torch.testing.assert_close(ours.mlm_logits, dense.prediction_logits[labels != -100], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.nsp_logits, dense.seq_relationship_logits, atol=1e-5, rtol=1e-5)
    shared = ref.cls.predictions.decoder.weight.data_ptr() == ref.bert.embeddings.word_embeddings.weight.data_ptr()
    assert shared == tie
    assert torch.equal(ref.cls.predictions.decoder.weight, model.cls.predictions.decoder.weight)
    assert tie or not torch.equal(ref.cls.predictions.decoder.weight, ref.bert.embeddings.word_embeddings.weight)


def test_impossible_config_fails_before_training():
    bad = OmegaConf.merge(compose().model, {"hidden_size": 130, "num_attention_heads": 4})
    with pytest.raises(ConfigError, match="model.hidden_size=130 is not divisible by model.num_attention_heads=4"):
        bert_config(bad, 100, 0)


def _ragged_batch(vocab: int, lengths: list[int], seed: int = 0) -> dict:
    """Right-padded pairs of different lengths with ~20% of positions masked."""
    g = torch.Generator().manual_seed(seed)
    b, s = len(lengths), max(lengths)
    ids, mask = torch.zeros(b, s, dtype=torch.long), torch.zeros(b, s, dtype=torch.long)
    types, labels = torch.zeros(b, s, dtype=torch.long), torch.full((b, s), -100)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(5, vocab, (n,), generator=g)
        mask[i, :n] = 1
        types[i, n // 2 : n] = 1
        pos = torch.randperm(n - 1, generator=g)[: max(1, n // 5)] + 1
        labels[i, pos] = ids[i, pos]
    return dict(
        input_ids=ids,
        attention_mask=mask,
        token_type_ids=types,
        labels=labels,
        next_sentence_label=torch.tensor([i % 2 for i in range(b)]),
    )


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_unpadded_forward_equals_the_padded_one(dtype, atol):
    """On the same pairs the unpadded forward (dense layers on real tokens only) gives the padded
    forward's MLM and NSP logits; tolerance: fp32 reassociation, or bf16 rounding under autocast."""
    from bertforge.pretraining.model import unpad_indices, unpadded_pretraining_forward

    torch.manual_seed(0)
    model = build_pretraining_model(bert_config(compose(["model=mini"]).model, 500, 0)).eval()
    batch = _ragged_batch(500, [37, 9, 21, 4, 37, 30])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        padded = sparse_pretraining_forward(model, batch)
        unpadded = unpadded_pretraining_forward(
            model, {**batch, **unpad_indices(batch["attention_mask"], batch["labels"])}
        )
        full = sparse_pretraining_forward(model, {**batch, "attention_mask": torch.ones_like(batch["attention_mask"])})
    assert torch.equal(unpadded.mlm_labels, padded.mlm_labels) and unpadded.mlm_logits.shape == (26, 500)
    torch.testing.assert_close(unpadded.mlm_logits.float(), padded.mlm_logits.float(), atol=atol, rtol=0)
    torch.testing.assert_close(unpadded.nsp_logits.float(), padded.nsp_logits.float(), atol=atol, rtol=0)
    # the comparison can fail: attending to the padding moves the logits well beyond the tolerance
    assert (full.mlm_logits.float() - padded.mlm_logits.float()).abs().max() > 5 * atol


def test_unpad_indices_bound_each_row_for_variable_length_attention():
    from bertforge.pretraining.model import unpad_indices

    mask = _ragged_batch(50, [3, 5, 1, 5])["attention_mask"]
    idx = unpad_indices(mask)
    cu = idx["cu_seqlens"]
    assert cu.dtype == torch.int32 and cu.tolist() == [0, 3, 8, 9, 14]
    rows = idx["token_index"] // mask.shape[1]
    for r in range(4):  # the tokens between row r's bounds are row r's, in order
        assert rows[cu[r] : cu[r + 1]].tolist() == [r] * int(mask[r].sum())
    assert torch.equal(idx["row_starts"], cu[:-1].long())


def _packed_batch(rows: int, fixed: int | None) -> dict:
    """`rows` x 6 ragged pairs with their unpadding indices; `fixed`: in fixed shapes, whose extra
    sequences are here 14 padding tokens, then an empty one."""
    from bertforge.pretraining.model import unpad_indices

    batch = _ragged_batch(500, [37, 9, 21, 4, 37, 30] * rows)
    batch = {**batch, **unpad_indices(batch["attention_mask"], batch["labels"], fixed)}
    if fixed:
        assert batch["cu_seqlens"][-3:].diff().tolist() == [14, 0]
    return batch


def _padded_and_varlen(model, batch, calls: list, autocast=contextlib.nullcontext) -> tuple[dict, dict]:
    """Logits and gradients from the padded attention (False) and the variable-length one (True),
    which runs in every layer when switched on and in none when off (`calls` counts its kernel)."""
    from bertforge.pretraining import model as modeling

    outs, grads = {}, {}
    try:
        for varlen in (False, True):
            modeling.VARLEN_ATTENTION = varlen
            model.zero_grad()
            calls.clear()
            with autocast():
                outs[varlen] = modeling.unpadded_pretraining_forward(model, batch)
            assert len(calls) == (model.config.num_hidden_layers if varlen else 0)
            (outs[varlen].mlm_logits.float().logsumexp(-1).sum() + outs[varlen].nsp_logits.float().sum()).backward()
            grads[varlen] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    finally:
        modeling.VARLEN_ATTENTION = True
    return outs, grads


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] < 8, reason="needs a CUDA GPU, sm80+"
)
@pytest.mark.parametrize("rows, fixed", [(1, None), (7, 8)])
def test_variable_length_attention_matches_the_padded_one_on_a_gpu(monkeypatch, rows, fixed):
    """FlashAttention over packed rows gives the padded attention's logits and gradients (bf16
    autocast, dropout off; tolerance: bf16 rounding); it runs in every layer when switched on and
    in none when off, so the comparison is between the two paths. Also in fixed shapes, whose
    extra sequences (here 14 padding tokens, then an empty one) must leave the real rows alone."""
    from bertforge.pretraining import model as modeling

    calls = []
    apply = modeling._FlashVarlen.apply
    monkeypatch.setattr(modeling._FlashVarlen, "apply", lambda *a: calls.append(1) or apply(*a))
    torch.manual_seed(0)
    model = build_pretraining_model(bert_config(compose(["model=mini"]).model, 500, 0), dropout=0.0).cuda()
    batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in _packed_batch(rows, fixed).items()}
    outs, grads = _padded_and_varlen(model, batch, calls, lambda: torch.autocast("cuda", dtype=torch.bfloat16))
    for name in ("mlm_logits", "nsp_logits"):
        a, b = getattr(outs[False], name).float(), getattr(outs[True], name).float()
        torch.testing.assert_close(b, a, atol=5e-2, rtol=0)
    assert (grads[True] - grads[False]).norm() / grads[False].norm() < 1e-2


def _attention_per_sequence(q, k, v, cu, max_len, p, scale):
    """What variable-length FlashAttention computes (dropout off), one `cu_seqlens` sequence at a
    time: a CPU stand-in for the kernel, so the packing around it is checked without a GPU."""
    assert p == 0.0
    out = torch.zeros_like(q)
    bounds = cu.tolist()
    for a, b in zip(bounds, bounds[1:]):
        assert 0 <= b - a <= max_len
        if b > a:
            qs, ks, vs = (t[a:b].transpose(0, 1) for t in (q, k, v))  # [heads, n, d]
            out[a:b] = (torch.softmax(qs @ ks.transpose(-1, -2) * scale, -1) @ vs).transpose(0, 1)
    return out


@pytest.mark.parametrize("fixed", [None, 8])
def test_variable_length_packing_matches_the_padded_attention(monkeypatch, fixed):
    """The variable-length path around the kernel (q/k/v of the packed tokens, `cu_seqlens`, in
    fixed shapes the extra sequences of padding and the empty one) gives the padded attention's
    logits and gradients, with the kernel replaced by per-sequence attention (fp32, 1e-5)."""
    from bertforge.pretraining import model as modeling

    calls = []
    monkeypatch.setattr(modeling, "_varlen_ok", lambda qkv, d: modeling.VARLEN_ATTENTION)
    monkeypatch.setattr(modeling._FlashVarlen, "apply", lambda *a: calls.append(1) or _attention_per_sequence(*a))
    torch.manual_seed(0)
    model = build_pretraining_model(bert_config(compose(["model=tiny"]).model, 500, 0), dropout=0.0)
    outs, grads = _padded_and_varlen(model, _packed_batch(7, fixed), calls)
    for name in ("mlm_logits", "nsp_logits"):
        torch.testing.assert_close(getattr(outs[True], name), getattr(outs[False], name), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[True], grads[False], atol=1e-5, rtol=1e-4)


def test_unpadded_training_step_reaches_every_parameter_the_padded_one_does():
    from bertforge.pretraining.model import unpadded_pretraining_forward

    torch.manual_seed(0)
    model = build_pretraining_model(bert_config(compose().model, 300, 0))
    out = unpadded_pretraining_forward(model, _ragged_batch(300, [12, 5, 9]))
    (out.mlm_logits.logsumexp(-1).sum() + out.nsp_logits.sum()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert no_grad == []


@pytest.mark.parametrize("forward", ["padded", "unpadded"])
def test_pretraining_dropout_overrides_the_rates_in_training_only(forward):
    from bertforge.pretraining.model import unpadded_pretraining_forward

    run = sparse_pretraining_forward if forward == "padded" else unpadded_pretraining_forward
    batch = _ragged_batch(300, [12, 5, 9])
    config = bert_config(compose().model, 300, 0)
    torch.manual_seed(0)
    off = build_pretraining_model(config, dropout=0.0)
    a, b = run(off, batch), run(off, batch)
    assert off.training and torch.equal(a.mlm_logits, b.mlm_logits) and torch.equal(a.nsp_logits, b.nsp_logits)
    # the rates travel in config.json: exports keep the model's 0.1 for fine-tuning
    assert off.config.hidden_dropout_prob == off.config.attention_probs_dropout_prob == 0.1
    torch.manual_seed(0)
    on = build_pretraining_model(config)
    assert not torch.equal(run(on, batch).mlm_logits, run(on, batch).mlm_logits)


def test_cpu_dropout_keeps_the_rate_scale_and_seed():
    from bertforge.pretraining.model import dropout

    x = torch.ones(400, 1000)
    torch.manual_seed(3)
    a = dropout(x, 0.1, True)
    torch.manual_seed(3)
    b = dropout(x, 0.1, True)
    assert torch.equal(a, b)  # drawn from torch's RNG state: seeded runs and resumed runs repeat it
    kept = (a != 0).float().mean().item()
    assert abs(kept - 0.9) < 5 * (0.9 * 0.1 / x.numel()) ** 0.5  # 5 binomial standard deviations (0.0015)
    assert a.unique().tolist() == pytest.approx([0.0, 1 / 0.9])
    assert not torch.equal(dropout(x, 0.1, True), a)  # a fresh mask each call
    assert dropout(x, 0.1, False) is x and dropout(x, 0.0, True) is x
    # columns and rows are masked independently (no stripes from the generator's layout)
    assert (a != 0).float().mean(0).std() < 0.02 and (a != 0).float().mean(1).std() < 0.02


@pytest.mark.parametrize("num_labels, with_types", [(3, True), (1, True), (2, False)])
def test_unpadded_fine_tuning_loss_and_gradients_equal_transformers(num_labels, with_types):
    """Fine-tuning's unpadded loss is `BertForSequenceClassification(**batch).loss`: classification,
    regression, and inputs without token types; dropout off so both draw nothing (tolerance: fp32
    reassociation)."""
    from transformers import BertForSequenceClassification

    from bertforge.finetuning.module import unpadded_loss
    from bertforge.pretraining.model import unpad_indices

    torch.manual_seed(0)
    config = bert_config(compose().model, 300, 0)
    config.num_labels = num_labels
    model = BertForSequenceClassification._from_config(config, attn_implementation="sdpa").eval()
    keep = ("input_ids", "attention_mask", "token_type_ids")[: 3 if with_types else 2]
    batch = {k: v for k, v in _ragged_batch(300, [14, 3, 9, 14]).items() if k in keep}
    batch["labels"] = torch.tensor([0.5, 2.0, 4.5, 1.0]) if num_labels == 1 else torch.tensor([0, 1, 1, 0]) % num_labels

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    ours = unpadded_loss(model, {**batch, **unpad_indices(batch["attention_mask"])})
    ours_grads = grads(ours)
    ref = model(**batch).loss
    ref_grads = grads(ref)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    assert ours_grads.keys() == ref_grads.keys() and len(ours_grads) == len(list(model.parameters()))
    for name, g in ref_grads.items():
        torch.testing.assert_close(ours_grads[name], g, atol=1e-5, rtol=1e-4, msg=name)
    # the comparison can fail: attending to the padding changes the loss well beyond the tolerance
    assert (model(**{**batch, "attention_mask": torch.ones_like(batch["attention_mask"])}).loss - ref).abs() > 1e-4


@pytest.mark.parametrize("tie, shown", [(True, []), (False, ["| MLM decoder | a matrix of its own (untied) |"])])
def test_pretrained_card_names_an_untied_decoder(tmp_path, tie, shown):
    from types import SimpleNamespace

    from bertforge.model_card import pretrained_card

    cfg = compose([f"model.tie_word_embeddings={str(tie).lower()}"])
    metrics = {"steps": 10, "sequences": 320, "perplexity": 900.0}
    metrics |= {"mlm_accuracy": 0.1, "unigram_accuracy": 0.05, "nsp_accuracy": 0.6}
    place = SimpleNamespace(precision="32-true", line=lambda: "machine: a CPU")
    text = pretrained_card(cfg, tmp_path, metrics, None, {}, place)
    assert "| steps | 10 |" in text
    assert [line for line in text.splitlines() if line.startswith("| MLM decoder")] == shown


def test_fixed_shapes_repeat_from_batch_to_batch_and_keep_padding_apart():
    """Batches of one [B, S] with different real-token counts in one bucket get the same index
    shapes; the extra token positions are distinct padding positions, held by extra sequences of
    <= S tokens; the masked positions are padded with ignored labels."""
    from bertforge.pretraining.model import TOKEN_BUCKETS, unpad_indices

    shapes = set()
    for lengths in ([37, 9, 21, 4, 37, 30], [37, 12, 20, 4, 36, 28]):  # 138 and 137 real tokens
        batch = _ragged_batch(50, lengths)
        mask, labels = batch["attention_mask"], batch["labels"]
        plain, fixed = unpad_indices(mask, labels), unpad_indices(mask, labels, max_predictions=9)
        b, s = mask.shape
        bucket = -(-b * s // TOKEN_BUCKETS)  # 7 positions
        n = fixed["token_index"].numel()
        assert fixed["real_tokens"] == sum(lengths) and n % bucket == 0 and 0 <= n - sum(lengths) < bucket
        assert torch.equal(fixed["token_index"][: sum(lengths)], plain["token_index"])
        extra = fixed["token_index"][sum(lengths) :]
        assert (mask.flatten()[extra] == 0).all() and extra.unique().numel() == extra.numel()
        cu = fixed["cu_seqlens"]
        assert torch.equal(cu[: b + 1], plain["cu_seqlens"]) and int(cu[-1]) == n
        assert cu.diff().min() >= 0 and cu[b:].diff().max() <= s  # the extra sequences: <= S tokens, maybe empty
        m = plain["mlm_index"].numel()
        assert fixed["mlm_index"].numel() == b * 9 and torch.equal(fixed["mlm_labels"][:m], plain["mlm_labels"])
        assert (fixed["mlm_labels"][m:] == -100).all()
        shapes.add(tuple((k, tuple(v.shape)) for k, v in fixed.items() if torch.is_tensor(v)))
    assert len(shapes) == 1
    with pytest.raises(ValueError, match="more masked tokens than 6 rows x max_predictions 2"):
        unpad_indices(mask, labels, max_predictions=2)


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_fixed_shape_step_equals_the_unpadded_one(dtype, atol):
    """The same pairs in fixed shapes give the unpadded forward's logits, loss and gradients
    (dropout off; tolerance: fp32 reassociation, or bf16 rounding under autocast)."""
    import torch.nn.functional as F

    from bertforge.pretraining.model import unpad_indices, unpadded_pretraining_forward

    torch.manual_seed(0)
    model = build_pretraining_model(bert_config(compose(["model=mini"]).model, 500, 0), dropout=0.0)
    batch = _ragged_batch(500, [37, 9, 21, 4, 37, 30])
    mask, labels = batch["attention_mask"], batch["labels"]
    results = []
    for fixed in (None, 8):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            out = unpadded_pretraining_forward(model, {**batch, **unpad_indices(mask, labels, fixed)})
        loss = F.cross_entropy(out.mlm_logits.float(), out.mlm_labels) + F.cross_entropy(
            out.nsp_logits.float(), batch["next_sentence_label"]
        )
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((out, loss.detach(), grads))
    (plain, l0, g0), (fixed, l1, g1) = results
    m = plain.mlm_logits.shape[0]
    assert fixed.mlm_logits.shape == (48, 500) and m == 26
    torch.testing.assert_close(fixed.mlm_logits[:m].float(), plain.mlm_logits.float(), atol=atol, rtol=0)
    torch.testing.assert_close(fixed.nsp_logits.float(), plain.nsp_logits.float(), atol=atol, rtol=0)
    torch.testing.assert_close(l1, l0, atol=atol, rtol=0)
    assert (g1 - g0).norm() / g0.norm() < (1e-5 if dtype == torch.float32 else 2e-2)
