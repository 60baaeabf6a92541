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


def process_rank() -> int:
    """This process's global rank, from the launcher's environment (torchrun, SLURM, or Lightning's
    own launcher, which starts ranks >= 1 with LOCAL_RANK/NODE_RANK set); 0 when not distributed."""
    from lightning_fabric.utilities.rank_zero import _get_rank

    return _get_rank() or 0


def one_device(tcfg):
    """The `trainer` settings on one device: fine-tuning (minutes on one GPU, or on a CPU) runs as one
    process, whose length-grouped batches, dev predictions and outputs are its own; a multi-device
    group (ddp, ddp_cpu, fsdp, multinode), shared by the pipeline's stages, is for pre-training."""
    if str(tcfg.devices) == "1" and int(tcfg.num_nodes) == 1 and str(tcfg.strategy) == "auto":
        return tcfg
    from omegaconf import OmegaConf

    print(
        f"trainer: devices={tcfg.devices}, num_nodes={tcfg.num_nodes}, strategy={tcfg.strategy} are for "
        "pre-training; this stage runs on one device",
        flush=True,
    )
    single = OmegaConf.merge(tcfg, {"devices": 1, "num_nodes": 1, "strategy": "auto"})
    OmegaConf.set_readonly(single, OmegaConf.is_readonly(tcfg))
    return single


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
