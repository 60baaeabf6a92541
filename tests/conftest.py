import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")


def needs_shared(path: str) -> Path:
    p = SHARED_DATA / path
    if not p.exists():
        pytest.skip(f"{p} not available")
    return p


@pytest.fixture(scope="session")
def demo_prepared(tmp_path_factory):
    """A small demo corpus prepared once: tokenizer dir + shards."""
    from bertforge.config import compose
    from bertforge.preparation import prepare

    cfg = compose(["corpus.num_documents=300", "tokenizer.vocab_size=3000"])
    out = tmp_path_factory.mktemp("prepared")
    stats = prepare(cfg, out)
    return cfg, out, stats
