"""Stage `summarize`: one table of per-task dev scores and their GLUE-style average."""
from bertforge.config import resolve_path, stage_main
from bertforge.outputs import read_json, write_json


def run(cfg):
    scores, gains = {}, {}
    for name in cfg.tasks:
        m = read_json(resolve_path(cfg.paths.metrics) / "eval" / f"{name}.json")
        scores[name] = m["dev"]["score"]
        if "pretraining_gain" in m:
            gains[name] = m["pretraining_gain"]
    summary = {"tasks": scores, "average": sum(scores.values()) / len(scores)}
    if gains:
        summary["pretraining_gain"] = gains
    write_json(resolve_path(cfg.paths.metrics) / "summary.json", summary)
    print(f"summary: {summary}")


main = stage_main(run)

if __name__ == "__main__":
    main()
