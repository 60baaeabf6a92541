"""Stage `evaluate@<task>`: dev metrics (for `dvc metrics show`), predictions, confusion matrix."""

from bertforge.config import ConfigError, finetune_settings, resolve_path, stage_main, to_plain
from bertforge.outputs import atomic_dir
from bertforge.tracking import log_metrics_dict, log_task_data, stage_run, write_metrics, write_run_file


def run(cfg):
    if cfg.get("task") is None:
        raise ConfigError("task: choose a task, e.g. `python pipelines/evaluate.py task=rte`")
    from bertforge.finetuning.evaluation import (
        confusion_figure,
        evaluate_model,
        predict_examples,
        write_confusion,
        write_predictions,
        write_submission,
    )
    from bertforge.finetuning.tasks import eval_splits, load_task, predict_splits, selection_splits
    from bertforge.hardware import placement

    place = placement(cfg.trainer)

    task, name = cfg.task, cfg.task.name
    model_root = resolve_path(cfg.paths.finetuned) / name
    if not (model_root / "model").exists():
        raise ConfigError(f"{model_root}: no fine-tuned model; run finetune for task {name} first")
    out = resolve_path(cfg.paths.evaluated) / name
    data = load_task(task)
    unlabelled = predict_splits(task)
    result, splits = {}, eval_splits(task)
    scored = selection_splits(splits)
    if not scored:
        raise ConfigError(f"task.eval_splits: {list(splits)} has no dev split to score the task on")
    print(place.line(), flush=True)
    with (
        stage_run(cfg, "evaluate", {"task": to_plain(task)}, task=name, upstream=model_root, place=place) as mlrun,
        atomic_dir(out) as tmp,
    ):
        import mlflow

        log_task_data(task, data, {split: "evaluation" for split in splits})

        for variant in ("model", "random_init"):
            if not (model_root / variant).exists():
                continue
            prefix = "" if variant == "model" else "random_init_"
            for split in splits:
                metrics, score, examples, preds = evaluate_model(
                    model_root / variant, task, data, split, finetune_settings(cfg).max_seq_length, place
                )
                result[prefix + split] = {**metrics, "score": score, "examples": len(examples)}
                write_predictions(tmp / f"{variant}_{split}_predictions.tsv", examples, preds, data)
                if variant == "model":
                    if split == "dev":
                        write_confusion(
                            resolve_path(cfg.paths.plots) / "confusion" / f"{name}.csv", examples, preds, data
                        )
                    if data.labels is not None:
                        mlflow.log_figure(
                            confusion_figure(examples, preds, data, f"{name} {split}"), f"confusion_{split}.png"
                        )
                    mlflow.log_artifact(str(tmp / f"{variant}_{split}_predictions.tsv"))
            if variant == "model":  # unlabelled splits: GLUE submission files
                for split, (submission, examples) in unlabelled.items():
                    preds = predict_examples(
                        model_root / variant, data, examples, finetune_settings(cfg).max_seq_length, place
                    )
                    write_submission(tmp / "submission" / submission, examples, preds, data)
                    mlflow.log_artifact(str(tmp / "submission" / submission), "submission")
                    result[f"{split}_predicted"] = len(examples)
            # GLUE's task score: mean over the dev splits (MNLI: matched and mismatched); a labelled
            # test split keeps its own score beside it and never enters this one
            result[prefix + "score"] = sum(result[prefix + s]["score"] for s in scored) / len(scored)
        if "random_init_score" in result:
            result["pretraining_gain"] = result["score"] - result["random_init_score"]
        write_run_file(tmp, mlrun, "evaluate", task=name)
        log_metrics_dict(result)
        write_metrics(resolve_path(cfg.paths.metrics) / "eval" / f"{name}.json", result, place)
    print(f"evaluated {name}: {result}")


main = stage_main(run)

if __name__ == "__main__":
    main()
