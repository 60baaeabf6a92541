"""Stage `summarize`: one table of per-task dev scores and their GLUE-style average."""

from bertforge.config import resolve_path, stage_main
from bertforge.data.records import read_json
from bertforge.tracking import log_metrics_dict, log_pipeline_metrics, stage_run, upstream_run_id, write_metrics


def run(cfg):
    scores, gains, upstream = {}, {}, []
    for name in cfg.tasks:
        m = read_json(resolve_path(cfg.paths.metrics) / "eval" / f"{name}.json")
        scores[name] = m["score"]
        if "pretraining_gain" in m:
            gains[name] = m["pretraining_gain"]
        upstream.append(upstream_run_id(resolve_path(cfg.paths.evaluated) / name) or "")
    summary = {"tasks": scores, "average": sum(scores.values()) / len(scores)}
    if gains:
        summary["pretraining_gain"] = gains
    with stage_run(cfg, "summarize", {"tasks": list(cfg.tasks)}) as mlrun:
        import mlflow

        mlflow.set_tag("upstream_run_ids", ",".join(upstream))
        log_metrics_dict(summary)
        log_pipeline_metrics(mlflow.get_run(mlrun.info.run_id), summary)  # the pipeline's row compares whole runs
        write_metrics(resolve_path(cfg.paths.metrics) / "summary.json", summary)
    print(f"summary: {summary}")


main = stage_main(run)

if __name__ == "__main__":
    main()
