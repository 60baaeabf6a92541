"""Custom tasks (TSV/CSV/JSONL, discovered labels, seeded split), HF datasets through a local
directory, GLUE-format MNLI/QQP files, and the errors bad data gets."""

import collections
import json

import pytest
from omegaconf import OmegaConf

from bertforge.config import ConfigError, DataError, compose
from bertforge.finetuning.metrics import task_score
from bertforge.finetuning.tasks import eval_splits, load_task


def custom(tmp_path, **over):
    task = compose(["task=custom", f"task.local.data_dir={tmp_path}"]).task
    OmegaConf.set_struct(task, False)
    return OmegaConf.merge(task, OmegaConf.create(over))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def test_custom_jsonl_discovers_labels_and_holds_out_a_seeded_dev_split(tmp_path):
    rows = [{"text": f"문장 {i}", "label": ["neg", "pos", "neu"][i % 3]} for i in range(200)]
    write_jsonl(tmp_path / "train.jsonl", rows)
    data = load_task(custom(tmp_path))
    assert data.labels == ["neg", "neu", "pos"]  # sorted, from train
    assert (len(data.splits["train"]), len(data.splits["dev"])) == (180, 20)
    again = load_task(custom(tmp_path))
    assert [e.source for e in again.splits["dev"]] == [e.source for e in data.splits["dev"]]
    other = load_task(custom(tmp_path, split={"seed": 14}))
    assert [e.source for e in other.splits["dev"]] != [e.source for e in data.splits["dev"]]
    seen = {e.source for s in data.splits.values() for e in s}
    assert len(seen) == 200 and data.splits["dev"][0].text_a.startswith("문장")


def test_custom_csv_pairs_with_numeric_labels_and_regression(tmp_path):
    (tmp_path / "train.csv").write_text('a,b,y\n"x, quoted",second,10\nthird,fourth,2\nfifth,sixth,2\n')
    (tmp_path / "dev.csv").write_text("a,b,y\none,two,10\n")
    files = {"train": "train.csv", "dev": "dev.csv"}
    local = {"format": "csv", "files": files, "text_a": "a", "text_b": "b", "label": "y"}
    data = load_task(custom(tmp_path, local=local))
    assert data.labels == ["2", "10"]  # numeric order, not string order
    assert data.splits["train"][0].text_a == "x, quoted" and data.splits["train"][0].text_b == "second"
    reg = load_task(custom(tmp_path, local=local, problem="regression", metrics=["pearson"]))
    assert reg.labels is None and [e.label for e in reg.splits["train"]] == [10.0, 2.0, 2.0]


def test_hf_dataset_through_a_local_directory_maps_class_labels(tmp_path, monkeypatch):
    """The real `datasets.load_dataset` code path, offline: a directory of parquet files that
    carry ClassLabel features, as the hub's `glue` MNLI does."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    feats = datasets.Features(
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
        }
    )
    src = tmp_path / "mnli"
    src.mkdir()
    card = ["---", "configs:", "- config_name: default", "  data_files:"]  # split names as on the hub
    for split, n in (("train", 30), ("validation_matched", 6), ("validation_mismatched", 9)):
        d = {
            "premise": [f"p{i}" for i in range(n)],
            "hypothesis": [f"h{i}" for i in range(n)],
            "label": [i % 3 for i in range(n)],
        }
        datasets.Dataset.from_dict(d, features=feats).to_parquet(str(src / f"{split}.parquet"))
        card += [f"  - split: {split}", f"    path: {split}.parquet"]
    (src / "README.md").write_text("\n".join(card + ["---", ""]))
    task = compose(["task=mnli", f"task.hf.path={src}", "task.hf.name=null"]).task
    data = load_task(task)
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 30, "dev": 6, "dev_mismatched": 9}
    assert [e.label for e in data.splits["train"][:4]] == ["entailment", "neutral", "contradiction", "entailment"]
    assert eval_splits(task) == ["dev", "dev_mismatched"]
    assert data.splits["dev"][1].source == "validation_matched[1]" and data.splits["dev"][1].text_b == "h1"
    # integer labels stay "0"/"1" where the task lists those (QQP, as in GLUE's TSV files)
    qqp = tmp_path / "qqp"
    qqp.mkdir()
    for split in ("train", "validation"):
        datasets.Dataset.from_dict(
            {"question1": ["a?", "b?"], "question2": ["c?", "d?"], "label": [0, 1]},
            features=datasets.Features(
                {
                    "question1": datasets.Value("string"),
                    "question2": datasets.Value("string"),
                    "label": datasets.ClassLabel(names=["not_duplicate", "duplicate"]),
                }
            ),
        ).to_parquet(str(qqp / f"{split}.parquet"))
    q = load_task(compose(["task=qqp", f"task.hf.path={qqp}", "task.hf.name=null"]).task)
    assert q.labels == ["0", "1"] and [e.label for e in q.splits["dev"]] == ["0", "1"]
    with pytest.raises(DataError, match=r"no column 'sentence' for task.hf.text_a \(columns: \['question1'"):
        load_task(compose(["task=qqp", f"task.hf.path={qqp}", "task.hf.name=null", "task.hf.text_a=sentence"]).task)


def test_glue_format_mnli_and_qqp_directories(tmp_path):
    head = "index\tpromptID\tpairID\tgenre\ts1bp\ts2bp\ts1p\ts2p\tsentence1\tsentence2\tlabel1\tgold_label\n"
    for name, n in (("train.tsv", 6), ("dev_matched.tsv", 3), ("dev_mismatched.tsv", 3)):
        labels = ["entailment", "neutral", "contradiction"]
        (tmp_path / name).write_text(
            head + "".join(f'{i}\t0\t0\tg\t-\t-\t-\t-\tA "q {i}\tB {i}\tx\t{labels[i % 3]}\n' for i in range(n))
        )
    task = compose(["task=mnli", "task.source=local", f"task.local.data_dir={tmp_path}"]).task
    data = load_task(task)
    assert data.splits["dev_mismatched"][2].label == "contradiction" and data.splits["train"][0].text_a == 'A "q 0'
    qqp = tmp_path / "qqp"
    qqp.mkdir()
    rows = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t1\t2\ta?\tb?\t0\n2\t3\t4\tc?\n3\t5\t6\te?\tf?\t1\n"
    (qqp / "train.tsv").write_text(rows)
    (qqp / "dev.tsv").write_text(rows)
    q = load_task(compose(["task=qqp", "task.source=local", f"task.local.data_dir={qqp}"]).task)
    assert [e.label for e in q.splits["train"]] == ["0", "1"]  # the short row 3 is skipped and counted


@pytest.mark.parametrize(
    "content, error",
    [
        (
            '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n{"txt": "c", "label": "x"}\n',
            r"train.jsonl:3: no key 'text' for task.local.text_a",
        ),
        ('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"\n', r"train.jsonl:2:\d+: invalid JSON"),
        ('{"text": "a", "label": "x"}\n{"text": "b", "label": "x"}\n', r"has only the label\(s\) \['x'\]"),
        ("", r"train.jsonl: the train split is empty"),
    ],
)
def test_bad_custom_files_name_file_line_and_column(tmp_path, content, error):
    (tmp_path / "train.jsonl").write_text(content)
    with pytest.raises((DataError, ConfigError), match=error):
        load_task(custom(tmp_path))


def test_label_missing_from_train_and_empty_pair_text(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}])
    write_jsonl(tmp_path / "dev.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": "z"}])
    files = {"train": "train.jsonl", "dev": "dev.jsonl"}
    with pytest.raises(DataError, match=r"dev.jsonl:2: column 'label': label 'z' is not one of \['x', 'y'\]"):
        load_task(custom(tmp_path, local={"files": files}))
    (tmp_path / "train.tsv").write_text("s1\ts2\tlabel\nok\tfine\t0\nok\t \t1\n")
    local = {"format": "tsv", "files": {"train": "train.tsv", "dev": "train.tsv"}, "text_a": "s1", "text_b": "s2"}
    with pytest.raises(DataError, match=r"train.tsv:3: column 's2': empty second text in a pair task"):
        load_task(custom(tmp_path, local=local))
    with pytest.raises(DataError, match=r"train.tsv:1: no column 'sentence2' for task.local.text_b"):
        load_task(custom(tmp_path, local={**local, "text_b": "sentence2"}))
    with pytest.raises(ConfigError, match=r"task.local.files: .*missing.tsv does not exist"):
        load_task(custom(tmp_path, local={**local, "files": {"train": "missing.tsv"}}))
    (tmp_path / "t2.tsv").write_text("s\tlabel\nok\t1\nbad\t7\n")
    with pytest.raises(DataError, match=r"t2.tsv:3: column 'label': label '7' is not one of \['0', '1'\]"):
        load_task(
            custom(tmp_path, labels=["0", "1"], local={"format": "tsv", "files": {"train": "t2.tsv"}, "text_a": "s"})
        )
    (tmp_path / "t3.tsv").write_text("s\tlabel\nok\t1.5\nbad\thigh\n")
    with pytest.raises(DataError, match=r"t3.tsv:3: column 'label': 'high' is not a number"):
        load_task(
            custom(tmp_path, problem="regression", local={"format": "tsv", "files": {"train": "t3.tsv"}, "text_a": "s"})
        )


def test_every_glue_task_config_composes_with_official_metrics():
    cfg = compose(["tasks=glue_all"])
    assert list(cfg.tasks) == ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"]
    metrics = {n: list(t.metrics) for n, t in cfg.tasks.items()}
    assert metrics["cola"] == ["matthews_corr", "accuracy"] and metrics["stsb"] == ["pearson", "spearman"]
    assert metrics["mrpc"] == metrics["qqp"] == ["f1", "accuracy"]
    assert collections.Counter(t.hf.path for t in cfg.tasks.values()) == {"nyu-mll/glue": 9}
    assert list(cfg.tasks.mnli.eval_splits) == ["dev", "dev_mismatched"]
    m = {"matthews_corr": 0.3, "accuracy": 0.7, "f1": 0.8}
    assert task_score(m, cfg.tasks.cola) == pytest.approx(0.3)  # GLUE scores CoLA on MCC alone
    assert task_score(m, cfg.tasks.mrpc) == pytest.approx(0.75)  # and MRPC on the mean of F1 and accuracy


def test_length_grouped_batches_cover_every_example_once_and_cut_padding():
    import random

    from bertforge.finetuning.module import LengthGroupedBatches

    rng = random.Random(0)
    lengths = [rng.randint(5, 128) for _ in range(1000)]
    sampler = LengthGroupedBatches(lengths, 16, seed=3, window=10)
    epoch0, epoch1 = list(sampler), list(sampler)
    for batches in (epoch0, epoch1):
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(1000)) and len(batches) == len(sampler) == 63
    assert epoch0 != epoch1
    sampler.set_epoch(0)
    assert list(sampler) == epoch0  # seeded: the same order for the same epoch

    def padding(batches):
        return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)

    shuffled = list(range(1000))
    rng.shuffle(shuffled)
    plain = [shuffled[i : i + 16] for i in range(0, 1000, 16)]
    assert padding(epoch0) < 0.15 * padding(plain)
