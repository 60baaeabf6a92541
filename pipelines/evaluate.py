"""Stage `evaluate@<task>`: dev metrics (for `dvc metrics show`), predictions, confusion matrix."""
from bertforge.config import ConfigError, resolve_path, stage_main, to_plain
from bertforge.outputs import atomic_dir
from bertforge.tracking import log_metrics_dict, stage_run, write_metrics, write_run_file


def run(cfg):
    if cfg.get("task") is None:
        raise ConfigError("task: choose a task, e.g. `python pipelines/evaluate.py task=rte`")
    from bertforge.evaluation import evaluate_model, write_confusion, write_predictions
    from bertforge.finetuning import finetune_settings
    from bertforge.tasks import load_task

    task, name = cfg.task, cfg.task.name
    model_root = resolve_path(cfg.paths.finetuned) / name
    if not (model_root / "model").exists():
        raise ConfigError(f"{model_root}: no fine-tuned model; run finetune for task {name} first")
    out = resolve_path(cfg.paths.evaluated) / name
    data = load_task(task)
    result = {}
    with stage_run(cfg, "evaluate", {"task": to_plain(task)}, task=name, upstream=model_root) as mlrun, \
            atomic_dir(out) as tmp:
        for variant in ("model", "random_init"):
            if not (model_root / variant).exists():
                continue
            metrics, score, examples, preds = evaluate_model(model_root / variant, task, data, "dev",
                                                             finetune_settings(cfg).max_seq_length)
            key = "dev" if variant == "model" else "random_init_dev"
            result[key] = {**metrics, "score": score, "examples": len(examples)}
            write_predictions(tmp / f"{variant}_dev_predictions.tsv", examples, preds, data)
            if variant == "model":
                write_confusion(resolve_path(cfg.paths.plots) / "confusion" / f"{name}.csv", examples, preds, data)
        if "random_init_dev" in result:
            result["pretraining_gain"] = result["dev"]["score"] - result["random_init_dev"]["score"]
        write_run_file(tmp, mlrun, "evaluate", task=name)
        log_metrics_dict(result)
        write_metrics(resolve_path(cfg.paths.metrics) / "eval" / f"{name}.json", result)
        import mlflow

        mlflow.log_artifact(str(tmp / "model_dev_predictions.tsv"))
    print(f"evaluated {name}: {result}")


main = stage_main(run)

if __name__ == "__main__":
    main()
