"""Data parallelism: two CPU processes (gloo, launched by torchrun) train exactly what one process
trains at the same global batch; only rank 0 tracks and writes outputs."""

import json
import math
import os
import subprocess
import sys

import pytest

from conftest import REPO


def _pretrain(tmp_path, prepared, name, launcher, trainer, batch_size, extra=()):
    common = [
        f"paths.prepared={prepared}",
        f"paths.pretrained={tmp_path}/{name}/model",
        f"paths.checkpoints={tmp_path}/{name}/ckpt",
        f"paths.metrics={tmp_path}/{name}/metrics",
        f"paths.plots={tmp_path}/{name}/plots",
        "model.hidden_dropout_prob=0",
        "model.attention_probs_dropout_prob=0",
        "pretrain.max_steps=16",
        "pretrain.warmup_steps=4",
        "pretrain.val_every_n_steps=8",
        "pretrain.checkpoint_every_n_steps=8",
        "pretrain.val_max_examples=100",
        f"pretrain.batch_size={batch_size}",
        f"trainer={trainer}",
        "trainer.precision=32-true",
        *extra,
    ]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([*launcher, "pipelines/pretrain.py", *common], cwd=REPO, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    from safetensors.torch import load_file

    metrics = json.loads((tmp_path / name / "metrics" / "pretrain.json").read_text())
    return metrics, load_file(tmp_path / name / "model" / "model.safetensors")


@pytest.mark.slow  # torchrun starts two processes (~30 s)
@pytest.mark.parametrize("extra", [[], ["trainer.cuda_graphs=true"]])
def test_two_gloo_processes_match_one_process_at_the_same_global_batch(tmp_path, demo_prepared, extra):
    """Also when the two processes pad their batches to fixed shapes (labels -100 at the padded
    masked positions), which the global masked-token count must leave out."""
    _, prepared, _ = demo_prepared
    one, w_one = _pretrain(tmp_path, prepared, "one", [sys.executable], "cpu32", 32)
    two, w_two = _pretrain(
        tmp_path,
        prepared,
        "two",
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"],
        "ddp_cpu",
        16,
        extra,
    )
    # Same batches, same masks, gradients averaged with the global masked-token count: only the
    # order of float additions differs (fp32), so 16 AdamW steps agree to ~1e-5.
    assert two["steps"] == one["steps"] == 16
    for key in ("mlm_loss", "mlm_accuracy", "nsp_accuracy"):
        assert two[key] == pytest.approx(one[key], abs=2e-4), key
    worst = max(float((w_one[k] - w_two[k]).abs().max()) for k in w_one)
    assert worst < 1e-4, worst
    # and it really learned something in those steps (the comparison is not between two untrained
    # models): held-out MLM loss below a uniform guess over the 3,000-token vocabulary
    assert one["mlm_loss"] < math.log(3000) - 0.3, one
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    runs = mlflow.search_runs(search_all_experiments=True)
    assert len(runs) == 2 and set(runs["status"]) == {"FINISHED"}  # one per stage execution, not per rank
