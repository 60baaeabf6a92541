"""Pre-training throughput: the stock Hugging Face recipe against our model step and our whole stage.

Side by side in one process, on the same prepared shards, model size and batch shape:

- stock: `BertForPreTraining` with labels (MLM head over every position), fp32, masking by
  `DataCollatorForLanguageModeling` (15%, 80/10/10), a plain AdamW loop; on machines where
  `auto` picks bf16, also the same recipe under bf16 autocast (what `Trainer --bf16` does);
- bare step, padded: our forward (MLM head only at masked positions) through HF's BertModel
  layers on the padded batch;
- bare step, unpadded: the same maths on real tokens only, with our CPU dropout (what the stage
  runs by default); both bare steps use fused AdamW and the precision `trainer.precision=auto`
  picks here, on batches built ahead of time (no data loading, no Lightning);
- stage: `pipelines/pretrain.py` itself (data loading, Lightning, MLflow, progress bar), its
  own `train/tokens_per_s` windows read back from the MLflow run; it runs once before and once
  after the other recipes and its windows are pooled.

Tokens are real (non-padding) tokens; the number is the median over windows after warm-up.
"FLOP bound" is stock FLOPs / our FLOPs on the measured batches: the speed-up that doing less
arithmetic alone gives, if both ran at the same FLOP rate (see `flops()` for the counting).
"MFU" is model FLOPs utilisation on real tokens: the useful training FLOPs per real token (our
count: every layer on real tokens, the MLM head at masked positions) times tokens/s, over the
device's dense bf16 peak (`PEAK_TFLOPS` by GPU name, or `--peak-tflops`; left out when unknown,
as on CPUs). Peak memory: on a GPU `torch.cuda.max_memory_allocated` during the stage's runs and
during the side-by-side recipes (all of whose models are resident together); on a CPU the
process's peak resident memory.

    python benchmarks/pretrain_vs_hf.py --prepared outputs/prepare --sizes tiny mini small
    python benchmarks/pretrain_vs_hf.py --device cuda --sizes base mini --batch-size 128   # one GPU

Also prints the stock and our losses at the same steps (same batches, same initial weights), so
the speed does not come from computing something else.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import DEVICES, latest_run_history, stage_runner

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")


def pairs(args, cfg):
    """The tokenizer and epoch 0's pairs; the first (warmup + steps) batches are measured."""
    from bertforge.data.masking import SpecialIds
    from bertforge.data.pretraining_examples import PretrainingDataset
    from bertforge.data.shards import Shard
    from bertforge.data.tokenization import load_tokenizer

    tok = load_tokenizer(Path(args.prepared) / "tokenizer")
    ds = PretrainingDataset(
        Shard(Path(args.prepared) / "shards" / "train"), SpecialIds.from_tokenizer(tok), cfg.pretrain, cfg.seed, 0
    )
    need = (args.warmup + args.steps) * args.batch_size
    if len(ds) < need:
        raise SystemExit(f"{args.prepared}: {len(ds)} pairs, the benchmark needs {need}")
    return tok, ds


def batch_ranges(args):
    n = args.batch_size
    return [range(b * n, (b + 1) * n) for b in range(args.warmup + args.steps)]


def stock_features(args, ds) -> list[list[dict]]:
    """Unmasked `[CLS] A [SEP] B [SEP]` pairs: the stock collator masks them inside the step."""
    s = ds.special
    out = []
    for rows in batch_ranges(args):
        feats = []
        for a, b, is_random in (ds.instances[i] for i in rows):
            feats.append(
                {
                    "input_ids": [s.cls, *a.tolist(), s.sep, *b.tolist(), s.sep],
                    "token_type_ids": [0] * (len(a) + 2) + [1] * (len(b) + 1),
                    "next_sentence_label": int(is_random),
                }
            )
        out.append(feats)
    return out


def model_for(cfg, tok, device):
    import torch

    from bertforge.pretraining.model import bert_config, build_pretraining_model

    torch.manual_seed(cfg.seed)
    return build_pretraining_model(bert_config(cfg.model, len(tok), tok.pad_token_id)).to(device)


def flops(m, batch) -> tuple[float, float]:
    """Training FLOPs of one batch, (stock, ours): 3 x forward (backward = 2 x forward), 2 FLOPs
    per multiply-add, matmuls only. Per layer and position: Q, K, V, O (4 H^2) and the FFN (2 H I);
    attention scores and context (2 S H per position, on the padded layout in both recipes); the
    MLM head (transform H^2 + decoder H V) at every position (stock) or at the masked ones (ours).
    Stock computes every layer on B x S positions, padding included; ours on the real tokens."""
    h, i, layers, v = m.hidden_size, m.intermediate_size, m.num_hidden_layers, m.vocab_size
    b, s = batch["input_ids"].shape
    real, masked = int(batch["attention_mask"].sum()), int((batch["labels"] != -100).sum())
    attention = layers * 2 * b * s * s * h
    stock = layers * b * s * (4 * h * h + 2 * h * i) + attention + b * s * (h * h + h * v)
    ours = layers * real * (4 * h * h + 2 * h * i) + attention + masked * (h * h + h * v)
    return 6.0 * stock, 6.0 * ours


# dense bf16 tensor-core peak, TFLOP/s (vendor datasheets, without sparsity)
PEAK_TFLOPS = {
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 80GB HBM3": 989.4,
    "H100 PCIe": 756.0,
    "H100": 989.4,
    "A100": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
    "A10": 125.0,
}


def driver_version() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True
        )
    except OSError:
        return "?"
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "?"


def stage_overrides(args, size: str) -> list[str]:
    """The settings every recipe shares: model size, prepared corpus, trainer profile, batch shape."""
    return [
        f"model={size}",
        f"paths.prepared={Path(args.prepared).resolve()}",
        f"trainer={args.trainer}",
        f"pretrain.batch_size={args.batch_size}",
        f"pretrain.max_seq_length={args.seq}",
        f"pretrain.max_predictions_per_seq={args.max_predictions}",
    ]


def peak_tflops(gpu: str | None, override: float | None) -> float | None:
    if override:
        return override
    return next((v for k, v in PEAK_TFLOPS.items() if gpu and k in gpu), None)


class PeakMemory:
    """Peak memory in GB since `reset()`: CUDA allocations on a GPU, else the process's peak RSS
    (which never goes down: on a CPU it is the peak so far)."""

    def __init__(self, device: str):
        self.device = device

    def reset(self) -> None:
        import torch

        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()

    def read(self) -> float:
        import resource

        import torch

        if self.device == "cuda":
            return torch.cuda.max_memory_allocated() / 2**30
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def windows(times: list[float], tokens: list[int], args) -> float:
    """Median tokens/s over windows of `args.window` steps after warm-up."""
    rates = []
    for i in range(args.warmup, len(times) - args.window + 1, args.window):
        rates.append(sum(tokens[i : i + args.window]) / sum(times[i : i + args.window]))
    return statistics.median(rates)


class Recipe:
    """A model, its AdamW and a step function over prepared inputs; `step(i)` trains on input i
    and returns its time, real tokens and loss."""

    def __init__(self, cfg, model, inputs, step_loss, device, fused: bool):
        import torch

        from bertforge.pretraining.optim import param_groups

        p = cfg.pretrain
        self.model, self.inputs, self.step_loss, self.device, self.clip = model, inputs, step_loss, device, p.grad_clip
        # stock: torch's AdamW as HF's Trainer builds it; ours: the fused AdamW our stage uses
        self.opt = torch.optim.AdamW(
            param_groups(model, p.weight_decay),
            lr=p.lr,
            betas=tuple(p.adam_betas),
            eps=p.adam_eps,
            **({"fused": True} if fused else {}),
        )
        self.times, self.tokens, self.losses = [], [], []

    def step(self, i: int) -> None:
        import torch

        t0 = time.perf_counter()
        loss, batch = self.step_loss(self.inputs[i])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.losses.append(loss.item())  # a sync: every recipe pays it alike
        if self.device == "cuda":
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - t0)
        self.tokens.append(int(batch["attention_mask"].sum()))


def interleaved(recipes: dict, n: int, block: int) -> None:
    """Take turns in blocks of `block` steps: on a shared, noisy machine a slow spell then hits
    every recipe alike instead of whichever ran during it, while each block still runs with its
    own model warm in the caches (step-by-step turns measured the small models ~15% slow)."""
    for start in range(0, n, block):
        for r in recipes.values():
            for i in range(start, min(start + block, n)):
                r.step(i)


def stock_recipe(args, cfg, tok, ds, place, bf16: bool) -> Recipe:
    import torch
    from transformers import DataCollatorForLanguageModeling

    collator = DataCollatorForLanguageModeling(tok, mlm_probability=cfg.pretrain.masked_lm_prob)
    model = model_for(cfg, tok, place.device).float()

    def step_loss(features):
        batch = {k: v.to(place.device) for k, v in collator(features).items()}  # masking is part of the step
        with torch.autocast(place.device, dtype=torch.bfloat16, enabled=bf16):
            return model(**batch).loss, batch

    return Recipe(cfg, model, stock_features(args, ds), step_loss, place.device, fused=False)


def our_batches(args, tok, ds, device, fixed: bool = False):
    """Our collated batches on `device`; `fixed`: in the fixed shapes of `trainer.cuda_graphs`."""
    from bertforge.data.pretraining_examples import collate

    shape = {"fixed_shape": (args.seq, args.max_predictions)} if fixed else {}
    return [
        {
            k: v.to(device) if hasattr(v, "to") else v  # `real_tokens` stays a number
            for k, v in collate([{**ds[i], **shape} for i in rows], pad_id=tok.pad_token_id).items()
        }
        for rows in batch_ranges(args)
    ]


def bare_recipe(args, cfg, tok, batches, place, unpad: bool) -> Recipe:
    from bertforge.pretraining.model import sparse_pretraining_forward, unpadded_pretraining_forward

    forward = unpadded_pretraining_forward if unpad else sparse_pretraining_forward
    return forward_recipe(cfg, model_for(cfg, tok, place.device), batches, place, forward)


def forward_recipe(cfg, model, batches, place, forward) -> Recipe:
    """Our step around `forward(model, batch)`: MLM + NSP loss, fused AdamW."""
    import torch.nn.functional as F

    def step_loss(batch):
        with place.autocast():
            out = forward(model, batch)
        loss = F.cross_entropy(out.mlm_logits.float(), out.mlm_labels) + F.cross_entropy(
            out.nsp_logits.float(), batch["next_sentence_label"]
        )
        return loss, batch

    return Recipe(cfg, model, batches, step_loss, place.device, fused=True)


def run_stage(args, overrides: list[str]) -> list[float]:
    """The stage's own throughput windows after warm-up, tokens/s, in their order; it runs with its
    outputs and a fresh MLflow store in a temporary directory."""
    with tempfile.TemporaryDirectory() as d:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(d) / 'mlflow.db'}"
        return _stage_windows(args, overrides, Path(d))


def _stage_windows(args, overrides: list[str], tmp: Path) -> list[float]:
    from bertforge.config import compose

    cfg = compose(
        overrides
        + args.stage_set
        + [
            f"pretrain.max_steps={args.warmup + args.steps}",
            f"pretrain.log_every_n_steps={args.window}",
            f"pretrain.val_every_n_steps={10**6}",
            f"pretrain.checkpoint_every_n_steps={10**6}",
            f"paths.pretrained={tmp / 'pre'}",
            f"paths.checkpoints={tmp / 'ckpt'}",
            f"paths.metrics={tmp / 'metrics'}",
            f"paths.plots={tmp / 'plots'}",
        ]
    )
    stage_runner("pretrain")(cfg)
    hist = latest_run_history(os.environ["MLFLOW_TRACKING_URI"], ["train/tokens_per_s"])["train/tokens_per_s"]
    return [v for s, v in hist if s > args.warmup]  # the stage's own windows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", default="outputs/prepare", help="a prepare stage output (tokenizer + shards)")
    ap.add_argument("--sizes", nargs="+", default=["tiny", "mini", "small"])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128, help="pretrain.max_seq_length")
    ap.add_argument("--max-predictions", type=int, default=20)
    ap.add_argument("--steps", type=int, default=40, help="measured steps per recipe (after --warmup)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--window", type=int, default=5, help="steps per throughput window")
    ap.add_argument("--device", choices=list(DEVICES), default="auto", help="auto: the GPU if one is visible")
    ap.add_argument("--trainer", help="our trainer profile instead of --device's (e.g. gpu16, cpu32)")
    ap.add_argument("--peak-tflops", type=float, help="the device's peak for MFU (default: by GPU name)")
    ap.add_argument("--stage-compile", action="store_true", help="also run the stage with trainer.compile=true")
    ap.add_argument("--stage-set", nargs="*", default=[], metavar="KEY=VALUE", help="more overrides for the stage")
    args = ap.parse_args()
    args.trainer = args.trainer or DEVICES[args.device]
    import torch

    from bertforge.config import compose
    from bertforge.hardware import detect, header, placement

    place = placement(compose([f"trainer={args.trainer}"]).trainer)
    stock_bf16 = place.precision == "bf16-mixed"  # where bf16 is native, the stock recipe gets it too
    print(header(place.precision), flush=True)
    gpu = detect().gpu if place.device == "cuda" else None
    if gpu:
        print(f"# GPU {gpu}, driver {driver_version()}, CUDA {torch.version.cuda}", flush=True)
    peak = peak_tflops(gpu, args.peak_tflops)
    memory = PeakMemory(place.device)
    rows = []
    for size in args.sizes:
        overrides = stage_overrides(args, size)
        cfg = compose(overrides)
        tok, ds = pairs(args, cfg)
        batches = our_batches(args, tok, ds, place.device)
        m = cfg.model
        from bertforge.pretraining.model import bert_config

        arch = bert_config(m, len(tok), tok.pad_token_id)
        counts = [flops(arch, b) for b in batches[args.warmup :]]
        bound = sum(c[0] for c in counts) / sum(c[1] for c in counts)
        real = sum(int(b["attention_mask"].sum()) for b in batches[args.warmup :])
        r = {"size": size, "bound": bound, "flops_per_token": sum(c[1] for c in counts) / real}
        stage_rates = []  # the stage runs before and after the others: a slow spell cannot pick one side
        eager = [*overrides, "trainer.compile=false"]
        memory.reset()
        stage_rates += run_stage(args, eager)
        r["stage_mem"] = memory.read()
        memory.reset()
        torch.manual_seed(cfg.seed)
        recipes = {"stock": stock_recipe(args, cfg, tok, ds, place, bf16=False)}
        if stock_bf16:
            recipes["stock_bf16"] = stock_recipe(args, cfg, tok, ds, place, bf16=True)
        recipes["padded"] = bare_recipe(args, cfg, tok, batches, place, unpad=False)
        recipes["bare"] = bare_recipe(args, cfg, tok, batches, place, unpad=True)
        interleaved(recipes, len(batches), args.window)
        r["recipes_mem"] = memory.read()
        r.update({k: windows(rec.times, rec.tokens, args) for k, rec in recipes.items()})
        stock_loss, bare_loss = recipes["stock"].losses, recipes["bare"].losses
        del recipes
        warm = run_stage(args, eager)
        r["stage"] = statistics.median(stage_rates + warm)
        # does the loader keep up: the slowest window over the median, in a process whose GPU kernels are
        # already loaded (the first run's windows also hold one-off costs: lazy kernel loading, allocator growth)
        r["worst"] = min(warm) / statistics.median(warm)
        print(f"{size}: stage windows, tokens/s: {', '.join(f'{x:.0f}' for x in warm)}", flush=True)
        if args.stage_compile:
            comp = run_stage(args, [*overrides, "trainer.compile=true"])
            r["compiled"], r["worst_compiled"] = statistics.median(comp), min(comp) / statistics.median(comp)
            print(f"{size}: compiled stage windows, tokens/s: {', '.join(f'{x:.0f}' for x in comp)}", flush=True)
        rows.append(r)
        print(
            f"{size}: stock {r['stock']:.0f}, bare padded {r['padded']:.0f}, bare {r['bare']:.0f}, stage "
            f"{r['stage']:.0f} tokens/s; losses at steps 1/{len(stock_loss)}: stock "
            f"{stock_loss[0]:.3f}/{stock_loss[-1]:.3f}, ours {bare_loss[0]:.3f}/{bare_loss[-1]:.3f}",
            flush=True,
        )
    print(
        f"\nbatch {args.batch_size} pairs of <= {args.seq} tokens, {args.max_predictions} predictions/seq, vocab "
        f"{len(tok)}, median real tokens/s over {args.window}-step windows after {args.warmup} warm-up steps, "
        f"ours in {place.precision}, {args.prepared}\n"
    )
    bf16_col = " stock HF bf16 autocast |" if stock_bf16 else ""
    bf16_ratio = " stage / stock bf16 |" if stock_bf16 else ""
    comp_col = " stage, compiled |" if args.stage_compile else ""
    print(
        f"| model | stock HF fp32 |{bf16_col} bare step, padded HF layers | bare step, unpadded | our pretrain stage, eager |"
        f"{comp_col} unpadded / padded | stage / stock fp32 |{bf16_ratio} FLOP bound | stage / bare |"
    )
    print("|---|---|" + "---|" * (7 + stock_bf16 * 2 + args.stage_compile))
    for r in rows:
        extra = f" {r['stock_bf16']:.0f} |" if stock_bf16 else ""
        ratio = f" {r['stage'] / r['stock_bf16']:.2f}x |" if stock_bf16 else ""
        comp = f" {r['compiled']:.0f} |" if args.stage_compile else ""
        print(
            f"| {r['size']} | {r['stock']:.0f} |{extra} {r['padded']:.0f} | {r['bare']:.0f} | {r['stage']:.0f} |{comp} "
            f"{r['bare'] / r['padded']:.2f}x | {r['stage'] / r['stock']:.2f}x |{ratio} {r['bound']:.2f}x | "
            f"{r['stage'] / r['bare']:.0%} |"
        )
    where = "GPU memory allocated" if place.device == "cuda" else "process RSS"
    print(
        f"\nTraining FLOPs per real token (our count) and MFU on real tokens against "
        f"{f'a {peak:g} TFLOP/s peak' if peak else 'no known peak (give --peak-tflops)'}; the stage's slowest "
        f"window over its median; peak {where}, GB\n"
    )
    keys = [
        "stock",
        *(["stock_bf16"] if stock_bf16 else []),
        "bare",
        "stage",
        *(["compiled"] if args.stage_compile else []),
    ]
    print(
        "| model | GFLOP/token | "
        + " | ".join(f"MFU {k.replace('_', ' ')}" for k in keys)
        + " | slowest window |"
        + (" slowest window, compiled |" if args.stage_compile else "")
        + " peak mem stage | peak mem recipes |"
    )
    print("|---|---|" + "---|" * (len(keys) + 3 + args.stage_compile))
    for r in rows:
        mfu = [f"{r[k] * r['flops_per_token'] / (peak * 1e12):.1%}" if peak else "—" for k in keys]
        print(
            f"| {r['size']} | {r['flops_per_token'] / 1e9:.3g} | "
            + " | ".join(mfu)
            + f" | {r['worst']:.0%} |"
            + (f" {r['worst_compiled']:.0%} |" if args.stage_compile else "")
            + f" {r['stage_mem']:.2f} | {r['recipes_mem']:.2f} |"
        )


if __name__ == "__main__":
    main()
