"""The `finetune` stage: a task head on a BERT encoder -> HF-format classifier directory."""

from __future__ import annotations

import math
from pathlib import Path

import pytorch_lightning as pl

from bertforge.config import ConfigError, finetune_settings
from bertforge.data.tokenization import load_tokenizer, save_tokenizer_dir
from bertforge.finetuning.bi_encoder import (
    check_bi_encoder_task,
    encode_pairs,
    load_bi_encoder,
    pair_loader,
    save_sentence_model,
    top_score,
)
from bertforge.finetuning.metrics import task_metrics
from bertforge.finetuning.module import FinetuneModule, encode, load_classifier, make_loader, training_loss
from bertforge.finetuning.tasks import load_task
from bertforge.hardware import Placement, placement
from bertforge.trainer import build_trainer


def check_tokenizer_matches(tokenizer, model, where: Path) -> None:
    n, m = len(tokenizer), model.config.vocab_size
    if n > m:
        raise ConfigError(f"{where}: tokenizer has {n} tokens but the model's vocab_size is {m}")


def finetune_one(
    cfg, init: Path, random_init: bool, out_dir: Path, logger, place: Placement | None = None, data=None
) -> dict:
    """Train on the task's train split, keep the best dev epoch, save model + tokenizer to `out_dir`."""
    task, fc = cfg.task, finetune_settings(cfg)
    place = place or placement(cfg.trainer)
    data = data if data is not None else load_task(task)
    tokenizer = load_tokenizer(init)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    regression = data.labels is None
    bi_encoder = fc.objective == "bi_encoder"
    unpad = bool(cfg.trainer.unpad)  # the training step computes on real tokens only
    if bi_encoder:  # a sentence model: the pair's texts encoded apart, their cosine trained
        check_bi_encoder_task(fc, str(task.name), data)
        model = load_bi_encoder(init, fc.pooling, top_score(data), random_init, fc.reinit_word_embeddings)
        items = {s: encode_pairs(tokenizer, data.splits[s], fc.max_seq_length) for s in ("train", "dev")}
        train = pair_loader(
            tokenizer,
            items["train"],
            fc.batch_size,
            True,
            cfg.seed,
            fc.group_by_length,
            unpad,
            place.accelerator == "gpu",
        )
        dev = pair_loader(tokenizer, items["dev"], 128, False, cfg.seed)
    else:
        model = load_classifier(init, data.num_labels, data.labels, random_init, fc.reinit_word_embeddings)
        train = make_loader(
            tokenizer,
            encode(tokenizer, data.splits["train"], data, fc.max_seq_length),
            fc.batch_size,
            True,
            cfg.seed,
            group_by_length=fc.group_by_length,
            pin_memory=place.accelerator == "gpu",  # page-locked: the copy to the GPU does not block the host
            unpad=unpad,
        )
        dev = make_loader(
            tokenizer, encode(tokenizer, data.splits["dev"], data, fc.max_seq_length), 128, False, cfg.seed
        )
    check_tokenizer_matches(tokenizer, model, init)
    total = math.ceil(len(train.dataset) / fc.batch_size) * fc.epochs
    module = FinetuneModule(model, fc, task, regression, total, type(model).loss if bi_encoder else training_loss)
    callbacks = []
    if fc.early_stopping_patience:  # stop when the dev score has not improved for N epochs
        callbacks.append(pl.callbacks.EarlyStopping("dev/score", mode="max", patience=int(fc.early_stopping_patience)))
    trainer = build_trainer(
        cfg.trainer,
        logger,
        place,
        stage="finetune",
        max_epochs=fc.epochs,
        enable_checkpointing=False,
        log_every_n_steps=max(1, min(10, total // 4)),
        callbacks=callbacks,
    )
    trainer.fit(module, train_dataloaders=train, val_dataloaders=dev)
    best = module.best_model()
    # how `bertforge predict` reads new text: as this task's (HF's `finetuning_task`; ours beside it)
    best.config.finetuning_task, best.config.text_pairs = str(task.name), data.pairs
    best.config.finetuning_max_length = int(fc.max_seq_length)
    # and how `predict --gold` scores it: as the evaluate stage scores this task
    best.config.finetuning_metrics = {
        "metrics": task_metrics(task),
        "score_metrics": list(task.score_metrics or []),
        "binary_threshold": float(task.binary_threshold),
    }
    if bi_encoder:
        save_sentence_model(best, out_dir, fc.max_seq_length)
    else:
        best.save_pretrained(str(out_dir))
    save_tokenizer_dir(tokenizer, out_dir)
    return {
        "best_dev": module.best_metrics,
        "history": module.history,
        "train_examples": len(train.dataset),
        "dev_examples": len(dev.dataset),
        "init": str(init),
        "random_init": random_init,
        "text_pairs": data.pairs,
        "objective": str(fc.objective),
        **({"similarity_scale": model.scale} if bi_encoder else {}),
    }
