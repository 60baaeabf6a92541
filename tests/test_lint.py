"""The fast tier fails on lint and formatting errors (ruff, configured in pyproject.toml)."""

import subprocess
import sys

import pytest

from conftest import REPO

PATHS = ["src", "pipelines", "tests", "benchmarks"]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_is_clean(command):
    pytest.importorskip("ruff")
    r = subprocess.run([sys.executable, "-m", "ruff", *command, *PATHS], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, f"ruff {' '.join(command)} (run `ruff format && ruff check --fix`):\n{r.stdout[-3000:]}"
