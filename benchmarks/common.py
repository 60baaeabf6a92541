"""Shared by the benchmark scripts (run as `python benchmarks/<name>.py`, so this directory is on sys.path)."""

from __future__ import annotations

import importlib
import json
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEVICES = {"auto": "auto", "cpu": "cpu", "cuda": "gpu"}  # a benchmark's --device -> our trainer profile


def run_stage(name: str, overrides: list[str]) -> None:
    """pipelines/<name>.py with Hydra overrides, in its own process from the repository root
    (a stage run as a user runs it; a failure stops the benchmark)."""
    subprocess.run([sys.executable, f"pipelines/{name}.py", *overrides], cwd=ROOT, check=True, env=os.environ)


def finetune_settings(overrides: list[str]) -> dict:
    """What a result records of how a stage run with `overrides` fine-tunes (a budget preset sets
    its own rate and epochs), from one composition of the config."""
    from bertforge.config import compose
    from bertforge.config import finetune_settings as effective  # this module's name is taken

    cfg = compose(overrides)
    ft = effective(cfg) if cfg.get("task") is not None else cfg.finetune
    return {
        "finetune_lr": float(ft.lr),
        "finetune_epochs": int(ft.epochs),
        "reinit_word_embeddings": bool(ft.reinit_word_embeddings),
    }


def machine_class(line: str) -> str:
    """The hardware a result belongs to, from its machine line: the GPU, else the CPU class and,
    where the line names them, the x86 family and model (a Zen 5 bf16 CPU made 2.3x a Zen 4's steps)."""
    gpu = re.search(r"; GPU ([^;]+);", line)
    if gpu:
        return gpu[1]
    ids = re.search(r"\(family (\d+), model (\d+)\)", line)
    cls = re.search(r"cores, ([^;(]+?) \(", line)[1]
    return f"{cls}, family {ids[1]} model {ids[2]}" if ids else cls


def mean_sd(values: list[float]) -> tuple[float, str]:
    """The mean, and "mean ± sd" over seeds as the result tables print it (sd 0 for one seed)."""
    mean = statistics.mean(values)
    return mean, f"{mean:.3f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.3f}"


def override_value(overrides: Sequence[str], key: str, default: str | None = None) -> str | None:
    """The value a list of Hydra overrides gives `key`: the last `key=` wins, as in Hydra."""
    values = [o.split("=", 1)[1] for o in overrides if o.startswith(f"{key}=")]
    return values[-1] if values else default


def finetune_label(record: dict) -> str:
    """How a fine-tuning result was trained: its lr, epochs where not the default 4, then any other
    override. Rows written before the lr and epochs were recorded ran at their `finetune.lr=` /
    `finetune.epochs=` override or else the defaults of the time, 1e-4 and 4 epochs."""
    sets = record.get("finetune_overrides", [])
    lr = record.get("finetune_lr") or float(override_value(sets, "finetune.lr", "1e-4"))
    epochs = record.get("finetune_epochs") or int(override_value(sets, "finetune.epochs", "4"))
    fresh = record.get("reinit_word_embeddings") or override_value(sets, "finetune.reinit_word_embeddings") == "true"
    rest = [
        s for s in sets if not s.startswith(("finetune.lr=", "finetune.epochs=", "finetune.reinit_word_embeddings="))
    ]
    return " ".join(
        [
            f"lr {lr:.0e}".replace("e-0", "e-"),
            *([f"{epochs} epochs"] if epochs != 4 else []),
            *(["fresh word embeddings"] if fresh else []),
            *rest,
        ]
    )


def append_jsonl(path: Path, record: dict) -> None:
    """One result per line, appended: a long benchmark keeps what it measured if it is stopped."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    """What append_jsonl wrote, in order; nothing yet if the file does not exist."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def stage_runner(name: str):
    """`run(cfg)` of the stage `name` (bertforge.stages.<name>), exactly as DVC runs it."""
    return importlib.import_module(f"bertforge.stages.{name}").run


def latest_run_history(
    tracking_uri: str, metrics: list[str], stage: str = "pretrain"
) -> dict[str, list[tuple[int, float]]]:
    """(step, value) of each metric in the newest run of `stage` in the MLflow store at `tracking_uri`, by step."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        ids, f"attributes.run_name LIKE '{stage}%'", order_by=["attributes.start_time DESC"], max_results=1
    )
    if not runs:
        raise SystemExit(f"no {stage} run in {tracking_uri}")
    run = runs[0]
    return {
        name: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, name)) for name in metrics
    }


def print_header(trainer: str = "auto") -> str:
    """Print (and return) the machine line every benchmark starts with: CPU model, cores, the ISA
    flags that matter, torch, and the precision our side uses (trainer profile `trainer`)."""
    from bertforge.config import compose
    from bertforge.hardware import header, placement

    line = header(placement(compose([f"trainer={trainer}"]).trainer).precision)
    print(line, flush=True)
    return line
