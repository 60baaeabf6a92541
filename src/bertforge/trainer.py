"""The Lightning Trainer from the speed-only `trainer` config group, placed on this machine's
hardware (`hardware.placement`: accelerator and precision `auto` resolve here)."""

from __future__ import annotations

import warnings

import pytorch_lightning as pl
import torch

from bertforge.hardware import Placement, placement
from bertforge.progress import StepProgress
from bertforge.quiet import drop_always


def _quiet_libraries() -> None:
    """Lightning's advertisement, its own deprecated torch call (not ours to fix) and transformers'
    "Writing model shards" bar for a one-file save, on every run."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    drop_always("pytorch_lightning.utilities.rank_zero", "💡 Tip:")  # an advertisement, on every Trainer
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def build_trainer(
    tcfg, logger, place: Placement | None = None, stage: str = "train", callbacks=(), **kwargs
) -> pl.Trainer:
    place = place or placement(tcfg)
    _quiet_libraries()
    progress = StepProgress(stage, every_s=tcfg.progress_every_s)
    if tcfg.num_threads:
        torch.set_num_threads(int(tcfg.num_threads))
    return pl.Trainer(
        accelerator=place.accelerator,
        devices=tcfg.devices,
        num_nodes=int(tcfg.num_nodes),
        strategy=tcfg.strategy,
        precision=place.precision,
        logger=logger,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[*callbacks, progress],
        **kwargs,
    )
