"""Fine-tuning step rate: our `finetune` stage against a bare PyTorch loop on the same batches.

Both train the same classifier (a BERT of `--size` with the prepared tokenizer and random
weights) on the same task's training batches (the stage's own loader: length-grouped, padded
per batch), in the precision `trainer.precision=auto` picks, with fused AdamW and the same
learning-rate schedule shape, and the same training forward (`trainer.unpad`: real tokens only,
the default; `--set trainer.unpad=false`: transformers' padded forward), so that only the loop
around the step differs. The bare loop holds the batches on the device ahead of time and
does only forward, backward and the optimizer step, timed on its second pass over them (the
first loads each batch shape's GPU kernels, which the stage then finds loaded); the stage is `finetune_one` itself
(Lightning, its loader, logging, the non-finite check), timed from its own train-batch starts, so
setup and validation are left out. Both are timed with a device sync every `--window` steps;
the figure is the median steps/s over those windows after `--warmup` steps.

    python benchmarks/finetune_steps.py --prepared outputs/prepare --task rte --size small --device cuda
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import DEVICES, print_header

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def window_rates(stamps: list[float | None], window: int) -> list[float]:
    """Steps/s between consecutive stamps `window` steps apart; None ends a run of stamps (an epoch)."""
    return [window / (b - a) for a, b in zip(stamps, stamps[1:]) if a is not None and b is not None]


def random_init_dir(cfg, prepared: Path, out: Path) -> Path:
    """A BERT directory of cfg.model's size with random weights and the prepared tokenizer."""
    import torch
    from transformers import BertForPreTraining

    from bertforge.data.tokenization import load_tokenizer, save_tokenizer_dir
    from bertforge.pretraining.model import bert_config

    tok = load_tokenizer(prepared / "tokenizer")
    torch.manual_seed(cfg.seed)
    BertForPreTraining(bert_config(cfg.model, len(tok), tok.pad_token_id)).save_pretrained(str(out))
    save_tokenizer_dir(tok, out)
    return out


def bare_loop(args, cfg, init: Path, place) -> list[float]:
    import pytorch_lightning as pl

    from bertforge.config import finetune_settings
    from bertforge.data.tokenization import load_tokenizer
    from bertforge.finetuning.module import encode, load_classifier, make_loader, training_loss
    from bertforge.finetuning.tasks import load_task
    from bertforge.pretraining.optim import optimizer_with_schedule

    fc, data, tok = finetune_settings(cfg), load_task(cfg.task), load_tokenizer(init)
    pl.seed_everything(cfg.seed, verbose=False)
    model = load_classifier(init, data.num_labels, data.labels, False).to(place.device)
    items = encode(tok, data.splits["train"], data, fc.max_seq_length)
    # the stage's own batches and training forward, so that only the loop around the step differs
    loader = make_loader(tok, items, fc.batch_size, True, cfg.seed, True, unpad=bool(cfg.trainer.unpad))
    batches = [{k: v.to(place.device) for k, v in b.items()} for _ in range(fc.epochs) for b in loader]
    o = optimizer_with_schedule(
        model, fc.lr, fc.weight_decay, (0.9, 0.999), 1e-6, int(fc.warmup_ratio * len(batches)), 2 * len(batches)
    )
    opt, sched = o["optimizer"], o["lr_scheduler"]["scheduler"]
    stamps = []
    # one untimed pass first: every batch shape meets its kernels once (loaded lazily on a GPU),
    # as the stage, which runs after this loop in the same process, meets them warm
    for timed in (False, True):
        for i, batch in enumerate(batches):
            if timed and i >= args.warmup and (i - args.warmup) % args.window == 0:
                sync(place.device)
                stamps.append(time.perf_counter())
            with place.autocast():
                loss = training_loss(model, batch)
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
    return window_rates(stamps, args.window)


def stage(args, cfg, init: Path, place, out: Path) -> list[float]:
    """`finetune_one` with a callback that stamps every `window`-th train batch start."""
    import pytorch_lightning as pl

    import bertforge.finetuning.loop as ft

    stamps = []

    class Stamp(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            i = trainer.global_step
            if i >= args.warmup and (i - args.warmup) % args.window == 0:
                sync(place.device)
                stamps.append(time.perf_counter())

        def on_train_epoch_end(self, trainer, module):  # an epoch's last window ends here, not at validation
            stamps.append(None)

    build = ft.build_trainer
    ft.build_trainer = lambda *a, callbacks=(), **kw: build(*a, callbacks=[*callbacks, Stamp()], **kw)
    try:
        ft.finetune_one(cfg, init, False, out, False, place)
    finally:
        ft.build_trainer = build
    return window_rates(stamps, args.window)  # within an epoch only: the next one starts after a validation


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", default="outputs/prepare", help="a prepare stage output (its tokenizer)")
    ap.add_argument("--task", default="rte")
    ap.add_argument("--size", default="small")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--device", choices=list(DEVICES), default="auto", help="auto: the GPU if one is visible")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more overrides (both sides)")
    args = ap.parse_args()
    from bertforge.config import compose
    from bertforge.hardware import placement

    trainer = DEVICES[args.device]
    print_header(trainer)
    with tempfile.TemporaryDirectory() as d:
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(d) / 'mlflow.db'}")
        cfg = compose(
            [
                f"task={args.task}",
                f"model={args.size}",
                f"trainer={trainer}",
                f"finetune.batch_size={args.batch_size}",
                f"finetune.epochs={args.epochs}",
                *args.set,
            ]
        )
        place = placement(cfg.trainer)
        init = random_init_dir(cfg, Path(args.prepared), Path(d) / "init")
        bare = bare_loop(args, cfg, init, place)
        ours = stage(args, cfg, init, place, Path(d) / "ft")
    b, s = statistics.median(bare), statistics.median(ours)
    print(
        f"\n{args.task}, BERT-{args.size.capitalize()}, batch {args.batch_size}, {place.precision}, median steps/s over "
        f"{args.window}-step windows after {args.warmup} warm-up steps ({len(bare)} and {len(ours)} windows)\n"
    )
    print("| task | model | bare PyTorch loop | our finetune stage | stage / bare |")
    print("|---|---|---|---|---|")
    print(f"| {args.task} | {args.size} | {b:.2f} | {s:.2f} | {s / b:.0%} |")


if __name__ == "__main__":
    main()
