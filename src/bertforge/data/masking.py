"""BERT's masked-LM corruption, as in the reference `create_pretraining_data.py`: choose 15% of the
non-special positions (capped at `max_predictions_per_seq`), replace 80% of them with [MASK], 10%
with a random token and keep 10%; optionally whole words at a time."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class SpecialIds:
    cls: int
    sep: int
    mask: int
    pad: int
    vocab_size: int
    all_special: tuple[int, ...]
    continuation: np.ndarray | None = None  # [vocab] bool: "##" word pieces (whole-word masking)

    @cached_property
    def is_special(self) -> np.ndarray:
        """[vocab] bool lookup: a table read is far cheaper than np.isin per example."""
        table = np.zeros(max(self.vocab_size, *self.all_special) + 1, dtype=bool)
        table[list(self.all_special)] = True
        return table

    @classmethod
    def from_tokenizer(cls, tok) -> "SpecialIds":
        cont = np.zeros(len(tok), dtype=bool)
        for token, i in tok.get_vocab().items():
            cont[i] = token.startswith("##")
        return cls(
            tok.cls_token_id,
            tok.sep_token_id,
            tok.mask_token_id,
            tok.pad_token_id,
            len(tok),
            tuple(tok.all_special_ids),
            cont,
        )


def _word_groups(input_ids: np.ndarray, candidates: np.ndarray, continuation: np.ndarray) -> list[np.ndarray]:
    """Candidate positions grouped into whole words: a "##" piece joins the piece before it."""
    starts = ~continuation[input_ids[candidates]]
    starts[0] = True
    starts[1:] |= np.diff(candidates) != 1  # a special token in between always splits
    return np.split(candidates, np.flatnonzero(starts)[1:])


def mask_tokens(
    input_ids: np.ndarray,
    special: SpecialIds,
    masked_lm_prob: float,
    max_predictions: int,
    rng: np.random.Generator,
    whole_word: bool = False,
):
    """BERT masking: choose 15% of non-special positions (capped), 80% [MASK], 10% random, 10% kept.
    With `whole_word`, all pieces of a word are chosen together (the reference skips a word that
    would overshoot the count and tries the next); the 80/10/10 draw stays per token."""
    labels = np.full_like(input_ids, -100)
    is_special = special.is_special
    candidates = np.flatnonzero(~is_special[input_ids])
    n = min(max_predictions, max(1, int(round(len(input_ids) * masked_lm_prob))), len(candidates))
    if n == 0:
        return input_ids, labels
    if whole_word:
        groups = _word_groups(input_ids, candidates, special.continuation)
        chosen, count = [], 0
        for g in rng.permutation(len(groups)):
            if count + len(groups[g]) <= n:
                chosen.append(groups[g])
                count += len(groups[g])
                if count == n:
                    break
        picked = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    else:
        picked = rng.choice(candidates, size=n, replace=False)
    labels[picked] = input_ids[picked]
    out = input_ids.copy()
    r = rng.random(len(picked))
    out[picked[r < 0.8]] = special.mask
    rand_pos = picked[r >= 0.9]
    rand_ids = rng.integers(0, special.vocab_size, size=len(rand_pos))
    bad = is_special[rand_ids]
    while bad.any():  # a random *word*, never a special token
        rand_ids[bad] = rng.integers(0, special.vocab_size, size=int(bad.sum()))
        bad = is_special[rand_ids]
    out[rand_pos] = rand_ids
    return out, labels
