"""Bi-encoder fine-tuning for similarity tasks (Sentence-BERT's recipe, `finetune.objective=bi_encoder`):
each text of a pair is encoded alone and pooled to one vector, and the cosine of the two vectors
is trained toward the gold score divided by the task's top score (sentence-transformers'
CosineSimilarityLoss). The export is a sentence-transformers directory: the BERT at its root (it
loads with `AutoModel`), `modules.json` and the pooling beside it, which `bertforge embed`,
`similarity`, `predict` and `SentenceTransformer(dir)` all read. A prediction is the cosine times
that top score, so it reads on the task's scale (STS-B's 0-5) and the task's metrics apply as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.utils.data import DataLoader

from bertforge.config import ConfigError
from bertforge.data.records import read_json
from bertforge.finetuning.tasks import Example, TaskData
from bertforge.outputs import write_text
from bertforge.pretraining.model import unpad_indices, unpadded_encoder
from bertforge.sentence_models import LEGACY_FLAGS


def check_bi_encoder_task(fc, task_name: str, data: TaskData) -> None:
    """A bi-encoder learns a similarity of two texts: a regression task of sentence pairs (STS-B, KorSTS)."""
    if fc.objective != "bi_encoder":
        return
    if data.labels is not None or not data.pairs:
        kind = "a classification task" if data.labels is not None else "a task of single sentences"
        raise ConfigError(
            f"finetune.objective=bi_encoder: {task_name} is {kind}; the bi-encoder learns a similarity "
            "score of sentence pairs (a regression task such as stsb or korsts); use objective=cross_encoder"
        )


def top_score(data: TaskData) -> float:
    """The score a cosine of 1 stands for: the largest gold score (in size) of the training split."""
    top = max(abs(float(e.label)) for e in data.splits["train"])
    if top == 0:
        raise ConfigError("finetune.objective=bi_encoder: every training score is 0; nothing to learn")
    return top


def pool_rows(x: torch.Tensor, batch: dict[str, torch.Tensor], mode: str) -> torch.Tensor:
    """Each row's vector from `unpadded_encoder`'s output ([N, H], the real tokens in row-major order)."""
    rows, count = batch["attention_mask"].shape
    row_of = torch.div(batch["token_index"], count, rounding_mode="floor")
    if mode == "cls":
        return x.index_select(0, batch["row_starts"])
    if mode == "max":
        return x.new_full((rows, x.shape[1]), float("-inf")).scatter_reduce_(0, row_of[:, None].expand_as(x), x, "amax")
    lengths = batch["attention_mask"].sum(1, keepdim=True).to(x.dtype)
    return x.new_zeros(rows, x.shape[1]).index_add_(0, row_of, x) / lengths


class BiEncoder(torch.nn.Module):
    """A BertModel whose batches hold each pair's first texts, then its second texts ([2B, S] rows);
    `forward(...).logits` is [B, 1]: the cosine of each pair's pooled vectors times `scale`."""

    def __init__(self, bert, pooling: str, scale: float):
        super().__init__()
        self.bert, self.pooling, self.scale = bert, pooling, float(scale)
        self.config = bert.config

    def vectors(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled vectors of every row, on the real tokens alone when the loader marked them."""
        from bertforge.embeddings import pool

        if "token_index" in batch:
            return pool_rows(unpadded_encoder(self.bert, batch), batch, self.pooling)
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        return pool(self.bert(**inputs).last_hidden_state, batch["attention_mask"], [self.pooling])

    def cosine(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        first, second = self.vectors(batch).float().chunk(2)
        return torch.nn.functional.cosine_similarity(first, second, dim=-1)

    def forward(self, **batch):
        return SimpleNamespace(logits=(self.cosine(batch) * self.scale).unsqueeze(-1))

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """CosineSimilarityLoss: the squared error of each cosine against its score / `scale`."""
        return torch.nn.functional.mse_loss(self.cosine(batch), batch["labels"].float() / self.scale)


def load_bi_encoder(
    init: Path, pooling: str, scale: float, random_init: bool, reinit_word_embeddings: bool = False
) -> BiEncoder:
    """From any BERT directory, as `load_classifier` loads a cross-encoder (`random_init` keeps the
    architecture alone, `reinit_word_embeddings` draws the word vectors anew)."""
    from transformers import AutoConfig, AutoModel, BertModel

    from bertforge.finetuning.module import reinit_words
    from bertforge.pretraining.model import load_weights

    if random_init:
        bert = AutoModel.from_config(AutoConfig.from_pretrained(str(init)), attn_implementation="sdpa")
    else:
        bert = load_weights(BertModel, init, "finetune.init", ("pooler.",), attn_implementation="sdpa")
        if reinit_word_embeddings:
            reinit_words(bert)
    return BiEncoder(bert, pooling, scale).train()


def encode_pairs(tokenizer, examples: list[Example], max_length: int) -> list[dict]:
    """Each pair's two texts, encoded apart (with no token types of a pair), and its score."""
    first = tokenizer([e.text_a for e in examples], truncation=True, max_length=max_length)
    second = tokenizer([e.text_b for e in examples], truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in first]
    return [
        {
            "first": {k: first[k][i] for k in keys},
            "second": {k: second[k][i] for k in keys},
            "labels": 0.0 if e.label is None else float(e.label),
        }
        for i, e in enumerate(examples)
    ]


def pair_loader(
    tokenizer,
    items: list[dict],
    batch_size: int,
    shuffle: bool,
    seed: int,
    group_by_length: bool = False,
    unpad: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """Batches of [first texts; second texts], padded on the right to their longest."""
    from bertforge.finetuning.module import batch_loader, pad_batch

    def collate(batch):
        feats = pad_batch([x["first"] for x in batch] + [x["second"] for x in batch], tokenizer.pad_token_id)
        feats["labels"] = torch.tensor([x["labels"] for x in batch], dtype=torch.float)
        if unpad:
            feats |= unpad_indices(feats["attention_mask"])
        return feats

    length = (lambda x: max(len(x["first"]["input_ids"]), len(x["second"]["input_ids"]))) if group_by_length else None
    return batch_loader(items, collate, batch_size, shuffle, seed, length, pin_memory)


def save_sentence_model(model: BiEncoder, out_dir: Path, max_length: int) -> None:
    """The BERT at the root, then sentence-transformers' files: `modules.json` (Transformer, then
    Pooling), the pooling, the length, and cosine as the similarity. Written in the layout every
    sentence-transformers version reads (MiniLM-L6's)."""
    model.bert.config.finetuning_objective = "bi_encoder"
    model.bert.config.finetuning_similarity = {"pooling": model.pooling, "scale": model.scale}
    model.bert.save_pretrained(str(out_dir))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    pooling = {"word_embedding_dimension": model.config.hidden_size}
    pooling |= {flag: mode == model.pooling for flag, mode in list(LEGACY_FLAGS.items())[:4]}  # MiniLM-L6's four
    files = {
        "modules.json": modules,
        "1_Pooling/config.json": pooling,
        "sentence_bert_config.json": {"max_seq_length": int(max_length), "do_lower_case": False},
        "config_sentence_transformers.json": {
            "prompts": {},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    }
    for name, content in files.items():
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        write_text(out_dir / name, json.dumps(content, indent=2) + "\n")


def sentence_model_config(model_dir: Path) -> dict | None:
    """The config.json of a bi-encoder the finetune stage wrote (`finetuning_similarity`: its pooling
    and the score a cosine of 1 stands for); None for any other model."""
    config = model_dir / "config.json"
    if not config.is_file():
        return None
    recorded = read_json(config)
    return recorded if recorded.get("finetuning_objective") == "bi_encoder" else None
