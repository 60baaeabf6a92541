import pytest
import torch

from bertforge.config import compose


def _pretrain(tmp_path, prepared, name, overrides=()):
    from safetensors.torch import load_file

    from bertforge.pretraining import pretrain
    from bertforge.tracking import stage_run

    cfg = compose(["corpus.num_documents=300", "tokenizer.vocab_size=3000", "pretrain.max_steps=30",
                   "pretrain.val_every_n_steps=15", "pretrain.checkpoint_every_n_steps=15",
                   "pretrain.val_max_examples=64", *overrides])
    out, ckpt = tmp_path / name / "model", tmp_path / name / "ckpt"
    out.mkdir(parents=True)
    with stage_run(cfg, "pretrain", {}) as run:
        metrics = pretrain(cfg, prepared, out, ckpt, run, tmp_path / name / "plots")
    return metrics, load_file(out / "model.safetensors")


@pytest.fixture()
def tracking(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_pretraining_is_reproducible(tmp_path, demo_prepared, tracking):
    _, prepared, _ = demo_prepared
    m1, w1 = _pretrain(tmp_path, prepared, "a")
    m2, w2 = _pretrain(tmp_path, prepared, "b")
    assert m1 == m2
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)
    m3, _ = _pretrain(tmp_path, prepared, "c", ["seed=99"])
    assert m3["mlm_loss"] != m1["mlm_loss"]


def test_impossible_sequence_length_fails_before_training(tmp_path, demo_prepared, tracking):
    from bertforge.config import ConfigError

    _, prepared, _ = demo_prepared
    with pytest.raises(ConfigError, match="pretrain.max_seq_length=600 exceeds model.max_position_embeddings=512"):
        _pretrain(tmp_path, prepared, "d", ["pretrain.max_seq_length=600"])
