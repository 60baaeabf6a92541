"""WordPiece tokenizer training and loading, saved as a standard Hugging Face BERT directory.

transformers 5 rebuilds a BERT tokenizer's normalizer from `tokenizer_config.json`
(`do_lower_case`, `strip_accents`) and ignores the one in `tokenizer.json`. So ours is exactly
that `BertNormalizer`, with `strip_accents` saved explicitly: every loader then tokenizes alike.
Unicode NFC/NFKC is applied to the text before tokenization (`normalize_unicode`).
"""
from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Callable, Iterable, Iterator

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from .config import ConfigError, resolve_path

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_HANGUL = range(0xAC00, 0xD7A4)


def normalize_unicode(text: str, form: str | None) -> str:
    return unicodedata.normalize(form, text) if form else text


def hangul_share(sentences: Iterable[str]) -> float:
    letters = hangul = 0
    for s in sentences:
        for ch in s:
            if ch.isalpha():
                letters += 1
                hangul += ord(ch) in _HANGUL
    return hangul / max(letters, 1)


def check_hangul_safe(sample: list[str], strip_accents: bool, key: str = "tokenizer.strip_accents") -> None:
    """BERT's accent stripping (NFD + drop marks) splits Hangul syllables into jamo: refuse it."""
    share = hangul_share(sample)
    if strip_accents and share >= 0.01:
        raise ConfigError(
            f"{key}=true would decompose Hangul ({share:.0%} of letters in the corpus sample are Hangul); "
            "use a cased Korean tokenizer (tokenizer=korean) or set tokenizer.strip_accents=false"
        )


def _train(sentences: Iterable[str], cfg, extra_tokens: list[str]) -> Tokenizer:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=bool(cfg.strip_accents), lowercase=bool(cfg.lowercase)
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        limit_alphabet=cfg.limit_alphabet,
        special_tokens=SPECIAL_TOKENS + extra_tokens,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tok.train_from_iterator(sentences, trainer=trainer)
    return tok


def train_wordpiece(sentences: Callable[[], Iterable[str]], cfg) -> dict[str, int]:
    """Train a WordPiece vocabulary, identical on every run (returns token -> id).

    The `tokenizers` trainer gives `##x` tokens ids in hash-map order and breaks merge-count ties
    by id, so the vocabulary can change between processes (huggingface/tokenizers#1794). A first
    pass finds the alphabet (which the trainer sorts); the second pre-registers every `##x` in
    sorted order so no id depends on hashing. Ids are then specials first, the rest sorted.
    """
    alphabet = sorted(t for t in _train(sentences(), cfg, []).get_vocab() if len(t) == 1 and t not in SPECIAL_TOKENS)
    vocab = _train(sentences(), cfg, [f"##{c}" for c in alphabet]).get_vocab()
    ordered = SPECIAL_TOKENS + sorted(t for t in vocab if t not in SPECIAL_TOKENS)
    return {t: i for i, t in enumerate(ordered)}


def save_tokenizer(vocab: dict[str, int], out_dir: Path, cfg, model_max_length: int):
    """Save a directory that `BertTokenizerFast.from_pretrained` and `AutoTokenizer` load identically;
    returns the tokenizer (encode with it, so shards match what users load)."""
    from transformers import BertTokenizerFast

    hf = BertTokenizerFast(
        vocab=vocab,
        do_lower_case=bool(cfg.lowercase),
        strip_accents=bool(cfg.strip_accents),
        model_max_length=model_max_length,
    )
    hf.save_pretrained(str(out_dir))
    return hf


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    path = resolve_path(path)
    if not (path / "tokenizer.json").exists() and not (path / "vocab.txt").exists():
        raise ConfigError(f"{path}: not a tokenizer directory (no tokenizer.json or vocab.txt)")
    tok = AutoTokenizer.from_pretrained(str(path))
    vocab = tok.backend_tokenizer.get_vocab(with_added_tokens=False)  # added tokens don't count
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise ConfigError(f"{path}: vocabulary lacks the special tokens {missing}")
    return tok


def iter_sentences(docs: Iterable[list[str]]) -> Iterator[str]:
    for doc in docs:
        yield from doc
