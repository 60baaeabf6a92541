"""The pre-training benchmark runs on a CPU as it will on a GPU (`--device`), and prints its tables."""

import re
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow  # runs the pretrain stage twice and four recipes (~1 min)
def test_pretrain_benchmark_on_cpu_prints_throughput_mfu_and_memory(demo_prepared):
    _, prepared, _ = demo_prepared
    args = ["--device", "cpu", "--prepared", str(prepared), "--sizes", "tiny", "--steps", "4", "--warmup", "1"]
    r = subprocess.run(
        [sys.executable, "benchmarks/pretrain_vs_hf.py", *args, "--window", "2", "--peak-tflops", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert out.startswith("# machine: ") and "precision" in out.splitlines()[0]
    speed = next(line for line in out.splitlines() if line.startswith("| tiny |") and "x |" in line)
    assert re.search(r"\| \d+ \| \d+ \|", speed)  # tokens/s figures
    mfu = next(line for line in out.splitlines() if line.startswith("| tiny |") and "%" in line and "x |" not in line)
    cells = [c.strip() for c in mfu.strip("|").split("|")]
    assert float(cells[1]) > 0  # GFLOP per token
    assert all(re.fullmatch(r"\d+\.\d%", c) for c in cells[2:-2])  # MFU against the given peak
    assert all(float(c) > 0 for c in cells[-2:])  # peak memory, GB
