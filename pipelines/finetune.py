"""Stage `finetune@<task>`: fine-tune the pre-trained BERT (and, if the task asks, the same
architecture from random init as a control) -> HF-format classifier directories."""
from bertforge.config import ConfigError, resolve_path, stage_main, to_plain
from bertforge.outputs import atomic_dir, write_json
from bertforge.tracking import lightning_logger, log_metrics_dict, stage_run, write_run_file


def run(cfg):
    if cfg.get("task") is None:
        raise ConfigError("task: choose a task, e.g. `python pipelines/finetune.py task=rte` "
                          "(or run the suite with `dvc repro`)")
    from bertforge.finetuning import finetune_one, init_dir

    name = cfg.task.name
    init, random_init = init_dir(cfg)
    out = resolve_path(cfg.paths.finetuned) / name
    params = {"seed": cfg.seed, "finetune": to_plain(cfg.finetune), "task": to_plain(cfg.task),
              "trainer": to_plain(cfg.trainer)}
    with stage_run(cfg, "finetune", params, task=name, upstream=init) as mlrun, atomic_dir(out) as tmp:
        report = {"model": finetune_one(cfg, init, random_init, tmp / "model", lightning_logger(mlrun))}
        log_metrics_dict(report["model"]["best_dev"], "best_dev/")
        if cfg.task.get("random_init_control") and not random_init:
            report["random_init"] = finetune_one(cfg, init, True, tmp / "random_init",
                                                 lightning_logger(mlrun, prefix="random_init"))
            log_metrics_dict(report["random_init"]["best_dev"], "random_init/best_dev/")
        write_json(tmp / "finetune.json", report)
        write_run_file(tmp, mlrun, "finetune", task=name)
    print(f"fine-tuned {name}: best dev {report['model']['best_dev']} -> {out}")


main = stage_main(run)

if __name__ == "__main__":
    main()
