"""The `prepare` stage: corpus -> normalized text -> WordPiece tokenizer -> token shards + stats.

1. Read: worker processes read the corpus files (one task per file) into normalized text parts in
   Google's format, remembering where each document starts and counting characters.
2. Tokenizer: WordPiece trained on those parts (in Rust, on every core), or an existing one reused.
3. Encode: worker processes encode ranges of documents into shard parts, merged in document order.
The train/valid assignment is drawn per global document index up front, so the output is
byte-identical for any number of workers. Memory holds one task's text at a time per process.
"""

from __future__ import annotations

import array
import multiprocessing as mp
import os
import shutil
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from bertforge.config import ConfigError, DataError, resolve_dir
from bertforge.data.corpus import read_corpus, read_units
from bertforge.data.morphemes import check_analyzer, mecab, read_marker, segment
from bertforge.data.shards import SPLITS, PartWriter, merge_parts, token_dtype, write_meta
from bertforge.data.tokenization import (
    bert_normalizer,
    check_hangul_safe,
    check_keeps_hangul,
    load_tokenizer,
    save_tokenizer,
    save_tokenizer_dir,
    train_wordpiece,
)

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


# ---------------------------------------------------------------- 1. read
def read_unit(args: tuple[dict, str, bool, object]) -> tuple[np.ndarray, Counter, Counter]:
    """Documents of one unit -> a text file; (document start offsets + end, read stats, char counts).
    With a normalizer, sentences are normalized as the tokenizer will and cut into morphemes."""
    unit, path, count_chars, normalizer = args
    stats, chars = Counter(), Counter()
    starts = array.array("q", [0])
    with open(path, "wb") as fh:
        for doc in read_corpus(OmegaConf.create(unit), stats):
            if normalizer is not None:
                doc = [segment(normalizer.normalize_str(s)) for s in doc]
            text = "\n".join(doc)
            fh.write((text + "\n\n").encode("utf-8"))
            if count_chars:
                chars.update(text)
            starts.append(fh.tell())
    return np.frombuffer(starts, dtype=np.int64).copy(), stats, chars


# ---------------------------------------------------------------- 3. encode
_TOKENIZERS: dict = {}


def _init_worker() -> None:  # processes are the parallelism: one Rayon thread each
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def encode_range(task: dict) -> dict:
    """Encode the documents in bytes [b0, b1) of a text part into one shard part per split."""
    from tokenizers import Tokenizer

    tok = _TOKENIZERS.get(task["tokenizer"]) or _TOKENIZERS.setdefault(
        task["tokenizer"], Tokenizer.from_file(task["tokenizer"])
    )
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
    return {
        "parts": {s: w.close() for s, w in writers.items()},
        "hist": hist,
        "unk_tokens": unk_tokens,
        "single_sentence_documents": single,
    }


def encode_tasks(
    texts: list[tuple[Path, np.ndarray]], valid: np.ndarray, tokenizer_json: Path, parts_dir: Path, dtype: np.dtype
) -> list[dict]:
    tasks, doc0 = [], 0
    for path, starts in texts:
        first, n = 0, len(starts) - 1
        while first < n:
            last = int(np.searchsorted(starts, starts[first] + TASK_BYTES, side="left"))
            last = min(max(last, first + 1), n)
            tasks.append(
                {
                    "text": str(path),
                    "b0": int(starts[first]),
                    "b1": int(starts[last]),
                    "valid": valid[doc0 + first : doc0 + last],
                    "part": str(parts_dir / f"{len(tasks):06d}"),
                    "dtype": dtype.name,
                    "tokenizer": str(tokenizer_json),
                }
            )
            first = last
        doc0 += n
    return tasks


def _histogram(results: list[dict]) -> dict[str, int]:
    hist = sum((r["hist"] for r in results), np.zeros(len(LENGTH_BINS) - 1, dtype=np.int64))
    return {
        f"{lo}-{hi - 1}" if hi < 10**9 else f"{lo}+": int(n) for lo, hi, n in zip(LENGTH_BINS, LENGTH_BINS[1:], hist)
    }


# ---------------------------------------------------------------- 2. tokenizer
def _sample_lines(paths: list[Path], n: int) -> list[str]:
    out: list[str] = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    out.append(line.rstrip("\n"))
                    if len(out) >= n:
                        return out
    return out


def reused_tokenizer(cfg):
    """(directory, tokenizer) of `tokenizer.pretrained`, loaded once for the whole stage; None when
    the stage trains its own WordPiece."""
    if not cfg.tokenizer.pretrained:
        return None
    src = resolve_dir(str(cfg.tokenizer.pretrained), "tokenizer.pretrained")
    try:
        return src, load_tokenizer(src)
    except ConfigError as e:
        raise ConfigError(f"tokenizer.pretrained: {e}") from None


def tokenizer_for(cfg, reused, texts: list[Path], char_counts: Counter, out_dir: Path):
    """Train WordPiece on the text, or copy the `reused` one (see reused_tokenizer)."""
    sample = _sample_lines(texts, 5000)
    if reused is not None:
        check_keeps_hangul(reused[1], sample)
        # the copy (which the shards are encoded with) keeps every sentence whole: a reused
        # tokenizer.json may carry its model's padding and truncation (sentence-transformers'
        # MiniLM pads and cuts every encoding to 128)
        backend = reused[1].backend_tokenizer
        backend.no_padding()
        backend.no_truncation()
        save_tokenizer_dir(reused[1], out_dir)
        return load_tokenizer(out_dir)
    check_hangul_safe(sample, bool(cfg.tokenizer.strip_accents))
    progress = Progress("tokenizer")
    mb = sum(p.stat().st_size for p in texts) / 1e6
    progress.update(f"training WordPiece (vocab {cfg.tokenizer.vocab_size:,}) on {mb:,.0f} MB", force=True)
    vocab = train_wordpiece(texts, cfg.tokenizer, char_counts)
    progress.update("done", force=True)
    return save_tokenizer(vocab, out_dir, cfg.tokenizer, model_max_length=512)


def pre_segmentation_normalizer(cfg, reused):
    """The normalizer to apply before cutting morphemes, or None when the tokenizer does not cut:
    the reused tokenizer's marker decides, else `tokenizer.pre_segmentation`."""
    if reused is not None:
        src, tok = reused
        return tok.backend_tokenizer.normalizer if read_marker(src) else None
    if check_analyzer(cfg.tokenizer.pre_segmentation) is None:
        return None
    mecab()  # a missing analyser is one clear error here, not one per worker
    return bert_normalizer(cfg.tokenizer)


# ---------------------------------------------------------------- the stage
def _import_transformers() -> None:
    from transformers import AutoTokenizer, BertTokenizerFast  # noqa: F401


def _imap(pool, fn, items):
    return pool.imap(fn, items) if pool is not None else map(fn, items)


def prepare(cfg, out_dir: Path, workers: int | None = None) -> dict:
    corpus = cfg.corpus
    workers = workers or cfg.workers or os.cpu_count() or 1
    work = out_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    train_vocab = not cfg.tokenizer.pretrained
    units = read_units(corpus)
    # transformers (to write the tokenizer directory) takes seconds to import: overlap it with reading
    warm = threading.Thread(target=_import_transformers, daemon=True)
    warm.start()
    # spawn, not fork: the parent's Rayon thread pool (tokenizer training) must not be forked
    pool = mp.get_context("spawn").Pool(workers, _init_worker) if workers > 1 else None
    try:
        read_stats, char_counts, texts = Counter(), Counter(), []
        progress = Progress("read")
        reused = reused_tokenizer(cfg)
        cutting = pre_segmentation_normalizer(cfg, reused)
        jobs = [(unit, str(work / f"text-{i:05d}.txt"), train_vocab, cutting) for i, (_, unit) in enumerate(units)]
        for (source, _), (_, path, _, _), (starts, stats, chars) in zip(units, jobs, _imap(pool, read_unit, jobs)):
            read_stats.update(stats)
            if source is not None:
                read_stats[f"documents_{source}"] += stats["documents"]
            char_counts.update(chars)
            texts.append((Path(path), starts))
            progress.update(f"{len(texts)}/{len(units)} files, {read_stats['documents']:,} documents")
        n_docs = sum(len(s) - 1 for _, s in texts)
        text_bytes = sum(int(s[-1]) for _, s in texts)
        progress.update(f"{n_docs:,} documents, {text_bytes / 1e6:,.1f} MB of text, done", force=True)
        if n_docs == 0:
            read = [f for _, u in units for f in (u.get("files") or [u.get("dataset") or u.get("format")])]
            shown = ", ".join(map(str, read[:3])) + (f" and {len(read) - 3} more" if len(read) > 3 else "")
            raise DataError(
                f"corpus {corpus.name!r}: no text found in {shown} (skipped: {dict(read_stats) or 'nothing'})"
            )

        warm.join()  # transformers' lazy module is not safe to import from two threads at once
        tok = tokenizer_for(cfg, reused, [p for p, _ in texts], char_counts, out_dir / "tokenizer")
        vocab_size, dtype = len(tok), token_dtype(len(tok))
        valid = np.random.default_rng(cfg.seed).random(n_docs) < corpus.valid_fraction
        shards = out_dir / "shards"
        tasks = encode_tasks(texts, valid, out_dir / "tokenizer" / "tokenizer.json", shards / "parts", dtype)
        progress, results = Progress("encode"), []
        for r in _imap(pool, encode_range, tasks):
            results.append(r)
            progress.update(
                f"{len(results)}/{len(tasks)} parts, {sum(x['parts']['train']['tokens'] for x in results):,} train tokens"
            )
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    splits = {
        s: merge_parts([(Path(t["part"]) / s, r["parts"][s]) for t, r in zip(tasks, results)], shards / s, dtype)
        for s in SPLITS
    }
    shutil.rmtree(shards / "parts", ignore_errors=True)
    shutil.rmtree(work)
    write_meta(shards, vocab_size, dtype, splits)
    total = {k: sum(s[k] for s in splits.values()) for k in ("documents", "sentences", "tokens")}
    progress.update(f"{total['tokens']:,} tokens in shards by {workers} process(es), done", force=True)
    if splits["train"]["documents"] < 2 or splits["valid"]["documents"] < 2:
        raise DataError(
            f"corpus {corpus.name!r}: {total['documents']} documents is too few for a train/valid "
            f"split with NSP (need >= 2 in each; corpus.valid_fraction={corpus.valid_fraction})"
        )
    return {
        **total,
        "splits": splits,
        "text_bytes": text_bytes,
        "vocab_size": vocab_size,
        "unk_rate": sum(r["unk_tokens"] for r in results) / max(total["tokens"], 1),
        "tokens_per_sentence": total["tokens"] / max(total["sentences"], 1),
        "single_sentence_documents": sum(r["single_sentence_documents"] for r in results),
        "reader_counts": {k: v for k, v in sorted(read_stats.items()) if k != "documents"},  # skips, per source
        "sentence_length_histogram": _histogram(results),
    }
