"""`dvc exp run` end to end on a tiny configuration in a temporary git copy of the repository:
stage outputs, DVC metrics, MLflow runs and lineage tags, and transformers loading."""

import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, checkpoint_step

TINY = [
    "corpus.num_documents=240",
    "tokenizer.vocab_size=1500",
    "pretrain.max_steps=40",
    "pretrain.val_every_n_steps=20",
    "pretrain.checkpoint_every_n_steps=20",
    "pretrain.val_max_examples=128",
    "tasks.demo.num_train=64",
    "tasks.demo.num_dev=64",
    "tasks.demo.finetune.epochs=2",
]


def _env() -> dict:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def sh(args, cwd, **kw):
    r = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{args} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory):
    dst = tmp_path_factory.mktemp("e2e") / "repo"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for f in files:
        if (REPO / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dst / f)
    sh(["git", "init", "-q"], dst)
    sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"], dst)
    sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "copy"], dst)
    out = sh(["dvc", "exp", "run", "-n", "tiny", *[a for o in TINY for a in ("-S", o)]], dst, timeout=900)
    return dst, out


def test_exp_run_composes_params_and_runs_every_stage(repo_copy):
    repo, out = repo_copy
    for stage in ("prepare", "pretrain", "finetune@demo", "evaluate@demo", "summarize"):
        assert f"Running stage '{stage}'" in out
    import yaml

    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["pretrain"]["max_steps"] == 40 and params["tasks"]["demo"]["num_train"] == 64
    assert params["model"]["name"] == "tiny"


def test_outputs_and_metrics(repo_copy):
    repo, _ = repo_copy
    prep = json.loads((repo / "metrics/prepare.json").read_text())
    assert prep["documents"] == 240 and prep["vocab_size"] <= 1500 and prep["unk_rate"] < 0.01
    pre = json.loads((repo / "metrics/pretrain.json").read_text())
    assert pre["steps"] == 40
    # 40 steps learn something: held-out MLM loss below a uniform guess over the vocabulary, and
    # the reported perplexity is that loss's exponential
    assert pre["mlm_loss"] < math.log(prep["vocab_size"]) - 0.3
    assert pre["perplexity"] == pytest.approx(math.exp(pre["mlm_loss"]), rel=1e-5)
    assert 0.02 < pre["unigram_accuracy"] <= pre["mlm_accuracy"] + 0.02 and 0.3 <= pre["nsp_accuracy"] <= 1
    ev = json.loads((repo / "metrics/eval/demo.json").read_text())
    assert ev["dev"]["examples"] == 64 and 0 <= ev["dev"]["accuracy"] <= 1
    assert ev["pretraining_gain"] == pytest.approx(ev["dev"]["score"] - ev["random_init_dev"]["score"])
    summary = json.loads((repo / "metrics/summary.json").read_text())
    assert summary["tasks"] == {"demo": ev["dev"]["score"]}
    shown = json.loads(sh(["dvc", "metrics", "show", "--json"], repo))
    assert "metrics/eval/demo.json" in json.dumps(shown)
    rows = (repo / "plots/pretrain/valid.csv").read_text().splitlines()
    assert rows[0].startswith("step,val/mlm_loss") and [r.split(",")[0] for r in rows[1:]] == ["20", "40"]
    preds = (repo / "outputs/eval/demo/model_dev_predictions.tsv").read_text().splitlines()
    assert len(preds) == 65 and preds[0].split("\t")[:3] == ["source", "label", "prediction"]
    # a second repro has nothing to do
    assert "Data and pipelines are up to date." in sh(["dvc", "repro"], repo)


def test_mlflow_runs_and_lineage(repo_copy):
    import mlflow

    repo, _ = repo_copy
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bertforge")
    runs = {r.data.tags["stage"]: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"pipeline", "prepare", "pretrain", "finetune", "evaluate", "summarize"}
    head = sh(["git", "rev-parse", "HEAD"], repo).strip()
    for r in runs.values():
        assert r.info.status == "FINISHED"
        assert r.data.tags["git_commit"] == head
        assert r.data.tags["dvc_experiment"] == "tiny" and r.data.tags["git_dirty"] == "true"  # params.yaml changed
    # one pipeline execution = one parent run holding the summary; each stage run is its child
    parent = runs.pop("pipeline")
    assert {r.data.tags["mlflow.parentRunId"] for r in runs.values()} == {parent.info.run_id}
    summary = json.loads((repo / "metrics/summary.json").read_text())
    assert parent.data.metrics["average"] == pytest.approx(summary["average"])
    assert parent.data.metrics["tasks.demo"] == pytest.approx(summary["tasks"]["demo"])
    assert parent.data.metrics["pretrain/mlm_accuracy"] == runs["pretrain"].data.metrics["final/mlm_accuracy"]
    inputs = {
        r.data.tags["stage"]: [(d.dataset.name, [t.value for t in d.tags]) for d in r.inputs.dataset_inputs]
        for r in runs.values()
    }
    assert inputs["prepare"] == [("corpus-demo", ["training"])] and inputs["pretrain"] == [
        ("shards-demo", ["training"])
    ]
    assert inputs["finetune"] == [("demo-train", ["training"]), ("demo-dev", ["validation"])]
    up = {s: runs[s].data.tags.get("upstream_run_id") for s in runs}
    assert up["pretrain"] == runs["prepare"].info.run_id
    assert up["finetune"] == runs["pretrain"].info.run_id
    assert up["evaluate"] == runs["finetune"].info.run_id
    assert runs["finetune"].data.tags["task"] == "demo"
    assert runs["pretrain"].data.params["pretrain.max_steps"] == "40"
    assert "val/mlm_accuracy" in runs["pretrain"].data.metrics
    assert "train/loss" in runs["pretrain"].data.metrics
    assert any(a.path == "config.yaml" for a in client.list_artifacts(runs["pretrain"].info.run_id))


def test_exported_directories_load_with_transformers(repo_copy):
    import torch
    from transformers import (
        AutoModelForMaskedLM,
        AutoModelForPreTraining,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        pipeline,
    )

    repo, _ = repo_copy
    pre = repo / "outputs/pretrain"
    assert (pre / "model.safetensors").exists()
    AutoModelForPreTraining.from_pretrained(pre)
    AutoModelForMaskedLM.from_pretrained(pre)
    fill = pipeline("fill-mask", model=str(pre), tokenizer=str(pre), device="cpu")
    assert len(fill("the [MASK] .", top_k=3)) == 3
    clf_dir = repo / "outputs/finetune/demo/model"
    clf = AutoModelForSequenceClassification.from_pretrained(clf_dir)
    tok = AutoTokenizer.from_pretrained(clf_dir)
    assert clf.config.num_labels == 2 and clf.config.id2label == {0: "ungrammatical", 1: "grammatical"}
    with torch.no_grad():
        assert clf(**tok(["the cat runs ."], return_tensors="pt")).logits.shape == (1, 2)


def test_model_cards_describe_the_run(repo_copy):
    import yaml

    repo, _ = repo_copy
    pre_metrics = json.loads((repo / "metrics/pretrain.json").read_text())
    for directory, metric in (("outputs/pretrain", pre_metrics["mlm_accuracy"]), ("outputs/finetune/demo/model", None)):
        text = (repo / directory / "README.md").read_text()
        header = yaml.safe_load(text.split("---\n")[1])
        assert header["library_name"] == "transformers" and "bertforge" in header["tags"]
        values = [m["value"] for m in header["model-index"][0]["results"][0]["metrics"]]
        if metric is not None:
            assert values[0] == round(metric, 4) and "40 steps of 32" in text
        else:
            best = json.loads((repo / "outputs/finetune/demo/finetune.json").read_text())["model"]["best_dev"]
            assert values == [round(best[k], 4) for k in best if k != "epoch"]
        run_id = json.loads((repo / directory.replace("/model", "") / "run.json").read_text())["run_id"]
        assert f"MLflow run: `{run_id}`" in text and "DVC experiment: `tiny`" in text
    config = json.loads((repo / "outputs/finetune/demo/model/config.json").read_text())
    assert config["finetuning_task"] == "demo" and config["text_pairs"] is False  # what `bertforge predict` reads
    assert "Input: single sentences." in text


def test_hydra_sweep_runs_every_job_and_writes_nothing_into_the_repo(repo_copy):
    repo, _ = repo_copy
    before = sh(["git", "status", "--porcelain", "--untracked-files=all"], repo)
    out = sh([sys.executable, "pipelines/summarize.py", "-m", "seed=1,2"], repo)
    assert out.count("summary: ") == 2
    assert sh(["git", "status", "--porcelain", "--untracked-files=all"], repo) == before


def _exp_metrics(shown: list) -> dict:
    """{experiment name: {metrics file: data}} from `dvc exp show --json` (DVC 3's layout)."""
    found = {}
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs") or []:
                metrics = ((rev.get("data") or {}).get("metrics")) or {}
                found[rev.get("name") or exp.get("name")] = {f: (m or {}).get("data") for f, m in metrics.items()}
    return found


@pytest.mark.slow  # a second `dvc exp run` (61 s on a 2-core AVX2 CPU)
def test_exp_show_compares_the_metrics_of_experiments(repo_copy):
    """Moves the copy's workspace to a new experiment: after the tests that read the first one.
    Metrics files are tracked in git, so every experiment commit carries its metrics."""
    repo, _ = repo_copy
    one_epoch = [o for o in TINY if not o.startswith("tasks.demo.finetune.epochs")] + ["tasks.demo.finetune.epochs=1"]
    out = sh(["dvc", "exp", "run", "-n", "tiny-1ep", *[a for o in one_epoch for a in ("-S", o)]], repo, timeout=900)
    assert "Stage 'pretrain' didn't change, skipping" in out and "Running stage 'finetune@demo'" in out
    exps = _exp_metrics(json.loads(sh(["dvc", "exp", "show", "--json"], repo)))
    assert {"tiny", "tiny-1ep"} <= set(exps), exps.keys()
    for name in ("tiny", "tiny-1ep"):
        m = exps[name]
        assert m["metrics/pretrain.json"]["steps"] == 40, (name, m)
        assert 0 <= m["metrics/eval/demo.json"]["dev"]["score"] <= 1 and "tasks" in m["metrics/summary.json"]
        assert m["metrics/prepare.json"]["documents"] == 240
    diff = json.loads(sh(["dvc", "exp", "diff", "tiny", "tiny-1ep", "--json"], repo))
    assert "tasks.demo.finetune.epochs" in json.dumps(diff["params"])


@pytest.mark.slow  # two queued experiments in their own workspaces (161 s on a 2-core AVX2 CPU)
def test_queued_and_temporary_experiments_run_in_their_own_workspace(repo_copy):
    """`dvc exp run --queue` + `dvc queue start -j 2` (and `--temp`, the same executor) run each
    stage in a temporary workspace while $DVC_ROOT names the checkout: outputs stay in the
    workspace (and come back as experiment commits), MLflow runs land in the checkout's store."""
    import time

    import mlflow

    repo, _ = repo_copy
    names = {"q-lr1": "1e-4", "q-lr2": "3e-4"}
    for name, lr in names.items():
        sh(
            ["dvc", "exp", "run", "--queue", "-n", name, *[a for o in TINY + [f"finetune.lr={lr}"] for a in ("-S", o)]],
            repo,
        )
    # the workers run detached and inherit the output of `dvc queue start`: through a pipe, `sh`
    # would wait for them to exit, and a worker can miss its shutdown (dvc-task's empty-queue
    # monitor racing a task still running; seen once here) and idle for ever. So: a file, and a kill.
    try:
        with open(repo.parent / "queue-start.log", "w") as log:
            subprocess.run(
                ["dvc", "queue", "start", "-j", "2"],
                cwd=repo,
                env=_env(),
                stdout=log,
                stderr=log,
                timeout=120,
                check=True,
            )
        deadline = time.time() + 600
        while time.time() < deadline:
            status = sh(["dvc", "queue", "status"], repo, timeout=120)
            if not any(w in status for w in ("Queued", "Running")):
                break
            time.sleep(3)
    finally:
        import psutil

        for pid in (repo / ".dvc" / "tmp" / "exps" / "celery").glob("*.pid"):
            with contextlib.suppress(ValueError, psutil.Error):
                worker = psutil.Process(int(pid.read_text().strip()))
                if "queue-worker" in " ".join(worker.cmdline()):  # not a process that took a finished one's id
                    worker.terminate()
    assert "Failed" not in status and status.count("Success") >= 2, status + sh(["dvc", "queue", "logs", "q-lr1"], repo)
    exps = _exp_metrics(json.loads(sh(["dvc", "exp", "show", "--json"], repo)))
    for name in names:
        assert 0 <= exps[name]["metrics/eval/demo.json"]["dev"]["score"] <= 1, exps.get(name)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("bertforge").experiment_id], "tags.stage = 'finetune'")
    assert set(names) <= {r.data.tags["dvc_experiment"] for r in runs if r.info.status == "FINISHED"}
    assert not (repo / ".dvc" / "tmp" / "exps" / "mlflow.db").exists()


@pytest.mark.slow  # a second `dvc exp run` (~1 min)
def test_changed_group_reruns_only_affected_stages(repo_copy):
    """Last in this module: it moves the copy's workspace to a new experiment."""
    repo, _ = repo_copy
    out = sh(
        ["dvc", "exp", "run", "-n", "tiny-mini", *[a for o in TINY + ["model=mini"] for a in ("-S", o)]],
        repo,
        timeout=900,
    )
    assert "Stage 'prepare' didn't change, skipping" in out
    for stage in ("pretrain", "finetune@demo", "evaluate@demo"):
        assert f"Running stage '{stage}'" in out
    import yaml

    assert yaml.safe_load((repo / "params.yaml").read_text())["model"]["hidden_size"] == 256
    shown = sh(["dvc", "exp", "show", "--json"], repo)
    assert "tiny-mini" in shown and "tiny" in shown


@pytest.mark.slow  # three 400-step pre-trainings under DVC (~1.5 min); tests/test_pretraining.py resumes in-process
def test_kill_9_mid_pretraining_then_dvc_repro_resumes_to_the_same_weights(repo_copy):
    """Last: rewrites the copy's params. A `dvc repro` killed with SIGKILL after a checkpoint is
    resumed by the next `dvc repro` (same MLflow run) and ends bit-identical to a run never killed."""
    import signal
    import time

    import mlflow
    import yaml
    from safetensors.torch import load_file

    repo, _ = repo_copy
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["model"] = yaml.safe_load((repo / "conf/model/tiny.yaml").read_text())
    params["pretrain"].update(max_steps=400, checkpoint_every_n_steps=25, val_every_n_steps=200, log_every_n_steps=25)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ckpt, out = repo / "checkpoints/pretrain", repo / "outputs/pretrain"

    sh(["dvc", "repro", "pretrain"], repo, timeout=600)
    reference = load_file(out / "model.safetensors")

    shutil.rmtree(ckpt)
    shutil.rmtree(out)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        ["dvc", "repro", "pretrain"],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and checkpoint_step(ckpt / "last.ckpt") < 100:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = checkpoint_step(ckpt / "last.ckpt")
    assert 100 <= killed_at < 400 and not (out / "model.safetensors").exists()
    assert list(out.parent.glob(".pretrain.tmp-*"))  # the killed run's half-written output

    log = sh(["dvc", "repro", "pretrain"], repo, timeout=600)
    assert "Running stage 'pretrain'" in log
    resumed = load_file(out / "model.safetensors")
    assert not list(out.parent.glob(".pretrain.tmp-*"))
    assert resumed.keys() == reference.keys() and all(torch_equal(resumed[k], reference[k]) for k in reference)

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("bertforge").experiment_id], filter_string="params.`pretrain.max_steps` = '400'"
    )
    assert len(runs) == 2  # the uninterrupted run, and the killed run continued to its end
    assert all(r.info.status == "FINISHED" for r in runs)
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "train/loss")]
    assert min(steps) < killed_at < max(steps)


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)
