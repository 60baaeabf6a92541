"""The MLflow dashboard as a person sees it: start `mlflow ui` on 127.0.0.1 over a tracking store,
load the experiment's runs page in headless Chromium, check that the pipeline's parent run and its
stage runs are listed, and save a screenshot.

    python benchmarks/mlflow_ui_check.py --db mlflow.db --screenshot docs/img/mlflow_runs.png

Needs a Chromium binary (Debian: `apt-get install chromium-headless-shell` or `chromium`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {seconds:.0f} s")


def browser() -> str:
    found = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if found is None:
        raise FileNotFoundError(f"no Chromium found (tried {', '.join(BROWSERS)})")
    return found


def headless(url: str, *args: str) -> str:
    cmd = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--virtual-time-budget=20000", "--window-size=1600,900", *args, url]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout


def check(db: Path, screenshot: Path | None, expect: list[str]) -> list[str]:
    """Texts from `expect` missing from the rendered runs page (empty: all there)."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{db.resolve()}")
    exp = client.get_experiment_by_name("bertforge")
    if exp is None:
        raise SystemExit(f"{db}: no experiment 'bertforge'")
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{db.resolve()}",
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{port}/health", 90)
        url = f"http://127.0.0.1:{port}/#/experiments/{exp.experiment_id}/runs"
        for _ in range(3):  # a cold server can answer the page's first queries after the budget ran out
            dom = re.sub(r"<[^>]+>", "", headless(url, "--dump-dom"))  # the text a reader sees
            if all(text in dom for text in expect):
                break
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            headless(url, f"--screenshot={screenshot.resolve()}")
        return [text for text in expect if text not in dom]
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", type=Path, default=Path("mlflow.db"))
    ap.add_argument("--screenshot", type=Path, default=None)
    ap.add_argument(
        "--expect",
        nargs="+",
        default=["pipeline workspace"],
        help='texts the runs page must show, e.g. "6 matching runs" (a parent and its five stage runs)',
    )
    args = ap.parse_args()
    missing = check(args.db, args.screenshot, args.expect)
    print(f"runs page of {args.db}: " + (f"missing {missing}" if missing else f"shows {args.expect}"))
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    main()
