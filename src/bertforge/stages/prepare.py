"""Stage `prepare`: corpus -> tokenizer directory + token shards + corpus statistics."""

from bertforge.config import resolve_path, stage_main, to_plain
from bertforge.outputs import atomic_dir, write_text
from bertforge.tracking import (
    DEMO_SOURCE,
    digest_of,
    log_dataset,
    log_metrics_dict,
    stage_run,
    write_metrics,
    write_run_file,
)


def run(cfg):
    from bertforge.data.corpus import check_corpus_config

    check_corpus_config(cfg.corpus)  # before the MLflow run and the output exist
    out = resolve_path(cfg.paths.prepared)
    params = {"seed": cfg.seed, "corpus": to_plain(cfg.corpus), "tokenizer": to_plain(cfg.tokenizer)}
    with stage_run(cfg, "prepare", params) as mlrun, atomic_dir(out) as tmp:
        from bertforge.data.preparation import prepare

        stats = prepare(cfg, tmp)
        write_run_file(tmp, mlrun, "prepare", corpus=cfg.corpus.name)
        hist = stats.pop("sentence_length_histogram")  # a plot, not a metric
        log_metrics_dict(stats, "corpus/")
        log_corpus(cfg.corpus, stats)
        metrics_dir, plots_dir = resolve_path(cfg.paths.metrics), resolve_path(cfg.paths.plots)
        write_metrics(metrics_dir / "prepare.json", stats)
        write_text(
            plots_dir / "prepare" / "sentence_lengths.csv",
            "tokens,sentences\n" + "".join(f"{k},{v}\n" for k, v in hist.items()),
        )
    print(
        f"prepared {stats['documents']} documents, {stats['sentences']} sentences, {stats['tokens']} tokens "
        f"(vocab {stats['vocab_size']}, [UNK] rate {stats['unk_rate']:.4%}) -> {out}"
    )


def log_corpus(corpus, stats: dict) -> None:
    """The corpus as the run's input dataset: its files (or HF dataset), a digest of their names,
    sizes and modification times (cheap, unlike hashing gigabytes), and the counts prepare found."""
    import os
    from pathlib import Path

    from bertforge.data.corpus import read_units

    files, datasets = [], []
    for _, unit in read_units(corpus):
        files += [Path(f) for f in unit.get("files") or []]
        if unit.get("dataset"):
            datasets.append(str(unit["dataset"]))
    if files:
        source = os.path.commonpath([str(f.resolve().parent) for f in files])
        digest = digest_of(*(f"{f.resolve()}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files))
    elif datasets:
        source, digest = f"hf:{datasets[0]}", digest_of(*datasets, corpus.get("split"), corpus.get("config_name"))
    else:  # the generated demo language: its generator and settings are the data
        source = str(DEMO_SOURCE)
        digest = digest_of(*sorted(f"{k}={v}" for k, v in corpus.items()))
    profile = {k: stats[k] for k in ("documents", "sentences", "tokens", "text_bytes") if k in stats}
    log_dataset(f"corpus-{corpus.name}", source, digest, profile, "training")


main = stage_main(run)

if __name__ == "__main__":
    main()
