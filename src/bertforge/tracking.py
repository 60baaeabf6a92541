"""One MLflow run per stage execution, with lineage back to the run that produced the input.

Default backend: `sqlite:///<root>/mlflow.db` (artifacts in `<root>/mlartifacts`), where root is
`$DVC_ROOT` under DVC or the checkout; `MLFLOW_TRACKING_URI` overrides.
"""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .config import UserError, flatten, resolve_path, root_dir, to_plain
from .outputs import read_json, write_json
from .quiet import dropped

RUN_FILE = "run.json"
# the user's own setting, read before stage_run sets a default for the runs it does not start
_USER_SYSTEM_METRICS = (os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING") or "").lower() or None


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else `mlflow.db` in the user's checkout: $DVC_ROOT under DVC, which
    names that checkout even when the stage runs in a temporary experiment workspace (so queued
    and --temp runs land in the store that outlives them), else the checkout being run."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    home = Path(os.environ["DVC_ROOT"]) if os.environ.get("DVC_ROOT") else root_dir()
    return f"sqlite:///{(home / 'mlflow.db').resolve()}"


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=root_dir(), capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit() -> str:
    return _git("rev-parse", "HEAD") or "unknown"


def git_dirty() -> str:
    """ "true" when tracked files differ from the commit (an experiment's changed params.yaml counts)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return "unknown" if status is None else str(bool(status)).lower()


def upstream_run_id(directory: Path | None) -> str | None:
    if directory is None or not (Path(directory) / RUN_FILE).exists():
        return None
    return read_json(Path(directory) / RUN_FILE).get("run_id")


def _experiment_id(name: str) -> str:
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    uri = tracking_uri()
    if not uri.startswith("sqlite:///"):  # a server or other store decides where artifacts go
        return mlflow.create_experiment(name)
    artifacts = Path(uri[len("sqlite:///") :]).parent / "mlartifacts"  # next to the database
    return mlflow.create_experiment(name, artifact_location=artifacts.resolve().as_uri())


def dvc_experiment() -> str:
    """The DVC experiment running us, "workspace" under a plain `dvc repro`, "" outside DVC."""
    return os.environ.get("DVC_EXP_NAME") or ("workspace" if os.environ.get("DVC_STAGE") else "")


def pipeline_key() -> str:
    """What makes stage runs one pipeline execution: the same composed params, the same commit
    and the same uncommitted code changes, in the same DVC experiment. Re-running one stage of
    it (after a failure, or `dvc repro -s`) joins the group; any change of config or code opens
    a new one. dvc.lock, metrics/ and plots/ are left out: DVC and the stages rewrite them
    between the stages of a single execution."""
    params = root_dir() / "params.yaml"
    diff = _git("diff", "HEAD", "--", ".", ":!dvc.lock", ":!metrics", ":!plots", ":!params.yaml") or ""
    return digest_of(params.read_bytes() if params.exists() else b"", git_commit(), diff, dvc_experiment())[:16]


def pipeline_run(experiment_id: str, stage_tags: dict) -> str | None:
    """Under DVC, the parent run that groups this pipeline execution's stage runs (found by
    `pipeline_key`, or created); None for a stage run by hand (it stays a top-level run)."""
    if not os.environ.get("DVC_STAGE"):
        return None
    from mlflow import MlflowClient

    client, key = MlflowClient(), pipeline_key()
    found = client.search_runs([experiment_id], f"tags.pipeline_key = '{key}'", max_results=1)
    if found:
        return found[0].info.run_id
    tags = {
        "pipeline_key": key,
        "stage": "pipeline",
        **{k: stage_tags[k] for k in ("git_commit", "git_dirty", "dvc_experiment")},
    }
    run = client.create_run(experiment_id, run_name=f"pipeline {dvc_experiment()} {key[:7]}", tags=tags)
    client.set_terminated(run.info.run_id)  # a group, not a process: its children carry the status
    return run.info.run_id


def log_pipeline_metrics(run, metrics: dict) -> None:
    """Also give `metrics` to the parent run of `run` (the pipeline's row in the runs table)."""
    parent = run.data.tags.get("mlflow.parentRunId")
    if parent:
        from mlflow import MlflowClient

        client = MlflowClient()
        for k, v in flatten(metrics).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                client.log_metric(parent, k, float(v))


@contextmanager
def stage_run(
    cfg,
    stage: str,
    params: dict,
    task: str | None = None,
    upstream: Path | None = None,
    run_id: str | None = None,
    place=None,
) -> Iterator:
    """Start the stage's MLflow run, or continue `run_id` (a resumed stage); yields the active run
    (hand its id to Lightning's MLFlowLogger). `place` (a hardware.Placement) is recorded as
    `hardware.*` params and the `precision` / `hardware` tags."""
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")  # only the runs we start
    system_metrics = bool(cfg.tracking.system_metrics) and _USER_SYSTEM_METRICS not in ("false", "0")
    mlflow.set_tracking_uri(tracking_uri())
    tags = {
        "stage": stage,
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "dvc_experiment": dvc_experiment(),
        "dvc_stage": os.environ.get("DVC_STAGE", ""),
    }
    if task:
        tags["task"] = task
    if place is not None:
        tags.update(
            precision=place.precision,
            hardware=place.hardware.cpu_class if place.accelerator == "cpu" else str(place.hardware.gpu),
        )
        params = {**params, "hardware": place.as_dict()}
    up = upstream_run_id(upstream)
    if up:
        tags["upstream_run_id"] = up
    run_name = f"{stage}-{task}" if task else stage
    if (
        run_id is not None
        and mlflow.tracking.MlflowClient().search_runs(
            [_experiment_id(cfg.tracking.experiment)], f"attributes.run_id = '{run_id}'"
        )
        == []
    ):
        run_id = None  # the checkpoint's run lives in another tracking store: start afresh
    new_run = run_id is None
    experiment_id = _experiment_id(cfg.tracking.experiment)
    parent = pipeline_run(experiment_id, tags) if new_run else None
    try:
        with mlflow.start_run(
            run_id=run_id,
            experiment_id=experiment_id,
            parent_run_id=parent,
            run_name=None if run_id else run_name,
            tags=tags,
            log_system_metrics=system_metrics,
        ) as run:
            flat = {k: ("null" if v is None else v) for k, v in flatten(params).items()}
            items = list(flat.items())
            for i in range(0, len(items), 100):
                mlflow.log_params(dict(items[i : i + 100]))
            mlflow.log_dict(to_plain(cfg), "config.yaml")
            yield run
    except UserError:
        # bad input found mid-stage (a corrupt line deep in a corpus): the run measured nothing worth
        # keeping, so it goes with the half-written output (a resumed run keeps its earlier history)
        if new_run and "run" in locals():
            mlflow.MlflowClient().delete_run(run.info.run_id)
        raise


def lightning_logger(run, prefix: str = ""):
    from pytorch_lightning.loggers import MLFlowLogger

    return MLFlowLogger(tracking_uri=tracking_uri(), run_id=run.info.run_id, prefix=prefix, log_model=False)


def write_run_file(out_dir: Path, run, stage: str, **extra) -> None:
    write_json(
        Path(out_dir) / RUN_FILE,
        {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "stage": stage, **extra},
    )


def log_metrics_dict(metrics: dict, prefix: str = "") -> None:
    import mlflow

    flat = {
        f"{prefix}{k}": float(v)
        for k, v in flatten(metrics).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    if flat:
        mlflow.log_metrics(flat)


def write_metrics(path: Path, metrics: dict, place=None) -> None:
    """Write a stage's metrics JSON (for `dvc metrics`) and attach it to the active MLflow run;
    with `place`, the hardware and precision the numbers were made with go in too."""
    import mlflow

    write_json(path, {**metrics, "hardware": place.as_dict()} if place is not None else metrics)
    mlflow.log_artifact(str(path))


def log_classifier(model_dir: Path, tcfg, task: str) -> str | None:
    """Log a fine-tuned classifier with `mlflow.transformers` (a text-classification pipeline)
    and, if `tracking.register_prefix` is set, register it as `<prefix>-<task>` and point
    `tracking.alias` at the new version."""
    if not tcfg.get("log_model"):
        return None
    import mlflow
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    import torch
    import transformers

    # explicit requirements: MLflow's inference would import-scan the environment (slow, noisy)
    reqs = [f"torch=={torch.__version__.split('+')[0]}", f"transformers=={transformers.__version__}"]
    # the directory's own card (model_card.py); without one MLflow asks the Hugging Face Hub for
    # the card of a local path (a network call and a warning on every run)
    from huggingface_hub import ModelCard

    card = ModelCard((model_dir / "README.md").read_text(encoding="utf-8"))
    # our card's `license: other` is a placeholder it explains; MLflow would warn about it each run
    with dropped("mlflow.transformers", "Unable to find license information"):
        info = mlflow.transformers.log_model(
            {"model": model, "tokenizer": tokenizer},
            name="model",
            task="text-classification",
            pip_requirements=reqs,
            model_card=card,
        )
    if tcfg.get("register_prefix"):
        name = f"{tcfg.register_prefix}-{task}"
        version = mlflow.register_model(info.model_uri, name)
        if tcfg.get("alias"):
            mlflow.MlflowClient().set_registered_model_alias(name, str(tcfg.alias), version.version)
    return info.model_uri


def log_dataset(name: str, source: str, digest: str, profile: dict, context: str) -> None:
    """Record a dataset as an input of the active run (MLflow's Datasets column and section):
    `source` is a local path or `hf:<name>` (a Hugging Face dataset), `digest` identifies the
    content, `profile` holds its counts. Only metadata: the data stays where it is."""
    import json
    import warnings

    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    class ProfiledDataset(MetaDataset):
        @property
        def profile(self):
            return profile

        def to_dict(self):
            return {**super().to_dict(), "profile": json.dumps(profile)}

    if source.startswith("hf:"):
        src = HuggingFaceDatasetSource(path=source[3:])
    else:
        with warnings.catch_warnings():  # two registered local sources match a path; either is right
            warnings.simplefilter("ignore")
            src = resolve_dataset_source(str(Path(source).resolve()))
    mlflow.log_input(ProfiledDataset(src, name=name, digest=digest[:16]), context=context)


def digest_of(*parts) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def log_task_data(task, data, contexts: dict[str, str]) -> None:
    """Each split of a task's data named in `contexts` (split -> "training"/"validation"/"evaluation")."""
    source = task.get("source", "demo")
    where = (
        f"hf:{task.hf.path}"
        if source == "hf"
        else str(task.local.data_dir)
        if source == "local"
        else str(root_dir() / "src" / "bertforge" / "demo_language.py")
    )
    for split, context in contexts.items():
        examples = data.splits.get(split) or []
        digest = digest_of(*(f"{e.text_a}\t{e.text_b}\t{e.label}" for e in examples))
        log_dataset(
            f"{task.name}-{split}",
            where if source == "hf" else str(resolve_path(where)),
            digest,
            {"examples": len(examples), "labels": len(data.labels) if data.labels else "regression"},
            context,
        )
