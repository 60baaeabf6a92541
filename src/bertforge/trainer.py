"""The Lightning Trainer from the speed-only `trainer` config group."""
from __future__ import annotations

import pytorch_lightning as pl
import torch

from .config import ConfigError

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")


def check_trainer_config(tcfg) -> None:
    """Impossible hardware settings fail before any work, naming the key."""
    if tcfg.precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision: {tcfg.precision!r} is not one of {', '.join(PRECISIONS)}")
    if tcfg.precision == "16-mixed" and tcfg.accelerator == "cpu":
        raise ConfigError("trainer.precision=16-mixed needs a GPU (fp16 loss scaling); on CPU use bf16-mixed or 32-true")
    if tcfg.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={tcfg.accelerator} but no CUDA GPU is visible; use trainer=cpu")


def build_trainer(tcfg, logger, **kwargs) -> pl.Trainer:
    check_trainer_config(tcfg)
    if tcfg.get("num_threads"):
        torch.set_num_threads(int(tcfg.num_threads))
    return pl.Trainer(
        accelerator=tcfg.accelerator,
        devices=tcfg.devices,
        num_nodes=int(tcfg.get("num_nodes", 1)),
        strategy=tcfg.get("strategy", "auto"),
        precision=tcfg.precision,
        logger=logger,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )
