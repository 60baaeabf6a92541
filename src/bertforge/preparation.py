"""The `prepare` stage: corpus -> normalized sentences -> WordPiece tokenizer -> token shards + stats."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterator

import numpy as np

from .corpus import Document, read_corpus
from .tokenization import check_hangul_safe, iter_sentences, normalize_unicode, save_tokenizer, train_wordpiece
from .shards import write_shards

LENGTH_BINS = [0, 8, 16, 32, 64, 128, 256, 512, 10**9]


def normalized_documents(corpus_cfg) -> Iterator[Document]:
    form = corpus_cfg.get("unicode_normalization")
    for doc in read_corpus(corpus_cfg):
        sents = [s for s in (normalize_unicode(x, form).strip() for x in doc) if s]
        if sents:
            yield sents


def _encode(tok, docs: Iterator[Document], stats: dict, batch_docs: int = 256) -> Iterator[list[list[int]]]:
    unk = tok.token_to_id("[UNK]")
    hist = np.zeros(len(LENGTH_BINS) - 1, dtype=np.int64)
    while True:
        chunk = list(itertools.islice(docs, batch_docs))
        if not chunk:
            break
        flat = [s for d in chunk for s in d]
        encs = tok.encode_batch(flat, add_special_tokens=False)
        lens = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        hist += np.histogram(lens, bins=LENGTH_BINS)[0]
        stats["unk_tokens"] += sum(e.ids.count(unk) for e in encs)
        stats["single_sentence_documents"] += sum(len(d) == 1 for d in chunk)
        it = iter(encs)
        for d in chunk:
            yield [next(it).ids for _ in d]
    stats["sentence_length_histogram"] = {f"{lo}-{hi - 1}" if hi < 10**9 else f"{lo}+": int(n)
                                          for lo, hi, n in zip(LENGTH_BINS, LENGTH_BINS[1:], hist)}


def prepare(cfg, out_dir: Path) -> dict:
    corpus = cfg.corpus
    sample = list(itertools.islice(iter_sentences(normalized_documents(corpus)), 5000))
    if not sample:
        raise ValueError(f"corpus {corpus.name!r}: no text found (empty corpus)")
    check_hangul_safe(sample, bool(cfg.tokenizer.strip_accents))
    vocab = train_wordpiece(lambda: iter_sentences(normalized_documents(corpus)), cfg.tokenizer)
    tok = save_tokenizer(vocab, out_dir / "tokenizer", cfg.tokenizer, model_max_length=512).backend_tokenizer
    vocab_size = len(vocab)
    extra = {"unk_tokens": 0, "single_sentence_documents": 0}
    splits = write_shards(_encode(tok, normalized_documents(corpus), extra), out_dir / "shards", vocab_size,
                          corpus.valid_fraction, cfg.seed)
    total = {k: sum(s[k] for s in splits.values()) for k in ("documents", "sentences", "tokens")}
    if splits["train"]["documents"] < 2 or splits["valid"]["documents"] < 2:
        raise ValueError(f"corpus {corpus.name!r}: {total['documents']} documents is too few for a train/valid "
                         f"split with NSP (need >= 2 in each; corpus.valid_fraction={corpus.valid_fraction})")
    return {
        **total,
        "splits": splits,
        "vocab_size": vocab_size,
        "unk_rate": extra["unk_tokens"] / max(total["tokens"], 1),
        "tokens_per_sentence": total["tokens"] / max(total["sentences"], 1),
        "single_sentence_documents": extra["single_sentence_documents"],
        "sentence_length_histogram": extra["sentence_length_histogram"],
    }
