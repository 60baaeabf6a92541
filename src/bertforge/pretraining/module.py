"""The Lightning module for MLM + NSP pre-training, its metric names and the curve writer."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from bertforge.pretraining.budget import TrainingClock
from bertforge.pretraining.datamodule import budget_phase
from bertforge.pretraining.model import sparse_pretraining_forward, unpadded_pretraining_forward
from bertforge.pretraining.optim import optimizer_with_schedule

# The step and validation metric names, once: the module logs them, CurveWriter writes them as the
# CSV columns `dvc plots` reads, and the stage reports the validation ones.
TRAIN_KEYS = ("train/loss", "train/mlm_loss", "train/nsp_loss", "train/lr")
VAL_KEYS = ("val/mlm_loss", "val/mlm_accuracy", "val/unigram_accuracy", "val/nsp_accuracy", "val/perplexity")
PAIR_KEY = "val/nsp_accuracy"  # logged only when there is a pair task (objective nsp or sop)


def _host(x: float) -> torch.Tensor:
    """A number to log, as a host tensor (`self.log` would put a float on the module's device)."""
    return torch.tensor(float(x), dtype=torch.float32)


def val_keys(pair_task: bool) -> list[str]:
    return [k for k in VAL_KEYS if pair_task or k != PAIR_KEY]


class PretrainModule(pl.LightningModule):
    def __init__(
        self,
        model,
        cfg,
        total_steps: int,
        unigram_id: int,
        unpad: bool = True,
        compile: bool = False,
        clock: TrainingClock | None = None,
        cuda_graphs: bool = False,
    ):
        super().__init__()
        self.model, self.cfg, self.total_steps, self.unigram_id = model, cfg, total_steps, unigram_id
        self.clock = clock  # with a time budget it drives the learning rate and the phases
        self.tokens_seen = 0  # real (non-padding) tokens trained on, across resumes
        self._last = None
        # the same maths either way; unpadded skips the padding positions in every dense layer
        self._forward = unpadded_pretraining_forward if unpad else sparse_pretraining_forward
        # the step function, not a module: parameter names (checkpoints, export) stay as they are;
        # `cuda_graphs` (batches of fixed shapes) also replays it as CUDA graphs on a GPU
        self._graphs = compile and cuda_graphs
        self._eager = self._forward
        if compile:
            self._forward = torch.compile(self._forward, dynamic=True, mode="reduce-overhead" if cuda_graphs else None)
        self._val: dict[str, float] = {}
        self._t0, self._tokens, self._samples, self._micro = None, 0, 0, 0
        self.pair_task = cfg.objective != "mlm"  # nsp or sop; mlm trains no pair head

    def _losses(self, batch):
        forward = self._forward
        if self._graphs and self.training:  # a new step: the graphs may reuse the last step's output memory
            torch.compiler.cudagraph_mark_step_begin()
        elif self._graphs:  # validation runs in inference mode, which breaks graphs recorded for training
            forward = self._eager  # (pytorch#135892); it is a small share of the time
        out = forward(self.model, batch)
        if self.trainer.world_size > 1 and self.training:
            # ranks hold different numbers of masked tokens: normalize by the global count, so the
            # gradient DDP averages equals one process's mean over the whole global batch
            n = (out.mlm_labels != -100).sum().float()  # fixed shapes pad with ignored labels
            total = self.trainer.strategy.reduce(n, reduce_op="sum")
            mlm = (
                F.cross_entropy(out.mlm_logits.float(), out.mlm_labels, reduction="sum")
                * self.trainer.world_size
                / total
            )
        else:
            mlm = F.cross_entropy(out.mlm_logits.float(), out.mlm_labels)
        if self.pair_task:
            nsp = F.cross_entropy(out.nsp_logits.float(), batch["next_sentence_label"])
        else:  # zero, but the head stays in the graph (DDP expects every parameter to get a gradient);
            # + 0.0 turns the -0.0 of a negative sum into 0.0 in train.csv and MLflow
            nsp = out.nsp_logits.float().sum() * 0.0 + 0.0
        return out, mlm, nsp

    def training_step(self, batch, batch_idx):
        # throughput over windows of micro-batches (with gradient accumulation a step is several):
        # the window closes at the start of a batch, so it holds the batches computed since it opened
        if self._micro % self.trainer.log_every_n_steps == 0:
            now = time.perf_counter()
            if self._t0 is not None:
                self.log("train/tokens_per_s", _host(self._tokens / (now - self._t0)))
                self.log("train/samples_per_s", _host(self._samples / (now - self._t0)))
            self._t0, self._tokens, self._samples = now, 0, 0
        real = batch.get("real_tokens", batch["token_index"].numel())  # a host number: no device sync
        self._tokens += real
        self.tokens_seen += real
        self._samples += batch["input_ids"].shape[0]
        self._micro += 1
        _, mlm, nsp = self._losses(batch)
        loss = mlm + nsp
        self._last = (loss.detach(), mlm.detach(), nsp.detach())
        log_now = self.trainer._logger_connector.should_update_logs
        # on a GPU reading the loss waits for the step to finish, so only on logging steps there
        # (a non-finite loss leaves non-finite weights, so the next check still catches it)
        if log_now or self.device.type == "cpu":
            values = self._host_losses()
            if not torch.isfinite(values[0]):
                raise FloatingPointError(
                    f"non-finite pre-training loss ({float(values[0])}) at step {self.global_step}; "
                    "the last good checkpoint is kept — lower pretrain.lr or use trainer.precision=32-true"
                )
            # Lightning writes step metrics only every log_every_n_steps; each self.log costs ~1 ms
            # (a BERT-Tiny step is ~60 ms on 2 cores), so log just on those steps
            if log_now:
                self._log_step(values)
        return loss

    def _host_losses(self) -> torch.Tensor:
        """The last step's loss, MLM and NSP losses on the host, in one copy."""
        return torch.stack(self._last).float().cpu()

    def _log_step(self, values: torch.Tensor) -> None:
        # host tensors: Lightning turns progress-bar metrics into numbers after every batch, and
        # for a value on the GPU each of those would wait for the step in flight (measured on an
        # H200: 3 syncs a step, the host no longer running ahead of the GPU)
        loss, mlm, nsp = values
        self.log_dict(dict(zip(TRAIN_KEYS[:2], (loss, mlm))), prog_bar=True)
        self.log(TRAIN_KEYS[2], nsp, prog_bar=self.pair_task)  # the progress line shows only a trained loss
        self.log(TRAIN_KEYS[3], _host(self.trainer.optimizers[0].param_groups[0]["lr"]))

    def log_last_step(self) -> None:
        """Log the step that ended training (a spent time budget), whatever the logging interval:
        its losses and the learning rate the schedule has now reached."""
        if self._last is not None:
            self._log_step(self._host_losses())

    def on_train_batch_start(self, batch, batch_idx):
        data = self.trainer.datamodule
        if getattr(data, "budget_phases", False) and budget_phase(self.cfg, self.clock.fraction) != data.epoch_phase:
            return -1  # the budget entered the next phase: end this epoch; the next is built for that phase
        return None

    def on_validation_epoch_start(self):
        self._val = dict(mlm_loss=0.0, mlm_correct=0, unigram_correct=0, masked=0, nsp_correct=0, pairs=0)

    def validation_step(self, batch, batch_idx):
        out, mlm, _ = self._losses(batch)
        v, n = self._val, int((out.mlm_labels != -100).sum())  # fixed shapes pad with ignored labels
        v["mlm_loss"] += mlm.item() * n
        v["masked"] += n
        v["mlm_correct"] += int((out.mlm_logits.argmax(-1) == out.mlm_labels).sum())
        v["unigram_correct"] += int((out.mlm_labels == self.unigram_id).sum())
        v["nsp_correct"] += int((out.nsp_logits.argmax(-1) == batch["next_sentence_label"]).sum())
        v["pairs"] += batch["input_ids"].shape[0]

    def on_validation_epoch_end(self):
        v = self._val
        if self.trainer.world_size > 1:  # every rank saw a slice of the validation set: add them up
            v = {
                k: float(self.trainer.strategy.reduce(torch.tensor(float(x), device=self.device), reduce_op="sum"))
                for k, x in v.items()
            }
        loss = v["mlm_loss"] / max(v["masked"], 1)
        values = (  # in VAL_KEYS' order
            loss,
            v["mlm_correct"] / max(v["masked"], 1),
            v["unigram_correct"] / max(v["masked"], 1),
            v["nsp_correct"] / max(v["pairs"], 1),
            math.exp(min(loss, 50.0)),
        )
        keep = val_keys(self.pair_task)
        self.log_dict({k: x for k, x in zip(VAL_KEYS, values) if k in keep}, prog_bar=True)

    def configure_optimizers(self):
        c = self.cfg
        return optimizer_with_schedule(
            self.model,
            c.lr,
            c.weight_decay,
            c.adam_betas,
            c.adam_eps,
            c.warmup_steps,
            self.total_steps,
            c.optimizer,
            c.schedule,
            fused=not self._fp16_scaled,
            lr_lambda=self.clock.lr_factor(c.schedule) if self.clock and self.clock.budgeted else None,
        )

    @property
    def _fp16_scaled(self) -> bool:
        return str(self.trainer.precision).startswith("16")

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        # Lightning's mixed-precision plugin refuses to clip for fused optimizers, because with fp16
        # they unscale gradients themselves; with bf16 or fp32 nothing is scaled and this is its same norm clipping
        if self._fp16_scaled:
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        if not gradient_clip_val:
            return None
        wrapped = self.trainer.model
        if hasattr(wrapped, "clip_grad_norm_"):  # FSDP: each rank holds shards, and the norm is the whole model's
            wrapped.clip_grad_norm_(gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val)
        return None

    # Dropout draws from torch's global RNG: keep its state so a resumed run draws the same masks.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["torch_rng_state"] = torch.get_rng_state()
        checkpoint["tokens_seen"] = self.tokens_seen

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])
        self.tokens_seen = int(checkpoint.get("tokens_seen", 0))


class CurveWriter(pl.Callback):
    """Appends logged metrics to CSV files for `dvc plots`, kept consistent across resumes."""

    def __init__(self, directory: Path, train_keys: list[str], val_keys: list[str]):
        self.files = {
            "train": (Path(directory) / "train.csv", train_keys),
            "valid": (Path(directory) / "valid.csv", val_keys),
        }
        self.last_valid_step: int | None = None

    def on_train_start(self, trainer, pl_module):  # after a checkpoint has restored global_step
        if not trainer.is_global_zero:
            return
        for path, keys in self.files.values():
            rows = []
            if path.exists():  # resumed: drop rows past the checkpoint's step
                with open(path, newline="") as fh:
                    rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= trainer.global_step]
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", newline="") as fh:
                w = csv.DictWriter(fh, ["step", *keys])
                w.writeheader()
                w.writerows(rows)

    def _append(self, which: str, trainer):
        if not trainer.is_global_zero:
            return
        path, keys = self.files[which]
        m = trainer.callback_metrics
        if not all(f"{k}" in m for k in keys):
            return
        with open(path, "a", newline="") as fh:
            csv.writer(fh).writerow([trainer.global_step, *(f"{float(m[k]):.6g}" for k in keys)])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # the step a time budget ended on is logged whatever the interval (after TrainingClock)
        if trainer.global_step % trainer.log_every_n_steps == 0 or trainer.should_stop:
            self._append("train", trainer)

    def on_validation_end(self, trainer, pl_module):  # after the module has logged its val metrics
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._append("valid", trainer)
            self.last_valid_step = trainer.global_step
