"""The pause at each pre-training epoch's start: building the epoch's pairs (pure Python, seconds
for a large shard) in the training process, against taking the pairs a helper process built while
the previous epoch trained (what `PretrainData` does with loader workers, i.e. on a GPU).

Both sides give the same examples (tests/test_pretraining_examples.py checks it); the figure is
the time the training process spends before the epoch's first batch can be drawn. The helper is
given the time an epoch of training would give it before it is asked.

    benchmarks/pretraining_value.sh prepare          # once: English Wikipedia, 16k vocabulary
    python benchmarks/epoch_start.py --prepared outputs/real/prepare --epochs 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from common import print_header


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", type=Path, default=Path("outputs/real/prepare"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--set", nargs="*", default=[], help="pre-training overrides, e.g. pretrain.max_seq_length=128")
    args = ap.parse_args()
    print_header()
    from bertforge.config import compose
    from bertforge.data.masking import SpecialIds
    from bertforge.data.pretraining_examples import Pairs, PretrainingDataset
    from bertforge.data.shards import Shard
    from bertforge.data.tokenization import load_tokenizer
    from bertforge.pretraining.datamodule import PretrainData

    cfg = compose(args.set)
    special = SpecialIds.from_tokenizer(load_tokenizer(args.prepared / "tokenizer"))
    shard = Shard(args.prepared / "shards" / "train")
    here, ahead = [], []
    for epoch in range(1, args.epochs + 1):
        t = time.perf_counter()
        ds = PretrainingDataset(shard, special, cfg.pretrain, cfg.seed, epoch)
        here.append(time.perf_counter() - t)
    data = PretrainData(args.prepared / "shards", special, cfg.pretrain, cfg.seed, num_workers=1)
    try:
        data._epoch_directory(cfg.pretrain, 0)
        for epoch in range(1, args.epochs + 1):
            data._build_ahead(epoch, [cfg.pretrain])
            data._ahead[0][1].wait()  # the previous epoch trained at least this long
            t = time.perf_counter()
            # what `train_dataloader` does with loader workers: take the helper's files, map them
            ds = Pairs.load(data._epoch_directory(cfg.pretrain, epoch))
            ahead.append(time.perf_counter() - t)
    finally:
        data.teardown("fit")
    print(f"\n{len(ds):,} pairs per epoch; seconds before an epoch's first batch, median of {args.epochs} epochs\n")
    print("| pairs built in the training process | pairs built ahead by a helper process | ratio |\n|---|---|---|")
    h, a = statistics.median(here), statistics.median(ahead)
    print(f"| {h:.2f} | {a:.3f} | {h / a:.0f}x |")


if __name__ == "__main__":
    main()
