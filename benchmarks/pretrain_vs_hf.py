"""Pre-training throughput: the stock Hugging Face recipe against our model step and our whole stage.

Side by side in one process, on the same prepared shards, model size and batch shape:

- stock: `BertForPreTraining` with labels (MLM head over every position), fp32, masking by
  `DataCollatorForLanguageModeling` (15%, 80/10/10), a plain AdamW loop;
- bare step: our forward (MLM head only at masked positions) under bf16 autocast, AdamW, on
  batches built ahead of time (no data loading, no Lightning);
- stage: `pipelines/pretrain.py` itself (data loading, Lightning, MLflow, progress bar), its
  own `train/tokens_per_s` windows read back from the MLflow run.

Tokens are real (non-padding) tokens; the number is the median over windows after warm-up.

    python benchmarks/pretrain_vs_hf.py --prepared outputs/prepare --sizes tiny mini small

Also prints the stock and bare losses at the same steps (same batches, same initial weights),
so the speed does not come from computing something else.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import stage_runner

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")


def pairs(args, cfg):
    """The tokenizer and epoch 0's pairs; the first (warmup + steps) batches are measured."""
    from bertforge.pretraining_data import PretrainingDataset, SpecialIds
    from bertforge.shards import Shard
    from bertforge.tokenization import load_tokenizer

    tok = load_tokenizer(Path(args.prepared) / "tokenizer")
    ds = PretrainingDataset(Shard(Path(args.prepared) / "shards" / "train"), SpecialIds.from_tokenizer(tok),
                            cfg.pretrain, cfg.seed, 0)
    need = (args.warmup + args.steps) * args.batch_size
    if len(ds) < need:
        raise SystemExit(f"{args.prepared}: {len(ds)} pairs, the benchmark needs {need}")
    return tok, ds


def batch_ranges(args):
    n = args.batch_size
    return [range(b * n, (b + 1) * n) for b in range(args.warmup + args.steps)]


def stock_features(args, ds) -> list[list[dict]]:
    """Unmasked `[CLS] A [SEP] B [SEP]` pairs: the stock collator masks them inside the step."""
    s = ds.special
    out = []
    for rows in batch_ranges(args):
        feats = []
        for a, b, is_random in (ds.instances[i] for i in rows):
            feats.append({"input_ids": [s.cls, *a.tolist(), s.sep, *b.tolist(), s.sep],
                          "token_type_ids": [0] * (len(a) + 2) + [1] * (len(b) + 1),
                          "next_sentence_label": int(is_random)})
        out.append(feats)
    return out


def model_for(cfg, tok):
    import torch

    from bertforge.modeling import bert_config, build_pretraining_model

    torch.manual_seed(cfg.seed)
    return build_pretraining_model(bert_config(cfg.model, len(tok), tok.pad_token_id))


def windows(times: list[float], tokens: list[int], args) -> float:
    """Median tokens/s over windows of `args.window` steps after warm-up."""
    rates = []
    for i in range(args.warmup, len(times) - args.window + 1, args.window):
        rates.append(sum(tokens[i + 1 : i + args.window + 1]) / (times[i + args.window] - times[i]))
    return statistics.median(rates)


def train_loop(args, cfg, model, inputs, step_loss) -> tuple[float, list[float]]:
    """AdamW steps over `inputs`; `step_loss(x)` returns (loss, batch). Gives tokens/s and the losses."""
    import torch

    from bertforge.optim import param_groups

    p = cfg.pretrain
    opt = torch.optim.AdamW(param_groups(model, p.weight_decay), lr=p.lr, betas=tuple(p.adam_betas), eps=p.adam_eps)
    times, tokens, losses = [time.perf_counter()], [0], []
    for x in inputs:
        loss, batch = step_loss(x)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        times.append(time.perf_counter())
        tokens.append(int(batch["attention_mask"].sum()))
    return windows(times, tokens, args), losses


def run_stock(args, cfg, tok, ds):
    import torch
    from transformers import DataCollatorForLanguageModeling

    collator = DataCollatorForLanguageModeling(tok, mlm_probability=cfg.pretrain.masked_lm_prob)
    model = model_for(cfg, tok).float()
    torch.manual_seed(cfg.seed)

    def step_loss(features):
        batch = collator(features)  # masking is part of the stock step, as in Trainer's collate
        return model(**batch).loss, batch

    return train_loop(args, cfg, model, stock_features(args, ds), step_loss)


def run_bare(args, cfg, tok, ds):
    import torch
    import torch.nn.functional as F

    from bertforge.modeling import sparse_pretraining_forward
    from bertforge.pretraining_data import collate

    prepared = [collate([ds[i] for i in rows], pad_id=tok.pad_token_id) for rows in batch_ranges(args)]
    model = model_for(cfg, tok)

    def step_loss(batch):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = sparse_pretraining_forward(model, batch)
        loss = F.cross_entropy(out.mlm_logits.float(), out.mlm_labels) + \
            F.cross_entropy(out.nsp_logits.float(), batch["next_sentence_label"])
        return loss, batch

    return train_loop(args, cfg, model, prepared, step_loss)


def run_stage(args, overrides: list[str], tmp: Path) -> tuple[float, float]:
    import mlflow

    from bertforge.config import compose

    cfg = compose(overrides + [f"pretrain.max_steps={args.warmup + args.steps}",
                               f"pretrain.log_every_n_steps={args.window}",
                               f"pretrain.val_every_n_steps={10**6}", f"pretrain.checkpoint_every_n_steps={10**6}",
                               f"paths.pretrained={tmp / 'pre'}", f"paths.checkpoints={tmp / 'ckpt'}",
                               f"paths.metrics={tmp / 'metrics'}", f"paths.plots={tmp / 'plots'}"])
    run_pretrain = stage_runner("pretrain")
    t0 = time.perf_counter()
    run_pretrain(cfg)
    wall = time.perf_counter() - t0
    client = mlflow.MlflowClient()
    run = client.search_runs([e.experiment_id for e in client.search_experiments()])[0]
    hist = sorted(client.get_metric_history(run.info.run_id, "train/tokens_per_s"), key=lambda m: m.step)
    rates = [m.value for m in hist if m.step > args.warmup]
    return statistics.median(rates), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", default="outputs/prepare", help="a prepare stage output (tokenizer + shards)")
    ap.add_argument("--sizes", nargs="+", default=["tiny", "mini", "small"])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128, help="pretrain.max_seq_length")
    ap.add_argument("--max-predictions", type=int, default=20)
    ap.add_argument("--steps", type=int, default=40, help="measured steps per recipe (after --warmup)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--window", type=int, default=5, help="steps per throughput window")
    args = ap.parse_args()
    from bertforge.config import compose

    rows = []
    for size in args.sizes:
        overrides = [f"model={size}", f"paths.prepared={Path(args.prepared).resolve()}",
                     f"pretrain.batch_size={args.batch_size}", f"pretrain.max_seq_length={args.seq}",
                     f"pretrain.max_predictions_per_seq={args.max_predictions}"]
        cfg = compose(overrides)
        tok, ds = pairs(args, cfg)
        stock, stock_loss = run_stock(args, cfg, tok, ds)
        bare, bare_loss = run_bare(args, cfg, tok, ds)
        with tempfile.TemporaryDirectory() as d:
            os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(d) / 'mlflow.db'}"
            stage, wall = run_stage(args, overrides, Path(d))
        rows.append((size, stock, bare, stage, wall))
        print(f"{size}: stock {stock:.0f}, bare {bare:.0f}, stage {stage:.0f} tokens/s; losses at steps "
              f"1/{len(stock_loss)}: stock {stock_loss[0]:.3f}/{stock_loss[-1]:.3f}, "
              f"ours {bare_loss[0]:.3f}/{bare_loss[-1]:.3f}", flush=True)
    print(f"\nbatch {args.batch_size} pairs of <= {args.seq} tokens, {args.max_predictions} predictions/seq, "
          f"median tokens/s over {args.window}-step windows after {args.warmup} warm-up steps, {args.prepared}\n")
    print("| model | stock HF (dense MLM, fp32) | our bare step (sparse MLM, bf16) | our pretrain stage | "
          "stage / stock | stage / bare |")
    print("|---|---|---|---|---|---|")
    for size, stock, bare, stage, _ in rows:
        print(f"| {size} | {stock:.0f} | {bare:.0f} | {stage:.0f} | {stage / stock:.2f}x | {stage / bare:.0%} |")


if __name__ == "__main__":
    main()
