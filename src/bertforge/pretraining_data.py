"""Pre-training examples as in BERT's reference `create_pretraining_data.py`.

Pairs: segment A is a run of consecutive sentences; B is its true continuation or (50%) a span
from a *different* document, the unused sentences of A's chunk being put back. Pairs are rebuilt
each epoch from (seed, epoch); masks are drawn per example from (seed, epoch, index), so the data
are the same for any number of workers.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from .shards import Shard


@dataclass(frozen=True)
class SpecialIds:
    cls: int
    sep: int
    mask: int
    pad: int
    vocab_size: int
    all_special: tuple[int, ...]

    @classmethod
    def from_tokenizer(cls, tok) -> "SpecialIds":
        return cls(tok.cls_token_id, tok.sep_token_id, tok.mask_token_id, tok.pad_token_id, len(tok), tuple(tok.all_special_ids))


def truncate_seq_pair(a: list, b: list, max_tokens: int, rng: random.Random) -> None:
    """Trim the longer segment one token at a time, from the front or back at random."""
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def create_instances(shard: Shard, max_seq_length: int, short_seq_prob: float, rng: random.Random):
    """All (tokens_a, tokens_b, is_random_next) pairs for one pass over the shard."""
    n_docs = shard.num_documents
    if n_docs < 2:
        raise ValueError(f"NSP needs at least 2 documents, the shard has {n_docs}")
    max_tokens = max_seq_length - 3
    instances = []
    order = list(range(n_docs))
    rng.shuffle(order)
    for doc_index in order:
        document = shard.document(doc_index)
        target = rng.randint(2, max_tokens) if rng.random() < short_seq_prob else max_tokens
        chunk: list[np.ndarray] = []
        length = 0
        i = 0
        while i < len(document):
            chunk.append(document[i])
            length += len(document[i])
            if i == len(document) - 1 or length >= target:
                a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                tokens_a = [t for seg in chunk[:a_end] for t in seg.tolist()]
                if len(chunk) == 1 or rng.random() < 0.5:
                    is_random = True
                    other = rng.randrange(n_docs - 1)
                    other += other >= doc_index  # any document but this one
                    rdoc = shard.document(other)
                    tokens_b: list[int] = []
                    for seg in rdoc[rng.randrange(len(rdoc)) :]:
                        tokens_b.extend(seg.tolist())
                        if len(tokens_b) >= target - len(tokens_a):
                            break
                    i -= len(chunk) - a_end  # put the unused sentences back
                else:
                    is_random = False
                    tokens_b = [t for seg in chunk[a_end:] for t in seg.tolist()]
                truncate_seq_pair(tokens_a, tokens_b, max_tokens, rng)
                if tokens_a and tokens_b:
                    instances.append((np.asarray(tokens_a, np.int32), np.asarray(tokens_b, np.int32), is_random))
                chunk, length = [], 0
            i += 1
    return instances


def mask_tokens(input_ids: np.ndarray, special: SpecialIds, masked_lm_prob: float, max_predictions: int, rng: np.random.Generator):
    """BERT masking: choose 15% of non-special positions (capped), 80% [MASK], 10% random, 10% kept."""
    labels = np.full_like(input_ids, -100)
    candidates = np.flatnonzero(~np.isin(input_ids, special.all_special))
    n = min(max_predictions, max(1, int(round(len(input_ids) * masked_lm_prob))), len(candidates))
    if n == 0:
        return input_ids, labels
    picked = rng.choice(candidates, size=n, replace=False)
    labels[picked] = input_ids[picked]
    out = input_ids.copy()
    r = rng.random(n)
    out[picked[r < 0.8]] = special.mask
    rand_pos = picked[r >= 0.9]
    rand_ids = rng.integers(0, special.vocab_size, size=len(rand_pos))
    bad = np.isin(rand_ids, special.all_special)
    while bad.any():  # a random *word*, never a special token
        rand_ids[bad] = rng.integers(0, special.vocab_size, size=int(bad.sum()))
        bad = np.isin(rand_ids, special.all_special)
    out[rand_pos] = rand_ids
    return out, labels


class PretrainingDataset(Dataset):
    def __init__(self, shard: Shard, special: SpecialIds, cfg, seed: int, epoch: int, max_examples: int | None = None):
        self.special, self.cfg, self.seed, self.epoch = special, cfg, seed, epoch
        rng = random.Random(f"{seed}-{epoch}")
        self.instances = create_instances(shard, cfg.max_seq_length, cfg.short_seq_prob, rng)
        if max_examples is not None:
            self.instances = self.instances[:max_examples]

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, index: int) -> dict:
        a, b, is_random = self.instances[index]
        s = self.special
        ids = np.concatenate([[s.cls], a, [s.sep], b, [s.sep]]).astype(np.int64)
        types = np.zeros_like(ids)
        types[len(a) + 2 :] = 1
        rng = np.random.default_rng([self.seed, self.epoch, index])
        masked, labels = mask_tokens(ids, s, self.cfg.masked_lm_prob, self.cfg.max_predictions_per_seq, rng)
        return {"input_ids": masked, "token_type_ids": types, "labels": labels, "next_sentence_label": int(is_random)}


def collate(batch: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Dynamic padding to the longest example in the batch."""
    width = max(len(x["input_ids"]) for x in batch)
    n = len(batch)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    types = torch.zeros((n, width), dtype=torch.long)
    labels = torch.full((n, width), -100, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, x in enumerate(batch):
        k = len(x["input_ids"])
        ids[i, :k] = torch.from_numpy(x["input_ids"])
        types[i, :k] = torch.from_numpy(x["token_type_ids"])
        labels[i, :k] = torch.from_numpy(x["labels"])
        mask[i, :k] = 1
    nsp = torch.tensor([x["next_sentence_label"] for x in batch], dtype=torch.long)
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": labels, "next_sentence_label": nsp}
