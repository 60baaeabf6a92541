"""Shared by the benchmark scripts (run as `python benchmarks/<name>.py`, so this directory is on sys.path)."""
from __future__ import annotations

import importlib.util
from pathlib import Path


def stage_runner(name: str):
    """`run(cfg)` of pipelines/<name>.py: the stage itself, exactly as DVC runs it (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "pipelines" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.run
