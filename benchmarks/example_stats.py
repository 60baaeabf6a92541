"""Statistics of the pre-training examples over >= 10k examples of a prepared real corpus, beside
what Google's reference `create_pretraining_data.py` specifies.

    python benchmarks/example_stats.py --prepared outputs/real/prepare --examples 20000
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from common import print_header


def binomial_sd(p: float, n: int) -> float:
    return float(np.sqrt(p * (1 - p) / max(n, 1)))


def main() -> None:
    from bertforge.config import compose
    from bertforge.data.masking import SpecialIds
    from bertforge.data.pretraining_examples import PretrainingDataset, create_instances
    from bertforge.data.shards import Shard
    from bertforge.data.tokenization import load_tokenizer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", required=True, help="a prepare output directory (tokenizer/ + shards/)")
    ap.add_argument("--examples", type=int, default=20000)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--max-predictions", type=int, default=20)
    ap.add_argument("--whole-word", action="store_true")
    ap.add_argument("--out", default=None, help="write the statistics as JSON here")
    args = ap.parse_args()
    print_header()

    prepared = Path(args.prepared)
    tok = load_tokenizer(prepared / "tokenizer")
    special = SpecialIds.from_tokenizer(tok)
    shard = Shard(prepared / "shards" / "train")
    pc = OmegaConf.merge(
        compose([]).pretrain,
        {
            "max_seq_length": args.max_seq_length,
            "short_seq_prob": 0.1,
            "max_predictions_per_seq": args.max_predictions,
            "whole_word_masking": args.whole_word,
        },
    )
    seed = 12345
    trace: list = []
    create_instances(shard, pc.max_seq_length, pc.short_seq_prob, random.Random(f"{seed}-0"), trace=trace)
    ds = PretrainingDataset(shard, special, pc, seed=seed, epoch=0)  # the same pairs as `trace` (same rng)
    n = min(args.examples, len(ds))
    if n < 10000:
        print(f"note: only {n} examples in one pass of this shard")
    specials = np.asarray(special.all_special)
    lengths, exact_count, masked, masked_special, mask_tok, random_tok, kept, pairs_random = [], 0, 0, 0, 0, 0, 0, 0
    predictions = []
    for i in range(n):
        x = ds[i]
        a, b, label = ds.instances[i]
        original = np.concatenate([[special.cls], a, [special.sep], b, [special.sep]])
        ids, labels = x["input_ids"], x["labels"]
        chosen = labels != -100
        candidates = int((~np.isin(original, specials)).sum())
        spec = min(pc.max_predictions_per_seq, max(1, int(round(len(original) * pc.masked_lm_prob))), candidates)
        exact_count += int(chosen.sum() == spec) if not args.whole_word else int(chosen.sum() <= spec)
        predictions.append(int(chosen.sum()))
        masked += int(chosen.sum())
        masked_special += int(np.isin(original[chosen], specials).sum())
        mask_tok += int((ids[chosen] == special.mask).sum())
        kept += int((ids[chosen] == original[chosen]).sum())
        random_tok += int(((ids[chosen] != special.mask) & (ids[chosen] != original[chosen])).sum())
        pairs_random += label
        lengths.append(len(original))
    lengths = np.asarray(lengths)
    targets = np.asarray([t for t, _ in trace[:n]])
    single = np.asarray([c == 1 for _, c in trace[:n]])
    max_tokens = pc.max_seq_length - 3
    f_single = single.mean()
    expected_random = f_single + (1 - f_single) / 2
    rows = [
        ("examples", n, ">= 10,000"),
        (
            "masked positions = min(max_pred, max(1, round(0.15 x len)))",
            f"{exact_count / n:.4f}",
            "1 (every example)" if not args.whole_word else "<= that count (whole words)",
        ),
        ("mean masked positions per example", f"{np.mean(predictions):.2f}", f"cap {pc.max_predictions_per_seq}"),
        (
            "masked share of all positions",
            f"{masked / lengths.sum():.4f}",
            "0.15 (of all positions incl. [CLS]/[SEP], capped)",
        ),
        ("masked -> [MASK]", f"{mask_tok / masked:.4f} ± {binomial_sd(0.8, masked):.4f}", "0.80"),
        ("masked -> random token", f"{random_tok / masked:.4f} ± {binomial_sd(0.1, masked):.4f}", "0.10"),
        (
            "masked -> unchanged",
            f"{kept / masked:.4f} ± {binomial_sd(0.1, masked):.4f}",
            "0.10 (+ random draws equal to the original)",
        ),
        ("special tokens masked", masked_special, "0"),
        (
            "B is random (NSP label 1)",
            f"{pairs_random / n:.4f}",
            f"{expected_random:.4f} = single-sentence chunks {f_single:.4f} + half of the rest",
        ),
        (
            "pairs from short-target documents",
            f"{np.mean(targets < max_tokens):.4f}",
            "short_seq_prob=0.1 of documents (more pairs each, so a larger share of pairs)",
        ),
        (
            "sequence length: mean / median",
            f"{lengths.mean():.1f} / {np.median(lengths):.0f}",
            f"<= {pc.max_seq_length}",
        ),
        (
            "sequence length: share at the maximum",
            f"{np.mean(lengths == pc.max_seq_length):.4f}",
            "most pairs fill the target",
        ),
        ("sequence length: share < 64", f"{np.mean(lengths < 64):.4f}", "short targets and document tails"),
        ("longest sequence", int(lengths.max()), f"<= {pc.max_seq_length}"),
    ]
    hist, edges = np.histogram(lengths, bins=[0, 16, 32, 64, 96, 127, 128, 129])
    print(
        f"\nExample statistics ({prepared}, max_seq_length {pc.max_seq_length}, max_predictions {pc.max_predictions_per_seq}"
        f"{', whole-word masking' if args.whole_word else ''}):\n"
    )
    print("| statistic | observed | reference specifies |\n|---|---|---|")
    for name, obs, ref in rows:
        print(f"| {name} | {obs} | {ref} |")
    print("\nlength histogram:", {f"{int(lo)}-{int(hi) - 1}": int(c) for lo, hi, c in zip(edges, edges[1:], hist)})
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": [list(map(str, r)) for r in rows]}, indent=1))


if __name__ == "__main__":
    main()
