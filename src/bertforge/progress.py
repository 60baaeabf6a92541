"""Progress a user can read wherever the output goes: one self-rewriting line on a terminal, a
plain line every few seconds in logs, CI and `dvc repro` (where bars print nothing or garbage)."""

from __future__ import annotations

import sys
import time

from pytorch_lightning.callbacks.progress import ProgressBar

from bertforge.progress_items import duration as _duration


def _value(v) -> str:
    v = float(v)
    return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"


class StepProgress(ProgressBar):
    """Optimizer steps out of the run's total (Lightning's bars count epochs, which step-based
    pre-training does not have: they showed `Epoch 0/-2`), with rate, ETA and the logged losses;
    validation results on their own line. `every_s`: seconds between lines when not on a terminal."""

    def __init__(self, stage: str, every_s: float = 30.0, stream=None):
        super().__init__()
        self.stage, self.every_s, self.stream = stage, float(every_s), stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._enabled, self._t0, self._last, self._step0, self._open = True, 0.0, 0.0, 0, False

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _emit(self, text: str, final: bool) -> None:
        if self.tty:  # rewrite one line; a final line (validation, end) stays
            self.stream.write(f"\r\033[K{text}" + ("\n" if final else ""))
            self._open = not final
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _line(self, trainer, pl_module) -> str:
        step, total = trainer.global_step, trainer.estimated_stepping_batches
        elapsed = time.perf_counter() - self._t0
        rate = (step - self._step0) / elapsed if elapsed > 0 else 0.0
        text = f"[{self.stage}] step {step:,}"
        if total != float("inf"):
            text += f"/{int(total):,} ({100 * step / max(1, total):.0f}%)"
        text += f", epoch {trainer.current_epoch}, {rate:.2f} steps/s, {_duration(elapsed)} elapsed"
        if rate > 0 and total != float("inf") and step < total:
            text += f", ETA {_duration((total - step) / rate)}"
        clock = getattr(pl_module, "clock", None)
        if clock is not None and clock.budgeted:  # a time budget ends the run, not a step count
            text += f", {clock.describe()}, {_duration((1 - clock.fraction) * clock.seconds)} left"
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k.startswith("train/")}
        return text + "".join(f", {k.removeprefix('train/')} {_value(v)}" for k, v in metrics.items())

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0 = self._last = time.perf_counter()
        self._step0 = trainer.global_step  # a resumed run: the rate counts this run's steps only

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._enabled and now - self._last >= (0.5 if self.tty else self.every_s):
            self._last = now
            self._emit(self._line(trainer, pl_module), final=False)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not self._enabled or trainer.sanity_checking:
            return
        metrics = {k: v for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "dev/"))}
        self._emit(
            f"[{self.stage}] step {trainer.global_step:,} validation: "
            + ", ".join(f"{k} {_value(v)}" for k, v in sorted(metrics.items())),
            final=True,
        )

    def on_train_end(self, trainer, pl_module) -> None:
        if self._enabled:
            self._emit(self._line(trainer, pl_module) + ", done", final=True)
