"""Lightning module and data module for MLM + NSP pre-training."""

from __future__ import annotations

import csv
import math
import time
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Sampler

from .budget import TrainingClock
from .modeling import sparse_pretraining_forward, unpadded_pretraining_forward
from .optim import optimizer_with_schedule
from .pretraining_data import PretrainingDataset, SpecialIds, collate
from .shards import Shard


class EpochBatches(Sampler):
    """One epoch's batches in a seeded order; `start` skips those already trained on (resume);
    `limit` ends the epoch early (at a sequence-length phase boundary). Under data parallelism
    the order is cut into global batches of batch_size x world_size and each rank takes its slice,
    so W processes see exactly the batches one process would see at the same global batch."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        shuffle: bool,
        drop_last: bool,
        limit: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        multiple_of: int = 1,
    ):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist() if shuffle else list(range(n))
        size = batch_size * world_size
        stop = n - n % size if drop_last else n
        lo, hi = rank * batch_size, (rank + 1) * batch_size
        batches = [order[i : i + size][lo:hi] for i in range(0, stop, size)][:limit]
        batches = [b for b in batches if b]  # an uneven last validation batch may leave a rank nothing
        # whole optimizer steps only: Lightning would step on a partial accumulation at an epoch's end
        self.batches = batches[: len(batches) - len(batches) % multiple_of]
        self.start = 0

    def __iter__(self):
        yield from self.batches[self.start :]

    def __len__(self) -> int:
        return len(self.batches)


class ResumableLoader(DataLoader):
    """A DataLoader whose position in the epoch goes into Lightning checkpoints, so a run resumed
    mid-epoch continues with the next unseen batch. The position is the trainer's count of
    processed batches (the loader itself runs one batch ahead because Lightning prefetches)."""

    def __init__(self, dataset, batch_sampler: EpochBatches, epoch: int, position, **kwargs):
        # its own generator: creating the iterator must not consume the global RNG (dropout)
        super().__init__(dataset, batch_sampler=batch_sampler, generator=torch.Generator(), **kwargs)
        self.epoch, self._position = epoch, position

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batches": int(self._position())}

    def load_state_dict(self, state: dict) -> None:
        if state.get("epoch") == self.epoch:
            self.batch_sampler.start = min(int(state["batches"]), len(self.batch_sampler))


# The step and validation metric names, once: the module logs them, CurveWriter writes them as the
# CSV columns `dvc plots` reads, and the stage reports the validation ones.
TRAIN_KEYS = ("train/loss", "train/mlm_loss", "train/nsp_loss", "train/lr")
VAL_KEYS = ("val/mlm_loss", "val/mlm_accuracy", "val/unigram_accuracy", "val/nsp_accuracy", "val/perplexity")
PAIR_KEY = "val/nsp_accuracy"  # logged only when there is a pair task (objective nsp or sop)


def val_keys(pair_task: bool) -> list[str]:
    return [k for k in VAL_KEYS if pair_task or k != PAIR_KEY]


VALID_EPOCH = 2**31 - 1  # the seed stream of the fixed validation set, disjoint from training epochs


def check_phases(cfg) -> None:
    """`pretrain.phases`: e.g. 90% of the steps at 128 tokens, then 10% at 512 (BERT's recipe);
    each phase sets any of PHASE_KEYS and its length: `steps` adding up to max_steps, or with
    `pretrain.budget_minutes`, `fraction`s of the budget adding up to 1."""
    from .config import ConfigError

    phases = cfg.get("phases") or []
    budgeted = cfg.get("budget_minutes") is not None
    length = "fraction" if budgeted else "steps"
    for i, p in enumerate(phases):
        unknown = set(p) - {length, *PHASE_KEYS}
        size = p.get(length)
        ok = size is not None and (0 < float(size) <= 1 if budgeted else int(size) >= 1)
        if unknown or not ok:
            want = "fraction in (0, 1] (with pretrain.budget_minutes)" if budgeted else "steps >= 1"
            raise ConfigError(
                f"pretrain.phases[{i}]: needs {want} and only {', '.join(PHASE_KEYS)} besides (got {dict(p)})"
            )
    total = sum(float(p[length]) for p in phases)
    if phases and budgeted and abs(total - 1) > 1e-6:
        raise ConfigError(
            f"pretrain.phases: fractions add up to {total:g}, not 1 "
            "(with pretrain.budget_minutes each phase is a fraction of the budget)"
        )
    if phases and not budgeted and total != cfg.max_steps:
        raise ConfigError(f"pretrain.phases: steps add up to {int(total)}, not pretrain.max_steps={cfg.max_steps}")
    val = cfg.get("val_settings") or {}
    if set(val) - {*PHASE_KEYS, "masked_lm_prob"}:
        raise ConfigError(f"pretrain.val_settings: only {', '.join((*PHASE_KEYS, 'masked_lm_prob'))} (got {dict(val)})")


PHASE_KEYS = ("max_seq_length", "max_predictions_per_seq", "batch_size", "short_seq_prob")


def phase_settings(cfg, index: int | None):
    """The example settings of phase `index` (None: no phases)."""
    if index is None:
        return cfg
    drop = ("steps", "fraction")
    return OmegaConf.merge(cfg, {k: v for k, v in cfg.phases[index].items() if k not in drop})


def phase_at(cfg, step: int):
    """(phase index in force at optimizer step `step` or None without phases, the step where that phase ends)."""
    end = 0
    for i, p in enumerate(cfg.get("phases") or []):
        end += int(p.steps)
        if step < end:
            return i, end
    return None, None


def budget_phase(cfg, fraction: float) -> int | None:
    """The phase in force once `fraction` of the time budget is spent (None without phases)."""
    phases = cfg.get("phases") or []
    end = 0.0
    for i, p in enumerate(phases):
        end += float(p.fraction)
        if fraction < end - 1e-9:
            return i
    return len(phases) - 1 if phases else None


def validation_settings(cfg):
    """The held-out set's example settings: the training ones unless `pretrain.val_settings` fixes
    some (so that runs trained differently, e.g. at a higher masking rate, are scored alike)."""
    return OmegaConf.merge(cfg, dict(cfg.get("val_settings") or {}))


class PretrainData(pl.LightningDataModule):
    """Pairs and masks are rebuilt every epoch (dynamic masking), seeded by (seed, epoch). With
    `pretrain.phases`, an epoch ends at a phase boundary and the next is built with the next
    phase's sequence length; the step each epoch started at is checkpointed, so a resumed epoch
    is rebuilt exactly."""

    def __init__(
        self,
        shard_dir: Path,
        special: SpecialIds,
        cfg,
        seed: int,
        num_workers: int,
        pin_memory: bool = False,
        clock: TrainingClock | None = None,
    ):
        super().__init__()
        self.clock = clock  # with a time budget, the phase of a new epoch comes from its fraction
        self.train_shard, self.valid_shard = Shard(shard_dir / "train"), Shard(shard_dir / "valid")
        self.special, self.cfg, self.seed, self.num_workers = special, cfg, seed, num_workers
        self.pin_memory = pin_memory  # GPU: page-locked batches, copied without blocking the host
        self._collate = partial(collate, pad_id=special.pad)
        self._epoch, self.epoch_start_step, self.epoch_phase, self._resumed_start = 0, 0, None, None

    @property
    def budget_phases(self) -> bool:
        return bool(self.clock and self.clock.budgeted and self.cfg.get("phases"))

    def state_dict(self) -> dict:
        return {"epoch": self._epoch, "epoch_start_step": self.epoch_start_step, "epoch_phase": self.epoch_phase}

    def load_state_dict(self, state: dict) -> None:
        self._resumed_start = (state.get("epoch"), state.get("epoch_start_step"), state.get("epoch_phase"))

    def _loader(
        self, ds, shuffle: bool, epoch: int, batch_size: int, limit: int | None = None, multiple_of: int = 1
    ) -> DataLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        batches = EpochBatches(
            len(ds),
            batch_size,
            self.seed * 1000 + epoch,
            shuffle,
            drop_last=shuffle,
            limit=limit,
            rank=rank,
            world_size=world,
            multiple_of=multiple_of,
        )
        position = lambda: self.trainer.fit_loop.epoch_loop.batch_progress.current.processed  # noqa: E731
        return ResumableLoader(
            ds,
            batches,
            epoch,
            position,
            collate_fn=self._collate,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer else 0
        start = self.trainer.global_step if self.trainer else 0
        accumulate = self.trainer.accumulate_grad_batches if self.trainer else 1
        saved_phase = None
        if self._resumed_start is not None:
            if self._resumed_start[0] == epoch:  # resumed mid-epoch: the epoch began before the checkpoint
                start, saved_phase = self._resumed_start[1], self._resumed_start[2]
            self._resumed_start = None  # (a checkpoint from an epoch's last step resumes into a new epoch)
        if self.budget_phases:  # the epoch runs until the budget's phase changes (the module ends it)
            phase = saved_phase if saved_phase is not None else budget_phase(self.cfg, self.clock.fraction)
            limit = None
        else:
            phase, phase_end = phase_at(self.cfg, start)
            limit = None if phase_end is None else (phase_end - start) * accumulate
        self._epoch, self.epoch_start_step, self.epoch_phase = epoch, start, phase
        while self.budget_phases and len(self.clock.phase_starts) <= phase:
            self.clock.phase_starts.append(start)
        cfg = phase_settings(self.cfg, phase)
        ds = PretrainingDataset(self.train_shard, self.special, cfg, self.seed, epoch)
        return self._loader(ds, True, epoch, cfg.batch_size, limit, multiple_of=accumulate)

    def val_dataloader(self) -> DataLoader:
        # fixed pairs and masks: validation numbers are comparable across steps and runs
        cfg = validation_settings(self.cfg)
        ds = PretrainingDataset(self.valid_shard, self.special, cfg, self.seed, VALID_EPOCH, cfg.val_max_examples)
        return self._loader(ds, False, 0, cfg.batch_size)


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
    ):
        super().__init__()
        self.model, self.cfg, self.total_steps, self.unigram_id = model, cfg, total_steps, unigram_id
        self.clock = clock  # with a time budget it drives the learning rate and the phases
        self.tokens_seen = 0  # real (non-padding) tokens trained on, across resumes
        self._last = None
        # the same maths either way; unpadded skips the padding positions in every dense layer
        self._forward = unpadded_pretraining_forward if unpad else sparse_pretraining_forward
        if compile:  # the step function, not a module: parameter names (checkpoints, export) stay as they are
            self._forward = torch.compile(self._forward, dynamic=True)
        self._val: dict[str, float] = {}
        self._t0, self._tokens, self._samples, self._micro = None, 0, 0, 0
        self.pair_task = cfg.get("objective", "nsp") != "mlm"  # nsp or sop; mlm trains no pair head

    def _losses(self, batch):
        out = self._forward(self.model, batch)
        if self.trainer.world_size > 1 and self.training:
            # ranks hold different numbers of masked tokens: normalize by the global count, so the
            # gradient DDP averages equals one process's mean over the whole global batch
            n = out.mlm_labels.new_tensor(out.mlm_labels.numel(), dtype=torch.float32)
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
        else:  # zero, but the head stays in the graph (DDP expects every parameter to get a gradient)
            nsp = out.nsp_logits.float().sum() * 0.0
        return out, mlm, nsp

    def training_step(self, batch, batch_idx):
        # throughput over windows of micro-batches (with gradient accumulation a step is several):
        # the window closes at the start of a batch, so it holds the batches computed since it opened
        if self._micro % self.trainer.log_every_n_steps == 0:
            now = time.perf_counter()
            if self._t0 is not None:
                self.log("train/tokens_per_s", self._tokens / (now - self._t0))
                self.log("train/samples_per_s", self._samples / (now - self._t0))
            self._t0, self._tokens, self._samples = now, 0, 0
        self._tokens += batch["token_index"].numel()  # real tokens, from a shape: no device sync
        self.tokens_seen += batch["token_index"].numel()
        self._samples += batch["input_ids"].shape[0]
        self._micro += 1
        _, mlm, nsp = self._losses(batch)
        loss = mlm + nsp
        self._last = (loss.detach(), mlm.detach(), nsp.detach())
        log_now = self.trainer._logger_connector.should_update_logs
        # on a GPU the check waits for the step to finish, so only on logging steps there (a
        # non-finite loss leaves non-finite weights, so the next check still catches it)
        if (log_now or self.device.type == "cpu") and not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite pre-training loss ({loss.item()}) at step {self.global_step}; "
                "the last good checkpoint is kept — lower pretrain.lr or use trainer.precision=32-true"
            )
        # Lightning writes step metrics only every log_every_n_steps; each self.log costs ~1 ms
        # (a BERT-Tiny step is ~60 ms on 2 cores), so log just on those steps
        if log_now:
            self._log_step(loss, mlm, nsp)
        return loss

    def _log_step(self, loss, mlm, nsp) -> None:
        self.log_dict(dict(zip(TRAIN_KEYS[:3], (loss, mlm, nsp))), prog_bar=True)
        self.log(TRAIN_KEYS[3], self.trainer.optimizers[0].param_groups[0]["lr"])

    def log_last_step(self) -> None:
        """Log the step that ended training (a spent time budget), whatever the logging interval:
        its losses and the learning rate the schedule has now reached."""
        if self._last is not None:
            self._log_step(*self._last)

    def on_train_batch_start(self, batch, batch_idx):
        data = self.trainer.datamodule
        if getattr(data, "budget_phases", False) and budget_phase(self.cfg, self.clock.fraction) != data.epoch_phase:
            return -1  # the budget entered the next phase: end this epoch; the next is built for that phase
        return None

    def on_validation_epoch_start(self):
        self._val = dict(mlm_loss=0.0, mlm_correct=0, unigram_correct=0, masked=0, nsp_correct=0, pairs=0)

    def validation_step(self, batch, batch_idx):
        out, mlm, _ = self._losses(batch)
        v, n = self._val, out.mlm_labels.numel()
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
            c.get("optimizer", "adamw"),
            c.get("schedule", "linear"),
            fused=not self._fp16_scaled,
            lr_lambda=self.clock.lr_factor(c.get("schedule", "linear")) if self.clock and self.clock.budgeted else None,
        )

    @property
    def _fp16_scaled(self) -> bool:
        return str(self.trainer.precision).startswith("16")

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        # Lightning's mixed-precision plugin refuses to clip for fused optimizers, because with fp16
        # they unscale gradients themselves; with bf16 or fp32 nothing is scaled and this is its same norm clipping
        if self._fp16_scaled:
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        if gradient_clip_val:
            torch.nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val)

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
