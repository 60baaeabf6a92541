"""The dashboard as a person sees it: headless Chromium loads the runs page of a store holding one
pipeline execution (a parent run and its stage runs) and finds them listed."""

import importlib.util
import shutil

import pytest
from omegaconf import OmegaConf

from conftest import REPO


@pytest.mark.slow  # starts an MLflow server and a browser (~30 s)
def test_runs_page_lists_the_pipeline_group(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("ui_check", REPO / "benchmarks" / "mlflow_ui_check.py")
    ui = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ui)
    if not any(shutil.which(b) for b in ui.BROWSERS):
        pytest.skip("no Chromium (apt-get install chromium-headless-shell)")
    from bertforge.tracking import stage_run

    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    monkeypatch.setenv("DVC_STAGE", "prepare")  # as under `dvc repro`: stage runs join one parent
    cfg = OmegaConf.create({"tracking": {"experiment": "bertforge", "system_metrics": False}})
    for stage in ("prepare", "pretrain"):
        with stage_run(cfg, stage, {"seed": 1}):
            pass
    # the parent is listed, and the count includes its two (collapsed) stage runs
    assert ui.check(db, tmp_path / "runs.png", ["pipeline workspace", "3 matching runs"]) == []
    assert (tmp_path / "runs.png").stat().st_size > 10_000
