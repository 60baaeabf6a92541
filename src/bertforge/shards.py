"""Tokenized corpus on disk: one flat token array plus sentence and document offsets per split.

Layout of a split directory: `tokens.npy` (uint16 or int32), `sentence_offsets.npy` (int64,
n_sentences + 1, into tokens), `document_offsets.npy` (int64, n_documents + 1, into sentences).
Token ids are streamed to disk as they are produced, so memory holds only the offsets.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from numpy.lib.format import open_memmap

SPLITS = ("train", "valid")


@dataclass
class SplitWriter:
    directory: Path
    dtype: np.dtype
    sentence_offsets: list[int] = field(default_factory=lambda: [0])
    document_offsets: list[int] = field(default_factory=lambda: [0])

    def __post_init__(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        self._raw = open(self.directory / "tokens.raw", "wb")

    def add_document(self, sentences: list[list[int]]) -> None:
        for ids in sentences:
            self._raw.write(np.asarray(ids, dtype=self.dtype).tobytes())
            self.sentence_offsets.append(self.sentence_offsets[-1] + len(ids))
        self.document_offsets.append(len(self.sentence_offsets) - 1)

    def close(self) -> dict:
        self._raw.close()
        raw = self.directory / "tokens.raw"
        n = self.sentence_offsets[-1]
        out = open_memmap(self.directory / "tokens.npy", mode="w+", dtype=self.dtype, shape=(n,))
        if n:
            out[:] = np.memmap(raw, dtype=self.dtype, mode="r", shape=(n,))
        out.flush()
        del out
        raw.unlink()
        np.save(self.directory / "sentence_offsets.npy", np.asarray(self.sentence_offsets, dtype=np.int64))
        np.save(self.directory / "document_offsets.npy", np.asarray(self.document_offsets, dtype=np.int64))
        return {"documents": len(self.document_offsets) - 1, "sentences": len(self.sentence_offsets) - 1, "tokens": n}


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32)


def write_shards(
    encoded_docs: Iterable[list[list[int]]], out_dir: Path, vocab_size: int, valid_fraction: float, seed: int
) -> dict[str, dict]:
    """Split documents into train/valid (seeded, by document) and write both splits."""
    rng = random.Random(seed)
    dtype = token_dtype(vocab_size)
    writers = {s: SplitWriter(out_dir / s, dtype) for s in SPLITS}
    for doc in encoded_docs:
        writers["valid" if rng.random() < valid_fraction else "train"].add_document(doc)
    stats = {s: w.close() for s, w in writers.items()}
    (out_dir / "meta.json").write_text(json.dumps({"vocab_size": vocab_size, "dtype": dtype.name, **stats}, indent=2))
    return stats


class Shard:
    """Read-only, memory-mapped view of one split."""

    def __init__(self, directory: Path):
        directory = Path(directory)
        self.tokens = np.load(directory / "tokens.npy", mmap_mode="r")
        self.sentence_offsets = np.load(directory / "sentence_offsets.npy")
        self.document_offsets = np.load(directory / "document_offsets.npy")

    @property
    def num_documents(self) -> int:
        return len(self.document_offsets) - 1

    def document(self, i: int) -> list[np.ndarray]:
        s0, s1 = self.document_offsets[i], self.document_offsets[i + 1]
        offs = self.sentence_offsets[s0 : s1 + 1]
        return [np.asarray(self.tokens[offs[j] : offs[j + 1]], dtype=np.int64) for j in range(len(offs) - 1)]
