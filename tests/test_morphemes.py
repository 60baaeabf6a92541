"""Morpheme pre-segmentation (tokenizer=korean_morpheme): the cuts, and the same cuts at prepare
time and wherever a tokenizer directory is loaded."""

from collections import Counter

import numpy as np
import pytest

pytest.importorskip("mecab")

from bertforge.config import ConfigError, compose  # noqa: E402
from bertforge.data.morphemes import MARKER, segment  # noqa: E402
from bertforge.data.preparation import prepare  # noqa: E402
from bertforge.data.shards import Shard  # noqa: E402
from bertforge.data.tokenization import load_tokenizer, save_tokenizer_dir  # noqa: E402

DOCS = [
    ["대한민국은 민주공화국이다.", "대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다."],
    ["국민은 법 앞에 평등하다.", "모든 국민은 학문과 예술의 자유를 가진다."],
    ["한국어 모델을 공유합니다.", "BERT는 2018년에 나왔다."],
    ["국민은 모델을 공유했다.", "권력은 국민에게 있다."],
] * 6


@pytest.mark.parametrize(
    "text, cut",
    [
        ("한국어 모델을 공유합니다.", "한국어 모델 을 공유 합니다 ."),
        ("국민은 법 앞에 평등하다", "국민 은 법 앞 에 평등 하 다"),
        ("BERT는 3.14점", "BERT 는 3.14 점"),  # cut only next to Hangul: 3.14 and BERT stay whole
        ("  모델을\t공유했다", "  모델 을\t공유 했 다"),  # whitespace kept; 했 (하+었) is one surface
        ("BERT-base, 3.14 and café", "BERT-base, 3.14 and café"),  # no Hangul: untouched
        ("", ""),
    ],
)
def test_cuts_are_surface_morpheme_boundaries_inside_hangul_words(text, cut):
    assert segment(text) == cut
    assert segment(text).replace(" ", "") == text.replace(" ", "")


def _prepare(tmp_path, workers=2):
    corpus = tmp_path / "ko.txt"
    corpus.write_text("\n\n".join("\n".join(d) for d in DOCS) + "\n", encoding="utf-8")
    cfg = compose(
        [
            "corpus=text",
            f"corpus.files=[{corpus}]",
            "corpus.valid_fraction=0.25",
            "tokenizer=korean_morpheme",
            "tokenizer.vocab_size=300",
            "tokenizer.limit_alphabet=300",
        ]
    )
    stats = prepare(cfg, tmp_path / "out", workers=workers)
    return stats, tmp_path / "out"


def test_prepare_and_every_loader_cut_alike(tmp_path):
    from transformers import AutoTokenizer

    stats, out = _prepare(tmp_path)
    assert (out / "tokenizer" / MARKER).exists() and stats["unk_rate"] == 0
    tok = load_tokenizer(out / "tokenizer")
    # the shards hold exactly what the loaded tokenizer makes of the raw sentences
    expected = Counter(tuple(tok(s, add_special_tokens=False)["input_ids"]) for d in DOCS for s in d)
    stored = Counter()
    for split in ("train", "valid"):
        shard = Shard(out / "shards" / split)
        for i in range(shard.num_documents):
            stored.update(tuple(s) for s in shard.document(i))
    assert stored == expected
    # particles are their own words; a plain AutoTokenizer (no MeCab) glues them back with ##
    assert tok.tokenize("국민은 모델을") == ["국민", "은", "모델", "을"]
    plain = AutoTokenizer.from_pretrained(out / "tokenizer")
    assert plain.tokenize("국민은") == ["국민", "##은"]
    # offsets still point into the original text
    enc = tok("모델을", add_special_tokens=False, return_offsets_mapping=True)
    assert enc["offset_mapping"] == [(0, 2), (2, 3)]
    # saving (as pretrain and finetune do) keeps the cut; tokenizer.json stays plain BERT
    save_tokenizer_dir(tok, tmp_path / "copy")
    assert load_tokenizer(tmp_path / "copy").tokenize("국민은") == ["국민", "은"]
    assert AutoTokenizer.from_pretrained(tmp_path / "copy").tokenize("국민은") == ["국민", "##은"]
    assert tok.tokenize("국민은") == ["국민", "은"]  # the loaded one still cuts after saving


def test_unknown_analyser_names_the_key(tmp_path):
    cfg = compose(["corpus.num_documents=20", "tokenizer.pre_segmentation=kkma"])
    with pytest.raises(ConfigError, match="tokenizer.pre_segmentation='kkma': unknown analyser"):
        prepare(cfg, tmp_path, workers=1)


def test_embed_fill_mask_and_predict_cut_like_pretraining(tmp_path, monkeypatch):
    from transformers import BertConfig, BertForPreTraining, pipeline

    from bertforge.embeddings import embed
    from bertforge.fill_mask import fill_mask

    _, out = _prepare(tmp_path, workers=1)
    tok = load_tokenizer(out / "tokenizer")
    model_dir = tmp_path / "model"
    cfg = BertConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    BertForPreTraining(cfg).save_pretrained(model_dir)
    save_tokenizer_dir(tok, model_dir)
    e = embed(model_dir, ["국민은 모델을 공유했다.", "안녕하세요"], tokens=True)
    assert e.sentences.shape == (2, 32)
    assert e.token_strings[0][:5] == ["[CLS]", "국민", "은", "모델", "을"]
    fill = pipeline("fill-mask", model=str(model_dir), tokenizer=load_tokenizer(model_dir))
    want = fill("국민은 [MASK]을 공유했다.")
    assert len(want) == 5
    # `bertforge fill-mask` cuts with the directory's own analyser: the pipeline given load_tokenizer's
    (got,) = fill_mask(model_dir, ["국민은 [MASK]을 공유했다."])
    assert [t for t, _ in got[0]] == tok.convert_ids_to_tokens([w["token"] for w in want])
    assert [p for _, p in got[0]] == pytest.approx([w["score"] for w in want], rel=1e-5)
    # and `bertforge predict` too, for a classifier fine-tuned from it
    from transformers import BertForSequenceClassification

    from bertforge.predict import predict

    BertForSequenceClassification(cfg).save_pretrained(tmp_path / "classifier")
    save_tokenizer_dir(tok, tmp_path / "classifier")
    classify = pipeline("text-classification", model=str(tmp_path / "classifier"), tokenizer=tok, top_k=None)
    texts = ["국민은 모델을 공유했다.", "안녕하세요"]
    got = predict(tmp_path / "classifier", texts)
    for row, want in zip(got.values, classify(texts)):
        assert row.tolist() == pytest.approx([{w["label"]: w["score"] for w in want}[k] for k in got.labels], abs=1e-6)
    # and from the MLflow registry: the logged tokenizer cannot cut, the logged model's metadata says to
    import mlflow

    from bertforge.config import compose
    from bertforge.tracking import log_classifier

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "classifier" / "README.md").write_text("# a card\n")
    tcfg = compose(["tracking.register_prefix=test", "tracking.alias=champion"]).tracking
    with mlflow.start_run(experiment_id=mlflow.create_experiment("kor", artifact_location=str(tmp_path / "art"))):
        log_classifier(tmp_path / "classifier", tcfg, "kor")
    registered = predict("models:/test-kor@champion", texts)
    np.testing.assert_allclose(registered.values, got.values, atol=1e-7)  # the same cuts, the same numbers
