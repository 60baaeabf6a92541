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
