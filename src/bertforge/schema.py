"""The typed shape of the whole configuration: every key, its type, whether it may be null, and
the ranges of the training numbers (`pretrain.lr > 0`, ...).

Checked once, when a stage starts (both under DVC and as a Hydra app), so a misspelt key, a
missing one, a value of the wrong type or out of its range is one error naming the key before
any work (and within seconds: before torch is imported); the code then reads the keys directly,
with no defaults of its own.

Where the values live: the fixed groups' and the corpus profiles' in `conf/<group>/*.yaml` (every
key spelled there: a corpus profile starts from `text.yaml`), which DVC composes into
`params.yaml` without running our code. A corpus's keys depend on its reader (`format`), so each
reader has its shape. A task file names only what its task needs: the optional task keys
(`score_metrics`, `eval_splits`, `language`, per-task `finetune` overrides, ...) have their
defaults here, filled in when the config is checked.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from bertforge.config import ConfigError


def _bounded(want: str, ok: Any) -> Any:
    """A field without a default whose value must satisfy `ok` ("must be {want}"): checked with
    the types, so a stage rejects it before importing torch or opening an MLflow run."""
    return field(default=MISSING, metadata={"want": want, "ok": ok})


POSITIVE = ("> 0", lambda v: v > 0)
AT_LEAST_ONE = (">= 1", lambda v: v >= 1)
NON_NEGATIVE = (">= 0", lambda v: v >= 0)
FRACTION = ("in [0, 1)", lambda v: 0 <= v < 1)


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
    tie_word_embeddings: bool = MISSING


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
    max_seq_length: int = _bounded(">= 8", lambda v: v >= 8)
    short_seq_prob: float = MISSING
    masked_lm_prob: float = MISSING
    max_predictions_per_seq: int = MISSING
    whole_word_masking: bool = MISSING
    masking: str = MISSING
    dupe_factor: int = MISSING
    dropout: Optional[float] = _bounded(*FRACTION)
    batch_size: int = _bounded(*AT_LEAST_ONE)
    max_steps: int = _bounded(*AT_LEAST_ONE)
    budget_minutes: Optional[float] = _bounded("a number of minutes > 0, or null (train by steps)", lambda v: v > 0)
    warmup_fraction: float = _bounded(*FRACTION)
    budget_clock: Optional[str] = MISSING
    init: Optional[str] = MISSING
    phases: List[Any] = MISSING
    optimizer: str = MISSING
    lr: float = _bounded(*POSITIVE)
    weight_decay: float = _bounded(*NON_NEGATIVE)
    adam_betas: List[float] = _bounded("two numbers in [0, 1)", lambda v: len(v) == 2 and all(0 <= b < 1 for b in v))
    adam_eps: float = _bounded(*POSITIVE)
    warmup_steps: int = _bounded(*NON_NEGATIVE)
    schedule: str = MISSING
    accumulate_grad_batches: int = _bounded(*AT_LEAST_ONE)
    grad_clip: float = _bounded(*NON_NEGATIVE)
    log_every_n_steps: int = _bounded(*AT_LEAST_ONE)
    val_every_n_steps: int = _bounded(*AT_LEAST_ONE)
    val_max_examples: int = MISSING
    val_settings: Optional[Dict[str, Any]] = MISSING
    checkpoint_every_n_steps: int = _bounded(*AT_LEAST_ONE)


@dataclass
class Finetune:
    init: str = MISSING
    objective: str = _bounded("cross_encoder or bi_encoder", lambda v: v in ("cross_encoder", "bi_encoder"))
    pooling: str = _bounded("mean, cls or max", lambda v: v in ("mean", "cls", "max"))
    lr: float = _bounded(*POSITIVE)
    batch_size: int = _bounded(*AT_LEAST_ONE)
    epochs: int = _bounded(*AT_LEAST_ONE)
    max_seq_length: int = _bounded("in [8, 4096]", lambda v: 8 <= v <= 4096)
    warmup_ratio: float = _bounded(*FRACTION)
    weight_decay: float = _bounded(*NON_NEGATIVE)
    group_by_length: bool = MISSING
    early_stopping_patience: Optional[int] = MISSING
    reinit_word_embeddings: bool = MISSING
    word_embeddings_lr_scale: float = _bounded(*POSITIVE)
    # a recipe's choices for single tasks, by task name, over the task's own `finetune` settings
    per_task: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Trainer:
    accelerator: str = MISSING
    devices: Any = MISSING  # a count, "auto", or a list of device ids
    num_nodes: int = MISSING
    strategy: str = MISSING
    precision: str = MISSING
    compile: bool = MISSING
    unpad: bool = MISSING
    cuda_graphs: bool = MISSING
    async_checkpoint: Optional[bool] = MISSING
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


# ---------------------------------------------------------------- corpus: one shape per reader
@dataclass
class Corpus:  # every reader
    name: str = MISSING
    format: str = MISSING
    valid_fraction: float = MISSING


@dataclass
class DemoCorpus(Corpus):
    seed: int = MISSING
    num_documents: int = MISSING
    min_sentences: int = MISSING
    max_sentences: int = MISSING


@dataclass
class TextCorpus(Corpus):
    files: List[str] = MISSING
    layout: str = MISSING
    doc_start_regex: Optional[str] = MISSING
    skip_regex: Optional[str] = MISSING
    body_start_regex: Optional[str] = MISSING
    body_end_regex: Optional[str] = MISSING
    sentence_splitter: str = MISSING
    language: str = MISSING
    min_doc_sentences: int = MISSING
    max_line_chars: int = MISSING
    unicode_normalization: Optional[str] = MISSING


@dataclass
class ColumnsCorpus(TextCorpus):  # records: the text (and a title, a document id) in named columns
    text_column: str = MISSING
    title_column: Optional[str] = MISSING
    id_column: Optional[str] = MISSING


@dataclass
class RecordsCorpus(ColumnsCorpus):  # jsonl, csv
    delimiter: Optional[str] = MISSING


@dataclass
class HFCorpus(ColumnsCorpus):
    dataset: str = MISSING
    config_name: Optional[str] = MISSING
    split: str = MISSING
    streaming: bool = MISSING


@dataclass
class MixCorpus(Corpus):
    sources: Dict[str, Any] = MISSING  # each a whole corpus profile, checked by its own reader's shape


CORPUS_READERS = {
    "text": TextCorpus,
    "jsonl": RecordsCorpus,
    "csv": RecordsCorpus,
    "hf": HFCorpus,
    "mix": MixCorpus,
    "demo": DemoCorpus,
}


# ---------------------------------------------------------------- tasks: demo, local files or a HF dataset
@dataclass
class LocalFiles:
    data_dir: str = MISSING
    format: str = MISSING  # auto | tsv | csv | jsonl | json
    files: Dict[str, Optional[str]] = MISSING
    header: bool = MISSING
    text_a: Any = MISSING  # a column name, or an index in a file without a header
    text_b: Any = MISSING
    label: Any = MISSING
    skip_malformed: bool = False


@dataclass
class HFDataset:
    path: str = MISSING
    name: Optional[str] = MISSING
    splits: Dict[str, Optional[str]] = MISSING
    text_a: str = MISSING
    text_b: Optional[str] = MISSING
    label: str = MISSING
    streaming: bool = False


@dataclass
class HeldOut:
    dev_fraction: float = MISSING
    seed: int = MISSING


@dataclass
class Predict:  # an unlabelled split to predict; null fields read as task.local's
    submission: str = MISSING
    file: Optional[str] = None
    index: Optional[str] = None
    hf_split: Optional[str] = None
    hf_index: str = "idx"
    header: Optional[bool] = None
    format: Optional[str] = None
    text_a: Any = None
    text_b: Any = None


@dataclass
class Task:
    name: str = MISSING
    source: str = MISSING
    metrics: Optional[List[str]] = MISSING
    random_init_control: bool = MISSING
    problem: str = "classification"
    labels: Optional[List[str]] = None
    score_metrics: Optional[List[str]] = None  # null: all of metrics
    binary_threshold: float = 3.0  # regression scores at or above it count as positive (binary_f1)
    eval_splits: List[str] = field(default_factory=lambda: ["dev"])
    language: str = "en"
    predict: Dict[str, Predict] = field(default_factory=dict)
    max_examples: Any = None  # null, N for every split, or per split: {train: 8000}
    finetune: Dict[str, Any] = field(default_factory=dict)  # this task's `finetune.*` settings


@dataclass
class DemoTask(Task):
    kind: str = MISSING
    seed: int = MISSING
    num_train: int = MISSING
    num_dev: int = MISSING


@dataclass
class DataTask(Task):
    problem: str = MISSING
    labels: Optional[List[str]] = MISSING
    local: Optional[LocalFiles] = None  # source: local
    hf: Optional[HFDataset] = None  # source: hf
    split: Optional[HeldOut] = None  # hold out a dev split when the files have none


TASK_SOURCES = {"demo": DemoTask, "local": DataTask, "hf": DataTask}

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


def _inner(hint: Any) -> tuple[Any, bool]:
    """(the type inside Optional[...], whether None is allowed)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else Any), True
    return hint, False


def _mapping(value: Any, shape: type | None, where: str) -> DictConfig:
    if not isinstance(value, DictConfig):
        keys = f" of {', '.join(x.name for x in dataclasses.fields(shape))}" if shape else ""
        raise ConfigError(f"{where}: a mapping{keys} is required (got {value!r})")
    return value


def _check_node(node: DictConfig, schema: type, key: str, missing_hint: str = "", partial: bool = False) -> None:
    """Check `node` (found at `key`) against the dataclass `schema`: no unknown key, every key
    without a default present, each value of its type; keys with a default that the node lacks
    are filled in. A `partial` node (overrides of some keys) is checked only on the keys it has.
    Nested dataclasses are checked the same way."""
    hints = typing.get_type_hints(schema)
    known = [f.name for f in dataclasses.fields(schema)]
    unknown = [k for k in node if k not in known]
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}: not a setting of {key} (known: {', '.join(known)})")
    typed = OmegaConf.structured(schema)
    for f in dataclasses.fields(schema):
        where = f"{key}.{f.name}"
        # absent; a `???` value (to be set) is left to the reader, whose message says what to set
        if node._get_node(f.name, validate_access=False) is None:
            if partial:  # overrides of some keys: the rest come from elsewhere
                continue
            if f.default is MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: missing{missing_hint}")
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            with open_dict(node):
                node[f.name] = default
            continue
        inner, nullable = _inner(hints[f.name])
        value = node._get_node(f.name)._value()
        if dataclasses.is_dataclass(inner):
            if value is None and nullable:
                continue
            _check_node(_mapping(node[f.name], inner, where), inner, where)
        elif typing.get_origin(inner) is dict and dataclasses.is_dataclass(typing.get_args(inner)[1]):
            entries, shape = _mapping(node[f.name], None, where), typing.get_args(inner)[1]
            for name in entries:
                _check_node(_mapping(entries[name], shape, f"{where}.{name}"), shape, f"{where}.{name}")
        else:
            try:
                setattr(typed, f.name, value)
            except OmegaConfBaseException as e:
                raise ConfigError(f"{where}: {_reason(e)}") from None
            # a range on the typed value ("1e-3" is a float by now); interpolations are the reader's
            ok = f.metadata.get("ok")
            unset = value is None or OmegaConf.is_interpolation(node, f.name) or OmegaConf.is_missing(node, f.name)
            if ok and not unset and not ok(getattr(typed, f.name)):
                raise ConfigError(f"{where}={node[f.name]}: must be {f.metadata['want']}")


def check_corpus(node: Any, key: str = "corpus") -> None:
    """A corpus profile against its reader's shape; a mix's sources each against theirs."""
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{key}: missing (choose a profile from conf/corpus/)")
    kind = node.get("format")
    if kind not in CORPUS_READERS:
        raise ConfigError(f"{key}.format: unknown reader {kind!r} (known: {', '.join(CORPUS_READERS)})")
    _check_node(node, CORPUS_READERS[kind], key, f" (a {kind} corpus sets it; conf/corpus/text.yaml has them all)")
    for name in node.sources if kind == "mix" else ():
        check_corpus(node.sources[name], f"{key}.sources.{name}")


def check_task(node: Any, key: str = "task") -> None:
    """A task against its source's shape (demo, local files, a HF dataset), filling the optional
    keys' defaults; its per-task `finetune` settings against the finetune group's types."""
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{key}: a task mapping is required (conf/task/)")
    source = node.get("source")
    if source not in TASK_SOURCES:
        raise ConfigError(f"{key}.source: unknown source {source!r} (known: {', '.join(TASK_SOURCES)})")
    _check_node(node, TASK_SOURCES[source], key)
    if source != "demo" and node[source] is None:
        raise ConfigError(f"{key}.{source}: missing (a task with source {source} reads it)")
    _check_task_finetune(node.finetune, f"{key}.finetune")


def check_per_task(node: DictConfig, key: str = "finetune.per_task") -> None:
    """Each task's entry, as a task's own `finetune` settings are checked."""
    for name in node:
        _check_task_finetune(node[name], f"{key}.{name}")


def _check_task_finetune(node: Any, where: str) -> None:
    """`finetune` settings for one task (`task.finetune`, `finetune.per_task.<name>`) against the
    finetune group's types; `init` and `per_task` are the run's, not a task's (the stage reads
    them from `finetune` alone, so a task's would be ignored)."""
    entry = _mapping(node, None, where)
    for own in ("init", "per_task"):
        if own in entry:
            raise ConfigError(f"{where}.{own}: set for the whole run (finetune.{own}), not per task")
    _check_node(entry, Finetune, where, partial=True)


def check_config(cfg: DictConfig) -> None:
    """A missing, unknown or mistyped key anywhere in the config, or a non-integer seed, is one
    ConfigError naming the key; the tasks' optional keys are filled in. Interpolations
    (`${paths.shared_data}/...`) are left unresolved."""
    for group, schema in GROUPS.items():
        node = cfg.get(group)
        if not isinstance(node, DictConfig):
            raise ConfigError(f"{group}: missing (every stage reads the whole config; compose it from conf/)")
        _check_node(node, schema, group, f" (conf/{group}/ defines every {group} key)")
    check_corpus(cfg.get("corpus"))
    check_per_task(cfg.finetune.per_task)
    for name, task in (cfg.get("tasks") or {}).items():
        check_task(task, f"tasks.{name}")
    if cfg.get("task") is not None:
        check_task(cfg.task)
    for key in ("seed", "workers"):
        value = cfg.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{key}: an integer is required (got {value!r})")
