"""What machine are we on, and which precision does it run fast?

bf16 autocast is the big CPU win only where the CPU multiplies bf16 natively (AVX-512-BF16 or
AMX). On an AVX2-only CPU it is emulated: measured 12-23x *slower* than fp32 for BERT-Tiny/Mini.
So `trainer.precision: auto` resolves per machine, and every stage records the facts behind it.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass
from functools import lru_cache

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
ACCELERATORS = ("cpu", "gpu", "cuda")
# The ISA flags that decide CPU speed for this workload (x86 /proc/cpuinfo names).
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Hardware:
    cpu_model: str
    cpu_cores: int  # logical CPUs this process may use
    isa: tuple[str, ...]  # the ISA_FLAGS present
    torch_cpu_capability: (
        str  # the kernels torch dispatches to (AVX512, AVX2, ...): may be capped by ATEN_CPU_CAPABILITY
    )
    onednn_bf16: bool  # oneDNN will run bf16 kernels (false when capped by ONEDNN_MAX_CPU_ISA)
    gpu: str | None  # the first visible CUDA device
    gpu_bf16: bool
    torch: str

    @property
    def cpu_native_bf16(self) -> bool:
        """bf16 matmuls in hardware, and torch/oneDNN allowed to use them."""
        return (
            any(f in self.isa for f in NATIVE_BF16_FLAGS)
            and self.onednn_bf16
            and self.torch_cpu_capability.upper().startswith("AVX512")
        )

    @property
    def cpu_class(self) -> str:
        """The class a timing belongs to, for every table we print."""
        if self.cpu_native_bf16:
            return "bf16 CPU (AVX-512-BF16" + ("/AMX)" if "amx_bf16" in self.isa else ")")
        if self.torch_cpu_capability.upper().startswith("AVX512"):
            return "AVX-512 CPU (no native bf16)"
        if self.torch_cpu_capability.upper() == "AVX2":
            return "AVX2 CPU (no native bf16)"
        return f"{self.torch_cpu_capability} CPU"


def _cpuinfo(path: str = "/proc/cpuinfo") -> tuple[str, set[str]]:
    model, flags, ids = "", set(), {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and not model:
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
                elif key in ("cpu family", "model"):
                    ids.setdefault(key, value.strip())
    except OSError:  # not Linux: no flags, so no claim of native bf16
        pass
    if model and len(ids) == 2:  # a cloud VM's bare "AMD EPYC" hides the generation; x86 family/model name it
        model += f" (family {ids['cpu family']}, model {ids['model']})"
    return model or platform.processor() or platform.machine(), flags


@lru_cache(maxsize=1)
def detect() -> Hardware:
    import torch

    model, flags = _cpuinfo()
    try:
        onednn_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        onednn_bf16 = False
    gpu, gpu_bf16 = None, False
    if torch.cuda.is_available():
        gpu, gpu_bf16 = torch.cuda.get_device_name(0), bool(torch.cuda.is_bf16_supported())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return Hardware(
        model,
        cores,
        tuple(f for f in ISA_FLAGS if f in flags),
        torch.backends.cpu.get_cpu_capability(),
        onednn_bf16,
        gpu,
        gpu_bf16,
        torch.__version__,
    )


def resolve_accelerator(requested: str, hw: Hardware) -> str:
    from bertforge.config import ConfigError

    if requested == "auto":
        return "gpu" if hw.gpu else "cpu"
    if requested not in ACCELERATORS:
        raise ConfigError(f"trainer.accelerator: {requested!r} is not one of auto, {', '.join(ACCELERATORS)}")
    if requested in ("gpu", "cuda") and not hw.gpu:
        raise ConfigError(f"trainer.accelerator={requested} but no CUDA GPU is visible; use trainer=cpu")
    return "gpu" if requested == "cuda" else requested


def resolve_precision(requested: str, accelerator: str, hw: Hardware) -> tuple[str, str]:
    """(precision, why). `auto` follows the hardware; an explicit value always wins, with a
    warning where it will be slow (bf16 emulated on this CPU or GPU)."""
    from bertforge.config import ConfigError

    if requested == "auto":
        if accelerator == "cpu":
            if hw.cpu_native_bf16:
                return "bf16-mixed", "auto: native bf16 on this CPU"
            return "32-true", "auto: no native bf16 on this CPU (bf16 would be emulated, many times slower)"
        if hw.gpu_bf16:
            return "bf16-mixed", f"auto: {hw.gpu} supports bf16"
        return "16-mixed", f"auto: {hw.gpu} has no bf16; fp16 with loss scaling"
    if requested not in PRECISIONS:
        raise ConfigError(f"trainer.precision: {requested!r} is not one of auto, {', '.join(PRECISIONS)}")
    if requested == "16-mixed" and accelerator == "cpu":
        raise ConfigError(
            "trainer.precision=16-mixed needs a GPU (fp16 loss scaling); on CPU use bf16-mixed or 32-true"
        )
    if requested == "bf16-mixed" and accelerator == "cpu" and not hw.cpu_native_bf16:
        _warn(
            f"trainer.precision=bf16-mixed on a CPU without native bf16 ({hw.cpu_class}): bf16 is emulated "
            "there, typically 10-20x slower than 32-true (trainer.precision=auto picks 32-true)"
        )
    if requested == "bf16-mixed" and accelerator == "gpu" and not hw.gpu_bf16:
        _warn(f"trainer.precision=bf16-mixed on {hw.gpu}, which has no native bf16: use 16-mixed or auto")
    return requested, "explicit"


def _warn(message: str) -> None:
    print(f"bertforge: warning: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Placement:
    """How a stage runs here: the resolved trainer settings and the hardware facts behind them."""

    accelerator: str
    precision: str
    requested_precision: str
    reason: str
    num_workers: int
    hardware: Hardware

    def as_dict(self) -> dict:
        hw = self.hardware
        return {
            "accelerator": self.accelerator,
            "precision": self.precision,
            "requested_precision": self.requested_precision,
            "reason": self.reason,
            "num_workers": self.num_workers,
            "cpu_class": hw.cpu_class,
            **{k: (" ".join(v) if isinstance(v, tuple) else v) for k, v in asdict(hw).items()},
        }

    def line(self) -> str:
        hw = self.hardware
        where = hw.gpu if self.accelerator == "gpu" else f"{hw.cpu_model}, {hw.cpu_cores} cores"
        return (
            f"hardware: {where}; {hw.cpu_class}; ISA {' '.join(hw.isa) or 'none found'}; torch {hw.torch} "
            f"({hw.torch_cpu_capability}) -> {self.accelerator}, precision {self.precision} ({self.reason})"
        )

    def autocast(self):
        """The autocast context for inference outside Lightning (evaluate, embed)."""
        import contextlib

        import torch

        if self.precision == "32-true":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16-mixed" else torch.float16
        return torch.autocast("cuda" if self.accelerator == "gpu" else "cpu", dtype=dtype)

    @property
    def device(self) -> str:
        return "cuda" if self.accelerator == "gpu" else "cpu"


def place(
    accelerator: str = "auto", precision: str = "auto", num_workers: int | None = None, hw: Hardware | None = None
) -> Placement:
    hw = hw or detect()
    acc = resolve_accelerator(str(accelerator), hw)
    prec, why = resolve_precision(str(precision), acc, hw)
    if num_workers is None:  # GPUs starve without loader processes; on CPU they compete with the math
        num_workers = min(4, max(0, hw.cpu_cores // 2)) if acc == "gpu" else 0
    return Placement(acc, prec, str(precision), why, int(num_workers), hw)


def placement(tcfg) -> Placement:
    """The `trainer` config group resolved on this machine."""
    from bertforge.config import ConfigError

    where = place(tcfg.accelerator, tcfg.precision, tcfg.num_workers)
    if "fsdp" in str(tcfg.get("strategy", "")) and where.accelerator != "gpu":
        raise ConfigError(
            "trainer.strategy=fsdp needs CUDA GPUs (Lightning's FSDP does not run on CPU); "
            "use trainer=ddp_cpu for data parallelism over CPU processes"
        )
    return where


def header(precision: str | None = None) -> str:
    """The first line every benchmark prints: which machine its numbers belong to."""
    hw = detect()
    prec = precision or place(hw=hw).precision
    gpu = f"; GPU {hw.gpu}" if hw.gpu else ""
    return (
        f"# machine: {hw.cpu_model}, {hw.cpu_cores} cores, {hw.cpu_class}; ISA {' '.join(hw.isa) or 'none found'}; "
        f"torch {hw.torch} ({hw.torch_cpu_capability}){gpu}; precision {prec}"
    )
