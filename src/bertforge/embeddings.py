"""Sentence and token embeddings from any BERT directory: the classic TF-Hub sample as a function.

`pooled` is BERT's `pooled_output` ([CLS] through the pre-trained dense + tanh pooler), `cls`
the last layer's [CLS] vector, `mean` the mask-weighted mean of the last layer's token vectors.
`auto` is the directory's own recipe: a sentence-transformers model (MiniLM-L6 and its kind, whose
`modules.json` names the pooling it was trained with, a normalisation, a length, maybe a prompt and
lowercasing) gets that, anything else BERT's `pooled_output`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from bertforge.config import ConfigError, check_bert_dir, command_line_dir
from bertforge.data.records import read_json
from bertforge.progress_items import ItemProgress

POOLINGS = ("auto", "pooled", "cls", "mean")
DEFAULT_MAX_LENGTH = 128
# sentence-transformers' Pooling modes that are one of ours, by the same name (others, e.g. max, are refused)
ST_POOLINGS = ("cls", "mean")


@dataclass(frozen=True)
class Recipe:
    """How sentence vectors are made: the pooling, L2 normalisation, the length sentences are cut to,
    and, as a sentence model may ask, a prompt before each text and lowercasing."""

    pooling: str
    normalize: bool
    max_length: int
    source: str  # what chose them, for the line the command line prints
    prompt: str = ""  # prepended to every text (an instruction such as E5's "query: ")
    include_prompt: bool = True  # False: the prompt's positions are left out of the pooling
    lowercase: bool = False  # sentence_bert_config.json's do_lower_case
    encoder: str = ""  # the subdirectory that holds the BERT and its tokenizer (older layouts: 0_Transformer)

    def describe(self) -> str:
        prompt = f", prompt {self.prompt!r}{'' if self.include_prompt else ' (not pooled)'}" if self.prompt else ""
        return (
            f"pooling {self.pooling}{', L2-normalised' if self.normalize else ''}{prompt}"
            f"{', lowercased' if self.lowercase else ''}, cut at {self.max_length} tokens ({self.source})"
        )


@dataclass
class Embeddings:
    sentences: np.ndarray  # [n, hidden], float32
    tokens: list[np.ndarray] | None  # per sentence [length_i, hidden], special tokens included
    token_strings: list[list[str]] | None
    recipe: Recipe | None = None


def pooling_modes(config: dict) -> list[str]:
    """A Pooling module's modes: `pooling_mode` ("mean", or a list: concatenated), as sentence-
    transformers writes it since v5, or the older `pooling_mode_mean_tokens: true` flags."""
    if "pooling_mode" in config:
        mode = config["pooling_mode"]
        return [mode] if isinstance(mode, str) else list(mode)
    prefix = "pooling_mode_"
    return [
        k[len(prefix) :].removesuffix("_tokens").removesuffix("_token")
        for k, v in config.items()
        if k.startswith(prefix) and v is True
    ]


def _modules(model_dir: Path) -> list[dict]:
    """A sentence-transformers directory's modules (`modules.json`), each with its bare `kind`; none
    for a plain BERT directory."""
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        return []
    return [{**m, "kind": str(m.get("type", "")).rsplit(".", 1)[-1]} for m in read_json(modules_file)]


def encoder_subdir(model_dir: Path) -> str:
    """Where a sentence model keeps its BERT: the Transformer module's path ("" since
    sentence-transformers v2; "0_Transformer" before)."""
    return next((str(m.get("path", "")) for m in _modules(model_dir) if m["kind"] == "Transformer"), "")


def sentence_model_prompts(model_dir: Path) -> tuple[dict[str, str], str | None]:
    """The prompts a sentence model names (`config_sentence_transformers.json`: `prompts`, e.g.
    {"query": "query: "}, and `default_prompt_name`); none for other directories."""
    path = model_dir / "config_sentence_transformers.json"
    config = read_json(path) if path.is_file() else {}
    prompts = {str(k): str(v or "") for k, v in (config.get("prompts") or {}).items()}
    default = config.get("default_prompt_name")
    if default is not None and default not in prompts:
        raise ConfigError(f"{path}: default_prompt_name {default!r} is not among its prompts {sorted(prompts)}")
    return prompts, default


def sentence_model_recipe(model_dir: Path) -> Recipe | None:
    """What a sentence-transformers directory was trained to output (`SentenceTransformer(dir).encode`):
    its Pooling module's mode (and whether a prompt is pooled), whether a Normalize module follows,
    its default prompt, and `sentence_bert_config.json`'s `max_seq_length` and `do_lower_case`; None
    for a plain BERT directory. A module we do not apply (a Dense projection, max pooling) is one
    error rather than vectors the model was not trained to give."""
    modules = _modules(model_dir)
    if not modules:
        return None
    modules_file = model_dir / "modules.json"
    pooling, include_prompt, normalize = None, True, False
    for module in modules:
        kind = module["kind"]
        if kind == "Transformer":  # the BERT itself
            continue
        if kind == "Normalize":
            normalize = True
        elif kind == "Pooling":
            pooling_file = model_dir / module.get("path", "") / "config.json"
            config = read_json(pooling_file)
            modes = pooling_modes(config)
            if len(modes) != 1 or modes[0] not in ST_POOLINGS:
                raise ConfigError(
                    f"{pooling_file}: pooling {' + '.join(modes) or 'none'} is not one bertforge computes; "
                    "choose --pooling cls, mean or pooled"
                )
            pooling, include_prompt = modes[0], config.get("include_prompt", True) is not False
        else:
            raise ConfigError(
                f"{modules_file}: a {kind or 'nameless'} module after the encoder, which bertforge does not "
                "apply; choose --pooling cls, mean or pooled for the encoder's own vectors"
            )
    if pooling is None:
        raise ConfigError(f"{modules_file}: no Pooling module; choose --pooling cls, mean or pooled")
    encoder = encoder_subdir(model_dir)
    st_config = model_dir / encoder / "sentence_bert_config.json"  # beside the BERT it configures
    st = read_json(st_config) if st_config.is_file() else {}
    prompts, default = sentence_model_prompts(model_dir)
    return Recipe(
        pooling,
        normalize,
        int(st.get("max_seq_length") or DEFAULT_MAX_LENGTH),
        "the directory's sentence-transformers modules",
        prompt=prompts.get(default, "") if default else "",
        include_prompt=include_prompt,
        lowercase=st.get("do_lower_case") is True,
        encoder=encoder,
    )


def choose_recipe(
    model_dir: Path,
    pooling: str = "auto",
    normalize: bool | None = None,
    max_length: int | None = None,
    prompt: str | None = None,
    prompt_name: str | None = None,
) -> Recipe:
    """`auto` pooling takes the directory's recipe (a sentence model's own, else BERT's pooled_output);
    a pooling named outright is that pooling alone. A `normalize`, `max_length` or prompt (the text
    itself, or the name of one of the directory's prompts) given wins either way."""
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling: {pooling!r} is not one of {', '.join(POOLINGS)}")
    if prompt is not None and prompt_name is not None:
        raise ConfigError("--prompt and --prompt-name: give one or the other")
    if pooling != "auto":
        own = Recipe(pooling, False, DEFAULT_MAX_LENGTH, "as asked", encoder=encoder_subdir(model_dir))
    else:
        own = sentence_model_recipe(model_dir) or Recipe("pooled", False, DEFAULT_MAX_LENGTH, "BERT's pooled_output")
    if prompt_name is not None:
        prompts, _ = sentence_model_prompts(model_dir)
        if prompt_name not in prompts:
            raise ConfigError(
                f"--prompt-name: {model_dir} names no prompt {prompt_name!r} "
                f"(its prompts: {', '.join(sorted(prompts)) or 'none'})"
            )
        prompt = prompts[prompt_name]
    return replace(
        own,
        normalize=own.normalize if normalize is None else normalize,
        max_length=own.max_length if max_length is None else max_length,
        prompt=own.prompt if prompt is None else prompt,
    )


def prompt_positions(tokenizer, recipe: Recipe) -> int:
    """How many leading positions the pooling leaves out: a prompt's, [CLS] included, where the
    sentence model pools without it (`include_prompt: false`), as sentence-transformers counts them
    (the prompt tokenized alone, less its closing [SEP]); else 0."""
    if recipe.include_prompt or not recipe.prompt:
        return 0
    ids = tokenizer(recipe.prompt.lower() if recipe.lowercase else recipe.prompt)["input_ids"]
    return len(ids) - (1 if ids and ids[-1] in tokenizer.all_special_ids else 0)


def load_encoder(model_dir: str | Path, need_pooler: bool):
    """BertModel from a pre-training, classifier or plain BERT directory, with one clear error for
    anything else (including a pooler that the checkpoint does not have: it would be random)."""
    from transformers import BertModel

    from bertforge.pretraining.model import load_weights

    model_dir = check_bert_dir(Path(model_dir), "--model")
    return load_weights(
        BertModel,
        model_dir,
        "--model",
        () if need_pooler else ("pooler.",),
        hints={"pooler.": "pooler weights (use --pooling cls or mean)"},
        attn_implementation="sdpa",
    ).eval()


def check_model_inputs(tokenizer, model, model_dir, max_length: int) -> None:
    """The tokenizer belongs to the model, and `--max-length` fits its positions (a longer input
    would fail deep in the forward, a length of 0 would cut nothing)."""
    if len(tokenizer) > model.config.vocab_size:
        raise ConfigError(
            f"--model: {model_dir}: tokenizer has {len(tokenizer)} tokens but the model's "
            f"vocab_size is {model.config.vocab_size}; they do not belong together"
        )
    limit = model.config.max_position_embeddings
    if not 5 <= max_length <= limit:  # 5: [CLS], [SEP], a pair's second [SEP] and a token of each text
        raise ConfigError(f"--max-length={max_length}: must be between 5 and {limit}, the model's positions")


def encode(tokenizer, texts: list[str], second: list[str] | None = None, max_length: int = DEFAULT_MAX_LENGTH):
    """The texts' (or pairs') encodings, cut at `max_length`; none for no texts, on which the
    tokenizer fails (an empty list gives empty results)."""
    if not texts:
        return {"input_ids": []}
    return tokenizer(texts, second, truncation=True, max_length=max_length)


def batches_by_length(tokenizer, enc, batch_size: int, device, label: str, unit: str):
    """(indices, padded batch on `device`) over the encodings `enc`, shortest first so that padding
    costs little, with a progress line for long runs (`embed`, `predict`)."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size={batch_size}: must be >= 1")
    lengths = [len(ids) for ids in enc["input_ids"]]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    progress = ItemProgress(label, len(order), unit)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenizer.pad([{k: enc[k][i] for k in enc.keys()} for i in idx], return_tensors="pt")
        yield idx, {k: v.to(device) for k, v in batch.items()}
        progress.update(len(idx))
    progress.close()


@torch.inference_mode()
def embed(
    model_dir: str | Path,
    sentences: list[str],
    pooling: str = "auto",
    tokens: bool = False,
    max_length: int | None = None,
    batch_size: int = 32,
    model=None,
    tokenizer=None,
    place=None,
    normalize: bool | None = None,
    prompt: str | None = None,
    prompt_name: str | None = None,
) -> Embeddings:
    """Embed `sentences` (order kept). Batches are built from length-sorted sentences so that
    padding costs little; `model`/`tokenizer` may be passed in to embed many lists with one load.
    `pooling`, `normalize`, `max_length` and the prompt default to the directory's recipe (`choose_recipe`).
    `place` (hardware.place(...)) sets device and precision; default: fp32 on the model's device."""
    import contextlib

    from bertforge.data.tokenization import load_tokenizer

    model_dir = command_line_dir(model_dir)
    recipe = choose_recipe(model_dir, pooling, normalize, max_length, prompt, prompt_name)
    pooling, max_length = recipe.pooling, recipe.max_length
    encoder_dir = model_dir / recipe.encoder
    if model is None:
        model = load_encoder(encoder_dir, need_pooler=pooling == "pooled")
        if place is not None:
            model = model.to(place.device)
    if tokenizer is None:
        tokenizer = load_tokenizer(encoder_dir)
    check_model_inputs(tokenizer, model, encoder_dir, max_length)
    texts = [recipe.prompt + s for s in sentences]  # as sentence-transformers prepends it
    enc = encode(tokenizer, [t.lower() for t in texts] if recipe.lowercase else texts, max_length=max_length)
    skip = prompt_positions(tokenizer, recipe)
    hidden = model.config.hidden_size
    out = np.zeros((len(sentences), hidden), dtype=np.float32)
    per_token: list[np.ndarray | None] = [None] * len(sentences)
    device = next(model.parameters()).device
    for idx, batch in batches_by_length(tokenizer, enc, batch_size, device, "embed", "sentences"):
        with place.autocast() if place is not None else contextlib.nullcontext():
            res = model(**batch)
        last = res.last_hidden_state.float()
        if pooling == "pooled":
            vec = res.pooler_output.float()
        elif pooling == "cls":
            vec = last[:, skip]  # the first position pooled (sentence-transformers: the first unmasked)
        else:
            m = batch["attention_mask"].unsqueeze(-1).to(last.dtype)
            m[:, :skip] = 0
            vec = (last * m).sum(1) / m.sum(1).clamp(min=1)
        if recipe.normalize:  # as sentence-transformers' Normalize module
            vec = torch.nn.functional.normalize(vec, dim=-1)
        out[idx] = vec.cpu().numpy()
        if tokens:
            lengths = batch["attention_mask"].sum(1).tolist()
            for row, i in enumerate(idx):
                per_token[i] = last[row, : lengths[row]].cpu().numpy()
    strings = [tokenizer.convert_ids_to_tokens(ids) for ids in enc["input_ids"]] if tokens else None
    return Embeddings(out, per_token if tokens else None, strings, recipe)  # type: ignore[arg-type]
