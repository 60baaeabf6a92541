"""`prepare` end to end against the raw batch-encode speed of the same tokenizer on the same text,
and peak memory at 1x and 10x the corpus.

For each corpus profile, in one run on one machine, each measurement in a fresh subprocess:
  train   - `prepare` as `dvc repro` runs it: read + split + normalize, train WordPiece, encode, shards
  reuse   - `prepare` with that same tokenizer reused (`tokenizer.pretrained=DIR`): no training
  encode  - the baseline: the saved `tokenizers` tokenizer's `encode_batch` (all cores, Rayon) over the
            same normalized sentences already in memory; `encode_batch_fast` (no offsets) too
Peak RSS is sampled (every 50 ms) over the whole process tree: the stage plus its workers.

    python benchmarks/prepare_throughput.py --corpora wikipedia_en gutenberg korean --repeat 10
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from common import print_header

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = {
    "korean": ["tokenizer=korean"],
    "wikipedia_ko": ["tokenizer=korean"],
    "korean_petitions": ["tokenizer=korean"],
}

PREPARE = """
import json, sys, time
from bertforge.config import compose
from bertforge.data.preparation import prepare
from pathlib import Path
cfg = compose(json.loads(sys.argv[1]))
t = time.perf_counter()
stats = prepare(cfg, Path(sys.argv[2]))
print(json.dumps({"seconds": time.perf_counter() - t, "tokens": stats["tokens"], "documents": stats["documents"],
                  "text_bytes": stats["text_bytes"], "unk_rate": stats["unk_rate"], "vocab": stats["vocab_size"]}))
"""

ENCODE = """
import json, sys, time
from tokenizers import Tokenizer
from bertforge.config import compose
from bertforge.data.corpus import read_corpus
cfg = compose(json.loads(sys.argv[1]))
sentences = [s for d in read_corpus(cfg.corpus) for s in d]
tok = Tokenizer.from_file(sys.argv[2])
out = {}
for name in ("encode_batch", "encode_batch_fast"):
    fn = getattr(tok, name)
    t = time.perf_counter()
    n = sum(len(e) for i in range(0, len(sentences), 4096) for e in fn(sentences[i : i + 4096], add_special_tokens=False))
    out[name] = {"seconds": time.perf_counter() - t, "tokens": n}
print(json.dumps(out))
"""


def run_measured(code: str, *args: str) -> tuple[dict, float]:
    """Run a Python snippet; (its JSON result, peak RSS in GB of its process tree)."""
    proc = psutil.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    peak = 0
    while proc.poll() is None:
        try:
            tree = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"measurement failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), peak / 1e9


def files_of(profile: str) -> list[str]:
    from bertforge.config import compose

    return list(compose([f"corpus={profile}"]).corpus.files)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", nargs="+", default=["wikipedia_en", "gutenberg", "korean"])
    ap.add_argument(
        "--repeat", type=int, default=10, help="the RSS check: the first corpus's files listed this many times"
    )
    ap.add_argument("--vocab-size", type=int, default=16000)
    ap.add_argument("--out", default="benchmarks/results/prepare_throughput.json")
    args = ap.parse_args()
    print_header()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for profile in args.corpora:
            base = [f"corpus={profile}", *TOKENIZER.get(profile, [f"tokenizer.vocab_size={args.vocab_size}"])]
            trained, rss = run_measured(PREPARE, json.dumps(base), f"{tmp}/{profile}")
            tok_dir = f"{tmp}/{profile}/tokenizer"
            reused, rss_reuse = run_measured(
                PREPARE, json.dumps([*base, f"tokenizer.pretrained={tok_dir}"]), f"{tmp}/{profile}-reuse"
            )
            encode, _ = run_measured(ENCODE, json.dumps(base), f"{tok_dir}/tokenizer.json")
            assert reused["tokens"] == trained["tokens"] == encode["encode_batch"]["tokens"], "not the same text"
            row = {
                "corpus": profile,
                "documents": trained["documents"],
                "text_mb": trained["text_bytes"] / 1e6,
                "tokens": trained["tokens"],
                "unk_rate": trained["unk_rate"],
                "vocab": trained["vocab"],
                "prepare_s": trained["seconds"],
                "prepare_reuse_s": reused["seconds"],
                "encode_batch_s": encode["encode_batch"]["seconds"],
                "encode_batch_fast_s": encode["encode_batch_fast"]["seconds"],
                "peak_rss_gb": rss,
                "peak_rss_reuse_gb": rss_reuse,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            for d in (f"{tmp}/{profile}", f"{tmp}/{profile}-reuse"):
                subprocess.run(["rm", "-rf", d])
        scale = None
        if args.repeat > 1:
            profile = args.corpora[0]
            files = files_of(profile) * args.repeat
            over = [f"corpus={profile}", f"corpus.files=[{','.join(files)}]", f"tokenizer.vocab_size={args.vocab_size}"]
            big, rss_big = run_measured(PREPARE, json.dumps(over), f"{tmp}/big")
            scale = {
                "corpus": profile,
                "repeat": args.repeat,
                "tokens": big["tokens"],
                "prepare_s": big["seconds"],
                "peak_rss_gb": rss_big,
                "peak_rss_1x_gb": rows[0]["peak_rss_gb"],
            }
            print(json.dumps(scale), flush=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "scale": scale}, indent=1))
    print_table(rows, scale)


def print_table(rows: list[dict], scale: dict | None) -> None:
    print(
        "\n| corpus | text MB | tokens | raw encode_batch tok/s | prepare, reused tokenizer tok/s (ratio) "
        "| prepare incl. WordPiece training tok/s (ratio) | peak RSS GB |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        raw = r["tokens"] / r["encode_batch_s"]
        reuse, full = r["tokens"] / r["prepare_reuse_s"], r["tokens"] / r["prepare_s"]
        print(
            f"| {r['corpus']} | {r['text_mb']:.1f} | {r['tokens'] / 1e6:.2f}M | {raw / 1e6:.2f}M "
            f"(fast: {r['tokens'] / r['encode_batch_fast_s'] / 1e6:.2f}M) | {reuse / 1e6:.2f}M ({reuse / raw:.0%}) "
            f"| {full / 1e6:.2f}M ({full / raw:.0%}) | {r['peak_rss_gb']:.2f} |"
        )
    if scale:
        print(
            f"\n{scale['corpus']} x{scale['repeat']}: {scale['tokens'] / 1e6:.1f}M tokens in {scale['prepare_s']:.0f} s, "
            f"peak RSS {scale['peak_rss_gb']:.2f} GB vs {scale['peak_rss_1x_gb']:.2f} GB at 1x "
            f"({scale['peak_rss_gb'] / scale['peak_rss_1x_gb']:.2f}x)"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--table-from"]:
        data = json.loads(Path(sys.argv[2]).read_text())
        print_table(data["rows"], data["scale"])
    else:
        main()
