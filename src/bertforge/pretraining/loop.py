"""The pre-training loop: prepared shards -> Lightning MLM + NSP training -> HF-format model directory,
with its config checks, time budget, periodic validation, checkpoints and curves."""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path

import numpy as np
from pytorch_lightning.callbacks import ModelCheckpoint

from bertforge.config import ConfigError, check_bert_dir, resolve_dir
from bertforge.data.masking import SpecialIds
from bertforge.data.pretraining_examples import check_example_config
from bertforge.data.shards import Shard
from bertforge.data.tokenization import load_tokenizer, save_tokenizer_dir
from bertforge.hardware import Placement, placement
from bertforge.pretraining.budget import TrainingClock, load_budget_clock
from bertforge.pretraining.datamodule import PretrainData, check_phases
from bertforge.pretraining.model import ARCH_KEYS, bert_config, build_pretraining_model
from bertforge.pretraining.module import TRAIN_KEYS, CurveWriter, PretrainModule, val_keys
from bertforge.pretraining.optim import check_optim_config
from bertforge.trainer import build_trainer


def tokens_seen(module, trainer) -> int:
    """Real tokens trained on, over all ranks (each counted its own batches)."""
    import torch

    n = torch.tensor(float(module.tokens_seen))
    return int(trainer.strategy.reduce(n, reduce_op="sum")) if trainer.world_size > 1 else int(n)


def most_frequent_token(shard: Shard, special: SpecialIds) -> int:
    counts = np.bincount(np.asarray(shard.tokens), minlength=special.vocab_size)
    counts[list(special.all_special)] = 0
    return int(counts.argmax())


def init_dir(pc) -> Path | None:
    """`pretrain.init`: the BERT directory continued pre-training starts from (a path or
    `pkg:PACKAGE/SUBDIR`), or None: from random initialisation."""
    return resolve_dir(str(pc.init), "pretrain.init") if pc.init else None


def init_config(pc, tokenizer):
    """The architecture of `pretrain.init` (its config.json), checked: a BERT with absolute
    positions whose vocabulary is the prepared corpus's, since token ids index its embedding rows."""
    from transformers import AutoConfig

    key = "pretrain.init"
    path = check_bert_dir(init_dir(pc), key)
    config = AutoConfig.from_pretrained(str(path))
    if (getattr(config, "position_embedding_type", None) or "absolute") != "absolute":
        raise ConfigError(f"{key}: {path} has {config.position_embedding_type} positions (BERT's are absolute)")
    if (path / "tokenizer.json").is_file() or (path / "vocab.txt").is_file():
        theirs = load_tokenizer(path).get_vocab()
        if theirs != tokenizer.get_vocab():
            raise ConfigError(
                f"{key}: its vocabulary ({len(theirs):,} tokens) is not the prepared corpus's "
                f"({len(tokenizer):,}); prepare the corpus with its tokenizer: tokenizer.pretrained={pc.init}"
            )
    elif len(tokenizer) > config.vocab_size:
        raise ConfigError(
            f"{key}: its {config.vocab_size:,} embedding rows cannot hold the prepared corpus's {len(tokenizer):,} tokens"
        )
    return config


def check_pretrain_config(cfg, prepared: Path):
    """Everything about the pre-training settings and their input that can be checked before any
    work (the stage calls it before creating a checkpoint directory or an MLflow run); returns
    the tokenizer, the model's BertConfig and the recorded budget clock a replay follows (or None).
    With `pretrain.init` the `model` group takes the init's architecture, so that every record of
    the run (MLflow params, run.json, the model card) describes the model trained."""
    pc = cfg.pretrain  # its ranges (lr > 0, ...) are the schema's, checked when the stage starts
    check_optim_config(pc, cfg.trainer.strategy)
    check_example_config(pc)
    check_phases(pc)
    if cfg.trainer.cuda_graphs and not cfg.trainer.unpad:
        raise ConfigError(
            "trainer.cuda_graphs=true needs trainer.unpad=true (fixed shapes are those of the unpadded step)"
        )
    recorded = load_budget_clock(pc)
    if not (prepared / "tokenizer").is_dir() or not (prepared / "shards" / "train").is_dir():
        raise ConfigError(
            f"paths.prepared: {prepared} holds no prepared corpus; run the prepare stage first (dvc repro prepare)"
        )
    tokenizer = load_tokenizer(prepared / "tokenizer")
    if pc.init:
        config = init_config(pc, tokenizer)
        for k in ARCH_KEYS:
            cfg.model[k] = getattr(config, k)
        spec = str(pc.init)  # the model's name in records: the package's, or the directory's
        cfg.model.name = spec[4:].split("/")[0] if spec.startswith("pkg:") else init_dir(pc).name
    else:
        config = bert_config(cfg.model, len(tokenizer), tokenizer.pad_token_id)
    for key, length in [
        ("pretrain.max_seq_length", pc.max_seq_length),
        *(
            (f"pretrain.phases[{i}].max_seq_length", p.get("max_seq_length", pc.max_seq_length))
            for i, p in enumerate(pc.phases or [])
        ),
        ("pretrain.val_settings.max_seq_length", (pc.val_settings or {}).get("max_seq_length", 0)),
    ]:
        if length > config.max_position_embeddings:
            raise ConfigError(f"{key}={length} exceeds model.max_position_embeddings={config.max_position_embeddings}")
    return tokenizer, config, recorded


def checkpoint_io(tcfg, place: Placement) -> list:
    """Lightning's AsyncCheckpointIO where `trainer.async_checkpoint` (null: on a GPU) asks for
    it: it snapshots the state on the training thread, then writes in the background; each file
    still appears whole (written aside, then renamed), so a kill leaves the previous last.ckpt."""
    on = tcfg.async_checkpoint
    if not (place.accelerator == "gpu" if on is None else on):
        return []
    from pytorch_lightning.plugins.io import AsyncCheckpointIO

    return [AsyncCheckpointIO()]


def pretrain(
    cfg,
    prepared: Path,
    out_dir: Path,
    ckpt_dir: Path,
    run,
    curves_out: Path,
    callbacks=(),
    place: Placement | None = None,
    clock=time.monotonic,
) -> dict:
    """Train and export to `out_dir`. Under data parallelism every rank calls this; ranks other
    than 0 pass `run=None` and a scratch `out_dir` (rank 0 alone tracks, checkpoints and exports).
    `clock`: the wall clock of the time budget (tests pass a fake one)."""
    place = place or placement(cfg.trainer)
    tokenizer, config, recorded = check_pretrain_config(cfg, prepared)
    special = SpecialIds.from_tokenizer(tokenizer)
    pc = cfg.pretrain
    import pytorch_lightning as pl

    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # reproducible initialisation
    fresh: list[str] = []
    model = build_pretraining_model(config, pc.dropout, init_dir(pc), fresh)
    if fresh:
        parts = {"cls.predictions": "MLM head", "cls.seq_relationship": "NSP head", "bert.pooler": "pooler"}
        new = [name for prefix, name in parts.items() if any(k.startswith(prefix) for k in fresh)]
        print(f"pretrain.init: not in {init_dir(pc)}, initialised as BERT does: {', '.join(new)}", flush=True)
    budget = pc.budget_minutes
    timer = TrainingClock(budget, pc.warmup_fraction, clock=clock, recorded=recorded)
    data = PretrainData(
        prepared / "shards",
        special,
        pc,
        cfg.seed,
        place.num_workers,
        pin_memory=place.accelerator == "gpu",
        clock=timer,
        fixed_shapes=bool(cfg.trainer.cuda_graphs),
    )
    module = PretrainModule(
        model,
        pc,
        pc.max_steps,
        most_frequent_token(data.train_shard, special),
        unpad=bool(cfg.trainer.unpad),
        compile=bool(cfg.trainer.compile),
        clock=timer,
        cuda_graphs=bool(cfg.trainer.cuda_graphs),
    )

    from bertforge.tracking import lightning_logger

    val_names = val_keys(module.pair_task)
    # the directory holds our state.json and curves on purpose (resume protocol), not stale checkpoints
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    # the data module hands Lightning the same training loader at every reload, so its workers and
    # pin-memory thread are never re-created (the open-file leak in pytorch#91252 needs new loaders)
    warnings.filterwarnings("ignore", message=r"The combination of `DataLoader\(`pin_memory=True`, `persistent_workers")
    # last.ckpt alone: a numbered copy beside it would double every save's cost
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir, every_n_train_steps=pc.checkpoint_every_n_steps, save_last=True, save_top_k=0
    )
    curves = CurveWriter(ckpt_dir / "curves", list(TRAIN_KEYS), val_names)
    trainer = build_trainer(
        cfg.trainer,
        lightning_logger(run) if run is not None else False,
        place,
        stage="pretrain",
        max_steps=-1 if budget is not None else pc.max_steps,  # a budget ends training itself
        max_epochs=-1,  # epochs are passes over the data; steps or the budget end training
        use_distributed_sampler=False,
        gradient_clip_val=pc.grad_clip,
        log_every_n_steps=pc.log_every_n_steps,
        val_check_interval=pc.val_every_n_steps,
        check_val_every_n_epoch=None,
        accumulate_grad_batches=int(pc.accumulate_grad_batches),
        reload_dataloaders_every_n_epochs=1,
        callbacks=[timer, checkpoint, curves, *callbacks],
        enable_checkpointing=True,
        plugins=checkpoint_io(cfg.trainer, place),
    )
    parameters = sum(p.numel() for p in model.parameters())  # whole weights: FSDP shards them from here
    last = ckpt_dir / "last.ckpt"
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if last.exists() else None, weights_only=True)
    if curves.last_valid_step == trainer.global_step:  # the loop has just validated these weights
        final = {k: trainer.callback_metrics[k] for k in val_names}
    else:
        final = trainer.validate(module, datamodule=data, verbose=False)[0]

    # the whole weights (every rank takes part: under FSDP the strategy gathers the shards on rank 0)
    state = trainer.strategy.lightning_module_state_dict()
    if trainer.is_global_zero:
        model.save_pretrained(str(out_dir), state_dict={k.removeprefix("model."): v for k, v in state.items()})
    save_tokenizer_dir(tokenizer, out_dir)
    if trainer.is_global_zero:
        curves_out.mkdir(parents=True, exist_ok=True)
        for name in ("train.csv", "valid.csv"):
            shutil.copyfile(ckpt_dir / "curves" / name, curves_out / name)
    metrics = {k.split("/", 1)[1]: float(v) for k, v in final.items()}
    metrics.update(
        steps=int(trainer.global_step),
        sequences=int(trainer.global_step) * pc.batch_size * int(pc.accumulate_grad_batches) * trainer.world_size,
        parameters=parameters,
        mlm_accuracy_over_unigram=metrics["mlm_accuracy"] - metrics["unigram_accuracy"],
        tokens=tokens_seen(module, trainer),
        train_minutes=timer.elapsed() / 60,
    )
    if budget is not None:
        timer.save_readings(out_dir)
        metrics.update(
            budget_minutes=float(budget),
            warmup_end_step=timer.warmup_end_step if timer.warmup_end_step is not None else metrics["steps"],
            replay=" ".join(timer.replay_overrides(metrics["steps"], pc.phases or [])),
        )
    return metrics
