"""Time-budgeted pre-training (`pretrain.budget_minutes`), driven by a fake clock: every trained
step advances it by 2 seconds, so a 1-minute budget is spent at a known step."""

import csv
import json
import math
import re

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from bertforge.config import ConfigError, compose
from bertforge.pretraining.budget import CLOCK_FILE, fraction_schedule

PEAK = 1e-3  # the default pretrain.lr
BUDGET = ["pretrain.budget_minutes=1", "pretrain.warmup_fraction=0.1", "pretrain.log_every_n_steps=10"]
TICK = 2.0


class FakeClock:
    def __init__(self, t: float = 0.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class Tick(pl.Callback):
    """Advances the fake clock after each trained step (validation takes no fake time)."""

    def __init__(self, clock: FakeClock):
        self.clock = clock

    def on_train_batch_end(self, *args):
        self.clock.t += TICK


def _budget_run(pretrain_run, tmp_path, prepared, name, extra=(), callbacks=(), start=0.0):
    clock = FakeClock(start)
    return pretrain_run(tmp_path, prepared, name, [*BUDGET, *extra], [Tick(clock), *callbacks], clock=clock)


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_fraction_schedule_warms_up_then_decays_to_zero_at_the_budget():
    linear, cosine = fraction_schedule(0.1, "linear"), fraction_schedule(0.1, "cosine")
    assert [linear(f) for f in (0.0, 0.05, 0.1, 0.55, 1.0)] == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0])
    assert cosine(0.55) == pytest.approx(0.5) and cosine(1.0) == pytest.approx(0.0)
    assert cosine(0.3) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.2 / 0.9)))


def test_budget_schedule_reaches_zero_learning_rate_when_the_budget_is_spent(
    tmp_path, demo_prepared, tracking, pretrain_run
):
    """Step k reads the clock at 2k s (before its optimizer step): the 60-s budget is spent at
    step 30, the 31st, whatever max_steps says; the rate logged at step s was set after step
    s-2 read 2(s-2) s."""
    metrics, _ = _budget_run(pretrain_run, tmp_path, demo_prepared[1], "b", ["pretrain.max_steps=5"])
    assert metrics["steps"] == 31 and metrics["budget_minutes"] == 1.0
    assert metrics["train_minutes"] == pytest.approx(60 / 60)  # read at the stop (the last tick comes after)
    assert metrics["warmup_end_step"] == 3  # the first step that read f >= 0.1 (6 s)
    assert metrics["replay"] == "pretrain.budget_minutes=null pretrain.max_steps=31 pretrain.warmup_steps=3"
    assert metrics["tokens"] > 31 * 32 * 8  # real tokens of 31 batches of 32 pairs (pairs hold >> 8 tokens)
    rows = _rows(tmp_path / "b" / "plots" / "train.csv")
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 31]
    factor = fraction_schedule(0.1)
    for r in rows[:3]:
        s = int(r["step"])
        assert float(r["train/lr"]) == pytest.approx(PEAK * factor(TICK * (s - 2) / 60), rel=1e-4)
    assert float(rows[-1]["train/lr"]) == 0.0  # the curve ends at zero
    assert [int(r["step"]) for r in _rows(tmp_path / "b" / "plots" / "valid.csv")] == [15, 30, 31]


class _Crash(Exception):
    pass


def test_a_resumed_run_keeps_the_budget_it_already_spent(tmp_path, demo_prepared, tracking, pretrain_run):
    """Crash at step 15; the checkpoint at step 10 holds 20 s spent (Lightning runs checkpoint
    callbacks last, after the tick). The resumed process's clock starts elsewhere (500 s): it
    gets the remaining 40 s, i.e. steps 10..30, not a fresh minute (which would end at step 40)."""

    class CrashAt(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 15:
                raise _Crash

    over = ["pretrain.checkpoint_every_n_steps=10"]
    with pytest.raises(_Crash):
        _budget_run(pretrain_run, tmp_path, demo_prepared[1], "r", over, [CrashAt()])
    metrics, _ = _budget_run(pretrain_run, tmp_path, demo_prepared[1], "r", over, start=500.0)
    assert metrics["steps"] == 31
    assert metrics["train_minutes"] == pytest.approx((20 + 20 * TICK) / 60)
    rows = _rows(tmp_path / "r" / "plots" / "train.csv")
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 31] and float(rows[-1]["train/lr"]) == 0.0
    # the recorded clock is the whole run's: the checkpoint's steps 0..9, then the resumed ones
    recorded = np.load(tmp_path / "r" / "model" / CLOCK_FILE)
    assert recorded.tolist() == pytest.approx([min(1.0, TICK * k / 60) for k in range(31)], abs=1e-12)


def test_budget_phases_switch_at_their_fraction_and_a_recorded_clock_replays_the_run_exactly(
    tmp_path, demo_prepared, tracking, pretrain_run
):
    """Half the budget at 32 tokens, half at 64: step 15 reads f = 0.5, so steps 0..15 are the
    first phase and the next epoch, from step 16, is built at 64 tokens. The run records each
    step's fraction; replayed from that record under a clock 2.5x slower (whose own budget would
    end at step 12), the same command trains the same 31 steps, phases and rates: the same weights."""
    widths: dict[int, int] = {}

    class Widths(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            widths[trainer.global_step - 1] = batch["input_ids"].shape[1]

    phases = (
        "pretrain.phases=[{fraction:0.5,max_seq_length:32,max_predictions_per_seq:5},{fraction:0.5,max_seq_length:64}]"
    )
    metrics, weights = _budget_run(pretrain_run, tmp_path, demo_prepared[1], "p", [phases], [Widths()])
    assert sorted(widths) == list(range(31)) and metrics["steps"] == 31
    assert max(widths[s] for s in range(16)) <= 32 < max(widths[s] for s in range(16, 31)) <= 64
    assert metrics["replay"].endswith(
        "pretrain.phases=[{steps:16,max_seq_length:32,max_predictions_per_seq:5},{steps:15,max_seq_length:64}]"
    )
    recorded = np.load(tmp_path / "p" / "model" / CLOCK_FILE)
    assert recorded.tolist() == pytest.approx([min(1.0, TICK * k / 60) for k in range(31)], abs=1e-12)

    slow = FakeClock(0.0)

    class SlowTick(pl.Callback):
        def on_train_batch_end(self, *args):
            slow.t += 2.5 * TICK

    replay = [*BUDGET, phases, f"pretrain.budget_clock={tmp_path / 'p' / 'model'}"]
    again, replayed = pretrain_run(tmp_path, demo_prepared[1], "q", replay, [SlowTick()], clock=slow)
    assert again["steps"] == 31 and again["tokens"] == metrics["tokens"]
    assert again["train_minutes"] == pytest.approx(30 * 2.5 * TICK / 60)  # its own wall time (read at the stop)
    assert sorted(replayed) == sorted(weights) and all(torch.equal(replayed[k], weights[k]) for k in weights)
    assert (tmp_path / "q" / "plots" / "train.csv").read_text() == (tmp_path / "p" / "plots" / "train.csv").read_text()
    assert np.array_equal(np.load(tmp_path / "q" / "model" / CLOCK_FILE), recorded)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["pretrain.budget_minutes=0"], r"pretrain.budget_minutes=0: must be a number of minutes > 0"),
        (["pretrain.budget_minutes=1", "pretrain.warmup_fraction=1.0"], r"pretrain.warmup_fraction=1.0: must be in"),
        (
            ["pretrain.budget_minutes=1", "pretrain.phases=[{steps:30}]"],
            r"pretrain.phases\[0\]: needs fraction in \(0, 1\]",
        ),
        (
            ["pretrain.budget_minutes=1", "pretrain.phases=[{fraction:0.5},{fraction:0.4}]"],
            "pretrain.phases: fractions add up to 0.9, not 1",
        ),
        (["pretrain.val_settings={lr:0.1}"], "pretrain.val_settings: only"),
    ],
)
def test_impossible_budget_settings_fail_before_training(tmp_path, demo_prepared, tracking, overrides, message):
    from bertforge.pretraining.loop import check_pretrain_config

    with pytest.raises(ConfigError, match=message):  # the schema's ranges, then the stage's own checks
        check_pretrain_config(
            compose(["corpus.num_documents=300", "tokenizer.vocab_size=3000", *overrides]), demo_prepared[1]
        )


def test_the_pretrain_stage_exports_and_tracks_a_budgeted_runs_clock(tmp_path, demo_prepared, tracking, capsys):
    """Through the stage (the real clock, a 3-second budget): the exported model holds the record,
    one reading per step ending at 1, and the MLflow run holds the same file beside the step replay."""
    import mlflow

    from bertforge.stages import pretrain as pretrain_stage

    cfg = compose(
        [
            "pretrain.budget_minutes=0.05",
            "pretrain.val_max_examples=32",
            f"paths.prepared={demo_prepared[1]}",
            f"paths.pretrained={tmp_path / 'pre'}",
            f"paths.checkpoints={tmp_path / 'ckpt'}",
            f"paths.metrics={tmp_path / 'm'}",
            f"paths.plots={tmp_path / 'p'}",
        ]
    )
    pretrain_stage.run(cfg)
    metrics = json.loads((tmp_path / "m" / "pretrain.json").read_text())
    recorded = np.load(tmp_path / "pre" / CLOCK_FILE)
    assert len(recorded) == metrics["steps"] > 1 and recorded[-1] == 1.0 and (np.diff(recorded) >= 0).all()
    assert recorded[-2] < 1.0  # the run stopped at the first step that found the budget spent
    run = mlflow.MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("bertforge").experiment_id], "tags.stage = 'pretrain'"
    )[0]
    assert run.data.tags["replay_by_steps"] == metrics["replay"]
    logged = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=CLOCK_FILE, dst_path=tmp_path)
    assert np.array_equal(np.load(logged), recorded)
    assert "pretrain.budget_clock=<this directory>" in (tmp_path / "pre" / "README.md").read_text()
    assert f"pretrain.budget_clock=<a copy of {tmp_path / 'pre' / CLOCK_FILE}>" in capsys.readouterr().out


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "not a recorded budget clock"),
        (np.array([0.0, 0.5, 0.4, 1.0]), "step 2 reads less than step 1"),
        (np.array([0.0, 0.5, 0.9]), "ends at 0.900 of the budget: the recorded run did not finish"),
        (np.array([0.0, 1.5]), r"step 1 reads 1.5, not a fraction"),
        (np.zeros((2, 2)), "expected a 1-D float array"),
        (np.array([{"a": 1}], dtype=object), "not a recorded budget clock"),  # pickles are refused
    ],
)
def test_a_bad_budget_clock_file_is_one_error_naming_the_key(tmp_path, content, message):
    from bertforge.pretraining.budget import load_budget_clock

    path = tmp_path / CLOCK_FILE
    if content is not None:
        np.save(path, content, allow_pickle=True)
    pc = compose(["pretrain.budget_minutes=1", f"pretrain.budget_clock={path}"]).pretrain
    with pytest.raises(ConfigError, match=f"pretrain.budget_clock={re.escape(str(path))}: {message}"):
        load_budget_clock(pc)
    with pytest.raises(ConfigError, match="needs pretrain.budget_minutes"):
        load_budget_clock(compose([f"pretrain.budget_clock={path}"]).pretrain)


@pytest.mark.parametrize("preset", ["cpu15", "cpu60", "gpu5"])
def test_budget_presets_compose_with_other_choices_and_pass_the_config_checks(preset):
    from pathlib import Path

    from bertforge.pretraining.datamodule import check_phases
    from bertforge.pretraining.optim import check_optim_config

    presets = sorted(p.stem for p in (Path(__file__).parents[1] / "conf" / "budget").glob("*.yaml"))
    assert preset in presets
    cfg = compose([f"+budget={preset}", "corpus=korean", "tokenizer=korean", "trainer=cpu32"])
    minutes = int(preset.removeprefix("cpu").removeprefix("gpu"))
    assert cfg.pretrain.budget_minutes == minutes and cfg.corpus.name == "korean" and cfg.trainer.precision == "32-true"
    check_optim_config(cfg.pretrain)
    check_phases(cfg.pretrain)
    # the command line still wins over the preset
    mine = compose(
        [f"+budget={preset}", "model=mini", "pretrain.lr=1e-4", "pretrain.budget_minutes=2", "finetune.lr=5e-5"]
    )
    assert (mine.model.name, mine.pretrain.lr, mine.pretrain.budget_minutes) == ("mini", 1e-4, 2)
    assert mine.finetune.lr == 5e-5
    # BERT-Tiny fine-tunes at 3e-4 for 8 epochs; the GPU preset's BERT-Medium keeps the defaults
    default = compose([]).finetune
    assert (default.lr, default.epochs) == (1e-4, 4)
    cpu = preset.startswith("cpu")
    assert (cfg.finetune.lr, cfg.finetune.epochs) == ((3e-4, 8) if cpu else (default.lr, default.epochs))
    # SST-2 alone: fresh word embeddings for 4 epochs; every other task the preset's settings
    per_task = {"sst2": {"reinit_word_embeddings": True, "epochs": 4}} if cpu else {}
    assert cfg.finetune.per_task == per_task
    if preset == "cpu60":  # cpu15's recipe, stretched to the hour
        base = compose(["+budget=cpu15", "corpus=korean", "tokenizer=korean", "trainer=cpu32"])
        assert cfg.model == base.model and cfg.model.name == "tiny"
        assert {**cfg.pretrain, "budget_minutes": 15} == {**base.pretrain}
        assert cfg.finetune == base.finetune
    if preset == "gpu5":  # its own trainer profile unless the command line names one
        gpu = compose(["+budget=gpu5"])
        assert (gpu.model.name, gpu.trainer.accelerator, gpu.trainer.compile) == ("medium", "gpu", False)
        assert cfg.trainer.accelerator == "cpu"


def test_dvc_composes_a_budget_preset_into_params(tmp_path):
    """`dvc exp run -S +budget=cpu15` goes through DVC's own Hydra composition into params.yaml,
    which the stages read."""
    from pathlib import Path

    import yaml
    from dvc.utils.hydra import compose_and_dump

    repo = Path(__file__).parents[1]
    out = tmp_path / "params.yaml"
    compose_and_dump(out, str(repo / "conf"), None, "config", str(repo / ".dvc" / "plugins"), ["+budget=cpu15"])
    params = yaml.safe_load(out.read_text())
    assert params["model"]["name"] == "tiny" and params["pretrain"]["budget_minutes"] == 15
    assert params["finetune"]["lr"] == 3e-4  # the finetune stage reads the preset's fine-tuning lr too
    assert [p["fraction"] for p in params["pretrain"]["phases"]] == [0.9, 0.1]
