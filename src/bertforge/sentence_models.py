"""What a sentence-transformers directory asks for, read from its files alone (no sentence-transformers
import, no code from the directory): the modules after the BERT (`modules.json`: Pooling, Dense
projections, LayerNorm, Dropout, Normalize), its prompts, its length and lowercasing, and where the
BERT lies. What cannot be applied exactly (a module we do not know, a Dense on token vectors) is one
error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from bertforge.config import ConfigError
from bertforge.data.records import read_json

DEFAULT_MAX_LENGTH = 128
# sentence-transformers' Pooling modes (all of which `embeddings.pool` computes), by their old config
# flags, in the order sentence-transformers concatenates the flagged ones
LEGACY_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
ST_POOLINGS = tuple(LEGACY_FLAGS.values())
# sentence-transformers' modules that may follow the Pooling (Normalize ends the chain)
HEADS = ("Dense", "LayerNorm", "Dropout")


@dataclass(frozen=True)
class Recipe:
    """How sentence vectors are made: the pooling, L2 normalisation, the length sentences are cut to,
    and, as a sentence model may ask, a prompt before each text, lowercasing and projections."""

    pooling: str  # a mode, or modes joined by "+" whose vectors are concatenated ("cls+mean")
    normalize: bool
    max_length: int
    source: str  # what chose them, for the line the command line prints
    prompt: str = ""  # prepended to every text (an instruction such as E5's "query: ")
    include_prompt: bool = True  # False: the prompt's positions are left out of the pooling
    lowercase: bool = False  # sentence_bert_config.json's do_lower_case
    encoder: str = ""  # the subdirectory that holds the BERT and its tokenizer (older layouts: 0_Transformer)
    # the modules applied to the pooled vector, in order: (kind, subdirectory), kind Dense, LayerNorm or Dropout
    heads: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        prompt = f", prompt {self.prompt!r}{'' if self.include_prompt else ' (not pooled)'}" if self.prompt else ""
        heads = f", then {', '.join(path or kind for kind, path in self.heads)}" if self.heads else ""
        return (
            f"pooling {self.pooling}{heads}{', L2-normalised' if self.normalize else ''}{prompt}"
            f"{', lowercased' if self.lowercase else ''}, cut at {self.max_length} tokens ({self.source})"
        )


def pooling_modes(config: dict) -> list[str]:
    """A Pooling module's modes, in the order their vectors are concatenated: `pooling_mode` ("mean",
    or a list), as sentence-transformers writes it since v5, or the older `pooling_mode_mean_tokens:
    true` flags (none set: mean, as sentence-transformers reads them)."""
    if "pooling_mode" in config:
        mode = config["pooling_mode"]
        return [mode] if isinstance(mode, str) else list(mode)
    return [mode for flag, mode in LEGACY_FLAGS.items() if config.get(flag) is True] or ["mean"]


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


def _pooling(pooling_file: Path) -> tuple[str, bool]:
    """A Pooling module's modes ("cls", or "cls+mean" for vectors concatenated), and whether a
    prompt's positions are pooled."""
    config = read_json(pooling_file)
    modes = pooling_modes(config)
    unknown = [m for m in modes if m not in ST_POOLINGS]
    if unknown or not modes:
        raise ConfigError(
            f"{pooling_file}: pooling {', '.join(map(repr, unknown)) or 'none'} is not one of "
            f"sentence-transformers' ({', '.join(ST_POOLINGS)})"
        )
    return "+".join(modes), config.get("include_prompt", True) is not False


def sentence_model_recipe(model_dir: Path) -> Recipe | None:
    """What a sentence-transformers directory was trained to output (`SentenceTransformer(dir).encode`):
    its Pooling module's modes (and whether a prompt is pooled), the modules after it (Dense, LayerNorm, Dropout),
    whether a Normalize module ends it, its default prompt, and `sentence_bert_config.json`'s
    `max_seq_length` and `do_lower_case`; None for a plain BERT directory. A module we do not apply,
    or one out of that order, is one error rather than vectors the model was not trained to give."""
    modules = _modules(model_dir)
    if not modules:
        return None
    modules_file = model_dir / "modules.json"
    pooling, include_prompt, normalize, heads, encoder = None, True, False, [], ""
    for module in modules:
        kind, path = module["kind"], str(module.get("path", ""))
        if kind == "Transformer":  # the BERT itself
            encoder = path
            continue
        if normalize or (kind in HEADS and pooling is None) or (kind == "Pooling" and pooling is not None):
            raise ConfigError(
                f"{modules_file}: a {kind} module {'after Normalize' if normalize else 'there'}; bertforge applies "
                f"Pooling, then {', '.join(HEADS)} modules, then Normalize (choose --pooling cls, mean or pooled)"
            )
        if kind == "Normalize":
            normalize = True
        elif kind == "Pooling":
            pooling, include_prompt = _pooling(model_dir / path / "config.json")
        elif kind in HEADS:
            heads.append((kind, path))
        else:
            raise ConfigError(
                f"{modules_file}: a {kind or 'nameless'} module after the encoder, which bertforge does not "
                "apply; choose --pooling cls, mean or pooled for the encoder's own vectors"
            )
    if pooling is None:
        raise ConfigError(f"{modules_file}: no Pooling module; choose --pooling cls, mean or pooled")
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
        heads=tuple(heads),
    )


def prompt_positions(tokenizer, recipe: Recipe) -> int:
    """How many leading positions the pooling leaves out: a prompt's, [CLS] included, where the
    sentence model pools without it (`include_prompt: false`), as sentence-transformers counts them
    (the prompt tokenized alone, less its closing [SEP]); else 0."""
    if recipe.include_prompt or not recipe.prompt:
        return 0
    ids = tokenizer(recipe.prompt.lower() if recipe.lowercase else recipe.prompt)["input_ids"]
    return len(ids) - (1 if ids and ids[-1] in tokenizer.all_special_ids else 0)


class Dense(torch.nn.Module):
    """sentence-transformers' Dense module: activation(linear(x)), plus x (or its projection) when
    `use_residual`."""

    def __init__(self, config: dict, activation: torch.nn.Module):
        super().__init__()
        n_in, n_out = int(config["in_features"]), int(config["out_features"])
        self.linear = torch.nn.Linear(n_in, n_out, bias=config.get("bias", True) is not False)
        self.activation = activation
        self.use_residual = config.get("use_residual", False) is True
        if self.use_residual and n_in != n_out:
            self.residual = torch.nn.Linear(n_in, n_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.activation(self.linear(x))
        if self.use_residual:
            out = out + (self.residual(x) if hasattr(self, "residual") else x)
        return out


def _activation(config_file: Path, name: str | None) -> torch.nn.Module:
    """The activation a Dense config names, as sentence-transformers loads it without remote code: a
    torch.nn module class, built without arguments (default: Tanh)."""
    if name is None:
        return torch.nn.Tanh()
    cls = getattr(torch.nn, name.rsplit(".", 1)[-1], None) if name.startswith("torch.nn.") else None
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ConfigError(f"{config_file}: activation_function {name!r} is not a torch.nn module bertforge can build")
    return cls()


class LayerNorm(torch.nn.Module):
    """sentence-transformers' LayerNorm module (its weights are named `norm.*`)."""

    def __init__(self, config: dict):
        super().__init__()
        self.norm = torch.nn.LayerNorm(int(config["dimension"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


def load_head(kind: str, directory: Path) -> torch.nn.Module:
    """A module applied to the pooled vector, from its directory: `config.json`, and weights in
    `model.safetensors` (or an older `pytorch_model.bin`, read with weights_only) whose names and
    shapes must match. Dropout does nothing at inference."""
    if kind == "Dropout":
        return torch.nn.Identity()
    config_file = directory / "config.json"
    config = read_json(config_file)
    if config.get("module_input_name", "sentence_embedding") != "sentence_embedding":
        raise ConfigError(f"{config_file}: a {kind} module on token vectors, which bertforge does not apply")
    try:
        if kind == "Dense":
            head = Dense(config, _activation(config_file, config.get("activation_function")))
        else:
            head = LayerNorm(config)
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{config_file}: not a {kind} module's config ({type(e).__name__}: {e})") from None
    if (directory / "model.safetensors").is_file():
        from safetensors.torch import load_file

        weights_file = directory / "model.safetensors"
        state = load_file(str(weights_file))
    elif (directory / "pytorch_model.bin").is_file():
        weights_file = directory / "pytorch_model.bin"
        state = torch.load(weights_file, map_location="cpu", weights_only=True)
    else:
        raise ConfigError(f"{directory}: no {kind} weights (model.safetensors or pytorch_model.bin)")
    try:
        head.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1].strip()
        raise ConfigError(f"{weights_file}: does not match {config_file} ({first})") from None
    return head.eval()
