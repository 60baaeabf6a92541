import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from omegaconf import OmegaConf

from bertforge.config import ConfigError, compose
from bertforge.data.tokenization import check_hangul_safe, load_tokenizer, save_tokenizer, train_wordpiece

KO = [
    "대한민국은 민주공화국이다.",
    "대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다.",
    "국민은 법 앞에 평등하다.",
    "모든 국민은 학문과 예술의 자유를 가진다.",
] * 20


def test_korean_round_trips_through_trained_tokenizer(tmp_path):
    from transformers import AutoTokenizer, BertTokenizerFast

    cfg = OmegaConf.merge(compose(["tokenizer=korean"]).tokenizer, {"vocab_size": 400, "limit_alphabet": 400})
    (tmp_path / "ko.txt").write_text("\n".join(KO), encoding="utf-8")
    save_tokenizer(train_wordpiece([tmp_path / "ko.txt"], cfg, Counter("".join(KO))), tmp_path, cfg, 128)
    for loader in (AutoTokenizer, BertTokenizerFast):
        tok = loader.from_pretrained(tmp_path)
        for s in KO[:4]:
            ids = tok(s)["input_ids"]
            assert tok.unk_token_id not in ids
            assert tok.decode(ids, skip_special_tokens=True).replace(" ", "") == s.replace(" ", "")


def test_accent_stripping_on_hangul_is_refused():
    check_hangul_safe(KO, strip_accents=False)
    check_hangul_safe(["café au lait"] * 10, strip_accents=True)
    with pytest.raises(ConfigError, match="tokenizer.strip_accents=true would decompose Hangul"):
        check_hangul_safe(KO, strip_accents=True)


def test_prepared_tokenizer_loads_identically(demo_prepared):
    from transformers import BertTokenizerFast

    _, out, stats = demo_prepared
    assert stats["unk_rate"] == 0.0  # every demo word is in the vocabulary
    a = BertTokenizerFast.from_pretrained(out / "tokenizer")
    b = load_tokenizer(out / "tokenizer")
    text = "Café these brulais rukil every vukbaim ."
    assert a(text, "x y")["input_ids"] == b(text, "x y")["input_ids"]
    # the uncased profile lowercases and strips accents like BERT-uncased
    assert a.backend_tokenizer.normalizer.normalize_str("Café") == "cafe"
    assert len(a) == stats["vocab_size"]


def test_tokenizer_dir_without_special_tokens_is_rejected(tmp_path):
    (tmp_path / "vocab.txt").write_text("a\nb\n[UNK]\n")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    with pytest.raises(ConfigError, match="lacks the special tokens"):
        load_tokenizer(tmp_path)


def test_vocabulary_is_identical_across_processes_with_alphabet_ties(tmp_path):
    """36 characters occur once each and limit_alphabet cuts among them: the trainer alone picks
    the tied ones in hash order (so vocabularies differed between runs); ours breaks ties by code point."""
    rare = "".join(chr(c) for c in range(0x3B1, 0x3C9))  # Greek letters, once each
    (tmp_path / "t.txt").write_text(
        "\n".join(["the cat sat on the mat"] * 50 + [f"w{c}x" for c in rare]), encoding="utf-8"
    )
    code = (
        "import sys, json; from collections import Counter; from omegaconf import OmegaConf; "
        "from bertforge.data.tokenization import train_wordpiece; "
        "cfg = OmegaConf.create(dict(vocab_size=60, min_frequency=1, limit_alphabet=30, lowercase=True, strip_accents=False, pre_segmentation=None)); "
        "text = open(sys.argv[1], encoding='utf-8').read(); "
        "print(json.dumps(train_wordpiece([sys.argv[1]], cfg, Counter(text.lower()))))"
    )
    vocabs = [
        subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "t.txt")],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in (1, 2, 3)
    ]
    assert vocabs[0] == vocabs[1] == vocabs[2]
    vocab = json.loads(vocabs[0])
    assert "##α" in vocab and "ω" not in vocab  # the lowest code points win the tie
