"""Which part of a pre-trained BERT helps or hurts a task: fine-tune it with one part put back to
random initialisation, next to the whole pre-trained model and the whole random one (budget_sweep.py
finetune gives those two). Parts:

    word-embeddings-fresh   the word-embedding matrix re-initialised; positions, token types,
                            the embedding LayerNorm, the encoder and the pooler pre-trained
    encoder-fresh           only the embeddings (words, positions, token types, LayerNorm)
                            pre-trained; the encoder layers and the pooler re-initialised
    word-embeddings-rescaled  every weight pre-trained, the word vectors scaled down to BERT's
                            initial standard deviation (directions kept: is it their size or
                            what they encode?)

    python benchmarks/init_ablation.py --model outputs/real/budget/preset-cpu60-60min/model \
        --tasks sst2 cola --seeds 42 13 7 --set +budget=cpu60

Re-initialised tensors come from transformers' own initialisation of the same config, seeded by the
fine-tuning seed. Results are appended to benchmarks/results/init_ablation.jsonl (with the machine line).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from common import (
    ROOT,
    append_jsonl,
    finetune_label,
    finetune_settings,
    machine_class,
    mean_sd,
    print_header,
    read_jsonl,
    run_stage,
)

RESULTS = ROOT / "benchmarks" / "results" / "init_ablation.jsonl"
WORDS = ("bert.embeddings.word_embeddings.",)
FRESH = {  # which weights a variant re-initialises, by name prefix
    "word-embeddings-fresh": WORDS,
    "encoder-fresh": ("bert.encoder.", "bert.pooler."),
}
RESCALED = {"word-embeddings-rescaled": WORDS}  # which weights a variant scales to initializer_range
PARTS = {**FRESH, **RESCALED}


def hybrid(model_dir: Path, variant: str, seed: int, out: Path) -> Path:
    """A copy of `model_dir` (weights, config, tokenizer) with the variant's weights re-initialised."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig, AutoModelForPreTraining

    weights = load_file(model_dir / "model.safetensors")
    config = AutoConfig.from_pretrained(model_dir)
    prefixes = PARTS[variant]
    replaced = [k for k in weights if k.startswith(prefixes)]
    if not replaced:
        raise SystemExit(f"{model_dir / 'model.safetensors'}: no weights under {prefixes}")
    if variant in RESCALED:
        for k in replaced:
            weights[k] = weights[k] * (config.initializer_range / weights[k].float().std().item())
    else:
        torch.manual_seed(seed)
        fresh = AutoModelForPreTraining.from_config(config).state_dict()
        for k in replaced:
            weights[k] = fresh[k].clone().contiguous()
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(model_dir, out, ignore=shutil.ignore_patterns("model.safetensors"))
    save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="a pre-trained BERT directory (our export)")
    ap.add_argument("--variants", nargs="*", default=list(PARTS), choices=list(PARTS))
    ap.add_argument("--tasks", nargs="*", default=["sst2", "cola"])
    ap.add_argument("--seeds", nargs="*", type=int, default=[42, 13, 7])
    ap.add_argument("--set", nargs="*", default=[], help="overrides for every stage, e.g. +budget=cpu60")
    args = ap.parse_args()
    model = (ROOT / args.model).resolve()
    if not (model / "model.safetensors").is_file():
        raise SystemExit(f"--model: {model} holds no model.safetensors")
    machine = print_header()
    work = ROOT / "outputs" / "real" / "init_ablation"
    for variant in args.variants:
        for task in args.tasks:
            for seed in args.seeds:
                init = hybrid(model, variant, seed, work / "models" / f"{variant}-{seed}")
                over = [
                    f"finetune.init={init}",
                    f"task={task}",
                    "task.random_init_control=false",
                    f"seed={seed}",
                    *(f"paths.{k}={work / k}" for k in ("finetuned", "evaluated", "metrics", "plots")),
                    *args.set,
                ]
                if task == "sst2":  # the same 8k slice as budget_sweep.py
                    over.append("task.max_examples={train:8000}")
                for stage in ("finetune", "evaluate"):
                    run_stage(stage, over)
                m = json.loads((work / "metrics" / "eval" / f"{task}.json").read_text())
                append_jsonl(
                    RESULTS,
                    {
                        "model": str(args.model),
                        "variant": variant,
                        "task": task,
                        "seed": seed,
                        "score": m["score"],
                        **finetune_settings(over),
                        "sets": args.set,
                        "machine": machine,
                    },
                )
    report()


def report() -> None:
    groups: dict[tuple, list[float]] = {}
    for r in read_jsonl(RESULTS):  # the same model path on another machine is another model
        key = (f"{r['model']} ({machine_class(r['machine'])})", r["variant"], r["task"], finetune_label(r))
        groups.setdefault(key, []).append(r["score"])
    print("| model | variant | task | fine-tuning | seeds | score |\n|---|---|---|---|---|---|")
    for (model, variant, task, sets), scores in groups.items():
        print(f"| {model} | {variant} | {task} | {sets} | {len(scores)} | {mean_sd(scores)[1]} |")


if __name__ == "__main__":
    main()
