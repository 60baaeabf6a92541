"""WordPiece tokenizer training and loading, saved as a standard Hugging Face BERT directory.

transformers 5 rebuilds a BERT tokenizer's normalizer from `tokenizer_config.json`
(`do_lower_case`, `strip_accents`) and ignores the one in `tokenizer.json`. So ours is exactly
that `BertNormalizer`, with `strip_accents` saved explicitly: every loader then tokenizes alike.
Unicode NFC/NFKC is applied to the text by the corpus reader (`corpus.clean_text`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from bertforge.config import ConfigError, resolve_path
from bertforge.data.morphemes import attach, check_analyzer, is_hangul, read_marker, write_marker

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def hangul_share(sentences: Iterable[str]) -> float:
    letters = hangul = 0
    for s in sentences:
        for ch in s:
            if ch.isalpha():
                letters += 1
                hangul += is_hangul(ch)
    return hangul / max(letters, 1)


def check_hangul_safe(sample: list[str], strip_accents: bool, key: str = "tokenizer.strip_accents") -> None:
    """BERT's accent stripping (NFD + drop marks) splits Hangul syllables into jamo: refuse it."""
    share = hangul_share(sample)
    if strip_accents and share >= 0.01:
        raise ConfigError(
            f"{key}=true would decompose Hangul ({share:.0%} of letters in the corpus sample are Hangul); "
            "use a cased Korean tokenizer (tokenizer=korean) or set tokenizer.strip_accents=false"
        )


def bert_normalizer(cfg) -> normalizers.BertNormalizer:
    return normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=bool(cfg.strip_accents), lowercase=bool(cfg.lowercase)
    )


def alphabet(char_counts: Counter, limit: int, normalizer=None) -> list[str]:
    """The `limit` most frequent characters after normalization, ties broken by code point. (The
    trainer's own choice breaks ties at the cut-off in hash-map order: vocabularies differed between
    runs.) Lowercasing, accent stripping and control-character removal act per character, so the
    raw counts are normalized per distinct character."""
    counts: Counter = Counter()
    for c, n in char_counts.items():
        for d in normalizer.normalize_str(c) if normalizer is not None else c:
            if not d.isspace():
                counts[d] += n
    return sorted(c for c, _ in sorted(counts.items(), key=lambda x: (-x[1], x[0]))[:limit])


def train_wordpiece(files: list[str | Path], cfg, char_counts: Counter) -> dict[str, int]:
    """Train a WordPiece vocabulary on text files (one sentence per line), identical on every run
    (returns token -> id). `char_counts` counts the characters of the text.

    The `tokenizers` trainer is not deterministic (huggingface/tokenizers#1794): `##x` tokens get
    ids in hash-map order, merge-count ties are broken by id, and alphabet ties at `limit_alphabet`
    in hash order. So we fix the alphabet ourselves (`initial_alphabet`, exactly `limit` chars,
    each kept by the trainer) and pre-register every `##x` in sorted order, so no id depends on
    hashing. Ids are then specials first, the rest sorted.
    """
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = bert_normalizer(cfg)
    chars = alphabet(char_counts, int(cfg.limit_alphabet), tok.normalizer)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        limit_alphabet=len(chars),
        initial_alphabet=chars,
        special_tokens=SPECIAL_TOKENS + [f"##{c}" for c in chars],
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tok.train([str(f) for f in files], trainer=trainer)  # reads and counts in Rust, on every core
    vocab = tok.get_vocab()
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
    analyzer = check_analyzer(cfg.pre_segmentation)
    if analyzer:
        attach(hf, analyzer)
    save_tokenizer_dir(hf, out_dir)  # the one save path: it also writes the marker of a morpheme tokenizer
    return hf


def save_tokenizer_dir(tok, out_dir: str | Path) -> None:
    """`save_pretrained`, keeping the morpheme pre-segmentation (`morphemes`) of a tokenizer that
    has one: its Python pre-tokenizer step cannot be serialized, so the BERT one is saved and the
    marker file says to cut again on load."""
    analyzer = getattr(tok, "bertforge_pre_segmentation", None)
    if not analyzer:
        tok.save_pretrained(str(out_dir))
        return
    backend = tok.backend_tokenizer
    custom, backend.pre_tokenizer = backend.pre_tokenizer, pre_tokenizers.BertPreTokenizer()
    try:
        tok.save_pretrained(str(out_dir))
    finally:
        backend.pre_tokenizer = custom
    write_marker(Path(out_dir), analyzer)


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
    analyzer = read_marker(path)
    if analyzer:
        attach(tok, analyzer)
    return tok


def check_keeps_hangul(tok, sample: list[str], key: str = "tokenizer.pretrained") -> None:
    """A reused tokenizer must not decompose Hangul either (an uncased BERT normalizer strips accents)."""
    if hangul_share(sample) < 0.01:
        return
    probe = "한국어 문장"
    if tok.backend_tokenizer.normalizer is not None and tok.backend_tokenizer.normalizer.normalize_str(probe) != probe:
        raise ConfigError(
            f"{key}: this tokenizer's normalizer decomposes Hangul (e.g. an uncased BERT vocabulary "
            "strips accents); use a cased tokenizer for a Korean corpus (tokenizer=korean)"
        )
