"""The measured sweep behind the time-budget presets (`+budget=cpu15`, ...): time-budgeted
pre-training runs of our `pretrain` stage on English Wikipedia from ../shared/data, each scored on
the same held-out set (pairs of <= 128 tokens, 15% masking, 20 predictions), then the winners
fine-tuned on GLUE next to the same architecture from random initialisation.

    benchmarks/pretraining_value.sh prepare                      # once: 16k vocabulary + shards
    python benchmarks/budget_sweep.py prepare --corpus books_wiki  # another corpus (then --corpus on each)
    python benchmarks/budget_sweep.py prepare --vocab 4000         # another vocabulary size (then --vocab on each)
    python benchmarks/budget_sweep.py pretrain --minutes 5         # every candidate, 5 min each
    python benchmarks/budget_sweep.py pretrain --minutes 15 --only preset:cpu15
    python benchmarks/budget_sweep.py finetune --minutes 15 --only preset:cpu15 --tasks rte mrpc stsb cola sst2
    python benchmarks/budget_sweep.py pretrain --minutes 60 --only preset:cpu60
    python benchmarks/budget_sweep.py finetune --minutes 60 --only preset:cpu60 --tasks rte mrpc stsb cola sst2
    python benchmarks/budget_sweep.py pretrain --minutes 5 --only preset:gpu5     # on a GPU
    python benchmarks/budget_sweep.py finetune --minutes 5 --only preset:gpu5 --tasks rte stsb
    python benchmarks/budget_sweep.py finetune --minutes 60 --only preset:cpu60 --seeds 42 13 7 --set finetune.lr=1e-3
    python benchmarks/budget_sweep.py pretrain --minutes 60 --only preset:cpu60 --replay "<another run's replay line>"
    python benchmarks/budget_sweep.py pretrain --minutes 60 --only preset:cpu60 --clock <its results line's clock>
    python benchmarks/budget_sweep.py report                      # the tables again, and each init at its best lr

Results are appended to benchmarks/results/budget_sweep.jsonl (one line per run, with the
machine line); each budgeted run's recorded clock (the fraction of the budget each step read) is
kept beside it in benchmarks/results/clocks/ and named in its line, so that `--clock` can replay
it exactly on another machine. Nothing else should run on the machine meanwhile: a budget is wall time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import (
    ROOT,
    append_jsonl,
    finetune_label,
    finetune_settings,
    machine_class,
    mean_sd,
    override_value,
    print_header,
    read_jsonl,
    run_stage,
)

RESULTS = ROOT / "benchmarks" / "results" / "budget_sweep.jsonl"
CLOCKS = RESULTS.parent / "clocks"
DEFAULT_CORPUS = "wikipedia_en"  # the sweep's; `--corpus books_wiki` adds Gutenberg books (BERT's mix)
DEFAULT_VOCAB = 16000  # the sweep's; `--vocab 4000` is the tokenizer's default


@dataclass(frozen=True)
class Data:
    corpus: str = DEFAULT_CORPUS
    vocab: int = DEFAULT_VOCAB

    @property
    def variant(self) -> str:
        """How this data differs from the sweep's (Wikipedia, 16k vocabulary); '' for the sweep's."""
        parts = [self.corpus] if self.corpus != DEFAULT_CORPUS else []
        if self.vocab != DEFAULT_VOCAB:  # exact, so that 4000 and 4500 never share shards
            parts.append(f"vocab{self.vocab // 1000}k" if self.vocab % 1000 == 0 else f"vocab{self.vocab}")
        return "-".join(parts)


def data(d: Data) -> list[str]:
    return [
        f"corpus={d.corpus}",
        f"tokenizer.vocab_size={d.vocab}",
        f"paths.prepared=outputs/real/{f'prepare_{d.variant}' if d.variant else 'prepare'}",
        # one held-out set for every candidate on a corpus (the time_to_quality run's on Wikipedia)
        "pretrain.val_settings={max_seq_length:128,max_predictions_per_seq:20,masked_lm_prob:0.15}",
        "pretrain.val_every_n_steps=100000",  # validate at the end only: the budget is for training
        "pretrain.checkpoint_every_n_steps=1000",
    ]


SEQ128 = ["pretrain.max_seq_length=128", "pretrain.max_predictions_per_seq=20"]
# 90% of the budget on pairs of <= 64 tokens, the rest at the base settings (<= 128)
SEQ64_FIRST = "pretrain.phases=[{fraction:0.9,max_seq_length:64,max_predictions_per_seq:10},{fraction:0.1}]"
CANDIDATES = {
    "mini-lr5e-4": ["model=mini", *SEQ128, "pretrain.lr=5e-4"],
    "mini-lr1e-3": ["model=mini", *SEQ128, "pretrain.lr=1e-3"],
    "mini-lr1e-3-mask30": [
        "model=mini",
        "pretrain.max_seq_length=128",
        "pretrain.masked_lm_prob=0.3",
        "pretrain.max_predictions_per_seq=40",
        "pretrain.lr=1e-3",
    ],
    "mini-lr1e-3-seq64": ["model=mini", *SEQ128, "pretrain.lr=1e-3", SEQ64_FIRST],
    "tiny-lr2e-3": ["model=tiny", *SEQ128, "pretrain.lr=2e-3"],
    "tiny-lr4e-3": ["model=tiny", *SEQ128, "pretrain.lr=4e-3"],
    "tiny-lr2e-3-seq64": ["model=tiny", *SEQ128, "pretrain.lr=2e-3", SEQ64_FIRST],
    "small-lr5e-4": ["model=small", *SEQ128, "pretrain.lr=5e-4"],
    # the CPU presets' recipe (at any budget) without dropout while pre-training (Cramming), and
    # with MLM alone on packed full sentences instead of MLM + NSP pairs (RoBERTa)
    "tiny-lr2e-3-seq64-dropout0": ["+budget=cpu15", "pretrain.dropout=0"],
    "tiny-lr2e-3-seq64-mlm": ["+budget=cpu15", "pretrain.objective=mlm"],
    # the CPU presets' recipe with the next size up, at BERT-Mini's best rate in the 5-minute sweep
    "mini-lr1e-3-seq64-preset": ["+budget=cpu15", "model=mini", "pretrain.lr=1e-3"],
    # the CPU presets' recipe at other batch sizes (peak rate scaled by the square root of the batch)
    "tiny-b16-lr1.5e-3-seq64": ["+budget=cpu15", "pretrain.batch_size=16", "pretrain.lr=1.5e-3"],
    "tiny-b64-lr3e-3-seq64": ["+budget=cpu15", "pretrain.batch_size=64", "pretrain.lr=3e-3"],
    "tiny-b128-lr4e-3-seq64": ["+budget=cpu15", "pretrain.batch_size=128", "pretrain.lr=4e-3"],
    # the CPU presets' recipe with an MLM decoder of its own instead of the word embeddings (Chung
    # et al., 2021: decoupled output embeddings transfer better; on our budgets they did not, docs/budget.md)
    "tiny-lr2e-3-seq64-untied": ["+budget=cpu15", "model.tie_word_embeddings=false"],
    # the CPU presets' recipe with 10x the weight decay: pre-trained word vectors end ~9x their initial
    # size, which is what SST-2 loses on after the hour (docs/budget.md); decay pulls every matrix back
    "tiny-lr2e-3-seq64-wd0.1": ["+budget=cpu15", "pretrain.weight_decay=0.1"],
}


def label(name: str, d: Data, replay: Sequence[str] = ()) -> str:
    """The run's name in the results: the candidate, with corpus and vocabulary when not the sweep's,
    and the step count of a replayed schedule (`--replay`: replayN; `--clock`: clockN)."""
    steps = override_value(replay, "pretrain.max_steps")
    clock = override_value(replay, "pretrain.budget_clock")
    tag = f"replay{steps}" if steps else clock and f"clock{len(np.load(clock, allow_pickle=False))}"
    suffix = "-".join(p for p in (d.variant, tag) if p)
    return f"{name}@{suffix}" if suffix else name


def keep_clock(model_dir: Path, name: str, minutes: float) -> str:
    """Copy a budgeted run's recorded clock into the results (named by its run and content, so runs
    of one recipe on several machines never collide); returns its path from the repository root."""
    src = model_dir / "budget_clock.npy"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:8]
    dst = CLOCKS / f"{name.replace(':', '-').replace('@', '-')}-{minutes:g}min-{digest}.npy"
    CLOCKS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst.relative_to(ROOT).as_posix()


def run_overrides(name: str, minutes: float, common: list[str], d: Data, replay: Sequence[str] = ()) -> list[str]:
    if name.startswith("preset:"):
        recipe = [f"+budget={name.split(':', 1)[1]}"]
    else:
        recipe = [*CANDIDATES[name], f"pretrain.budget_minutes={minutes:g}"]
    recipe += replay  # after the recipe: its step schedule replaces the budget, or its clock drives it
    out = f"outputs/real/budget/{label(name, d, replay).replace(':', '-').replace('@', '-')}-{minutes:g}min"
    paths = [
        f"paths.checkpoints={out}/ckpt",
        f"paths.pretrained={out}/model",
        f"paths.metrics={out}/metrics",
        f"paths.plots={out}/plots",
        f"paths.finetuned={out}/finetune",
        f"paths.evaluated={out}/eval",
    ]
    return [*data(d), *recipe, *paths, *common]


def _out(overrides: list[str], key: str) -> Path:
    return ROOT / override_value(overrides, f"paths.{key}")


def pretrain(name: str, minutes: float, machine: str, common: list[str], d: Data, replay: list[str]) -> None:
    over = run_overrides(name, minutes, common, d, replay)
    t0 = time.perf_counter()
    run_stage("pretrain", over)
    m = json.loads((_out(over, "metrics") / "pretrain.json").read_text())
    keep = ("mlm_accuracy", "unigram_accuracy", "nsp_accuracy", "mlm_loss", "steps", "tokens", "train_minutes")
    record = {
        "kind": "pretrain",
        "name": label(name, d, replay),
        "minutes": minutes,
        "stage_wall_minutes": (time.perf_counter() - t0) / 60,
    }
    followed = override_value(replay, "pretrain.budget_clock")
    if followed:  # an exact replay records the same clock it followed
        record["clock"] = Path(os.path.relpath(followed, ROOT)).as_posix()  # (no machine's absolute path)
    elif m.get("replay"):  # a budgeted run: keep its clock with the results
        record["clock"] = keep_clock(_out(over, "pretrained"), record["name"], minutes)
    append_jsonl(
        RESULTS, {**record, **{k: m[k] for k in keep if k in m}, "replay": m.get("replay"), "machine": machine}
    )


def finetune(
    name: str,
    minutes: float,
    tasks: list[str],
    seeds: list[int],
    machine: str,
    sets: list[str],
    common: list[str],
    d: Data,
    replay: list[str],
) -> None:
    over = run_overrides(name, minutes, common, d, replay)
    for task in tasks:
        for seed in seeds:
            extra = [f"task={task}", "task.random_init_control=true", f"seed={seed}", *sets]
            if task == "sst2":  # a slice: the full 67k sentences take an hour per model here
                extra.append("task.max_examples={train:8000}")
            for stage in ("finetune", "evaluate"):
                run_stage(stage, [*over, *extra])
            m = json.loads((_out(over, "metrics") / "eval" / f"{task}.json").read_text())
            append_jsonl(
                RESULTS,
                {
                    "kind": "finetune",
                    "name": label(name, d, replay),
                    "minutes": minutes,
                    "task": task,
                    "seed": seed,
                    "score": m["score"],
                    "random_init_score": m["random_init_score"],
                    **({"finetune_overrides": sets} if sets else {}),
                    **finetune_settings([*over, *extra]),
                    "machine": machine,
                },
            )


def report() -> None:
    # the same recipe on another machine class is another run (bf16 autocast vs fp32, other speed)
    rows = [{**r, "name": f"{r['name']} ({machine_class(r['machine'])})"} for r in read_jsonl(RESULTS)]
    print("| run | budget | held-out MLM acc | NSP acc | steps | tokens | train min |\n|---|---|---|---|---|---|---|")
    for r in (r for r in rows if r["kind"] == "pretrain"):
        print(
            f"| {r['name']} | {r['minutes']:g} min | {r['mlm_accuracy']:.3f} | {r.get('nsp_accuracy', float('nan')):.3f} "
            f"| {r['steps']:,} | {r['tokens'] / 1e6:.1f}M | {r['train_minutes']:.1f} |"
        )
    ft = [r for r in rows if r["kind"] == "finetune"]
    if ft:
        print("\n| run | task | seed | fine-tuning | pre-trained | random init |\n|---|---|---|---|---|---|")
        for r in ft:
            sets = finetune_label(r)
            print(
                f"| {r['name']} | {r['task']} | {r['seed']} | {sets} | {r['score']:.3f} | {r['random_init_score']:.3f} |"
            )
        search_summary(ft)


def search_summary(ft: list[dict]) -> None:
    """Mean ± sd over seeds per fine-tuning setting, then each init at its own best setting among those
    run on 3+ seeds: the per-task search on dev that the BERT paper does, for both sides."""
    groups: dict[tuple, dict[int, dict]] = {}
    for r in ft:  # a re-run of the same seed replaces the earlier one
        groups.setdefault((r["name"], r["task"], finetune_label(r)), {})[r["seed"]] = r

    print("\n| run | task | fine-tuning | seeds | pre-trained | random init |\n|---|---|---|---|---|---|")
    best: dict[tuple, dict[str, tuple]] = {}
    for (name, task, sets), by_seed in groups.items():
        rs = list(by_seed.values())
        (pm, pc), (rm, rc) = mean_sd([r["score"] for r in rs]), mean_sd([r["random_init_score"] for r in rs])
        print(f"| {name} | {task} | {sets} | {len(rs)} | {pc} | {rc} |")
        if len(rs) >= 3:
            b = best.setdefault((name, task), {})
            for side, m, c in (("pre", pm, pc), ("random", rm, rc)):
                if side not in b or m > b[side][0]:
                    b[side] = (m, c, sets)
    print("\n| run | task | pre-trained at its best setting | random init at its best setting |\n|---|---|---|---|")
    for (name, task), b in best.items():
        print(f"| {name} | {task} | {b['pre'][1]} ({b['pre'][2]}) | {b['random'][1]} ({b['random'][2]}) |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["prepare", "pretrain", "finetune", "report"])
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--only", nargs="*", help=f"candidates ({', '.join(CANDIDATES)}) or preset:<name>")
    ap.add_argument("--tasks", nargs="*", default=["rte", "mrpc", "stsb", "cola", "sst2"])
    ap.add_argument("--seeds", nargs="*", type=int, default=[42])
    ap.add_argument("--set", nargs="*", default=[], help="fine-tuning overrides, e.g. finetune.lr=3e-4")
    ap.add_argument("--corpus", default=DEFAULT_CORPUS, help="a conf/corpus profile, e.g. books_wiki")
    ap.add_argument("--vocab", type=int, default=DEFAULT_VOCAB, help="WordPiece vocabulary size")
    ap.add_argument("--set-all", nargs="*", default=[], help="overrides for every stage, e.g. paths.shared_data=DIR")
    ap.add_argument(
        "--replay",
        default="",
        help="a budgeted run's `replay` overrides (its results line, metrics/pretrain.json or model card): "
        "train its step count and schedule, e.g. another machine's run, under a name of its own",
    )
    ap.add_argument(
        "--clock",
        help="a budgeted run's recorded clock (its results line's `clock`, or its model's budget_clock.npy): "
        "replay that run exactly, step for step, under a name of its own",
    )
    args = ap.parse_args()
    replay = shlex.split(args.replay)
    if replay and override_value(replay, "pretrain.max_steps") is None:
        ap.error(f"--replay {args.replay!r}: needs pretrain.max_steps=N (a run's `replay` line)")
    if args.clock:
        if replay:
            ap.error("--clock and --replay: give one (the clock replays exactly, the line by steps alone)")
        replay = [f"pretrain.budget_clock={Path(args.clock).resolve()}"]
    if args.action == "report":
        return report()
    d = Data(args.corpus, args.vocab)
    if args.action == "prepare":  # the vocabulary and shards, once per corpus and vocabulary size
        logs = [f"paths.{k}=outputs/real/budget/prepare-{d.variant or d.corpus}/{k}" for k in ("metrics", "plots")]
        return run_stage("prepare", [*data(d), *logs, *args.set_all])
    machine = print_header(override_value(args.set_all, "trainer", "auto"))
    for name in args.only or list(CANDIDATES):
        if args.action == "pretrain":
            pretrain(name, args.minutes, machine, args.set_all, d, replay)
        else:
            finetune(name, args.minutes, args.tasks, args.seeds, machine, args.set, args.set_all, d, replay)
    report()


if __name__ == "__main__":
    main()
