"""Stage `prepare`: corpus -> tokenizer directory + token shards + corpus statistics."""
from bertforge.config import resolve_path, stage_main, to_plain
from bertforge.outputs import atomic_dir, write_text
from bertforge.tracking import log_metrics_dict, stage_run, write_metrics, write_run_file


def run(cfg):
    from bertforge.corpus import check_corpus_config

    check_corpus_config(cfg.corpus)  # before the MLflow run and the output exist
    out = resolve_path(cfg.paths.prepared)
    params = {"seed": cfg.seed, "corpus": to_plain(cfg.corpus), "tokenizer": to_plain(cfg.tokenizer)}
    with stage_run(cfg, "prepare", params) as mlrun, atomic_dir(out) as tmp:
        from bertforge.preparation import prepare

        stats = prepare(cfg, tmp)
        write_run_file(tmp, mlrun, "prepare", corpus=cfg.corpus.name)
        hist = stats.pop("sentence_length_histogram")  # a plot, not a metric
        log_metrics_dict(stats, "corpus/")
        metrics_dir, plots_dir = resolve_path(cfg.paths.metrics), resolve_path(cfg.paths.plots)
        write_metrics(metrics_dir / "prepare.json", stats)
        write_text(plots_dir / "prepare" / "sentence_lengths.csv",
                   "tokens,sentences\n" + "".join(f"{k},{v}\n" for k, v in hist.items()))
    print(f"prepared {stats['documents']} documents, {stats['sentences']} sentences, {stats['tokens']} tokens "
          f"(vocab {stats['vocab_size']}, [UNK] rate {stats['unk_rate']:.4%}) -> {out}")


main = stage_main(run)

if __name__ == "__main__":
    main()
