import math

import pytest
import torch
from omegaconf import OmegaConf

from bertforge.config import ConfigError, compose
from bertforge.pretraining.optim import Lamb, check_optim_config, param_groups, warmup_decay


def test_lamb_first_step_is_adam_direction_scaled_by_the_trust_ratio():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    b = torch.nn.Parameter(torch.tensor([2.0]))
    opt = Lamb(
        [{"params": [w], "weight_decay": 0.1, "adapt": True}, {"params": [b], "weight_decay": 0.0, "adapt": False}],
        lr=0.01,
        eps=0.0,
    )
    w.grad, b.grad = torch.tensor([1.0, -2.0]), torch.tensor([0.5])
    opt.step()
    # step 1: bias-corrected m/sqrt(v) = sign(g); plus decoupled decay 0.1 * w
    update = torch.tensor([1.0 + 0.3, -1.0 + 0.4])
    ratio = 5.0 / update.norm().item()
    assert torch.allclose(w.detach(), torch.tensor([3.0, 4.0]) - 0.01 * ratio * update, atol=1e-6)
    assert torch.allclose(b.detach(), torch.tensor([2.0 - 0.01]), atol=1e-7)  # no adaptation, no decay


def _lamb_one_tensor_at_a_time(params, state, group, step_of):
    """The update written per tensor, as Google's `lamb_optimizer` is: the reference for `Lamb`."""
    b1, b2 = group["betas"]
    for p in params:
        if p.grad is None:
            continue
        s = state.setdefault(id(p), {"m": torch.zeros_like(p), "v": torch.zeros_like(p), "step": 0})
        s["step"] += 1
        step_of[id(p)] = s["step"]
        s["m"].mul_(b1).add_(p.grad, alpha=1 - b1)
        s["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
        update = (s["m"] / (1 - b1 ** s["step"])) / ((s["v"] / (1 - b2 ** s["step"])).sqrt_() + group["eps"])
        update.add_(p, alpha=group["weight_decay"])
        if group["adapt"]:
            w, u = p.norm(), update.norm()
            update.mul_(w / u if w > 0 and u > 0 else 1.0)
        p.add_(update, alpha=-group["lr"])


@pytest.mark.parametrize("multi_tensor", [True, False, None])
def test_lamb_matches_the_update_written_one_tensor_at_a_time(multi_tensor):
    torch.manual_seed(0)
    shapes = [(64, 32), (32,), (128, 64), (7,), (16, 16)]
    ours = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    ref = [p.detach().clone() for p in ours]
    ours[3].data.zero_()  # ||w|| = 0 at the first step: the trust ratio is 1
    ref[3].zero_()
    groups = [(0, 3, 4), (1, 2)]  # adapted with decay; neither
    opt = Lamb(
        [
            {"params": [ours[i] for i in groups[0]], "weight_decay": 0.01, "adapt": True},
            {"params": [ours[i] for i in groups[1]], "weight_decay": 0.0, "adapt": False},
        ],
        lr=1e-2,
        eps=1e-6,
        multi_tensor=multi_tensor,
    )
    state, steps = {}, {}
    for k in range(6):
        grads = [torch.randn(s) for s in shapes]
        for i, (p, r, g) in enumerate(zip(ours, ref, grads)):
            skip = i == 4 and k in (1, 2)  # no gradient for two steps: its step count lags the others'
            p.grad = None if skip else g.clone()
            r.grad = None if skip else g.clone()
        opt.step()
        for idx, wd, adapt in ((groups[0], 0.01, True), (groups[1], 0.0, False)):
            group = {"betas": (0.9, 0.999), "eps": 1e-6, "lr": 1e-2, "weight_decay": wd, "adapt": adapt}
            _lamb_one_tensor_at_a_time([ref[i] for i in idx], state, group, steps)
    for p, r in zip(ours, ref):
        assert torch.allclose(p.detach(), r, rtol=1e-6, atol=1e-7), (p - r).abs().max()
    assert [opt.state[p]["step"] for p in ours] == [6, 6, 6, 6, 4]  # the checkpointed state keeps its keys
    assert set(opt.state[ours[0]]) == {"step", "exp_avg", "exp_avg_sq"}


def test_lamb_excludes_bias_and_layernorm_like_weight_decay():
    from transformers import BertConfig, BertModel

    model = BertModel(
        BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    )
    decay, no_decay = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["adapt"] and not no_decay["adapt"] and no_decay["weight_decay"] == 0.0
    assert all(".bias" in names[id(p)] or "LayerNorm" in names[id(p)] for p in no_decay["params"])
    assert all(p.ndim == 2 for p in decay["params"])


def test_weight_decay_groups_are_the_same_for_flattened_shards():
    """FSDP gives the optimizer 1-D shards of every weight: the groups, decided by name, stay those
    of the whole weights (matrices decay; biases and LayerNorm do not)."""
    from transformers import BertConfig, BertForPreTraining

    model = BertForPreTraining(
        BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    )
    names = {id(p): n for n, p in model.named_parameters()}
    whole = [[names[id(p)] for p in g["params"]] for g in param_groups(model, 0.01)]
    assert whole[0] and all(model.get_parameter(n).ndim == 2 for n in whole[0])
    assert whole[1] and all(model.get_parameter(n).ndim == 1 for n in whole[1])
    for p in model.parameters():
        p.data = p.data.flatten()
    assert [[names[id(p)] for p in g["params"]] for g in param_groups(model, 0.01)] == whole


def test_lamb_is_refused_with_fsdp():
    cfg = compose(["pretrain.optimizer=lamb"])
    check_optim_config(cfg.pretrain, "ddp")
    with pytest.raises(ConfigError, match="pretrain.optimizer=lamb with trainer.strategy=fsdp"):
        check_optim_config(cfg.pretrain, "fsdp")
    check_optim_config(compose([]).pretrain, "fsdp")  # AdamW is elementwise: shards are fine


def test_word_embeddings_lr_scale_moves_only_the_word_vectors_faster():
    from transformers import BertConfig, BertForSequenceClassification

    from bertforge.pretraining.optim import optimizer_with_schedule

    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    model = BertForSequenceClassification(cfg)
    opt = optimizer_with_schedule(model, 1e-3, 0.01, (0.9, 0.999), 1e-6, 0, 10, word_embeddings_lr_scale=8.0)
    opt, sched = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
    names = {id(p): n for n, p in model.named_parameters()}
    words = [g for g in opt.param_groups if any(names[id(p)].endswith("word_embeddings.weight") for p in g["params"])]
    assert len(words) == 1 and len(words[0]["params"]) == 1 and words[0]["weight_decay"] == 0.01
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-3, 1e-3, 8e-3])
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(input_ids=torch.tensor([[2, 7, 9, 3]]), labels=torch.tensor([1])).loss.backward()
    opt.step()
    sched.step()
    # Adam's first step is lr * sign(g) (plus decay) for every weight with a gradient: 8x for the words
    moved = {n: (p.detach() - before[n]).abs().max().item() for n, p in model.named_parameters()}
    assert moved["bert.embeddings.word_embeddings.weight"] == pytest.approx(8e-3, rel=0.01)
    assert moved["bert.embeddings.position_embeddings.weight"] == pytest.approx(1e-3, rel=0.01)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([9e-4, 9e-4, 7.2e-3])  # one schedule for all
    assert len(param_groups(model, 0.01)) == 2  # scale 1: the usual two groups


@pytest.mark.parametrize(
    "schedule,expected",
    [
        ("linear", [0.25, 0.5, 1.0, 1.0, 0.5, 0.0, 0.0]),
        ("cosine", [0.25, 0.5, 1.0, 1.0, 0.5, 0.0, 0.0]),
    ],
)
def test_warmup_then_decay(schedule, expected):
    f = warmup_decay(4, 12, schedule)  # 4 warmup steps, then 8 steps of decay
    got = [f(s) for s in (0, 1, 3, 4, 8, 12, 20)]
    assert got == pytest.approx(expected)
    if schedule == "cosine":  # above the line in the first half of the decay, below it in the second
        assert f(6) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4))) and f(10) < 1 - 6 / 8


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("optimizer", "sgd", "pretrain.optimizer='sgd'"),
        ("schedule", "step", "pretrain.schedule='step'"),
        ("accumulate_grad_batches", 0, "pretrain.accumulate_grad_batches=0"),
    ],
)
def test_bad_optimizer_settings_name_the_key(key, value, message):
    from bertforge.schema import check_config

    cfg = compose([])
    OmegaConf.update(cfg.pretrain, key, value)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):  # as a stage checks: schema, then optimizer
        check_config(cfg)
        check_optim_config(cfg.pretrain)


def test_lamb_cosine_and_accumulation_in_the_stage(tmp_path, demo_prepared, monkeypatch):
    """Two micro-batches per optimizer step: max_steps counts optimizer steps, the schedule follows
    them, and LAMB trains (held-out MLM loss falls below the untrained model's ~ln(vocab))."""
    import mlflow

    from bertforge.pretraining.loop import pretrain
    from bertforge.tracking import stage_run

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    _, prepared, _ = demo_prepared
    cfg = compose(
        [
            "corpus.num_documents=300",
            "tokenizer.vocab_size=3000",
            "pretrain.max_steps=20",
            "pretrain.optimizer=lamb",
            "pretrain.lr=2e-2",
            "pretrain.schedule=cosine",
            "pretrain.warmup_steps=4",
            "pretrain.accumulate_grad_batches=2",
            "pretrain.log_every_n_steps=1",
            "pretrain.val_every_n_steps=20",
            "pretrain.checkpoint_every_n_steps=20",
            "pretrain.val_max_examples=64",
        ]
    )
    out = tmp_path / "model"
    out.mkdir()
    import pytorch_lightning as pl

    class CountBatches(pl.Callback):
        seen = 0

        def on_train_batch_end(self, *args):
            CountBatches.seen += 1

    with stage_run(cfg, "pretrain", {}) as run:
        metrics = pretrain(cfg, prepared, out, tmp_path / "ckpt", run, tmp_path / "plots", [CountBatches()])
    assert metrics["steps"] == 20 and CountBatches.seen == 40
    lrs = {m.step: m.value for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, "train/lr")}
    f = warmup_decay(4, 20, "cosine")
    assert lrs[10] == pytest.approx(2e-2 * f(10), rel=1e-5)
    assert max(lrs) == 19  # logged at optimizer steps 0..19, twice each (one per micro-batch)
    assert metrics["mlm_loss"] < math.log(3000) - 1.0
