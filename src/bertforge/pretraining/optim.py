"""BERT's optimizers: AdamW or LAMB with the weight-decay exclusions (bias, LayerNorm), linear
warmup then linear or cosine decay."""

from __future__ import annotations

import math

import torch

from bertforge.config import ConfigError


def param_groups(model: torch.nn.Module, weight_decay: float, word_embeddings_lr: float | None = None) -> list[dict]:
    """`word_embeddings_lr`: the word-embedding matrix in a group of its own at that rate (Adam's
    steps are about the same size for every weight, so weights far larger than at initialisation
    need larger ones to move as much relative to their size; after cpu60 that did not help:
    docs/budget.md)."""
    decay, no_decay, words = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if word_embeddings_lr is not None and name.endswith("word_embeddings.weight"):
            words.append(p)
        else:  # by name, as Google's reference: FSDP hands the optimizer every weight as a 1-D shard
            (no_decay if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias") else decay).append(p)
    # LAMB's layer adaptation skips the same parameters as weight decay (Google's reference default)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "adapt": True},
        {"params": no_decay, "weight_decay": 0.0, "adapt": False},
    ]
    if words:
        groups.append({"params": words, "weight_decay": weight_decay, "adapt": True, "lr": word_embeddings_lr})
    return groups


def warmup_decay(warmup_steps: int, total_steps: int, schedule: str = "linear"):
    if schedule not in ("linear", "cosine"):
        raise ConfigError(f"pretrain.schedule={schedule!r}: expected linear or cosine")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class Lamb(torch.optim.Optimizer):
    """LAMB (You et al., 2020, as in Google's `lamb_optimizer`): the Adam update plus decoupled
    weight decay, scaled per tensor by the trust ratio ||w|| / ||update|| where `adapt` is set.
    `multi_tensor` (default: on any device but the CPU): a group's tensors of one device, dtype
    and step count are updated together by torch's `_foreach` kernels, on a GPU about 20 launches
    per group (the trust-ratio scaling one per tensor) instead of about 20 per tensor. On a CPU
    those kernels loop over the tensors anyway, and whole-model temporaries made BERT-Base's step
    2-2.5x slower there, so it goes a tensor at a time. The same arithmetic either way."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, multi_tensor=None):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, adapt=True))
        self.multi_tensor = multi_tensor

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            buckets: dict[tuple, list[torch.Tensor]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
                state["step"] += 1
                buckets.setdefault((p.device, p.dtype, state["step"]), []).append(p)
            for (device, _, step), params in buckets.items():
                together = self.multi_tensor if self.multi_tensor is not None else device.type != "cpu"
                for chunk in [params] if together else [[p] for p in params]:
                    self._update(group, chunk, step)
        return loss

    def _update(self, group: dict, params: list[torch.Tensor], step: int) -> None:
        b1, b2 = group["betas"]
        grads = [p.grad for p in params]
        m = [self.state[p]["exp_avg"] for p in params]
        v = [self.state[p]["exp_avg_sq"] for p in params]
        torch._foreach_mul_(m, b1)
        torch._foreach_add_(m, grads, alpha=1 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
        update = torch._foreach_div(m, 1 - b1**step)
        denom = torch._foreach_div(v, 1 - b2**step)
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, group["eps"])
        torch._foreach_div_(update, denom)
        del denom
        if group["weight_decay"]:
            torch._foreach_add_(update, params, alpha=group["weight_decay"])
        if group["adapt"]:  # tensors, not .item(): no host sync on a GPU
            w_norm, u_norm = torch.stack(torch._foreach_norm(params)), torch.stack(torch._foreach_norm(update))
            ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
            torch._foreach_mul_(update, list(ratio.unbind()))
        torch._foreach_add_(params, update, alpha=-group["lr"])


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    classes = {"adamw": torch.optim.AdamW, "lamb": Lamb}  # AdamW ignores the groups' `adapt`
    if name not in classes:
        raise ConfigError(f"pretrain.optimizer={name!r}: expected adamw or lamb")
    return classes[name]


def check_optim_config(pc, strategy: str = "auto") -> None:
    """Fail before training, not at the first optimizer step."""
    optimizer_class(pc.optimizer)
    warmup_decay(pc.warmup_steps, pc.max_steps, pc.schedule)
    if pc.optimizer == "lamb" and "fsdp" in str(strategy):
        raise ConfigError(
            "pretrain.optimizer=lamb with trainer.strategy=fsdp: FSDP shards every weight over the GPUs, and "
            "LAMB's trust ratio needs each whole weight's norm; use trainer=ddp, or pretrain.optimizer=adamw"
        )


def optimizer_with_schedule(
    model,
    lr,
    weight_decay,
    betas,
    eps,
    warmup_steps,
    total_steps,
    name: str = "adamw",
    schedule: str = "linear",
    fused: bool = True,
    lr_lambda=None,
    word_embeddings_lr_scale: float = 1.0,
):
    """`lr_lambda`: the learning-rate factor per step, instead of warmup and decay by steps (a
    time budget's schedule). `fused`: AdamW as one kernel over all tensors (on CPU torch's default is a per-tensor loop,
    measured ~4x slower); the same update. Not with fp16 loss scaling (Lightning then refuses
    to clip gradients). `word_embeddings_lr_scale`: the word-embedding matrix at `lr` times that
    (see `param_groups`), on the same schedule."""
    words_lr = lr * word_embeddings_lr_scale if word_embeddings_lr_scale != 1.0 else None
    groups = param_groups(model, weight_decay, words_lr)
    kwargs = {}
    if fused and name == "adamw" and all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"]):
        kwargs["fused"] = True
    opt = optimizer_class(name)(groups, lr=lr, betas=tuple(betas), eps=eps, **kwargs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda or warmup_decay(warmup_steps, total_steps, schedule))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
