"""Where a pre-training step's time goes, for one short GPU session: variants of our bare step
side by side in one process against the stock HF bf16 recipe, the top kernels of the fastest,
and the `pretrain` stage itself (its own throughput windows, and the host syncs per step that a
profiler sees in it).

- exactness: variable-length FlashAttention (`model._FlashVarlen`, on GPUs that have it) against
  the padded attention, on the same batch in eval mode (MLM and NSP logits) and in one training
  step without dropout (gradients);
- steps: stock HF bf16 autocast; our bare step (unpadded forward, sparse MLM head, fused AdamW,
  clipping) with padded or variable-length attention, eager and compiled, compiled in fixed
  shapes replayed as CUDA graphs (`trainer.cuda_graphs`), and compiled at twice the batch; real
  tokens/s as in `pretrain_vs_hf.py` (median of windows after warm-up) and MFU;
- kernels: torch.profiler over a few steps of the fastest variant, GPU time by kernel;
- stage: `pipelines/pretrain.py` compiled (`trainer=gpu` or `--trainer`), its `train/tokens_per_s`
  windows, then a profiler over ten steps counting host-device syncs per step, and the training
  thread's Python functions over ten more (cProfile, ms a step); then the same
  with `trainer.cuda_graphs=true`, and both at twice the batch.

    python benchmarks/gpu_step_probe.py --prepared outputs/gpu_benchmark/prepare --size base --batch-size 128
    python benchmarks/gpu_step_probe.py --device cpu --size tiny --batch-size 16 --steps 10   # a check on a CPU
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import traceback
from pathlib import Path

from pretrain_vs_hf import (
    Recipe,
    flops,
    forward_recipe,
    model_for,
    our_batches,
    pairs,
    peak_tflops,
    run_stage,
    stage_overrides,
    stock_recipe,
    windows,
)

SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "aten::_local_scalar_dense")


def busy(events) -> float:
    """Seconds the GPU ran kernels (and copies): device events only, neither the ops that launched
    them nor annotated ranges (`record_function`, Lightning's hooks), as torch's own table counts."""
    import torch

    cuda = torch.autograd.DeviceType.CUDA
    device = (e for e in events if e.device_type == cuda and not getattr(e, "is_user_annotation", False))
    return sum(e.self_device_time_total for e in device) / 1e6


class SyncLog:
    """Where the host waits for the GPU: CUDA's sync debug mode over a few steps, each warning
    counted by the Python frames that caused it."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def __enter__(self):
        import warnings

        import torch

        self._show, self._catch = warnings.showwarning, warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("always")
        warnings.showwarning = self._record
        torch.cuda.set_sync_debug_mode("warn")
        return self

    def _record(self, message, category, filename, lineno, file=None, line=None):
        import traceback

        frames = [f for f in traceback.extract_stack()[:-2] if "site-packages/torch/" not in f.filename]
        where = " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames[-6:]))
        key = f"{str(message)[:60]} @ {where}"
        self.counts[key] = self.counts.get(key, 0) + 1

    def __exit__(self, *exc):
        import warnings

        import torch

        torch.cuda.set_sync_debug_mode(0)
        warnings.showwarning = self._show
        self._catch.__exit__(*exc)


class HostProfile:
    """What the training thread does between a stage's steps: cProfile over `steps` steps (past the
    torch profiler's, which adds its own host work), by Python function, in ms a step. On a GPU the
    stage's host time per step, not the kernels', is what separates it from the bare step."""

    def __init__(self, begin: int, steps: int = 10):
        import cProfile

        self.begin, self.end, self.profile = begin, begin + steps, cProfile.Profile()

    def step(self, done: int) -> None:
        if done == self.begin:
            self.profile.enable()
        elif done == self.end:
            self.profile.disable()

    # the parts of a step, by the functions that hold them (their time includes their callees')
    PARTS = (
        "advance",  # Lightning's whole training step: the rest are within it
        "__next__",  # the next batch from the loader (a wait here: the loader does not keep up)
        "_apply_batch_transfer_handler",  # the batch to the device
        "training_step",
        "backward",
        "clip_grad_norm_",
        "_fused_adamw_",
        "zero_grad",
        "_call_callback_hooks",
        "log",
        "log_dict",
    )

    def report(self, label: str, rows: int = 14) -> None:
        import pstats

        stats = pstats.Stats(self.profile).stats  # {(file, line, name): (calls, primitive, tottime, cumtime, callers)}
        n = self.end - self.begin

        def name(key) -> str:
            file, line, fn = key
            return f"{'/'.join(Path(file).parts[-2:])}:{line} {fn}" if line else fn

        def show(items, col):
            for key, v in items:
                print(f"  {v[col] * 1e3 / n:8.2f}  {v[0] / n:6.1f} calls  {name(key)[:110]}")

        print(f"{label}, host (cProfile, {n} steps), ms/step by function, self:")
        show(sorted(stats.items(), key=lambda kv: -kv[1][2])[:rows], 2)
        print(f"{label}, host, ms/step in the parts of a step (with their callees):")
        parts = [kv for kv in stats.items() if kv[0][2].split(".")[-1].rstrip(">") in self.PARTS]
        show(sorted(parts, key=lambda kv: -kv[1][3]), 3)
        print(flush=True)


def bare(cfg, model, batches, place, varlen: bool, compiled: bool, graphs: bool = False) -> Recipe:
    """`graphs`: `batches` in fixed shapes, the compiled step replayed as CUDA graphs."""
    import torch

    from bertforge.pretraining import model as modeling

    step = modeling.unpadded_pretraining_forward
    if compiled:
        step = torch.compile(step, dynamic=True, mode="reduce-overhead" if graphs else None)

    def forward(model, batch):
        modeling.VARLEN_ATTENTION = varlen  # outside the compiled function: its guards see the switch
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        return step(model, batch)

    return forward_recipe(cfg, model, batches, place, forward)


def exactness(cfg, tok, batch, place) -> None:
    """Variable-length against padded attention: logits in eval mode, gradients without dropout."""
    import torch

    from bertforge.pretraining import model as modeling

    model = model_for(cfg, tok, place.device)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    outs, grads = {}, {}
    for varlen in (False, True):
        modeling.VARLEN_ATTENTION = varlen
        model.eval()
        with torch.no_grad(), place.autocast():
            outs[varlen] = modeling.unpadded_pretraining_forward(model, batch)
        model.train()
        model.zero_grad()
        with place.autocast():
            o = modeling.unpadded_pretraining_forward(model, batch)
        (torch.nn.functional.cross_entropy(o.mlm_logits.float(), o.mlm_labels) + o.nsp_logits.float().sum()).backward()
        grads[varlen] = torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])
    for name in ("mlm_logits", "nsp_logits"):
        a, b = getattr(outs[False], name).float(), getattr(outs[True], name).float()
        print(
            f"exactness {name}: max |padded - varlen| {float((a - b).abs().max()):.3g} (max |padded| {float(a.abs().max()):.3g})"
        )
    g0, g1 = grads[False], grads[True]
    rel = float((g0 - g1).norm() / g0.norm())
    cos = float(torch.nn.functional.cosine_similarity(g0, g1, dim=0))
    print(f"exactness gradients: relative L2 difference {rel:.3g}, cosine {cos:.6f}", flush=True)
    modeling.VARLEN_ATTENTION = True


def kernels(recipe: Recipe, steps: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for i in range(steps):
            recipe.step(i)
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    gpu = busy(events)
    print(
        f"\nkernels over {steps} steps: wall {wall / steps * 1e3:.1f} ms/step (profiled), GPU busy {gpu / steps * 1e3:.1f} ms/step"
    )
    print(events.table(sort_by="self_device_time_total", row_limit=22, max_name_column_width=70), flush=True)


def stage(args, overrides: list[str], with_syncs: bool, label: str = "stage") -> None:
    """The stage's windows, then a profiler over ten steps past them (syncs per step), then the
    host's Python functions over ten more."""
    from torch.profiler import ProfilerActivity, profile, schedule

    from bertforge.pretraining.module import PretrainModule

    active, start = 10, args.warmup + args.steps + 5
    prof = profile(
        activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], schedule=schedule(wait=start, warmup=3, active=active)
    )
    times, syncs, host = [], SyncLog(), HostProfile(start + 3 + active + 2)

    def hook(self, outputs, batch, batch_idx):
        times.append(time.perf_counter())
        if with_syncs and len(times) == start - 5:  # the five steps after the measured windows
            syncs.__enter__()
        elif with_syncs and len(times) == start:
            syncs.__exit__(None, None, None)
        prof.step()
        host.step(len(times))

    PretrainModule.on_train_batch_end = hook
    prof.start()
    steps = args.steps
    args.steps = host.end + 2 - args.warmup  # the stage runs warm-up + steps
    try:
        rates = run_stage(args, overrides)
    finally:
        args.steps = steps
        prof.stop()
        del PretrainModule.on_train_batch_end
    measured = rates[: args.steps // args.window]
    print(
        f"\n{label} windows, tokens/s: {', '.join(f'{x:.0f}' for x in measured)}; median {statistics.median(measured):.0f}"
    )
    events = prof.key_averages()
    per_step = {e.key: e.count / active for e in events if e.key in SYNCS}
    gpu = busy(events) / active
    span = times[start + 2 : start + 3 + active]  # the active steps' ends, and the end before them
    wall = statistics.median(b - a for a, b in zip(span, span[1:]))
    print(
        f"{label}, profiled steps: wall {wall * 1e3:.1f} ms/step, GPU busy {gpu * 1e3:.1f} ms/step; syncs per step {per_step}"
    )
    print(events.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=70), flush=True)
    for where, n in sorted(syncs.counts.items(), key=lambda kv: -kv[1]):
        print(f"syncs in 5 steps: {n} x {where}")
    host.report(label)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", default="outputs/gpu_benchmark/prepare")
    ap.add_argument("--size", default="base")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--max-predictions", type=int, default=20)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--trainer", help="our trainer profile (default: gpu on cuda, cpu on cpu)")
    ap.add_argument("--stage-set", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--quick", action="store_true", help="only stock bf16 and our compiled variable-length step")
    args = ap.parse_args()
    import torch

    from bertforge.config import compose
    from bertforge.hardware import detect, header, placement
    from bertforge.pretraining.model import bert_config

    args.trainer = args.trainer or ("gpu" if args.device == "cuda" else "cpu")
    place = placement(compose([f"trainer={args.trainer}"]).trainer)
    gpu = detect().gpu if place.device == "cuda" else None
    peak = peak_tflops(gpu, None)
    print(header(place.precision), f"\n# GPU {gpu}, torch {torch.__version__}", flush=True)
    overrides = stage_overrides(args, args.size)
    cfg = compose(overrides)
    double = copy.copy(args)
    double.batch_size *= 2
    tok, ds = pairs(double, cfg)
    batches = our_batches(args, tok, ds, place.device)
    batches2 = our_batches(double, tok, ds, place.device)
    fixed = our_batches(args, tok, ds, place.device, fixed=True)
    arch = bert_config(cfg.model, len(tok), tok.pad_token_id)
    real = sum(int(b["attention_mask"].sum()) for b in batches[args.warmup :])
    per_token = sum(flops(arch, b)[1] for b in batches[args.warmup :]) / real

    def attempt(what, fn, *a):
        try:
            return fn(*a)
        except Exception:  # one failing variant must not cost the session the others
            print(f"{what} FAILED:\n{traceback.format_exc()}", flush=True)
            return None

    if not args.quick:
        attempt("exactness", exactness, cfg, tok, batches[0], place)
    torch.manual_seed(cfg.seed)
    recipes = {"stock HF bf16 autocast": stock_recipe(args, cfg, tok, ds, place, bf16=True)}
    for varlen in (False, True):
        for compiled in (False, True):
            if args.quick and not (varlen and compiled):
                continue
            name = f"ours, {'varlen' if varlen else 'padded'} attention, {'compiled' if compiled else 'eager'}"
            m = model_for(cfg, tok, place.device)
            recipes[name] = bare(cfg, m, batches, place, varlen, compiled)
    name = "ours, varlen attention, compiled, fixed shapes + CUDA graphs"
    recipes[name] = bare(cfg, model_for(cfg, tok, place.device), fixed, place, True, True, graphs=True)
    for name, r in list(recipes.items()):
        t0 = time.perf_counter()
        if attempt(name, lambda r=r: [r.step(i) for i in range(len(batches))]) is None:
            del recipes[name]
            continue
        print(f"{name}: {time.perf_counter() - t0:.0f} s for {len(batches)} steps", flush=True)
    best = max(
        (k for k in recipes if "compiled" in k), key=lambda k: windows(recipes[k].times, recipes[k].tokens, args)
    )
    fast = recipes[best]
    inputs2 = our_batches(double, tok, ds, place.device, fixed=True) if "graphs" in best else batches2
    twice = Recipe(cfg, fast.model, inputs2, fast.step_loss, place.device, fused=True)
    stock2 = stock_recipe(double, cfg, tok, ds, place, bf16=True)
    recipes[f"stock HF bf16 autocast, batch {double.batch_size}"] = stock2
    recipes[f"{best}, batch {double.batch_size}"] = twice
    for r in (stock2, twice):
        attempt("twice the batch", lambda r=r: [r.step(i) for i in range(len(batches2))])
    base = windows(recipes["stock HF bf16 autocast"].times, recipes["stock HF bf16 autocast"].tokens, args)
    print(f"\n{args.size}, batch {args.batch_size}, pairs <= {args.seq}, {per_token / 1e9:.3g} GFLOP per real token")
    print("| recipe | real tokens/s | / stock bf16 | MFU | ms/step |\n|---|---|---|---|---|")
    for name, r in recipes.items():
        if len(r.times) < len(r.inputs):
            continue
        rate = windows(r.times, r.tokens, args)
        mfu = f"{rate * per_token / (peak * 1e12):.1%}" if peak else "—"
        ms = statistics.median(r.times[args.warmup :]) * 1e3
        print(f"| {name} | {rate:.0f} | {rate / base:.2f}x | {mfu} | {ms:.1f} |", flush=True)
    if place.device == "cuda":
        attempt("kernels", kernels, fast, 6)
    for name in list(recipes):
        del recipes[name]
    del fast, twice, stock2
    if place.device == "cuda":
        torch.cuda.empty_cache()
    # run_stage adds --stage-set
    compiled = [*overrides, "trainer.compile=true"]
    graphs = [*compiled, "trainer.cuda_graphs=true"]
    for name, over in (("stage", compiled), ("stage, CUDA graphs", graphs)):
        attempt(name, stage, args, over, place.device == "cuda", name)
    for name, over in (("stage", compiled), ("stage, CUDA graphs", graphs)):
        name = f"{name}, batch {double.batch_size}"
        attempt(name, stage, args, [*over, f"pretrain.batch_size={double.batch_size}"], False, name)


if __name__ == "__main__":
    main()
