import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")


def checkpoint_step(path: Path) -> int:
    """The step a Lightning checkpoint was saved at; -1 while there is none (files appear whole: written aside, renamed)."""
    import torch

    return torch.load(path, weights_only=True, map_location="cpu")["global_step"] if path.exists() else -1


def needs_shared(path: str) -> Path:
    p = SHARED_DATA / path
    if not p.exists():
        pytest.skip(f"{p} not available")
    return p


@pytest.fixture(scope="session")
def demo_prepared(tmp_path_factory):
    """A small demo corpus prepared once: tokenizer dir + shards."""
    from bertforge.config import compose
    from bertforge.data.preparation import prepare

    cfg = compose(["corpus.num_documents=300", "tokenizer.vocab_size=3000"])
    out = tmp_path_factory.mktemp("prepared")
    stats = prepare(cfg, out)
    return cfg, out, stats


@pytest.fixture()
def tracking(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")


@pytest.fixture()
def pretrain_run():
    """Pre-train a small BERT on prepared shards with the stage's own function: returns
    (metrics, exported weights). 30 steps unless the overrides say otherwise."""

    def run(tmp_path, prepared, name, overrides=(), callbacks=(), **kwargs):
        from safetensors.torch import load_file

        from bertforge.config import compose
        from bertforge.pretraining.loop import pretrain
        from bertforge.tracking import stage_run

        cfg = compose(
            [
                "corpus.num_documents=300",
                "tokenizer.vocab_size=3000",
                "pretrain.max_steps=30",
                "pretrain.val_every_n_steps=15",
                "pretrain.checkpoint_every_n_steps=15",
                "pretrain.val_max_examples=64",
                *overrides,
            ]
        )
        out, ckpt = tmp_path / name / "model", tmp_path / name / "ckpt"
        out.mkdir(parents=True, exist_ok=True)
        with stage_run(cfg, "pretrain", {}) as mlrun:
            metrics = pretrain(cfg, prepared, out, ckpt, mlrun, tmp_path / name / "plots", callbacks, **kwargs)
        return metrics, load_file(out / "model.safetensors")

    return run


@pytest.fixture(scope="module")
def parts(demo_prepared):
    """(config, training shard, special ids, tokenizer) of the demo prepare."""
    from bertforge.data.masking import SpecialIds
    from bertforge.data.shards import Shard
    from bertforge.data.tokenization import load_tokenizer

    cfg, out, _ = demo_prepared
    tok = load_tokenizer(out / "tokenizer")
    return cfg, Shard(out / "shards" / "train"), SpecialIds.from_tokenizer(tok), tok
