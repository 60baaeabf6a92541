"""Does the input pipeline keep up: the `pretrain` stage's own throughput windows
(`train/tokens_per_s`, one per `pretrain.log_every_n_steps` steps, measured inside the training
step) over a run long enough to cross several epoch starts, where each epoch's fresh pairs and
masks are built. Prints the median, the slowest window over the median and every window under
80% of it, marking the windows in which an epoch started (issue 11's goal: none under 80%).

    python benchmarks/loader_windows.py --device cuda --prepared outputs/real/prepare \\
        --set model=mini pretrain.batch_size=256 pretrain.max_seq_length=128 pretrain.max_steps=2500
    python benchmarks/loader_windows.py --read sqlite:///mlflow.db --from-step 100   # the latest
        # pretrain run already in that store (e.g. a `+budget=gpu5` run), nothing trained

Windows are as long as `--window` steps (default 50); those before `--from-step` (default 100:
compilation, lazy kernel loading) are left out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from common import DEVICES, latest_run_history, print_header, stage_runner

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")


def train(args, tmp: Path) -> None:
    from bertforge.config import compose

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg = compose(
        [
            f"trainer={DEVICES[args.device]}",
            f"paths.prepared={Path(args.prepared).resolve()}",
            *args.set,
            f"pretrain.log_every_n_steps={args.window}",
            f"pretrain.val_every_n_steps={10**7}",
            f"pretrain.checkpoint_every_n_steps={10**7}",
            f"paths.pretrained={tmp / 'pre'}",
            f"paths.checkpoints={tmp / 'ckpt'}",
            f"paths.metrics={tmp / 'metrics'}",
            f"paths.plots={tmp / 'plots'}",
        ]
    )
    stage_runner("pretrain")(cfg)


METRICS = ["train/tokens_per_s", "epoch"]


def report(history: dict[str, list[tuple[int, float]]], args) -> None:
    """Print the windows' summary."""
    epochs = dict(history.get("epoch", []))
    rates = [(s, v) for s, v in history["train/tokens_per_s"] if args.from_step <= s <= args.to_step]
    if len(rates) < 3:
        raise SystemExit(f"only {len(rates)} throughput windows between steps {args.from_step} and {args.to_step}")
    median = statistics.median(v for _, v in rates)
    worst = min(v for _, v in rates) / median
    print(
        f"{len(rates)} windows, steps {rates[0][0]}-{rates[-1][0]}: median {median:,.0f} real tokens/s, "
        f"slowest {worst:.0%} of the median, {sum(v < 0.8 * median for _, v in rates)} under 80%"
    )
    prev = None
    for s, v in rates:
        started = prev is not None and epochs.get(s) is not None and epochs.get(s) != epochs.get(prev)
        if v < 0.8 * median or started:
            print(f"  step {s}: {v:,.0f} tokens/s ({v / median:.0%}){', an epoch started' if started else ''}")
        prev = s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=list(DEVICES), default="auto")
    ap.add_argument("--prepared", default="outputs/prepare", help="a prepare stage output (tokenizer + shards)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for the stage")
    ap.add_argument("--window", type=int, default=50, help="steps per throughput window")
    ap.add_argument("--read", metavar="TRACKING_URI", help="read the latest pretrain run there instead of training")
    ap.add_argument("--from-step", type=int, default=100, help="first window counted (after warm-up)")
    ap.add_argument("--to-step", type=int, default=10**12, help="last window counted (e.g. before a phase switch)")
    args = ap.parse_args()
    if args.read:
        return report(latest_run_history(args.read, METRICS), args)
    print_header(DEVICES[args.device])
    with tempfile.TemporaryDirectory() as d:
        train(args, Path(d))
        report(latest_run_history(os.environ["MLFLOW_TRACKING_URI"], METRICS), args)


if __name__ == "__main__":
    main()
