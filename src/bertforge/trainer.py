"""The Lightning Trainer from the speed-only `trainer` config group."""
from __future__ import annotations

import pytorch_lightning as pl
import torch


def build_trainer(tcfg, logger, **kwargs) -> pl.Trainer:
    if tcfg.get("num_threads"):
        torch.set_num_threads(int(tcfg.num_threads))
    return pl.Trainer(
        accelerator=tcfg.accelerator,
        devices=tcfg.devices,
        precision=tcfg.precision,
        logger=logger,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )
