"""Tokenized corpus on disk: one flat token array plus sentence and document offsets per split.

Layout of a split directory: `tokens.npy` (uint16 or int32), `sentence_offsets.npy` (int64,
n_sentences + 1, into tokens), `document_offsets.npy` (int64, n_documents + 1, into sentences).
Worker processes each write a *part* (raw token, sentence-length and document-size streams) for
a contiguous range of documents; `merge_parts` concatenates them in document order in fixed-size
chunks. Nothing is held in memory whole, so peak memory does not grow with the corpus.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap

SPLITS = ("train", "valid")
_CHUNK = 1 << 22  # elements copied per step when merging


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32)


class PartWriter:
    """One worker's output for one split: appends documents as raw little-endian streams."""

    def __init__(self, directory: Path, dtype: np.dtype):
        directory.mkdir(parents=True, exist_ok=True)
        self.dtype = dtype
        self._tokens = open(directory / "tokens.raw", "wb")
        self._sentence_lengths = open(directory / "sentence_lengths.raw", "wb")
        self._document_sizes = open(directory / "document_sizes.raw", "wb")
        self.documents = self.sentences = self.tokens = 0

    def add_document(self, sentences: list[list[int]]) -> None:
        lengths = np.fromiter((len(s) for s in sentences), dtype=np.int32, count=len(sentences))
        flat = np.fromiter(itertools.chain.from_iterable(sentences), dtype=self.dtype, count=int(lengths.sum()))
        self._tokens.write(flat.tobytes())
        self._sentence_lengths.write(lengths.tobytes())
        self._document_sizes.write(np.int32(len(sentences)).tobytes())
        self.documents += 1
        self.sentences += len(sentences)
        self.tokens += len(flat)

    def close(self) -> dict:
        for fh in (self._tokens, self._sentence_lengths, self._document_sizes):
            fh.close()
        return {"documents": self.documents, "sentences": self.sentences, "tokens": self.tokens}


def _copy(dst: np.ndarray, start: int, src_path: Path, dtype, n: int) -> None:
    if n:
        src = np.memmap(src_path, dtype=dtype, mode="r", shape=(n,))
        for i in range(0, n, _CHUNK):
            dst[start + i : start + min(i + _CHUNK, n)] = src[i : i + _CHUNK]


def _cumulative(dst: np.ndarray, start: int, src_path: Path, n: int, carry: int) -> int:
    """dst[start + 1 : start + n + 1] = carry + cumsum(src): offsets from lengths, chunk by chunk."""
    if n:
        src = np.memmap(src_path, dtype=np.int32, mode="r", shape=(n,))
        for i in range(0, n, _CHUNK):
            part = carry + np.cumsum(src[i : i + _CHUNK], dtype=np.int64)
            dst[start + 1 + i : start + 1 + i + len(part)] = part
            carry = int(part[-1])
    return carry


def merge_parts(parts: list[tuple[Path, dict]], out_dir: Path, dtype: np.dtype) -> dict:
    """Concatenate the parts (in order) of one split into its final arrays; parts are deleted."""
    out_dir.mkdir(parents=True, exist_ok=True)
    total = {k: sum(p[k] for _, p in parts) for k in ("documents", "sentences", "tokens")}
    tokens = open_memmap(out_dir / "tokens.npy", mode="w+", dtype=dtype, shape=(total["tokens"],))
    sent = open_memmap(out_dir / "sentence_offsets.npy", mode="w+", dtype=np.int64, shape=(total["sentences"] + 1,))
    docs = open_memmap(out_dir / "document_offsets.npy", mode="w+", dtype=np.int64, shape=(total["documents"] + 1,))
    sent[0] = docs[0] = 0
    t = s = d = 0
    for directory, counts in parts:
        _copy(tokens, t, directory / "tokens.raw", dtype, counts["tokens"])
        _cumulative(sent, s, directory / "sentence_lengths.raw", counts["sentences"], t)
        _cumulative(docs, d, directory / "document_sizes.raw", counts["documents"], s)
        t, s, d = t + counts["tokens"], s + counts["sentences"], d + counts["documents"]
        shutil.rmtree(directory)
    for arr in (tokens, sent, docs):
        arr.flush()
    return total


def write_meta(out_dir: Path, vocab_size: int, dtype: np.dtype, stats: dict) -> None:
    (out_dir / "meta.json").write_text(json.dumps({"vocab_size": vocab_size, "dtype": dtype.name, **stats}, indent=2))


class Shard:
    """Read-only, memory-mapped view of one split."""

    def __init__(self, directory: Path):
        directory = Path(directory)
        self.tokens = np.load(directory / "tokens.npy", mmap_mode="r")
        self.sentence_offsets = np.load(directory / "sentence_offsets.npy", mmap_mode="r")
        self.document_offsets = np.load(directory / "document_offsets.npy")
        # plain-array views of the same pages: a memmap's slices pay for subclass bookkeeping
        self._tokens, self._sentences = np.asarray(self.tokens), np.asarray(self.sentence_offsets)

    @property
    def num_documents(self) -> int:
        return len(self.document_offsets) - 1

    def document(self, i: int) -> list[list[int]]:
        """Document i's sentences as lists of token ids. One read of the memory map per document,
        split in Python: slicing the map per sentence took half of an epoch's pair building."""
        s0, s1 = self.document_offsets[i], self.document_offsets[i + 1]
        offs = self._sentences[s0 : s1 + 1].tolist()
        first = offs[0]
        tokens = self._tokens[first : offs[-1]].tolist()
        return [tokens[a - first : b - first] for a, b in zip(offs, offs[1:])]
