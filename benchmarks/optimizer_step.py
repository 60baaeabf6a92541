"""One optimizer step over a BERT's parameters: fused AdamW (the stage's default), and LAMB
(`pretrain.optimizer=lamb`) a tensor at a time (as Google's reference writes it; our default on
a CPU) and multi-tensor (`_foreach` kernels; our default on a GPU). Interleaved in one process;
median milliseconds per step after warm-up, with random gradients.

    python benchmarks/optimizer_step.py --sizes mini base
    python benchmarks/optimizer_step.py --device cuda --sizes base large
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["mini", "base"])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--vocab", type=int, default=30522)
    args = ap.parse_args()
    import torch

    from bertforge.config import compose
    from bertforge.hardware import header
    from bertforge.pretraining.model import bert_config, build_pretraining_model
    from bertforge.pretraining.optim import Lamb, param_groups

    print(header("32-true"), f"(fp32 parameters and optimizer state on {args.device})", flush=True)
    print(
        "| model | parameters (tensors) | fused AdamW | LAMB, one tensor at a time | LAMB, multi-tensor | per-tensor / multi-tensor |"
    )
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        torch.manual_seed(0)
        model = build_pretraining_model(bert_config(compose([f"model={size}"]).model, args.vocab, 0)).to(args.device)
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        groups = param_groups(model, 0.01)
        opts = {
            "adamw": torch.optim.AdamW(groups, lr=1e-4, fused=True),
            "lamb1": Lamb(param_groups(model, 0.01), lr=1e-4, multi_tensor=False),
            "lamb": Lamb(param_groups(model, 0.01), lr=1e-4, multi_tensor=True),
        }
        times = {k: [] for k in opts}
        for _ in range(args.warmup + args.steps):
            for k, opt in opts.items():  # interleaved: a slow spell on a shared machine hits all alike
                if args.device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                opt.step()
                if args.device == "cuda":
                    torch.cuda.synchronize()
                times[k].append(time.perf_counter() - t0)
        ms = {k: statistics.median(t[args.warmup :]) * 1e3 for k, t in times.items()}
        n = sum(p.numel() for p in params)
        print(
            f"| {size} | {n / 1e6:.1f}M ({len(params)}) | {ms['adamw']:.1f} ms | {ms['lamb1']:.1f} ms "
            f"| {ms['lamb']:.1f} ms | {ms['lamb1'] / ms['lamb']:.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
