"""The typed shape of the configuration's fixed groups: every key, its type, whether it may be null.

The values, defaults included, live in one place: `conf/<group>/*.yaml`, which DVC composes into
`params.yaml` without running our code. This schema is checked once, when a stage starts (both
under DVC and as a Hydra app), so a misspelt key, a missing one or a value of the wrong type is
one error naming the key before any work; the code then reads the keys directly, with no
defaults of its own. Groups whose keys depend on a choice (`corpus`, `task`) are checked by their
readers (corpus.check_corpus_config, tasks.load_task).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bertforge.config import ConfigError


@dataclass
class Model:
    name: str = MISSING
    num_hidden_layers: int = MISSING
    hidden_size: int = MISSING
    num_attention_heads: int = MISSING
    intermediate_size: int = MISSING
    hidden_act: str = MISSING
    hidden_dropout_prob: float = MISSING
    attention_probs_dropout_prob: float = MISSING
    max_position_embeddings: int = MISSING
    type_vocab_size: int = MISSING
    initializer_range: float = MISSING


@dataclass
class Tokenizer:
    vocab_size: int = MISSING
    min_frequency: int = MISSING
    limit_alphabet: int = MISSING
    lowercase: bool = MISSING
    strip_accents: bool = MISSING
    pretrained: Optional[str] = MISSING
    pre_segmentation: Optional[str] = MISSING


@dataclass
class Pretrain:
    objective: str = MISSING
    max_seq_length: int = MISSING
    short_seq_prob: float = MISSING
    masked_lm_prob: float = MISSING
    max_predictions_per_seq: int = MISSING
    whole_word_masking: bool = MISSING
    masking: str = MISSING
    dupe_factor: int = MISSING
    batch_size: int = MISSING
    max_steps: int = MISSING
    budget_minutes: Optional[float] = MISSING
    warmup_fraction: float = MISSING
    phases: List[Any] = MISSING
    optimizer: str = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING
    adam_betas: List[float] = MISSING
    adam_eps: float = MISSING
    warmup_steps: int = MISSING
    schedule: str = MISSING
    accumulate_grad_batches: int = MISSING
    grad_clip: float = MISSING
    log_every_n_steps: int = MISSING
    val_every_n_steps: int = MISSING
    val_max_examples: int = MISSING
    val_settings: Optional[Dict[str, Any]] = MISSING
    checkpoint_every_n_steps: int = MISSING


@dataclass
class Finetune:
    init: str = MISSING
    lr: float = MISSING
    batch_size: int = MISSING
    epochs: int = MISSING
    max_seq_length: int = MISSING
    warmup_ratio: float = MISSING
    weight_decay: float = MISSING
    group_by_length: bool = MISSING
    early_stopping_patience: Optional[int] = MISSING


@dataclass
class Trainer:
    accelerator: str = MISSING
    devices: Any = MISSING  # a count, "auto", or a list of device ids
    num_nodes: int = MISSING
    strategy: str = MISSING
    precision: str = MISSING
    compile: bool = MISSING
    unpad: bool = MISSING
    num_workers: Optional[int] = MISSING
    num_threads: Optional[int] = MISSING
    progress_every_s: int = MISSING


@dataclass
class Tracking:
    experiment: str = MISSING
    system_metrics: bool = MISSING
    log_model: bool = MISSING
    register_prefix: Optional[str] = MISSING
    alias: Optional[str] = MISSING


@dataclass
class Paths:
    prepared: str = MISSING
    checkpoints: str = MISSING
    pretrained: str = MISSING
    finetuned: str = MISSING
    evaluated: str = MISSING
    sweeps: str = MISSING
    metrics: str = MISSING
    plots: str = MISSING
    shared_data: str = MISSING


GROUPS = {
    "model": Model,
    "tokenizer": Tokenizer,
    "pretrain": Pretrain,
    "finetune": Finetune,
    "trainer": Trainer,
    "tracking": Tracking,
    "paths": Paths,
}


def _reason(e: OmegaConfBaseException) -> str:
    return str(e).split("\n")[0]


def check_config(cfg: DictConfig) -> None:
    """A missing, unknown or mistyped key of a fixed group, or a non-integer seed, is one
    ConfigError naming the key. Interpolations (`${paths.shared_data}/...`) are left unresolved."""
    for group, schema in GROUPS.items():
        node = cfg.get(group)
        if not isinstance(node, DictConfig):
            raise ConfigError(f"{group}: missing (every stage reads the whole config; compose it from conf/)")
        known = [f.name for f in fields(schema)]
        unknown = [k for k in node if k not in known]
        if unknown:
            raise ConfigError(f"{group}.{unknown[0]}: not a setting of {group} (known: {', '.join(known)})")
        missing = [k for k in known if k not in node]
        if missing:
            raise ConfigError(f"{group}.{missing[0]}: missing (conf/{group}/ defines every {group} key)")
        typed = OmegaConf.structured(schema)
        for key in known:
            try:
                setattr(typed, key, node._get_node(key)._value())
            except OmegaConfBaseException as e:
                raise ConfigError(f"{group}.{key}: {_reason(e)}") from None
    seed = cfg.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed: an integer is required (got {seed!r})")
