"""`bertforge predict` against transformers' `pipeline("text-classification")` on one fine-tuned
directory and one list of examples: examples/s (median of `--repeats`, interleaved), and whether
the two give the same labels (and, in fp32, the same probabilities).

The examples are the `text_a` (and `text_b`) columns of a predictions TSV the evaluate stage
wrote, or a file of one example per line (a tab between a pair's texts). The pipeline runs as a
user calls it: one example at a time (its default), then in batches of `--batch-size`, in fp32,
each example cut at the length the model was fine-tuned at, as ours; ours in fp32 and in the
precision `auto` picks on this machine, batched by length (model loading included).

    python benchmarks/predict_vs_pipeline.py --model outputs/finetune/demo/model \
        --examples outputs/eval/demo/model_dev_predictions.tsv
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import time
from pathlib import Path

from common import print_header

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def read_examples(path: Path) -> list[str]:
    """Examples as `bertforge predict` reads them: a pair's two texts joined by a tab."""
    if path.suffix == ".tsv":
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if rows and "text_a" in rows[0]:
            return [r["text_a"] + (f"\t{r['text_b']}" if r.get("text_b") else "") for r in rows]
    return path.read_text(encoding="utf-8").splitlines()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="a fine-tuned directory (outputs/finetune/<task>/model)")
    p.add_argument("--examples", type=Path, required=True, help="an evaluate predictions TSV, or one example a line")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    import numpy as np
    import torch
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    from bertforge.data.tokenization import load_tokenizer
    from bertforge.hardware import place
    from bertforge.predict import predict

    hf_logging.disable_progress_bar()
    print_header()
    torch.set_num_threads(torch.get_num_threads())
    texts = read_examples(args.examples)
    auto = place("cpu", "auto")
    fp32 = place("cpu", "32-true")
    classify = pipeline("text-classification", model=str(args.model), tokenizer=load_tokenizer(args.model), top_k=None)
    inputs = [{"text": a, "text_pair": b} if b else a for a, _, b in (t.partition("\t") for t in texts)]
    regression = classify.model.num_labels == 1
    length = getattr(classify.model.config, "finetuning_max_length", None)  # as the finetune stage recorded it
    kw = {"truncation": True, "max_length": length or 128}  # cut as ours cuts: at the fine-tuning length
    kw |= {"function_to_apply": "none"} if regression else {}

    def stock(batch_size: int):
        out = classify(inputs, batch_size=batch_size, **kw)
        if regression:
            return np.array([o[0]["score"] for o in out])
        labels = [classify.model.config.id2label[i] for i in range(classify.model.num_labels)]
        return np.array([[{o["label"]: o["score"] for o in row}[k] for k in labels] for row in out])

    runs = {
        "pipeline, one at a time (fp32)": lambda: stock(1),
        f"pipeline, batches of {args.batch_size} (fp32)": lambda: stock(args.batch_size),
        f"bertforge predict (fp32, batches of {args.batch_size} by length)": lambda: (
            predict(args.model, texts, batch_size=args.batch_size, place=fp32).values
        ),
        f"bertforge predict ({auto.precision}, auto)": lambda: (
            predict(args.model, texts, batch_size=args.batch_size, place=auto).values
        ),
    }
    times = {name: [] for name in runs}
    values = {}
    for _ in range(args.repeats):  # interleaved: the machine's drift falls on every side alike
        for name, run in runs.items():
            start = time.perf_counter()
            values[name] = run()
            times[name].append(time.perf_counter() - start)
    reference = values[next(iter(runs))]
    base = statistics.median(times[next(iter(runs))])
    print(f"\n{len(texts)} examples, {args.model}; median of {args.repeats}\n")
    print("| | examples/s | × pipeline one at a time | same labels | max abs diff |")
    print("|---|---|---|---|---|")
    for name in runs:
        v, t = values[name], statistics.median(times[name])
        same = "—" if regression else f"{np.mean(v.argmax(1) == reference.argmax(1)):.4f}"
        print(f"| {name} | {len(texts) / t:,.0f} | {base / t:.2f} | {same} | {np.abs(v - reference).max():.2e} |")


if __name__ == "__main__":
    main()
