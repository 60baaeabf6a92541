"""Pre-training time: the clock every run keeps (wall time spent training, carried across resumes)
and, with `pretrain.budget_minutes`, a wall-clock budget that drives the schedule.

In budget mode the learning rate (warmup, then linear or cosine decay) and the sequence-length
phases run on the fraction of the budget spent, not on a step count, so the rate reaches zero
exactly when the time is up, whatever the machine's speed (as in Cramming, Geiping & Goldstein
2023, and Izsak et al. 2021). What counts: the training loop from its first step, periodic
validation and checkpoints included; start-up (imports, data, model build) and the final
validation and export do not, nor the validation Lightning runs once the budget is spent. The spent time is checkpointed, so a resumed run continues the
budget instead of getting a fresh one (time lost after the last checkpoint is not counted).

Every budgeted run records the fraction each optimizer step read (`budget_clock.npy` beside the
exported model). Given back as `pretrain.budget_clock`, the same command replays that run exactly,
step for step, on any machine: the learning rate, the phase switches and the stop follow the
recorded fractions instead of this machine's clock. (The step-count replay in `replay_overrides`
needs no file, but its schedule is a straight line by steps: it drifts wherever the original's
step rate varied, e.g. slower steps at a longer sequence phase.)
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl

from bertforge.config import ConfigError, resolve_path

CLOCK_FILE = "budget_clock.npy"


def load_budget_clock(pc) -> np.ndarray | None:
    """`pretrain.budget_clock`: the per-step budget fractions a finished budgeted run recorded,
    checked (None when the key is null)."""
    if pc.budget_clock is None:
        return None
    key = f"pretrain.budget_clock={pc.budget_clock}"
    if pc.budget_minutes is None:
        raise ConfigError(f"{key}: needs pretrain.budget_minutes (replay the budgeted run's own command with it)")
    path = resolve_path(pc.budget_clock)
    if path.is_dir():
        path = path / CLOCK_FILE
    try:
        f = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{key}: not a recorded budget clock ({CLOCK_FILE}): {e}") from None
    if f.ndim != 1 or f.size == 0 or f.dtype.kind != "f":
        raise ConfigError(f"{key}: expected a 1-D float array of per-step fractions, got {f.dtype} {f.shape}")
    bad = np.flatnonzero(~np.isfinite(f) | (f < 0) | (f > 1))
    if bad.size:
        raise ConfigError(f"{key}: step {bad[0]} reads {f[bad[0]]}, not a fraction in [0, 1]")
    back = np.flatnonzero(np.diff(f) < 0)
    if back.size:
        raise ConfigError(f"{key}: step {back[0] + 1} reads less than step {back[0]}: a clock never runs backwards")
    if f[-1] < 1.0:
        raise ConfigError(f"{key}: ends at {f[-1]:.3f} of the budget: the recorded run did not finish")
    return f


def fraction_schedule(warmup_fraction: float, schedule: str = "linear"):
    """The learning-rate factor as a function of the budget fraction f in [0, 1]: linear warmup to
    1 at `warmup_fraction`, then linear or cosine decay to 0 at f = 1."""

    def factor(f: float) -> float:
        if f < warmup_fraction:
            return f / warmup_fraction
        progress = min(1.0, (f - warmup_fraction) / max(1e-12, 1.0 - warmup_fraction))
        return 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class TrainingClock(pl.Callback):
    """Seconds spent in the training loop, checkpointed; with `minutes`, also the budget: its
    fraction is read once per optimizer step (before the step, so the scheduler's update after it
    and the stop decision see the same reading), and training stops after the step that spends it.
    Under data parallelism rank 0's reading is broadcast, so every rank steps and stops alike."""

    def __init__(
        self,
        minutes: float | None = None,
        warmup_fraction: float = 0.0,
        clock=time.monotonic,
        recorded: np.ndarray | None = None,
    ):
        self.seconds = None if minutes is None else float(minutes) * 60
        self.warmup_fraction, self.clock = float(warmup_fraction), clock
        self.recorded = recorded  # a replay: the fraction each step read in the recorded run
        self.spent_before, self._t0, self._stopped_at = 0.0, None, None
        self.fraction = 0.0
        self.readings: list[float] = []  # the fraction each optimizer step read, by step
        self.warmup_end_step: int | None = None
        self.phase_starts: list[int] = []  # the step each budget phase began at (for a replay by steps)

    @property
    def budgeted(self) -> bool:
        return self.seconds is not None

    def elapsed(self) -> float:
        return self.spent_before + (self.clock() - self._t0 if self._t0 is not None else 0.0)

    def state_dict(self) -> dict:
        return {
            "elapsed_s": self.elapsed(),
            "warmup_end_step": self.warmup_end_step,
            "phase_starts": list(self.phase_starts),
            "readings": list(self.readings),
        }

    def load_state_dict(self, state: dict) -> None:
        self.spent_before = float(state["elapsed_s"])
        self.warmup_end_step = state.get("warmup_end_step")
        self.phase_starts = list(state.get("phase_starts", []))
        self.readings = list(state.get("readings", []))
        if self.budgeted:
            self.fraction = self.readings[-1] if self.readings else min(1.0, self.spent_before / self.seconds)

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0 = self.clock()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self.budgeted:
            return
        step = trainer.global_step
        if self.recorded is not None:  # (every rank reads the same file)
            f = float(self.recorded[step]) if step < len(self.recorded) else 1.0
        else:
            f = min(1.0, self.elapsed() / self.seconds)
            if trainer.world_size > 1:
                f = trainer.strategy.broadcast(f)
        self.fraction = f
        del self.readings[step:]  # (a step retried after a resume replaces its reading)
        self.readings.append(f)
        if self.warmup_end_step is None and f >= self.warmup_fraction:
            self.warmup_end_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.budgeted and self.fraction >= 1.0 and not trainer.should_stop:
            trainer.should_stop = True
            self._stopped_at = self.elapsed()  # the validation Lightning runs on stopping is not training
            pl_module.log_last_step()  # the curves end on this step, at the learning rate now in force: 0

    def on_train_end(self, trainer, pl_module) -> None:
        self.spent_before, self._t0 = self._stopped_at if self._stopped_at is not None else self.elapsed(), None

    def describe(self) -> str:
        replayed = "replayed " if self.recorded is not None else ""
        return f"{replayed}budget {100 * self.fraction:.0f}% of {self.seconds / 60:g} min"

    def save_readings(self, directory: Path) -> None:
        """Write the run's clock (`CLOCK_FILE`), which `pretrain.budget_clock` replays exactly."""
        np.save(directory / CLOCK_FILE, np.asarray(self.readings, dtype=np.float64))

    def lr_factor(self, schedule: str):
        """The LambdaLR function of budget mode: the step number is ignored, the fraction decides."""
        factor = fraction_schedule(self.warmup_fraction, schedule)
        return lambda _step: factor(self.fraction)

    def replay_overrides(self, steps: int, phases) -> list[str]:
        """Overrides that replay this budgeted run by steps (the same step count, warmup end and
        phase boundaries; the learning rate then follows the step clock instead of the wall clock)."""
        out = ["pretrain.budget_minutes=null", f"pretrain.max_steps={steps}"]
        out.append(f"pretrain.warmup_steps={self.warmup_end_step if self.warmup_end_step is not None else steps}")
        if phases:
            ends = [*self.phase_starts[1:], steps]
            ends += [steps] * (len(phases) - len(ends))
            starts = [0, *ends[:-1]]
            items = []
            for p, lo, hi in zip(phases, starts, ends, strict=True):
                if hi <= lo:  # a phase the budget ran out before
                    continue
                keys = ",".join(f"{k}:{v}" for k, v in p.items() if k != "fraction")
                items.append("{steps:" + str(hi - lo) + ("," + keys if keys else "") + "}")
            out.append("pretrain.phases=[" + ",".join(items) + "]")
        return out
