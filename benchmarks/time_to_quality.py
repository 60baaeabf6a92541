"""Time to quality: held-out MLM accuracy of BERT-Mini pre-trained by our `pretrain` stage on
English Wikipedia (../shared/data), read off after 15 and 60 minutes of wall time on this machine.

One run with a schedule sized for about an hour (linear decay to 0 at `--steps`); validation every
`--val-every` steps. The times come from MLflow's metric timestamps, measured from the run's start
(model build, data and Lightning start-up included). Needs `benchmarks/pretraining_value.sh prepare`.

    python benchmarks/time_to_quality.py --steps 10000        # ~1 hour on 2 CPU cores
    python benchmarks/time_to_quality.py --report-only         # the table again, from MLflow
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import ROOT, print_header, run_stage

OUT = "outputs/real/ttq"


def overrides(steps: int, val_every: int) -> list[str]:
    return [
        "corpus=wikipedia_en",
        "tokenizer.vocab_size=16000",
        "model=mini",
        "pretrain.max_seq_length=128",
        "pretrain.max_predictions_per_seq=20",
        "pretrain.lr=5e-4",
        "pretrain.warmup_steps=200",
        f"pretrain.max_steps={steps}",
        f"pretrain.val_every_n_steps={val_every}",
        f"pretrain.checkpoint_every_n_steps={val_every}",
        "paths.prepared=outputs/real/prepare",
        f"paths.checkpoints={OUT}/ckpt",
        f"paths.pretrained={OUT}/model",
        f"paths.metrics={OUT}/metrics",
        f"paths.plots={OUT}/plots",
    ]


def report(minutes: list[float]) -> dict:
    import mlflow

    from bertforge.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    run_id = json.loads((ROOT / OUT / "model" / "run.json").read_text())["run_id"]
    client = mlflow.tracking.MlflowClient()
    start = client.get_run(run_id).info.start_time
    hist = {
        m: client.get_metric_history(run_id, m)
        for m in ("val/mlm_accuracy", "val/unigram_accuracy", "val/nsp_accuracy", "val/mlm_loss")
    }
    points = [
        {
            "minutes": (h.timestamp - start) / 60000,
            "step": h.step,
            "mlm_accuracy": h.value,
            "nsp_accuracy": next(x.value for x in hist["val/nsp_accuracy"] if x.step == h.step),
            "mlm_loss": next(x.value for x in hist["val/mlm_loss"] if x.step == h.step),
        }
        for h in sorted(hist["val/mlm_accuracy"], key=lambda x: x.step)
    ]
    print("| minutes | step | held-out MLM accuracy | MLM loss | NSP accuracy |\n|---|---|---|---|---|")
    for p in points:
        print(
            f"| {p['minutes']:.1f} | {p['step']} | {p['mlm_accuracy']:.3f} | {p['mlm_loss']:.3f} | {p['nsp_accuracy']:.3f} |"
        )
    unigram = hist["val/unigram_accuracy"][0].value
    result = {"unigram_accuracy": unigram, "points": points}
    for m in minutes:
        before = [p for p in points if p["minutes"] <= m]
        if before:
            result[f"at_{m:g}_min"] = before[-1]
            print(
                f"after {m:g} min: MLM accuracy {before[-1]['mlm_accuracy']:.3f} (step {before[-1]['step']}, "
                f"validated at {before[-1]['minutes']:.1f} min; unigram baseline {unigram:.3f})"
            )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--val-every", type=int, default=500)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/time_to_quality.json")
    args = ap.parse_args()
    print_header()
    if not args.report_only:
        run_stage("pretrain", overrides(args.steps, args.val_every))
    result = report([15, 30, 60])
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
