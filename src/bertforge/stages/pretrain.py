"""Stage `pretrain`: MLM + NSP pre-training on the prepared shards -> HF-format BERT directory."""

import tempfile
from pathlib import Path

from bertforge.config import resolve_path, stage_main, to_plain
from bertforge.outputs import atomic_dir
from bertforge.tracking import (
    digest_of,
    log_dataset,
    log_metrics_dict,
    log_pipeline_metrics,
    stage_run,
    upstream_run_id,
    write_metrics,
    write_run_file,
)


def run(cfg):
    import mlflow

    from bertforge.hardware import placement
    from bertforge.model_card import pretrained_card, write_card
    from bertforge.pretraining.budget import CLOCK_FILE
    from bertforge.pretraining.checkpoints import (
        fingerprint,
        prepare_checkpoint_dir,
        record_checkpoint_owner,
        resumable_run,
    )
    from bertforge.pretraining.loop import check_pretrain_config, pretrain
    from bertforge.trainer import process_rank

    place = placement(cfg.trainer)  # all settings are checked before a checkpoint directory or MLflow run exists
    prepared, out = resolve_path(cfg.paths.prepared), resolve_path(cfg.paths.pretrained)
    check_pretrain_config(cfg, prepared)
    ckpt = resolve_path(cfg.paths.checkpoints)
    fp = fingerprint(cfg, upstream_run_id(prepared))
    if process_rank() != 0:  # a data-parallel worker: train, but leave tracking, checkpoints and outputs to rank 0
        with tempfile.TemporaryDirectory() as tmp:  # resume only from checkpoints rank 0 keeps (same fingerprint)
            own_ckpt = ckpt if resumable_run(ckpt, fp) is not None else Path(tmp) / "ckpt"
            pretrain(cfg, prepared, Path(tmp) / "model", own_ckpt, None, Path(tmp) / "curves", place=place)
        return
    print(place.line(), flush=True)
    resume_run = prepare_checkpoint_dir(ckpt, fp)
    params = {
        "seed": cfg.seed,
        "model": to_plain(cfg.model),
        "pretrain": to_plain(cfg.pretrain),
        "trainer": to_plain(cfg.trainer),
    }
    with (
        stage_run(cfg, "pretrain", params, upstream=prepared, run_id=resume_run, place=place) as mlrun,
        atomic_dir(out) as tmp,
    ):
        record_checkpoint_owner(ckpt, fp, mlrun.info.run_id)
        log_shards(prepared)
        metrics = pretrain(cfg, prepared, tmp, ckpt, mlrun, resolve_path(cfg.paths.plots) / "pretrain", place=place)
        write_run_file(tmp, mlrun, "pretrain", model=cfg.model.name, precision=place.precision)
        write_card(tmp, pretrained_card(cfg, prepared, metrics, mlrun.info.run_id, mlrun.data.tags, place))
        log_metrics_dict(metrics, "final/")
        if "replay" in metrics:  # a budgeted run: replayable by steps, and exactly from its clock
            mlflow.set_tag("replay_by_steps", metrics["replay"])
            mlflow.log_artifact(str(tmp / CLOCK_FILE))
        log_pipeline_metrics(
            mlflow.get_run(mlrun.info.run_id),
            {f"pretrain/{k}": metrics[k] for k in ("mlm_accuracy", "nsp_accuracy") if k in metrics},
        )
        write_metrics(resolve_path(cfg.paths.metrics) / "pretrain.json", metrics, place)
    record_checkpoint_owner(ckpt, fp, mlrun.info.run_id, finished=True)  # exported: the same command trains afresh
    print(
        f"pretrained BERT-{cfg.model.name}: held-out MLM accuracy {metrics['mlm_accuracy']:.3f} "
        f"(unigram baseline {metrics['unigram_accuracy']:.3f})"
        + (
            f", {cfg.pretrain.objective.upper()} accuracy {metrics['nsp_accuracy']:.3f}"
            if "nsp_accuracy" in metrics
            else ""
        )
        + f" -> {out} (precision {place.precision})"
    )
    print(
        f"trained {metrics['steps']:,} steps, {metrics['tokens']:,} tokens in {metrics['train_minutes']:.1f} min"
        + (
            f" (budget {metrics['budget_minutes']:g} min); replay exactly: the same command with"
            f" pretrain.budget_clock=<a copy of {out / CLOCK_FILE}>; by steps alone: {metrics['replay']}"
            if "replay" in metrics
            else ""
        )
    )


def log_shards(prepared: Path) -> None:
    """The prepared shards as the run's input dataset, identified by their metadata and vocabulary."""
    from bertforge.data.records import read_json

    meta = read_json(prepared / "shards" / "meta.json")
    vocab = (prepared / "tokenizer" / "tokenizer.json").read_bytes()
    profile = {f"{split}_{k}": meta[split][k] for split in ("train", "valid") for k in ("documents", "tokens")}
    run_file = prepared / "run.json"  # the prepare stage's; a prepared dir made by hand has none
    corpus = read_json(run_file).get("corpus", prepared.name) if run_file.exists() else prepared.name
    log_dataset(
        f"shards-{corpus}",
        str(prepared),
        digest_of((prepared / "shards" / "meta.json").read_bytes(), vocab),
        profile,
        "training",
    )


main = stage_main(run)

if __name__ == "__main__":
    main()
