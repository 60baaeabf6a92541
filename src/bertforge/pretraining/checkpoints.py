"""Which checkpoints a pre-training run may resume.

Checkpoints live in a persistent directory tagged with a fingerprint of everything that shapes
the maths (config, input data, code); an interrupted run resumes from `last.ckpt` (and its
MLflow run), a changed config starts afresh, and so does a run whose predecessor finished: its
`last.ckpt` is only the last periodic one, and resuming it would retrain the end of a finished run
(under a time budget, differently).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from bertforge.config import to_plain
from bertforge.data.records import read_json
from bertforge.outputs import write_json


def fingerprint(cfg, upstream_run: str | None) -> str:
    """Checkpoints are reusable only under the same config, input data *and code* (a code change
    that DVC re-runs the stage for must not resume a checkpoint the old code made)."""
    code = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(Path(__file__).parents[1].rglob("*.py")))).hexdigest()
    parts = {
        "seed": cfg.seed,
        "model": to_plain(cfg.model),
        "pretrain": to_plain(cfg.pretrain),
        "data": upstream_run,
        "code": code,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def resumable_run(ckpt_dir: Path, fp: str) -> str | None:
    """The MLflow run id of an unfinished run's checkpoints made under the same fingerprint, if
    any (reads only)."""
    state = ckpt_dir / "state.json"
    if not (state.exists() and (ckpt_dir / "last.ckpt").exists()):
        return None
    owner = read_json(state)
    if owner.get("fingerprint") != fp or owner.get("finished"):
        return None
    return owner.get("run_id") or ""


def prepare_checkpoint_dir(ckpt_dir: Path, fp: str) -> str | None:
    """Keep checkpoints made under the same fingerprint; return the MLflow run id to continue.
    The caller records the new (fingerprint, run id) with `record_checkpoint_owner`."""
    run_id = resumable_run(ckpt_dir, fp)
    if run_id is not None:
        return run_id or None
    if ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True)
    return None


def record_checkpoint_owner(ckpt_dir: Path, fp: str, run_id: str, finished: bool = False) -> None:
    """Who owns the checkpoints; `finished` once the run has exported its model."""
    write_json(ckpt_dir / "state.json", {"fingerprint": fp, "run_id": run_id, "finished": finished})
