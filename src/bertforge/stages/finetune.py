"""Stage `finetune@<task>`: fine-tune the pre-trained BERT (and, if the task asks, the same
architecture from random init as a control) -> HF-format classifier directories."""

from pathlib import Path

from bertforge.config import (
    ConfigError,
    check_bert_dir,
    finetune_settings,
    resolve_dir,
    resolve_path,
    stage_main,
    to_plain,
)
from bertforge.data.records import read_json
from bertforge.outputs import atomic_dir, write_json
from bertforge.tracking import (
    lightning_logger,
    log_classifier,
    log_metrics_dict,
    log_task_data,
    stage_run,
    write_run_file,
)


def init_dir(cfg) -> tuple[Path, bool]:
    """(model directory, random_init) for `finetune.init`: pretrained | random | a BERT directory
    (a path, or `pkg:PACKAGE/SUBDIR` in an installed package)."""
    init = str(cfg.finetune.init)
    if init in ("pretrained", "random"):
        path = resolve_path(cfg.paths.pretrained)
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"finetune.init={init}: {path} holds no pre-trained model yet; run the pretrain stage "
                "first (dvc repro pretrain), or set finetune.init to a BERT directory"
            )
        return check_fits(cfg, path), init == "random"
    return check_fits(cfg, check_bert_dir(resolve_dir(init, "finetune.init"), "finetune.init")), False


def check_fits(cfg, init: Path) -> Path:
    """The task's `finetune.max_seq_length` fits the model's positions (from config.json alone): a
    longer example would otherwise fail in the forward, minutes into training."""
    limit = read_json(init / "config.json").get("max_position_embeddings", 512)
    length = finetune_settings(cfg).max_seq_length
    if length > limit:
        raise ConfigError(f"finetune.max_seq_length={length}: {init} has {limit} positions")
    return init


def run(cfg):
    if cfg.get("task") is None:
        raise ConfigError(
            "task: choose a task, e.g. `python pipelines/finetune.py task=rte` (or run the suite with `dvc repro`)"
        )
    init, random_init = init_dir(cfg)  # before torch and Lightning load: a wrong path fails in seconds
    from omegaconf import open_dict

    from bertforge.finetuning.bi_encoder import check_bi_encoder_task
    from bertforge.finetuning.loop import finetune_one
    from bertforge.finetuning.tasks import load_task
    from bertforge.hardware import placement
    from bertforge.model_card import classifier_card, write_card
    from bertforge.trainer import one_device, process_rank

    if process_rank() != 0:  # started by torchrun with the pre-training's processes: rank 0 fine-tunes
        return
    with open_dict(cfg):
        cfg.trainer = one_device(cfg.trainer)
    # every check and the data before the MLflow run and the output exist: a bad input leaves nothing behind
    place = placement(cfg.trainer)
    name = cfg.task.name
    data = load_task(cfg.task)
    check_bi_encoder_task(finetune_settings(cfg), name, data)
    print(place.line(), flush=True)
    job = sweep_job()
    out = resolve_path(cfg.paths.finetuned) / name if job is None else resolve_path(cfg.paths.sweeps) / name / job
    params = {
        "seed": cfg.seed,
        "finetune": to_plain(finetune_settings(cfg)),  # as this task trains: with its own and per-task settings
        "task": to_plain(cfg.task),
        "trainer": to_plain(cfg.trainer),
    }
    with stage_run(cfg, "finetune", params, task=name, upstream=init, place=place) as mlrun, atomic_dir(out) as tmp:
        log_task_data(cfg.task, data, {"train": "training", "dev": "validation"})
        report = {"model": finetune_one(cfg, init, random_init, tmp / "model", lightning_logger(mlrun), place, data)}
        log_metrics_dict(report["model"]["best_dev"], "best_dev/")
        if cfg.task.random_init_control and not random_init:
            report["random_init"] = finetune_one(
                cfg, init, True, tmp / "random_init", lightning_logger(mlrun, prefix="random_init"), place, data
            )
            log_metrics_dict(report["random_init"]["best_dev"], "random_init/best_dev/")
        for variant in ("model", "random_init"):
            if variant in report:
                write_card(
                    tmp / variant,
                    classifier_card(cfg, report[variant], data.labels, mlrun.info.run_id, mlrun.data.tags, place),
                )
        bi_encoder = report["model"]["objective"] == "bi_encoder"
        report["mlflow_model_uri"] = log_classifier(tmp / "model", cfg.tracking, name, sentence_model=bi_encoder)
        report["hardware"] = place.as_dict()
        write_json(tmp / "finetune.json", report)
        write_run_file(tmp, mlrun, "finetune", task=name)
    print(f"fine-tuned {name}: best dev {report['model']['best_dev']} -> {out}")
    example = '"first text<TAB>second text"' if data.pairs else '"a sentence"'
    print(f"predict new text with it: bertforge predict --model {out / 'model'} {example} (or --file)")
    if job is not None:
        record_sweep_job(out.parent, job, report["model"]["best_dev"], cfg, mlrun.info.run_id)


def sweep_job() -> str | None:
    """Under a Hydra `-m` sweep, each job gets its own output directory, named by its overrides
    (the DVC-tracked `outputs/finetune/<task>` is left alone)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hc = HydraConfig.get()
    keep = [
        o
        for o in hc.overrides.task  # the settings that tell jobs apart, not where files go
        if not o.split("=")[0].lstrip("+~").startswith(("task=", "paths.", "finetune.init", "hydra."))
        and o.split("=")[0] != "task"
    ]
    name = ",".join(sorted(keep)).replace("/", "_")
    return name if 0 < len(name) <= 120 else f"job{hc.job.num:03d}"


def record_sweep_job(root, job: str, best_dev: dict, cfg, run_id: str) -> None:
    """Keep `leaderboard.json` (all jobs of the task's sweeps, best dev score first) and say which is best."""
    from bertforge.finetuning.metrics import task_score

    board_path = root / "leaderboard.json"
    board = [e for e in (read_json(board_path) if board_path.exists() else []) if e["job"] != job]
    score = task_score(best_dev, cfg.task)
    from hydra.core.hydra_config import HydraConfig

    board.append(
        {
            "job": job,
            "overrides": list(HydraConfig.get().overrides.task),
            "score": score,
            "best_dev": best_dev,
            "mlflow_run_id": run_id,
            "dir": str(root / job),
        }
    )
    board.sort(key=lambda e: -e["score"])
    write_json(board_path, board)
    print(f"sweep leaderboard {board_path}: best {board[0]['job']} (dev score {board[0]['score']:.4f}) of {len(board)}")


main = stage_main(run)

if __name__ == "__main__":
    main()
