"""Pre-training examples as in BERT's reference `create_pretraining_data.py`.

`pretrain.objective`:
- `nsp` (BERT): segment A is a run of consecutive sentences; B is its true continuation or (50%) a
  span from a *different* document, the unused sentences of A's chunk being put back.
- `sop` (ALBERT): B is always A's continuation, and (50%) the two are swapped; label 1 = swapped.
  As in ALBERT's reference, a chunk of a single sentence still takes a random B (label 1).
- `mlm` (RoBERTa FULL-SENTENCES): no pair task; whole sentences packed up to the length limit,
  crossing document boundaries with an extra [SEP].

Examples are rebuilt each epoch from (seed, epoch) and masks drawn per example from (seed, epoch,
index) — dynamic masking — so the data are the same for any number of loader workers. With
`pretrain.masking=static`, epoch e uses copy e mod `dupe_factor`: the reference's dupe_factor
fixed copies of the data, repeated exactly.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset

from bertforge.config import DataError
from bertforge.data.masking import SpecialIds, mask_tokens
from bertforge.data.padding import pad_right
from bertforge.data.shards import Shard

OBJECTIVES = ("nsp", "sop", "mlm")
NO_PAIR_LABEL = -100  # objective=mlm: ignored by the loss


def truncate_seq_pair(a: list, b: list, max_tokens: int, rng: random.Random) -> None:
    """Trim the longer segment one token at a time, from the front or back at random (the
    reference's draws, counted first and cut once: deleting from a list's front is linear)."""
    la, lb = len(a), len(b)
    cuts = [0, 0, 0, 0]  # a's front, a's back, b's front, b's back
    while la + lb > max_tokens:
        side = 0 if la > lb else 2
        if side == 0:
            la -= 1
        else:
            lb -= 1
        cuts[side + (rng.random() >= 0.5)] += 1
    if cuts[0] or cuts[1]:
        a[:] = a[cuts[0] : len(a) - cuts[1]]
    if cuts[2] or cuts[3]:
        b[:] = b[cuts[2] : len(b) - cuts[3]]


def create_instances(
    shard: Shard,
    max_seq_length: int,
    short_seq_prob: float,
    rng: random.Random,
    objective: str = "nsp",
    trace: list | None = None,
):
    """All (tokens_a, tokens_b, label) pairs for one pass over the shard (label 1: B is random
    for nsp, A and B are swapped for sop). `trace` receives (target length, sentences in the
    chunk) per pair, for checking the statistics against the reference's specification."""
    n_docs = shard.num_documents
    if n_docs < 2:
        raise DataError(f"NSP needs at least 2 documents, the shard has {n_docs}")
    max_tokens = max_seq_length - 3
    instances = []
    order = list(range(n_docs))
    rng.shuffle(order)
    for doc_index in order:
        document = shard.document(doc_index)
        target = rng.randint(2, max_tokens) if rng.random() < short_seq_prob else max_tokens
        chunk: list[list[int]] = []
        length = 0
        i = 0
        while i < len(document):
            chunk.append(document[i])
            length += len(document[i])
            if i == len(document) - 1 or length >= target:
                a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                tokens_a = [t for seg in chunk[:a_end] for t in seg]
                if len(chunk) == 1 or (objective == "nsp" and rng.random() < 0.5):
                    label = 1
                    other = rng.randrange(n_docs - 1)
                    other += other >= doc_index  # any document but this one
                    rdoc = shard.document(other)
                    tokens_b: list[int] = []
                    for seg in rdoc[rng.randrange(len(rdoc)) :]:
                        tokens_b.extend(seg)
                        if len(tokens_b) >= target - len(tokens_a):
                            break
                    i -= len(chunk) - a_end  # put the unused sentences back
                else:
                    tokens_b = [t for seg in chunk[a_end:] for t in seg]
                    label = 0
                    if objective == "sop" and rng.random() < 0.5:
                        tokens_a, tokens_b, label = tokens_b, tokens_a, 1
                truncate_seq_pair(tokens_a, tokens_b, max_tokens, rng)
                if tokens_a and tokens_b:
                    instances.append((np.asarray(tokens_a, np.int32), np.asarray(tokens_b, np.int32), label))
                    if trace is not None:
                        trace.append((target, len(chunk)))
                chunk, length = [], 0
            i += 1
    return instances


def pack_sentences(shard: Shard, max_tokens: int, rng: random.Random, doc_sep: int | None = None):
    """RoBERTa's FULL-SENTENCES: documents in a seeded order, their sentences packed whole into
    sequences of at most `max_tokens`; a document boundary inside a sequence is marked by an extra
    [SEP] (`doc_sep`). A sentence longer than the limit is cut to it. Examples are (tokens, None,
    NO_PAIR_LABEL)."""
    order = list(range(shard.num_documents))
    rng.shuffle(order)
    instances, current = [], []
    for d in order:
        if current and doc_sep is not None:
            current.append(doc_sep)
        for sent in shard.document(d):
            sent = sent[:max_tokens]
            if current and len(current) + len(sent) > max_tokens:
                if current[-1] == doc_sep:
                    current.pop()
                instances.append((np.asarray(current, np.int32), None, NO_PAIR_LABEL))
                current = []
            current.extend(sent)
    if current:
        instances.append((np.asarray(current, np.int32), None, NO_PAIR_LABEL))
    return instances


def check_example_config(cfg) -> None:
    """Impossible example settings fail before any work, naming the key."""
    from bertforge.config import ConfigError

    if cfg.objective not in OBJECTIVES:
        raise ConfigError(f"pretrain.objective: {cfg.objective!r} is not one of {', '.join(OBJECTIVES)}")
    if cfg.masking not in ("dynamic", "static"):
        raise ConfigError(f"pretrain.masking: {cfg.masking!r} is not one of dynamic, static")
    if cfg.masking == "static" and int(cfg.dupe_factor) < 1:
        raise ConfigError(f"pretrain.dupe_factor must be >= 1 with pretrain.masking=static (got {cfg.dupe_factor})")
    if not 0 < cfg.masked_lm_prob < 1 or cfg.max_predictions_per_seq < 1:
        raise ConfigError("pretrain.masked_lm_prob must be in (0, 1) and pretrain.max_predictions_per_seq >= 1")


class Pairs:
    """Examples (segment A, segment B or None, label) in three flat arrays instead of a list of
    small ones: an epoch's pairs cross a process boundary (loader workers, the builder of the next
    epoch) in milliseconds instead of seconds."""

    def __init__(self, instances: list[tuple[np.ndarray, np.ndarray | None, int]]):
        n = len(instances)
        self.len_a = np.fromiter((len(a) for a, _, _ in instances), np.int64, n)
        self.len_b = np.fromiter((-1 if b is None else len(b) for _, b, _ in instances), np.int64, n)
        self.labels = np.fromiter((label for _, _, label in instances), np.int64, n)
        parts = [x for a, b, _ in instances for x in ((a,) if b is None else (a, b))]
        self.tokens = np.concatenate(parts).astype(np.int32, copy=False) if parts else np.zeros(0, np.int32)
        lengths = self.len_a + np.maximum(self.len_b, 0)
        self.start = np.cumsum(lengths) - lengths

    ARRAYS = ("len_a", "len_b", "labels", "tokens", "start")

    def save(self, directory: str) -> str:
        """The arrays as .npy files in `directory` (made whole: written aside, then renamed)."""
        import os

        tmp = f"{directory}.tmp"
        os.makedirs(tmp)
        for name in self.ARRAYS:
            np.save(os.path.join(tmp, f"{name}.npy"), getattr(self, name))
        os.rename(tmp, directory)
        return directory

    @classmethod
    def load(cls, directory: str) -> "Pairs":
        """What `save` wrote, memory-mapped: loading takes milliseconds whatever the size, and forked
        loader workers share the pages."""
        import os

        out = cls([])
        for name in cls.ARRAYS:
            setattr(out, name, np.load(os.path.join(directory, f"{name}.npy"), mmap_mode="r"))
        return out

    def head(self, n: int) -> "Pairs":
        out = Pairs([])
        out.len_a, out.len_b, out.labels, out.start = self.len_a[:n], self.len_b[:n], self.labels[:n], self.start[:n]
        out.tokens = self.tokens
        return out

    def __len__(self) -> int:
        return len(self.len_a)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray | None, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        s, la, lb = int(self.start[i]), int(self.len_a[i]), int(self.len_b[i])
        b = None if lb < 0 else self.tokens[s + la : s + la + lb]
        return self.tokens[s : s + la], b, int(self.labels[i])

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def data_epoch(cfg, epoch: int) -> int:
    """The epoch whose pairs and masks training epoch `epoch` uses: itself, or with static masking
    one of the reference's `dupe_factor` fixed copies, cycled."""
    return epoch % int(cfg.dupe_factor) if cfg.masking == "static" else epoch


def build_pairs(shard: Shard, special: SpecialIds, cfg, seed: int, epoch: int) -> Pairs:
    """An epoch's pairs (or packed sentences), from (seed, epoch) alone: the same wherever built."""
    rng = random.Random(f"{seed}-{data_epoch(cfg, epoch)}")
    if cfg.objective == "mlm":
        return Pairs(pack_sentences(shard, cfg.max_seq_length - 2, rng, doc_sep=special.sep))
    return Pairs(create_instances(shard, cfg.max_seq_length, cfg.short_seq_prob, rng, cfg.objective))


class PretrainingDataset(Dataset):
    """One epoch's examples: its pairs (`build_pairs`, or `pairs` built ahead elsewhere) masked per
    example from (seed, epoch, index); with `fixed_shapes` batched to shapes that repeat (`collate`)."""

    def __init__(
        self,
        shard: Shard,
        special: SpecialIds,
        cfg,
        seed: int,
        epoch: int,
        max_examples: int | None = None,
        pairs: Pairs | None = None,
        fixed_shapes: bool = False,
    ):
        pairs = build_pairs(shard, special, cfg, seed, epoch) if pairs is None else pairs
        self.special, self.cfg, self.seed, self.epoch = special, cfg, seed, data_epoch(cfg, epoch)
        self.whole_word = bool(cfg.whole_word_masking)
        # plain numbers: reading an OmegaConf node per example costs as much as masking it
        self.masked_lm_prob, self.max_predictions = float(cfg.masked_lm_prob), int(cfg.max_predictions_per_seq)
        self.instances = pairs if max_examples is None else pairs.head(max_examples)
        self.fixed_shape = (int(cfg.max_seq_length), self.max_predictions) if fixed_shapes else None

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, index: int) -> dict:
        a, b, label = self.instances[index]
        s = self.special
        if b is None:
            ids = np.concatenate([[s.cls], a, [s.sep]]).astype(np.int64)
            types = np.zeros_like(ids)
        else:
            ids = np.concatenate([[s.cls], a, [s.sep], b, [s.sep]]).astype(np.int64)
            types = np.zeros_like(ids)
            types[len(a) + 2 :] = 1
        rng = np.random.default_rng([self.seed, self.epoch, index])
        masked, labels = mask_tokens(ids, s, self.masked_lm_prob, self.max_predictions, rng, self.whole_word)
        out = {"input_ids": masked, "token_type_ids": types, "labels": labels, "next_sentence_label": int(label)}
        return out if self.fixed_shape is None else {**out, "fixed_shape": self.fixed_shape}


def collate(batch: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Dynamic padding to the longest example in the batch, plus where the real and the masked
    tokens are (`modeling.unpad_indices`), so the unpadded forward needs no device sync. Examples
    of a dataset with `fixed_shapes` carry their settings' (max_seq_length, max_predictions_per_seq):
    rows are then padded to that length and the indices to `modeling.fixed_shapes`."""
    from bertforge.pretraining.model import unpad_indices

    width, max_predictions = batch[0].get("fixed_shape", (None, None))
    out = pad_right(batch, {"input_ids": pad_id, "token_type_ids": 0, "labels": -100}, width)
    lengths = torch.tensor([len(x["input_ids"]) for x in batch])
    mask = (torch.arange(out["input_ids"].shape[1]) < lengths[:, None]).long()
    nsp = torch.tensor([x["next_sentence_label"] for x in batch], dtype=torch.long)
    return {
        "input_ids": out["input_ids"],
        "token_type_ids": out["token_type_ids"],
        "attention_mask": mask,
        "labels": out["labels"],
        "next_sentence_label": nsp,
        **unpad_indices(mask, out["labels"], max_predictions),
    }
