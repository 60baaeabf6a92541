"""The pre-training data module: each epoch's pairs and masks, sequence-length phases, resumable loading."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import tempfile
import weakref
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset, Sampler

from bertforge.config import to_plain
from bertforge.data.masking import SpecialIds
from bertforge.data.pretraining_examples import Pairs, PretrainingDataset, build_pairs, collate
from bertforge.data.shards import Shard
from bertforge.pretraining.budget import TrainingClock


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


class TaggedBatches(Sampler):
    """The batch sampler of a loader whose workers outlive the epoch: the current epoch's batches
    (replaced at each epoch start), each index tagged with the directory of that epoch's pairs, so
    a worker knows which pairs an index refers to without being restarted."""

    def __init__(self):
        self.batches, self.directory = EpochBatches(0, 1, 0, shuffle=False, drop_last=False), ""

    @property
    def start(self) -> int:
        return self.batches.start

    @start.setter
    def start(self, value: int) -> None:
        self.batches.start = value

    def __iter__(self):
        for batch in self.batches:
            yield [(self.directory, i) for i in batch]

    def __len__(self) -> int:
        return len(self.batches)


class EpochFiles(Dataset):
    """In a persistent loader worker: examples of whichever epoch an index is tagged with, its
    pairs mapped from that epoch's directory (and masked as `PretrainingDataset` masks them)."""

    def __init__(self, special: SpecialIds, seed: int, fixed_shapes: bool = False):
        self.special, self.seed, self._directory, self._epoch = special, seed, None, None
        self.fixed_shapes = fixed_shapes

    def __getitem__(self, item: tuple[str, int]) -> dict:
        directory, index = item
        if directory != self._directory:
            meta = json.loads(Path(directory, EPOCH_META).read_text())
            cfg, pairs = OmegaConf.create(meta["cfg"]), Pairs.load(directory)
            self._epoch = PretrainingDataset(
                None, self.special, cfg, self.seed, meta["epoch"], pairs=pairs, fixed_shapes=self.fixed_shapes
            )
            self._directory = directory
        return self._epoch[index]


EPOCH_META = "epoch.json"  # beside an epoch's pair arrays: its example settings and epoch number


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


VALID_EPOCH = 2**31 - 1  # the seed stream of the fixed validation set, disjoint from training epochs


def check_phases(cfg) -> None:
    """`pretrain.phases`: e.g. 90% of the steps at 128 tokens, then 10% at 512 (BERT's recipe);
    each phase sets any of PHASE_KEYS and its length: `steps` adding up to max_steps, or with
    `pretrain.budget_minutes`, `fraction`s of the budget adding up to 1."""
    from bertforge.config import ConfigError

    phases = cfg.phases or []
    budgeted = cfg.budget_minutes is not None
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
    val = cfg.val_settings or {}
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
    for i, p in enumerate(cfg.phases or []):
        end += int(p.steps)
        if step < end:
            return i, end
    return None, None


def budget_phase(cfg, fraction: float) -> int | None:
    """The phase in force once `fraction` of the time budget is spent (None without phases)."""
    phases = cfg.phases or []
    end = 0.0
    for i, p in enumerate(phases):
        end += float(p.fraction)
        if fraction < end - 1e-9:
            return i
    return len(phases) - 1 if phases else None


def validation_settings(cfg):
    """The held-out set's example settings: the training ones unless `pretrain.val_settings` fixes
    some (so that runs trained differently, e.g. at a higher masking rate, are scored alike)."""
    return OmegaConf.merge(cfg, dict(cfg.val_settings or {}))


def _settings_key(cfg) -> str:
    """Example settings as a comparable string: which look-ahead an epoch start can take."""
    return json.dumps(to_plain(cfg), sort_keys=True)


def _build_pairs(shard_dir: str, special: SpecialIds, cfg: dict, seed: int, epoch: int, out: str) -> str:
    """In the helper process: build an epoch's pairs and leave them in `out` (a path crosses the
    process boundary; tens of MB through a pipe stalled the training thread when they arrived)."""
    return build_pairs(Shard(Path(shard_dir)), special, OmegaConf.create(cfg), seed, epoch).save(out)


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
        fixed_shapes: bool = False,
    ):
        super().__init__()
        self.fixed_shapes = fixed_shapes  # batches of shapes that repeat, for CUDA graphs (`collate`)
        self.clock = clock  # with a time budget, the phase of a new epoch comes from its fraction
        self.train_shard, self.valid_shard = Shard(shard_dir / "train"), Shard(shard_dir / "valid")
        self.special, self.cfg, self.seed, self.num_workers = special, cfg, seed, num_workers
        self.pin_memory = pin_memory  # GPU: page-locked batches, copied without blocking the host
        self._collate = partial(collate, pad_id=special.pad)
        self._epoch, self.epoch_start_step, self.epoch_phase, self._resumed_start = 0, 0, None, None
        self._shard_dir, self._builder, self._spill = shard_dir, None, None
        self._ahead, self._unused = [], []  # look-ahead jobs: ((epoch, settings), job, directory)
        self._train, self._generation, self._done = None, 0, []  # the loader whose workers persist
        self._last_start_fraction: float | None = None  # of the budget, at the last epoch start

    @property
    def budget_phases(self) -> bool:
        return bool(self.clock and self.clock.budgeted and self.cfg.phases)

    def state_dict(self) -> dict:
        return {"epoch": self._epoch, "epoch_start_step": self.epoch_start_step, "epoch_phase": self.epoch_phase}

    def load_state_dict(self, state: dict) -> None:
        self._resumed_start = (state.get("epoch"), state.get("epoch_start_step"), state.get("epoch_phase"))

    def _batches(
        self, n: int, shuffle: bool, epoch: int, batch_size: int, limit: int | None = None, multiple_of: int = 1
    ) -> EpochBatches:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        return EpochBatches(
            n,
            batch_size,
            self.seed * 1000 + epoch,
            shuffle,
            drop_last=shuffle,
            limit=limit,
            rank=rank,
            world_size=world,
            multiple_of=multiple_of,
        )

    def _new_loader(self, ds, batches: Sampler, epoch: int, persistent: bool = False) -> ResumableLoader:
        position = lambda: self.trainer.fit_loop.epoch_loop.batch_progress.current.processed  # noqa: E731
        return ResumableLoader(
            ds,
            batches,
            epoch,
            position,
            collate_fn=self._collate,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=persistent,
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
        if self.num_workers == 0:  # (on a CPU: built here, between epochs; workers would take a core)
            ds = PretrainingDataset(
                self.train_shard, self.special, cfg, self.seed, epoch, fixed_shapes=self.fixed_shapes
            )
            return self._new_loader(ds, self._batches(len(ds), True, epoch, cfg.batch_size, limit, accumulate), epoch)
        # loader workers (GPU profiles) start once and serve every epoch: starting them anew each
        # epoch (forking a process that holds CUDA) paused the GPU at every epoch start
        directory = self._epoch_directory(cfg, epoch)
        if self._train is None:
            files = EpochFiles(self.special, self.seed, self.fixed_shapes)
            self._train = self._new_loader(files, TaggedBatches(), epoch, persistent=True)
        batches = self._batches(len(Pairs.load(directory)), True, epoch, cfg.batch_size, limit, accumulate)
        self._train.batch_sampler.batches = batches
        self._train.batch_sampler.directory, self._train.epoch = directory, epoch
        self._build_ahead(epoch + 1, self._next_settings(phase, start + len(batches) // accumulate))
        return self._train

    def _next_settings(self, phase: int | None, end_step: int) -> list:
        """The example settings the next epoch may start with, likeliest first. By steps exactly
        one: the phase in force where this epoch ends. With a budget the switch time is not known
        ahead: this phase's, and also the next phase's once the budget may cross into it before
        this epoch ends (judged by the last epoch's length, doubled for safety)."""
        if not self.budget_phases:
            following = phase_at(self.cfg, end_step)[0]
            return [phase_settings(self.cfg, phase if following is None else following)]
        now, last, self._last_start_fraction = self.clock.fraction, self._last_start_fraction, self.clock.fraction
        likely = [phase]
        # the same boundary rule the module switches by
        if phase + 1 < len(self.cfg.phases) and (
            last is None or budget_phase(self.cfg, now + 2 * (now - last)) > phase
        ):
            likely.append(phase + 1)
        return [phase_settings(self.cfg, i) for i in likely]

    def _epoch_directory(self, cfg, epoch: int) -> str:
        """The directory of this epoch's pairs for the loader workers: built by a helper process
        while the last epoch trained (also for a phase switch `_next_settings` foresaw), or here
        (the first epoch; a switch it did not). Building pairs is pure Python, seconds for a large
        shard: in this process it stalls the GPU at every epoch start."""
        if self._builder is None:  # spawn, not fork: this process may hold CUDA and Rayon threads
            self._builder = mp.get_context("spawn").Pool(1)
            self._spill = tempfile.mkdtemp(prefix="bertforge-pairs-")
            # also when training ends in an exception (Lightning then skips teardown) or at exit
            self._forget_spill = weakref.finalize(self, shutil.rmtree, self._spill, ignore_errors=True)
        self._generation += 1  # a fresh name per epoch start, whatever was built or dropped before
        key = (epoch, _settings_key(cfg))
        match = next((job for k, job, _ in self._ahead if k == key), None)
        self._unused += [(job, out) for _, job, out in self._ahead if job is not match]
        self._ahead = []
        if match is not None:
            directory = match.get()
        else:
            here = os.path.join(self._spill, f"here{self._generation}")
            directory = build_pairs(self.train_shard, self.special, cfg, self.seed, epoch).save(here)
        Path(directory, EPOCH_META).write_text(json.dumps({"cfg": to_plain(cfg), "epoch": epoch}))
        # the workers may still finish batches of the last epoch (prefetched when it was cut short)
        self._done, stale = [*self._done[-1:], directory], self._done[:-1]
        for old in stale:
            shutil.rmtree(old, ignore_errors=True)
        pending = []
        for job, out in self._unused:  # look-aheads not taken: removed once their helper is done
            if job.ready():
                shutil.rmtree(out, ignore_errors=True)
            else:
                pending.append((job, out))
        self._unused = pending
        return directory

    def _build_ahead(self, epoch: int, settings: list) -> None:
        """Have the helper build epoch `epoch`'s pairs for each of `settings`, in that order."""
        for i, cfg in enumerate(settings):
            out = os.path.join(self._spill, f"ahead{self._generation}-{i}")
            job = self._builder.apply_async(
                _build_pairs, (str(self._shard_dir / "train"), self.special, to_plain(cfg), self.seed, epoch, out)
            )
            self._ahead.append(((epoch, _settings_key(cfg)), job, out))

    def teardown(self, stage: str) -> None:
        if self._train is not None and self._train._iterator is not None:
            self._train._iterator._shutdown_workers()
        self._train, self._done = None, []
        if self._builder is not None:  # the last epoch's look-ahead is not needed: stop it, do not wait
            self._builder.terminate()
            self._builder.join()
            self._forget_spill()
            self._builder, self._ahead, self._unused, self._spill = None, [], [], None

    def val_dataloader(self) -> DataLoader:
        # fixed pairs and masks: validation numbers are comparable across steps and runs
        cfg = validation_settings(self.cfg)
        ds = PretrainingDataset(
            self.valid_shard,
            self.special,
            cfg,
            self.seed,
            VALID_EPOCH,
            cfg.val_max_examples,
            fixed_shapes=self.fixed_shapes,
        )
        return self._new_loader(ds, self._batches(len(ds), False, 0, cfg.batch_size), 0)
