"""The Lightning Trainer from the speed-only `trainer` config group, placed on this machine's
hardware (`hardware.placement`: accelerator and precision `auto` resolve here)."""
from __future__ import annotations

import pytorch_lightning as pl
import torch

from .hardware import Placement, placement


def build_trainer(tcfg, logger, place: Placement | None = None, **kwargs) -> pl.Trainer:
    place = place or placement(tcfg)
    if tcfg.get("num_threads"):
        torch.set_num_threads(int(tcfg.num_threads))
    return pl.Trainer(
        accelerator=place.accelerator,
        devices=tcfg.devices,
        num_nodes=int(tcfg.get("num_nodes", 1)),
        strategy=tcfg.get("strategy", "auto"),
        precision=place.precision,
        logger=logger,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )
