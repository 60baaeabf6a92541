"""Same-token loss curves: our `pretrain` stage against the stock Hugging Face recipe, so that the
speed is seen not to come from learning less.

Both train BERT-Mini from the same initial weights on the *same pairs in the same batch order*
(epoch 0 of our stage, batch 32 x <= 128 tokens, English Wikipedia shards), with the same AdamW,
warmup and linear decay and gradient clipping. They differ as the recipes do: the stock one
masks with `DataCollatorForLanguageModeling`, computes the MLM head at every position, in fp32;
ours masks with the reference algorithm, gathers masked positions first, in the precision
`trainer.precision=auto` picks here (bf16 autocast on bf16 CPUs, fp32 elsewhere),
inside Lightning. Every `--val-every` steps both are scored by the same function on the same
held-out examples (our fixed validation masks): MLM loss and accuracy.

    python benchmarks/loss_curves.py --prepared outputs/real/prepare --steps 500 --val-every 100
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

from common import print_header, stage_runner


def overrides(args) -> list[str]:
    return [
        "model=mini",
        "pretrain.max_seq_length=128",
        "pretrain.max_predictions_per_seq=20",
        "pretrain.lr=5e-4",
        f"pretrain.warmup_steps={args.warmup}",
        f"pretrain.max_steps={args.steps}",
        f"pretrain.val_every_n_steps={args.val_every}",
        f"pretrain.val_max_examples={args.val_examples}",
        f"paths.prepared={args.prepared}",
    ]


def evaluate(model, batches) -> tuple[float, float]:
    """Held-out MLM loss and accuracy, as our module's validation computes them."""
    import torch
    import torch.nn.functional as F

    from bertforge.pretraining.model import sparse_pretraining_forward

    model.eval()
    loss = correct = n = 0
    with torch.no_grad():
        for batch in batches:
            out = sparse_pretraining_forward(model, batch)
            loss += F.cross_entropy(out.mlm_logits.float(), out.mlm_labels, reduction="sum").item()
            correct += int((out.mlm_logits.argmax(-1) == out.mlm_labels).sum())
            n += out.mlm_labels.numel()
    model.train()
    return loss / n, correct / n


def run_stock(args, cfg) -> list[dict]:
    import torch
    from transformers import DataCollatorForLanguageModeling

    from bertforge.data.masking import SpecialIds
    from bertforge.data.pretraining_examples import PretrainingDataset, collate
    from bertforge.data.shards import Shard
    from bertforge.data.tokenization import load_tokenizer
    from bertforge.pretraining.datamodule import VALID_EPOCH, EpochBatches
    from bertforge.pretraining.model import bert_config, build_pretraining_model
    from bertforge.pretraining.optim import param_groups, warmup_decay

    prepared, p = Path(args.prepared), cfg.pretrain
    tok = load_tokenizer(prepared / "tokenizer")
    special = SpecialIds.from_tokenizer(tok)
    train = PretrainingDataset(Shard(prepared / "shards" / "train"), special, p, cfg.seed, 0)
    valid = PretrainingDataset(
        Shard(prepared / "shards" / "valid"), special, p, cfg.seed, VALID_EPOCH, p.val_max_examples
    )
    val_batches = [
        collate([valid[i] for i in b], special.pad) for b in EpochBatches(len(valid), p.batch_size, 0, False, False)
    ]
    order = EpochBatches(
        len(train), p.batch_size, cfg.seed * 1000, shuffle=True, drop_last=True
    ).batches  # our stage's epoch 0
    import pytorch_lightning as pl

    pl.seed_everything(cfg.seed, verbose=False)  # the initial weights our stage starts from
    model = build_pretraining_model(bert_config(cfg.model, len(tok), tok.pad_token_id)).float()
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=p.masked_lm_prob)
    opt = torch.optim.AdamW(param_groups(model, p.weight_decay), lr=p.lr, betas=tuple(p.adam_betas), eps=p.adam_eps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_decay(p.warmup_steps, p.max_steps))
    rows, t0, tokens = [], time.perf_counter(), 0
    for step, rows_idx in enumerate(order[: p.max_steps], start=1):
        features = []
        for a, b, label in (train.instances[i] for i in rows_idx):
            features.append(
                {
                    "input_ids": [special.cls, *a.tolist(), special.sep, *b.tolist(), special.sep],
                    "token_type_ids": [0] * (len(a) + 2) + [1] * (len(b) + 1),
                    "next_sentence_label": int(label),
                }
            )
        tokens += sum(len(f["input_ids"]) for f in features)
        loss = model(**collator(features)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % p.val_every_n_steps == 0:
            val_loss, val_acc = evaluate(model, val_batches)
            rows.append(
                {
                    "step": step,
                    "tokens": tokens,
                    "val_mlm_loss": val_loss,
                    "val_mlm_accuracy": val_acc,
                    "seconds": time.perf_counter() - t0,
                }
            )
            print(
                f"stock step {step}: val MLM loss {val_loss:.3f} accuracy {val_acc:.3f} ({rows[-1]['seconds']:.0f}s)",
                flush=True,
            )
    return rows


def run_ours(args, tmp: Path) -> tuple[list[dict], float]:
    from bertforge.config import compose

    cfg = compose(
        overrides(args)
        + [
            f"paths.pretrained={tmp / 'pre'}",
            f"paths.checkpoints={tmp / 'ckpt'}",
            f"paths.metrics={tmp / 'metrics'}",
            f"paths.plots={tmp / 'plots'}",
        ]
    )
    t0 = time.perf_counter()
    stage_runner("pretrain")(cfg)
    wall = time.perf_counter() - t0
    rows = [
        {
            "step": int(r["step"]),
            "val_mlm_loss": float(r["val/mlm_loss"]),
            "val_mlm_accuracy": float(r["val/mlm_accuracy"]),
        }
        for r in csv.DictReader(open(tmp / "plots" / "pretrain" / "valid.csv"))
    ]
    return [r for r in rows if r["step"] % args.val_every == 0], wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", default="outputs/real/prepare")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--val-every", type=int, default=100)
    ap.add_argument("--val-examples", type=int, default=1024)
    ap.add_argument("--out", default="benchmarks/results/loss_curves.json")
    args = ap.parse_args()
    print_header()
    import os

    from bertforge.config import compose

    os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    with tempfile.TemporaryDirectory() as tmp:
        ours, ours_wall = run_ours(args, Path(tmp))
    t0 = time.perf_counter()
    stock = run_stock(args, compose(overrides(args)))
    stock_wall = time.perf_counter() - t0
    print(
        f"\nSame pairs, same order, same schedule; BERT-Mini, batch 32 x <= 128 tokens "
        f"(ours {ours_wall:.0f} s, stock {stock_wall:.0f} s for {args.steps} steps):\n"
    )
    print(
        "| step | tokens seen (both) | ours: held-out MLM loss / accuracy | stock: held-out MLM loss / accuracy |\n"
        "|---|---|---|---|"
    )
    for o, s in zip(ours, stock):
        print(
            f"| {o['step']} | {s['tokens'] / 1e6:.2f}M | {o['val_mlm_loss']:.3f} / {o['val_mlm_accuracy']:.3f} | "
            f"{s['val_mlm_loss']:.3f} / {s['val_mlm_accuracy']:.3f} |"
        )
    Path(args.out).write_text(
        json.dumps(
            {"args": vars(args), "ours": ours, "ours_wall_s": ours_wall, "stock": stock, "stock_wall_s": stock_wall},
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
