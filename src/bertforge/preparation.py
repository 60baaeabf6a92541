"""The `prepare` stage: corpus -> normalized text -> WordPiece tokenizer -> token shards + stats.

1. The reader streams documents (cleaned, normalized, sentence-split) into `work/corpus.txt` in
   Google's format, remembering where each document starts.
2. WordPiece is trained on that file (in Rust, every core), or an existing tokenizer is reused.
3. Worker processes encode contiguous ranges of documents into shard parts, which are merged in
   document order. The train/valid assignment is drawn per document index up front, so the output
   is byte-identical for any number of workers.
"""
from __future__ import annotations

import array
import multiprocessing as mp
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from .config import ConfigError
from .corpus import read_corpus
from .shards import SPLITS, PartWriter, merge_parts, token_dtype, write_meta
from .tokenization import (bert_normalizer, check_hangul_safe, check_keeps_hangul, load_tokenizer, resolve_tokenizer_dir, save_tokenizer,
                           train_wordpiece)

LENGTH_BINS = [0, 8, 16, 32, 64, 128, 256, 512, 10**9]
TASK_BYTES = 4 << 20  # text per encoding task: small enough for steady progress, large enough to amortize


class Progress:
    """A line on stderr every few seconds, so long preparations show they are moving."""

    def __init__(self, what: str, every_s: float = 5.0):
        self.what, self.every_s, self.t0 = what, every_s, time.perf_counter()
        self._last = self.t0

    def update(self, message: str, force: bool = False) -> None:
        now = time.perf_counter()
        if force or now - self._last >= self.every_s:
            print(f"[prepare] {self.what}: {message} ({now - self.t0:.0f}s)", file=sys.stderr, flush=True)
            self._last = now


def write_text(docs, path: Path, char_counts: Counter | None = None, normalizer=None) -> np.ndarray:
    """Documents -> Google's format; returns the byte offset of every document start plus the end.
    With `char_counts`, also counts the characters of the text as `normalizer` leaves it."""
    starts = array.array("q", [0])
    progress = Progress("read")
    with open(path, "wb") as fh:
        for doc in docs:
            text = "\n".join(doc)
            fh.write((text + "\n\n").encode("utf-8"))
            if char_counts is not None:
                char_counts.update(normalizer.normalize_str(text))
            starts.append(fh.tell())
            if len(starts) % 1000 == 0:
                progress.update(f"{len(starts) - 1:,} documents, {starts[-1] / 1e6:,.0f} MB of text")
    return np.frombuffer(starts, dtype=np.int64)


# ---------------------------------------------------------------- encoding workers
_TOKENIZER: dict = {}


def _init_worker(tokenizer_json: str, single_thread: bool) -> None:
    if single_thread:  # processes are the parallelism; one Rayon thread each avoids oversubscription
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from tokenizers import Tokenizer

    _TOKENIZER["tok"] = Tokenizer.from_file(tokenizer_json)


def encode_range(task: dict) -> dict:
    """Encode documents [first, last) (bytes [b0, b1) of the text file) into one part per split."""
    tok = _TOKENIZER["tok"]
    unk = tok.token_to_id("[UNK]")
    with open(task["text"], "rb") as fh:
        fh.seek(task["b0"])
        text = fh.read(task["b1"] - task["b0"]).decode("utf-8")
    docs = [d.split("\n") for d in text[:-2].split("\n\n")] if text else []
    assert len(docs) == len(task["valid"]), "document offsets do not match the text file"
    writers = {s: PartWriter(Path(task["part"]) / s, np.dtype(task["dtype"])) for s in SPLITS}
    hist = np.zeros(len(LENGTH_BINS) - 1, dtype=np.int64)
    unk_tokens = single = 0
    batch = 512
    for i in range(0, len(docs), batch):
        chunk = docs[i : i + batch]
        ids = tok.encode_batch_fast([s for d in chunk for s in d], add_special_tokens=False)
        lens = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        hist += np.histogram(lens, bins=LENGTH_BINS)[0]
        unk_tokens += sum(x.ids.count(unk) for x in ids)
        pos = 0
        for j, d in enumerate(chunk):
            single += len(d) == 1
            sentences = [ids[pos + k].ids for k in range(len(d))]
            pos += len(d)
            writers["valid" if task["valid"][i + j] else "train"].add_document(sentences)
    return {"parts": {s: w.close() for s, w in writers.items()}, "hist": hist, "unk_tokens": unk_tokens,
            "single_sentence_documents": single}


def _tasks(text: Path, starts: np.ndarray, valid: np.ndarray, parts_dir: Path, dtype: np.dtype) -> list[dict]:
    tasks, first = [], 0
    n = len(starts) - 1
    while first < n:
        last = int(np.searchsorted(starts, starts[first] + TASK_BYTES, side="left"))
        last = min(max(last, first + 1), n)
        tasks.append({"text": str(text), "b0": int(starts[first]), "b1": int(starts[last]), "valid": valid[first:last],
                      "part": str(parts_dir / f"{len(tasks):06d}"), "dtype": dtype.name})
        first = last
    return tasks


def encode_corpus(text: Path, starts: np.ndarray, tokenizer_json: Path, out_dir: Path, vocab_size: int,
                  valid_fraction: float, seed: int, workers: int) -> dict:
    n_docs = len(starts) - 1
    valid = np.random.default_rng(seed).random(n_docs) < valid_fraction
    dtype = token_dtype(vocab_size)
    tasks = _tasks(text, starts, valid, out_dir / "parts", dtype)
    progress = Progress("encode")
    results = []
    if workers <= 1:
        _init_worker(str(tokenizer_json), single_thread=False)
        mapped = map(encode_range, tasks)
        pool = None
    else:  # spawn: the parent's Rayon thread pool must not be forked
        pool = mp.get_context("spawn").Pool(workers, _init_worker, (str(tokenizer_json), True))
        mapped = pool.imap(encode_range, tasks)
    try:
        for r in mapped:
            results.append(r)
            progress.update(f"{len(results)}/{len(tasks)} parts, {sum(x['parts']['train']['tokens'] for x in results):,} train tokens")
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    splits = {s: merge_parts([(Path(t["part"]) / s, r["parts"][s]) for t, r in zip(tasks, results)], out_dir / s, dtype)
              for s in SPLITS}
    shutil.rmtree(out_dir / "parts", ignore_errors=True)
    write_meta(out_dir, vocab_size, dtype, splits)
    hist = sum((r["hist"] for r in results), np.zeros(len(LENGTH_BINS) - 1, dtype=np.int64))
    return {
        "splits": splits,
        "unk_tokens": sum(r["unk_tokens"] for r in results),
        "single_sentence_documents": sum(r["single_sentence_documents"] for r in results),
        "sentence_length_histogram": {f"{lo}-{hi - 1}" if hi < 10**9 else f"{lo}+": int(n)
                                      for lo, hi, n in zip(LENGTH_BINS, LENGTH_BINS[1:], hist)},
    }


def _sample_lines(path: Path, n: int) -> list[str]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(line.rstrip("\n"))
                if len(out) >= n:
                    break
    return out


def tokenizer_for(cfg, text: Path, char_counts: Counter, out_dir: Path):
    """Train WordPiece on the text, or reuse `tokenizer.pretrained` (a directory or pkg:...)."""
    sample = _sample_lines(text, 5000)
    if cfg.tokenizer.get("pretrained"):
        src = resolve_tokenizer_dir(str(cfg.tokenizer.pretrained))
        try:
            tok = load_tokenizer(src)
        except ConfigError as e:
            raise ConfigError(f"tokenizer.pretrained: {e}") from None
        check_keeps_hangul(tok, sample)
        tok.save_pretrained(str(out_dir))
        return load_tokenizer(out_dir)
    check_hangul_safe(sample, bool(cfg.tokenizer.strip_accents))
    Progress("tokenizer").update(f"training WordPiece (vocab {cfg.tokenizer.vocab_size:,}) on {text.stat().st_size / 1e6:,.0f} MB", force=True)
    vocab = train_wordpiece([text], cfg.tokenizer, char_counts)
    return save_tokenizer(vocab, out_dir, cfg.tokenizer, model_max_length=512)


def prepare(cfg, out_dir: Path, workers: int | None = None) -> dict:
    corpus = cfg.corpus
    workers = workers or int(cfg.get("workers") or 0) or os.cpu_count() or 1
    work = out_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    text = work / "corpus.txt"
    read_stats: Counter = Counter()
    train = not cfg.tokenizer.get("pretrained")
    char_counts: Counter = Counter()
    starts = write_text(read_corpus(corpus, read_stats), text, char_counts if train else None,
                        bert_normalizer(cfg.tokenizer) if train else None)
    if len(starts) == 1:
        raise ValueError(f"corpus {corpus.name!r}: no text found (empty corpus; skipped: {dict(read_stats) or 'nothing'})")
    tok = tokenizer_for(cfg, text, char_counts, out_dir / "tokenizer")
    vocab_size = len(tok)
    enc = encode_corpus(text, starts, out_dir / "tokenizer" / "tokenizer.json", out_dir / "shards", vocab_size,
                        corpus.valid_fraction, cfg.seed, workers)
    text_bytes = int(starts[-1])
    shutil.rmtree(work)
    splits = enc["splits"]
    total = {k: sum(s[k] for s in splits.values()) for k in ("documents", "sentences", "tokens")}
    if splits["train"]["documents"] < 2 or splits["valid"]["documents"] < 2:
        raise ValueError(f"corpus {corpus.name!r}: {total['documents']} documents is too few for a train/valid "
                         f"split with NSP (need >= 2 in each; corpus.valid_fraction={corpus.valid_fraction})")
    skipped = {k: v for k, v in sorted(read_stats.items()) if k != "documents"}
    return {
        **total,
        "splits": splits,
        "text_bytes": text_bytes,
        "vocab_size": vocab_size,
        "unk_rate": enc["unk_tokens"] / max(total["tokens"], 1),
        "tokens_per_sentence": total["tokens"] / max(total["sentences"], 1),
        "single_sentence_documents": enc["single_sentence_documents"],
        "skipped": skipped,
        "sentence_length_histogram": enc["sentence_length_histogram"],
    }
