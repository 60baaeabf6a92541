"""Progress lines: what a user reads in a log or on a terminal while long work runs."""

import io
from types import SimpleNamespace

import pytest

from bertforge import progress_items
from bertforge.progress_items import ItemProgress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(progress_items.time, "perf_counter", c)
    return c


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_item_progress_prints_a_line_every_interval_in_logs_and_a_final_one(clock):
    out = io.StringIO()
    p = ItemProgress("predict", 1000, every_s=30, quiet_s=5, stream=out)
    for _ in range(10):  # 100 examples every 10 s
        clock.now += 10
        p.update(100)
    p.close()
    assert out.getvalue().splitlines() == [
        "[predict] 100/1,000 examples (10%), 10/s, 0m10s elapsed, ETA 1m30s",  # past quiet_s, a first line
        "[predict] 400/1,000 examples (40%), 10/s, 0m40s elapsed, ETA 1m00s",  # then every 30 s
        "[predict] 700/1,000 examples (70%), 10/s, 1m10s elapsed, ETA 0m30s",
        "[predict] 1,000/1,000 examples (100%), 10/s, 1m40s elapsed, done",
    ]


def test_item_progress_is_silent_for_quick_work_and_rewrites_one_line_on_a_terminal(clock):
    out = io.StringIO()
    p = ItemProgress("embed", 64, "sentences", stream=out)
    clock.now += 1
    p.update(64)
    p.close()
    assert out.getvalue() == ""  # a handful of sentences: only the answer
    term = Terminal()
    p = ItemProgress("embed", 3, "sentences", quiet_s=0, stream=term)
    for _ in range(3):
        clock.now += 1
        p.update(1)
    p.close()
    text = term.getvalue()
    assert text.count("\r\033[K") == 3 and text.endswith("[embed] 3/3 sentences (100%), 1/s, 0m03s elapsed, done\n")
    assert text.count("\n") == 1  # the running lines rewrite each other


def test_step_progress_line_names_step_rate_eta_and_losses(monkeypatch):
    from bertforge.progress import StepProgress

    bar = StepProgress("pretrain", stream=io.StringIO())
    bar._t0 = 0.0
    monkeypatch.setattr("bertforge.progress.time.perf_counter", lambda: 50.0)
    metrics = {"train/loss": 7.25, "val/x": 1.0}
    monkeypatch.setattr(StepProgress, "get_metrics", lambda self, trainer, module: metrics)
    trainer = SimpleNamespace(global_step=100, estimated_stepping_batches=1000, current_epoch=0)
    line = bar._line(trainer, SimpleNamespace())
    assert line == "[pretrain] step 100/1,000 (10%), epoch 0, 2.00 steps/s, 0m50s elapsed, ETA 7m30s, loss 7.25"
