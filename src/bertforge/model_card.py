"""Hugging Face model cards (`README.md`) for the directories we export, written from the run
itself: what the model is, its data, its settings, its results and where it came from."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from omegaconf import DictConfig, ListConfig

from bertforge.config import finetune_settings, to_plain
from bertforge.data.records import read_json
from bertforge.outputs import write_text


def _plain(value):
    return to_plain(value) if isinstance(value, (DictConfig, ListConfig)) else value


def _front_matter(
    language: str, pipeline_tag: str, tags: list[str], model_index: list[dict], library: str = "transformers"
) -> str:
    header = {
        "language": [language],
        "license": "other",
        "library_name": library,
        "pipeline_tag": pipeline_tag,
        "tags": ["bert", "bertforge", *tags],
        "model-index": model_index,
    }
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n"


def _table(rows: dict, what: str = "setting") -> str:
    return f"| {what} | value |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows.items())


def _lineage(run_id: str | None, tags: dict) -> str:
    return (
        f"- MLflow run: `{run_id}` (experiment `bertforge`)\n"
        f"- DVC experiment: `{tags.get('dvc_experiment') or 'workspace'}`, git commit `{tags.get('git_commit', 'unknown')}`\n"
        + (f"- input produced by MLflow run `{tags['upstream_run_id']}`\n" if tags.get("upstream_run_id") else "")
    )


def _license_note() -> str:
    return (
        "\n## License\n\n`license: other` is a placeholder: the weights inherit the terms of the training data; "
        "set the licence before publishing.\n"
    )


def _segmentation_note(tokenizer_dir: Path) -> str:
    from bertforge.data.morphemes import read_marker

    analyzer = read_marker(Path(tokenizer_dir))
    if not analyzer:
        return ""
    return f"""
This tokenizer was trained on text cut into morphemes by {analyzer} (`bertforge_pre_segmentation.json`).
A plain `AutoTokenizer` does not cut: use `bertforge.data.tokenization.load_tokenizer(path)` (which
does, for `pipeline(..., model=..., tokenizer=...)` too), or pass it
`bertforge.data.morphemes.segment(text)`.
"""


def pretrained_card(cfg, prepared: Path, metrics: dict, run_id: str | None, tags: dict, place) -> str:
    """The card of `outputs/pretrain`: corpus, sequences seen, model and optimizer settings,
    held-out MLM/NSP results, hardware, lineage, how to load."""
    pc, m = cfg.pretrain, cfg.model
    meta_path = Path(prepared) / "shards" / "meta.json"
    meta = read_json(meta_path) if meta_path.exists() else {}
    corpus = cfg.corpus
    source = corpus.get("dataset") or corpus.get("files") or corpus.get("sources")
    language = str(corpus.get("language") or "en")
    sequences = int(metrics["sequences"])
    batch = sequences // max(1, int(metrics["steps"]))
    results = [
        {"type": "accuracy", "name": "held-out MLM accuracy", "value": round(metrics["mlm_accuracy"], 4)},
        {"type": "perplexity", "name": "held-out MLM perplexity", "value": round(metrics["perplexity"], 3)},
    ]
    if "nsp_accuracy" in metrics:
        results.append(
            {
                "type": "accuracy",
                "name": f"held-out {pc.objective.upper()} accuracy",
                "value": round(metrics["nsp_accuracy"], 4),
            }
        )
    index = [
        {
            "name": f"bertforge BERT-{m.name}",
            "results": [
                {
                    "task": {"type": "fill-mask", "name": "Masked language modelling"},
                    "dataset": {"name": str(corpus.name), "type": str(corpus.name), "split": "valid"},
                    "metrics": results,
                }
            ],
        }
    ]
    train = meta.get("train", {})
    body = f"""
# BERT-{m.name} pre-trained by bertforge

A BERT encoder ({m.num_hidden_layers} layers, hidden size {m.hidden_size}, {m.num_attention_heads} heads,
{metrics.get("parameters", 0):,} parameters) pre-trained {
        f"further from `{pc.init}` (continued pre-training)" if pc.get("init") else "from scratch"
    } with masked language modelling
{"and " + pc.objective.upper() + " " if pc.objective != "mlm" else ""}on the `{corpus.name}` corpus. Intended use:
fine-tuning on downstream tasks (`AutoModelForSequenceClassification`), masked-token prediction, or
as a sentence encoder. It is a research artefact: check its results below before relying on it.

## Training data

- corpus profile `{corpus.name}` (reader `{corpus.format}`){
        ": " + json.dumps(_plain(source), ensure_ascii=False) if source else ""
    }
- training split: {train.get("documents", 0):,} documents, {train.get("sentences", 0):,} sentences, {
        train.get("tokens", 0):,} tokens
  (WordPiece vocabulary of {meta.get("vocab_size", 0):,})
- seen in training: {sequences:,} sequences of at most {pc.max_seq_length} tokens ({metrics["steps"]:,} steps of {
        batch
    }{", phases " + json.dumps(_plain(pc.phases)) if pc.phases else ""})

## Training procedure

{
        _table(
            {
                "objective": pc.objective,
                "masking": f"{pc.masked_lm_prob:.0%} of tokens, 80/10/10 ({pc.masking}{', whole words' if pc.whole_word_masking else ''})",
                "max predictions per sequence": pc.max_predictions_per_seq,
                "optimizer": pc.optimizer,
                "learning rate": pc.lr,
                **(
                    {
                        "time budget": f"{pc.budget_minutes:g} min ({metrics['train_minutes']:.1f} min trained"
                        + (f", replaying `{pc.budget_clock}`" if pc.budget_clock else "")
                        + "); exact replay: the same command with `pretrain.budget_clock=<this directory>`; "
                        f"by steps alone (a straight schedule): `{metrics['replay']}`",
                        "warmup": f"{pc.warmup_fraction:.0%} of the budget",
                    }
                    if pc.budget_minutes is not None
                    else {"warmup steps": pc.warmup_steps}
                ),
                "schedule": pc.schedule,
                "tokens seen": f"{metrics.get('tokens', 0):,} (not padding)",
                "batch size": batch,
                "steps": metrics["steps"],
                "weight decay": pc.weight_decay,
                **({} if m.tie_word_embeddings else {"MLM decoder": "a matrix of its own (untied)"}),
                "seed": cfg.seed,
                "precision": place.precision,
                "hardware": place.line().split(": ", 1)[-1],
            }
        )
    }
## Evaluation (held-out split)

{
        _table(
            {
                "MLM accuracy": f"{metrics['mlm_accuracy']:.4f}",
                "unigram baseline": f"{metrics['unigram_accuracy']:.4f}",
                "perplexity": f"{metrics['perplexity']:.2f}",
                **(
                    {f"{pc.objective.upper()} accuracy": f"{metrics['nsp_accuracy']:.4f}"}
                    if "nsp_accuracy" in metrics
                    else {}
                ),
            },
            "metric",
        )
    }
## How to load

```python
from transformers import AutoModel, AutoModelForPreTraining, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained("path/to/this/directory")
model = AutoModel.from_pretrained("path/to/this/directory")  # encoder + pooler
```
{_segmentation_note(Path(prepared) / "tokenizer")}
## Lineage

{_lineage(run_id, tags)}{_license_note()}"""
    return _front_matter(language, "fill-mask", ["pretraining"], index) + body


def classifier_card(cfg, report: dict, labels: list[str] | None, run_id: str | None, tags: dict, place) -> str:
    """The card of `outputs/finetune/<task>/model`: task and data, settings, best-epoch dev results."""
    task, fc = cfg.task, finetune_settings(cfg)  # as this task was trained
    best = {k: v for k, v in report["best_dev"].items() if k != "epoch"}
    bi_encoder = report.get("objective") == "bi_encoder"
    kind = "sentence-similarity" if bi_encoder else "text-classification"
    index = [
        {
            "name": f"bertforge BERT fine-tuned on {task.name}",
            "results": [
                {
                    "task": {
                        "type": kind,
                        "name": "Regression" if labels is None else "Text classification",
                    },
                    "dataset": {"name": str(task.name), "type": str(task.name), "split": "dev"},
                    "metrics": [{"type": k, "value": round(float(v), 4)} for k, v in best.items()],
                }
            ],
        }
    ]
    pairs = report.get("text_pairs", False)
    example = '{"text": "first sentence", "text_pair": "second sentence"}' if pairs else '"a sentence"'
    cli_example = '"first sentence<TAB>second sentence"' if pairs else '"a sentence"'
    body = f"""
# BERT fine-tuned on {task.name} by bertforge

{
        f"A sentence model (bi-encoder: each text {fc.pooling}-pooled alone, the cosine of two texts times "
        f"{report.get('similarity_scale')} predicts their score)"
        if bi_encoder
        else f"A sequence {'regression' if labels is None else 'classification'} model ("
        + ("a score" if labels is None else "labels " + ", ".join(map(str, labels)))
        + ")"
    }
fine-tuned from `{Path(report["init"]).name}`{
        " (random initialisation, a control)" if report.get("random_init") else ""
    }.
Input: {"sentence pairs" if pairs else "single sentences"}. Intended use: predictions on text like the
task's data; check the dev results below first.

## Data

- task `{task.name}` (source `{task.source}`): {report["train_examples"]:,} training and {
        report["dev_examples"]:,} dev examples

## Training procedure

{
        _table(
            {
                **({"objective": f"bi-encoder, {fc.pooling} pooling, cosine loss"} if bi_encoder else {}),
                "learning rate": fc.lr,
                "batch size": fc.batch_size,
                "epochs": fc.epochs,
                "warmup ratio": fc.warmup_ratio,
                "weight decay": fc.weight_decay,
                **({"word embeddings": "re-initialised (fresh)"} if fc.reinit_word_embeddings else {}),
                **(
                    {"word-embedding lr scale": fc.word_embeddings_lr_scale} if fc.word_embeddings_lr_scale != 1 else {}
                ),
                "max sequence length": fc.max_seq_length,
                "seed": cfg.seed,
                "best epoch (kept)": report["best_dev"].get("epoch"),
                "precision": place.precision,
                "hardware": place.line().split(": ", 1)[-1],
            }
        )
    }
## Evaluation (dev split, best epoch)

{_table({k: f"{float(v):.4f}" for k, v in best.items()}, "metric")}
## How to load

{_sentence_model_use(fc) if bi_encoder else _classifier_use(example, cli_example, pairs)}
{_segmentation_note(Path(report["init"]))}
## Lineage

{_lineage(run_id, tags)}{_license_note()}"""
    card_tags = ["sentence-transformers", "sentence-similarity"] if bi_encoder else ["text-classification"]
    library = "sentence-transformers" if bi_encoder else "transformers"
    return _front_matter(task.language, kind, card_tags, index, library) + body


def _classifier_use(example: str, cli_example: str, pairs: bool) -> str:
    sep = " (a pair's two texts separated by a tab; `--sep` sets another separator)" if pairs else ""
    return f"""```python
from transformers import pipeline
classify = pipeline("text-classification", model="path/to/this/directory")
classify({example})
```

or from the command line: `bertforge predict --model path/to/this/directory {cli_example}`{sep}."""


def _sentence_model_use(fc) -> str:
    return f"""A sentence-transformers directory (the BERT at its root, then {fc.pooling} pooling):

```python
from sentence_transformers import SentenceTransformer
model = SentenceTransformer("path/to/this/directory")
vectors = model.encode(["first sentence", "second sentence"])
```

or from the command line: `bertforge embed --model path/to/this/directory "a sentence"` (its vectors),
`bertforge similarity --model path/to/this/directory "first sentence<TAB>second sentence"` (the cosine), and
`bertforge predict` with the same arguments (the cosine on the task's scale). `AutoModel` loads the BERT
alone: its token vectors, whose {fc.pooling} pooling over the real tokens gives these vectors."""


def write_card(directory: Path, text: str) -> None:
    write_text(Path(directory) / "README.md", text)
