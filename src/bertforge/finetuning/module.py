"""Sequence classification / regression on top of a BERT encoder, with best-dev selection."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from bertforge.config import check_bert_dir
from bertforge.data.padding import pad_right
from bertforge.finetuning.metrics import score_predictions
from bertforge.finetuning.tasks import Example, TaskData
from bertforge.pretraining.model import dropout, load_weights, pooled, unpad_indices, unpadded_encoder
from bertforge.pretraining.optim import optimizer_with_schedule


def encode(tokenizer, examples: list[Example], data: TaskData, max_length: int) -> list[dict]:
    a = [e.text_a for e in examples]
    b = [e.text_b for e in examples] if examples and examples[0].text_b is not None else None
    enc = tokenizer(a, b, truncation=True, max_length=max_length)
    out = []
    for i, ex in enumerate(examples):
        item = {k: enc[k][i] for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc}
        item["labels"] = data.label_id(ex)
        out.append(item)
    return out


class LengthGroupedBatches(torch.utils.data.Sampler):
    """Shuffled batches of similar length: shuffle, cut into windows of 50 batches, sort each
    window by length, batch it, shuffle the batches (seeded; a new order every epoch). Dynamic
    padding then pads little, without sorting the whole epoch (which would skew batches)."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, window: int = 50):
        self.lengths, self.batch_size, self.seed, self.window, self.epoch = lengths, batch_size, seed, window, 0

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        order = torch.randperm(len(self.lengths), generator=g).tolist()
        span = self.batch_size * self.window
        batches = []
        for start in range(0, len(order), span):
            chunk = sorted(order[start : start + span], key=lambda i: self.lengths[i], reverse=True)
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        for j in torch.randperm(len(batches), generator=g).tolist():
            yield batches[j]

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this before each epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)


def pad_batch(batch: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    return pad_right(batch, {"input_ids": pad_id, "token_type_ids": 0, "attention_mask": 0})


def make_loader(
    tokenizer,
    items: list[dict],
    batch_size: int,
    shuffle: bool,
    seed: int,
    group_by_length: bool = False,
    pin_memory: bool = False,
    unpad: bool = False,
) -> DataLoader:
    """Batches of `items` padded to their longest; with `unpad` (and a right-padding tokenizer) they
    also say where the real tokens are (`unpad_indices`, computed here on the host so the step
    needs no device sync), and the training step then computes on those alone."""
    regression = bool(items) and isinstance(items[0]["labels"], float)
    own_padding = tokenizer.padding_side == "right"

    def collate(batch):
        if own_padding:
            feats = pad_batch(batch, tokenizer.pad_token_id)
        else:
            feats = dict(
                tokenizer.pad([{k: v for k, v in x.items() if k != "labels"} for x in batch], return_tensors="pt")
            )
        feats["labels"] = torch.tensor([x["labels"] for x in batch], dtype=torch.float if regression else torch.long)
        if unpad and own_padding:  # transformers pools position 0, [CLS] only when rows are right-padded
            feats |= unpad_indices(feats["attention_mask"])
        return feats

    length = (lambda x: len(x["input_ids"])) if group_by_length else None
    return batch_loader(items, collate, batch_size, shuffle, seed, length, pin_memory)


def batch_loader(
    items: list[dict], collate, batch_size: int, shuffle: bool, seed: int, length=None, pin_memory: bool = False
) -> DataLoader:
    """Batches of `items` through `collate`: length-grouped (`LengthGroupedBatches`) when shuffled
    with a `length` per item, else seeded shuffled or in order."""
    if shuffle and length is not None:
        sampler = LengthGroupedBatches([length(x) for x in items], batch_size, seed)
        return DataLoader(items, batch_sampler=sampler, collate_fn=collate, pin_memory=pin_memory)
    g = torch.Generator().manual_seed(seed)
    return DataLoader(
        items, batch_size=batch_size, shuffle=shuffle, generator=g, collate_fn=collate, pin_memory=pin_memory
    )


def load_classifier(
    init: str | Path, num_labels: int, labels: list[str] | None, random_init: bool, reinit_word_embeddings: bool = False
):
    """From any BERT directory (ours, an HF checkpoint on disk); `random_init` keeps only its architecture;
    `reinit_word_embeddings` loads every weight but draws the word vectors anew, as BERT initialises them
    (from torch's seed)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    init = check_bert_dir(Path(init), "finetune.init")
    kw = dict(num_labels=num_labels, problem_type="regression" if labels is None else "single_label_classification")
    if labels is not None:
        kw.update(id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
    config = AutoConfig.from_pretrained(str(init), **kw)
    if random_init:
        model = AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")
    else:
        model = load_weights(
            AutoModelForSequenceClassification,
            init,
            "finetune.init",
            ("classifier.", "bert.pooler."),
            config=config,
            attn_implementation="sdpa",
        )
        if reinit_word_embeddings:
            reinit_words(model.bert)
    return model.train()  # from_pretrained returns eval mode, and Lightning keeps modules' modes: dropout off


def reinit_words(bert) -> None:
    """Draw a BertModel's word vectors anew, as BERT initialises them (from torch's seed)."""
    words = bert.embeddings.word_embeddings
    with torch.no_grad():
        words.weight.normal_(0.0, bert.config.initializer_range)
        if words.padding_idx is not None:
            words.weight[words.padding_idx].zero_()


def unpadded_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """`BertForSequenceClassification(**batch).loss` computed on the real tokens only, with the
    pre-training's unpadded encoder (on a CPU also its faster dropout): the same maths, and the
    model, its checkpoints and exports stay Hugging Face's. Needs `make_loader(..., unpad=True)`."""
    x = unpadded_encoder(model.bert, batch)
    logits = model.classifier(dropout(pooled(model.bert, x, batch["row_starts"]), model.dropout.p, model.training))
    labels = batch["labels"]
    if model.num_labels == 1:  # regression, as transformers computes it
        return torch.nn.functional.mse_loss(logits.squeeze(-1).float(), labels.float())
    return torch.nn.functional.cross_entropy(logits.float().view(-1, model.num_labels), labels.view(-1))


def training_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The training step's loss: on the real tokens when the loader marked them, else transformers'."""
    return unpadded_loss(model, batch) if "token_index" in batch else model(**batch).loss


@torch.no_grad()
def predict(model, loader: DataLoader, regression: bool) -> tuple[np.ndarray, np.ndarray]:
    """Predictions (label ids or scores) and the raw logits for every example, in order."""
    model.eval()
    logits = []
    for batch in loader:
        batch = {k: v.to(model.device) for k, v in batch.items() if k != "labels"}
        logits.append(model(**batch).logits.float().cpu())
    out = torch.cat(logits).numpy()
    return (out[:, 0] if regression else out.argmax(-1)), out


class FinetuneModule(pl.LightningModule):
    def __init__(self, model, cfg, task, regression: bool, total_steps: int, loss=training_loss):
        super().__init__()
        self.model, self.cfg, self.task, self.regression = model, cfg, task, regression
        self.loss = loss  # (model, batch) -> the training loss; a bi-encoder brings its own
        self.total_steps = total_steps
        self.best_score, self.best_state, self.best_metrics, self.history = -float("inf"), None, {}, []
        self._preds, self._gold = [], []

    def training_step(self, batch, batch_idx):
        loss = self.loss(self.model, batch)
        log_now = self.trainer._logger_connector.should_update_logs  # as in pre-training: no sync, little logging
        if (log_now or self.device.type == "cpu") and not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite fine-tuning loss at step {self.global_step}")
        if log_now:
            self.log("train/loss", loss, prog_bar=True)
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        return loss

    def validation_step(self, batch, batch_idx):
        logits = self.model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
        self._preds.append((logits[:, 0] if self.regression else logits.argmax(-1)).cpu())
        self._gold.append(batch["labels"].cpu())

    def on_validation_epoch_end(self):
        preds, gold = torch.cat(self._preds).numpy(), torch.cat(self._gold).numpy()
        self._preds, self._gold = [], []
        if self.trainer.sanity_checking:
            return
        metrics, score = score_predictions(self.task, preds, gold)
        self.log_dict({f"dev/{k}": v for k, v in metrics.items()} | {"dev/score": score})
        self.history.append({"epoch": self.current_epoch, "step": self.global_step, "score": score, **metrics})
        if score > self.best_score:  # best-checkpoint selection on the dev metric
            self.best_score, self.best_metrics = score, {**metrics, "epoch": self.current_epoch}
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def configure_optimizers(self):
        c = self.cfg
        warmup = int(c.warmup_ratio * self.total_steps)
        return optimizer_with_schedule(
            self.model,
            c.lr,
            c.weight_decay,
            (0.9, 0.999),
            1e-6,
            warmup,
            self.total_steps,
            fused=not str(self.trainer.precision).startswith("16"),
            word_embeddings_lr_scale=c.word_embeddings_lr_scale,
        )

    def best_model(self):
        model = copy.deepcopy(self.model).cpu()
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        return model.float()
