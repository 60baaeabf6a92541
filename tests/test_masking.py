"""BERT's masking (data/masking.py): rates, the 80/10/10 split, caps, whole words; stated tolerances."""

import numpy as np
import pytest

from bertforge.data.masking import SpecialIds, mask_tokens


def test_mask_rate_and_80_10_10_split(parts):
    cfg, shard, special, _ = parts
    rng = np.random.default_rng(0)
    chosen = masked = kept = randomized = candidates = 0
    for _ in range(4000):
        ids = rng.integers(5, special.vocab_size, size=126)
        ids = np.concatenate([[special.cls], ids[:60], [special.sep], ids[60:], [special.sep]])
        out, labels = mask_tokens(ids, special, 0.15, 10**6, rng)
        sel = labels != -100
        chosen += sel.sum()
        candidates += len(ids) - 3
        masked += (out[sel] == special.mask).sum()
        kept += (out[sel] == ids[sel]).sum()
        randomized += ((out[sel] != ids[sel]) & (out[sel] != special.mask)).sum()
        assert not sel[[0, 61, len(ids) - 1]].any(), "special tokens must never be chosen"
        assert (out[~sel] == ids[~sel]).all(), "unchosen tokens must be unchanged"
    # round(129 * 0.15) = 19 of 129 positions per sequence: 14.7%
    assert chosen / (4000 * 129) == pytest.approx(0.15, abs=0.01)
    assert masked / chosen == pytest.approx(0.8, abs=0.01)
    # "random" may draw the original token (p = 1/vocab): within tolerance
    assert kept / chosen == pytest.approx(0.1, abs=0.01)
    assert randomized / chosen == pytest.approx(0.1, abs=0.01)


def test_mask_cap_and_random_tokens_are_never_special(parts):
    _, _, special, _ = parts
    rng = np.random.default_rng(1)
    ids = np.concatenate([[special.cls], rng.integers(5, special.vocab_size, 200), [special.sep]])
    for _ in range(200):
        out, labels = mask_tokens(ids, special, 0.15, 20, rng)
        assert (labels != -100).sum() == 20
        assert not np.isin(out[labels != -100][out[labels != -100] != special.mask], special.all_special).any()


def test_whole_word_masking_masks_every_piece_of_a_word():
    # ids 5-9 start words, 10-14 are "##" pieces; 0-4 are special
    cont = np.zeros(15, dtype=bool)
    cont[10:] = True
    special = SpecialIds(cls=2, sep=3, mask=4, pad=0, vocab_size=15, all_special=(0, 1, 2, 3, 4), continuation=cont)
    rng = np.random.default_rng(0)
    words = [[5], [6, 10], [7, 11, 12], [8], [9, 13, 14, 10]] * 8
    ids = np.asarray([2, *[t for w in words for t in w], 3], dtype=np.int64)
    bounds = np.cumsum([1] + [len(w) for w in words])
    masked_share = []
    for _ in range(400):
        _, labels = mask_tokens(ids, special, 0.15, 20, rng, whole_word=True)
        chosen = labels != -100
        n_target = min(20, round(len(ids) * 0.15))
        assert chosen.sum() <= n_target and not chosen[[0, -1]].any()
        for lo, hi in zip(bounds[:-1], bounds[1:]):  # every word is masked entirely or not at all
            assert chosen[lo:hi].all() or not chosen[lo:hi].any()
        masked_share.append(chosen.sum() / n_target)
    # words of 1-4 pieces fill the 15% budget almost exactly (skipping words that would overshoot)
    assert np.mean(masked_share) > 0.95
    # a [SEP] between pieces splits groups: "##" pieces after a special token form their own word
    ids2 = np.asarray([2, 6, 3, 10, 11, 3])
    for seed in range(20):
        _, labels = mask_tokens(ids2, special, 0.5, 3, np.random.default_rng(seed), whole_word=True)
        chosen = labels != -100
        assert not chosen[[0, 2, 5]].any() and chosen[3] == chosen[4]
