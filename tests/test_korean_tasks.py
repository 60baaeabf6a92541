"""Korean tasks: KLUE (STS, NLI, YNAT) from its release files and through `datasets` in the hub's
schema, KorNLI's TSV files, KLUE's metrics, and error positions in Korean text."""

import json

import pytest

from bertforge.config import DataError, compose
from bertforge.finetuning.tasks import eval_splits, load_task


def _task(name, *over):
    return compose([f"task={name}", *over]).task


def _write_json(path, records):
    path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")


STS = [
    (
        "숙소 위치는 찾기 쉽고 일반적인 한국의 반지하 숙소입니다.",
        "숙박시설의 위치는 쉽게 찾을 수 있고 한국의 대표적인 반지하 숙박시설입니다.",
        3.7,
    ),
    (
        "위반행위 조사 등을 거부·방해·기피한 자는 500만원 이하 과태료 부과 대상이다.",
        "시민들 스스로 자발적인 예방 노력을 한 것은 아산 뿐만이 아니었다.",
        0.0,
    ),
    (
        "회사가 보낸 메일은 이 지메일이 아니라 다른 지메일 계정으로 전달해줘.",
        "사람들이 주로 네이버 메일을 쓰는 이유를 알려줘",
        0.3,
    ),
]


def test_klue_sts_release_files_read_the_nested_score(tmp_path):
    records = [
        {
            "guid": f"klue-sts-v1_train_{i:05d}",
            "source": "airbnb-rtt",
            "sentence1": a,
            "sentence2": b,
            "labels": {"label": y, "real-label": y + 0.014, "binary-label": int(y >= 3)},
        }
        for i, (a, b, y) in enumerate(STS)
    ]
    _write_json(tmp_path / "klue-sts-v1.1_train.json", records)
    _write_json(tmp_path / "klue-sts-v1.1_dev.json", records[:2])
    data = load_task(_task("klue_sts", "task.source=local", f"task.local.data_dir={tmp_path}"))
    assert [e.label for e in data.splits["train"]] == [3.7, 0.0, 0.3]
    assert (
        data.splits["train"][0].text_b.startswith("숙박시설의")
        and data.splits["dev"][1].source == "klue-sts-v1.1_dev.json[1]"
    )
    del records[1]["labels"]["label"]
    _write_json(tmp_path / "klue-sts-v1.1_train.json", records)
    with pytest.raises(DataError, match=r"klue-sts-v1.1_train.json\[1\]: no key 'labels.label' for task.local.label"):
        load_task(_task("klue_sts", "task.source=local", f"task.local.data_dir={tmp_path}"))


def test_klue_nli_and_ynat_release_files(tmp_path):
    nli = [
        {"guid": f"n{i}", "premise": "힛걸 진심 최고다 그 어떤 히어로보다 멋지다", "hypothesis": h, "gold_label": g}
        for i, (h, g) in enumerate(
            [
                ("힛걸 진심 최고로 멋지다.", "entailment"),
                ("힛걸 진심 너무 못생겼다.", "contradiction"),
                ("힛걸은 영화 주인공이다.", "neutral"),
            ]
        )
    ]
    _write_json(tmp_path / "klue-nli-v1.1_train.json", nli)
    _write_json(tmp_path / "klue-nli-v1.1_dev.json", nli)
    data = load_task(_task("klue_nli", "task.source=local", f"task.local.data_dir={tmp_path}"))
    assert [e.label for e in data.splits["dev"]] == ["entailment", "contradiction", "neutral"]
    assert data.labels == ["entailment", "neutral", "contradiction"]
    ynat = [
        {"guid": "ynat-v1_train_00000", "title": "유튜브 내달 2일까지 크리에이터 지원 공간 운영", "label": "생활문화"},
        {"guid": "ynat-v1_train_00001", "title": "어버이날 맑다가 흐려져…남부지방 옅은 황사", "label": "생활문화"},
        {"guid": "ynat-v1_train_00002", "title": "내년부터 국가RD 평가 때 논문건수는 반영 않는다", "label": "사회"},
    ]
    _write_json(tmp_path / "ynat-v1.1_train.json", ynat)
    _write_json(tmp_path / "ynat-v1.1_dev.json", ynat)
    task = _task("klue_ynat", "task.source=local", f"task.local.data_dir={tmp_path}")
    data = load_task(task)
    assert [e.label for e in data.splits["train"]] == ["생활문화", "생활문화", "사회"] and data.num_labels == 7
    ynat[2]["label"] = "연예"
    _write_json(tmp_path / "ynat-v1.1_dev.json", ynat)
    with pytest.raises(DataError, match=r"ynat-v1.1_dev.json\[2\]: column 'label': label '연예' is not one of"):
        load_task(task)


def test_klue_through_datasets_in_the_hub_schema(tmp_path, monkeypatch):
    """klue/klue's own schema, offline: STS labels in a struct, NLI and YNAT labels as ClassLabel
    ids (parquet files carry the features, as the hub's do)."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    sts_feats = datasets.Features(
        {
            "sentence1": datasets.Value("string"),
            "sentence2": datasets.Value("string"),
            "labels": {
                "label": datasets.Value("float64"),
                "real-label": datasets.Value("float64"),
                "binary-label": datasets.ClassLabel(names=["negative", "positive"]),
            },
        }
    )
    ynat_names = ["IT과학", "경제", "사회", "생활문화", "세계", "스포츠", "정치"]
    ynat_feats = datasets.Features({"title": datasets.Value("string"), "label": datasets.ClassLabel(names=ynat_names)})
    for name, feats, rows in (
        (
            "sts",
            sts_feats,
            {
                "sentence1": [a for a, _, _ in STS],
                "sentence2": [b for _, b, _ in STS],
                "labels": [{"label": y, "real-label": y, "binary-label": int(y >= 3)} for _, _, y in STS],
            },
        ),
        ("ynat", ynat_feats, {"title": ["삼성전자 실적 발표", "손흥민 시즌 10호골", "총선 D-30"], "label": [1, 5, 6]}),
    ):
        d = tmp_path / name
        d.mkdir()
        for split in ("train", "validation"):
            datasets.Dataset.from_dict(rows, features=feats).to_parquet(str(d / f"{split}.parquet"))
    sts = load_task(_task("klue_sts", f"task.hf.path={tmp_path / 'sts'}", "task.hf.name=null"))
    assert [e.label for e in sts.splits["dev"]] == [3.7, 0.0, 0.3] and sts.splits["dev"][2].source == "validation[2]"
    ynat = load_task(_task("klue_ynat", f"task.hf.path={tmp_path / 'ynat'}", "task.hf.name=null"))
    assert [e.label for e in ynat.splits["train"]] == ["경제", "스포츠", "정치"]


def test_kornli_tsv_with_literal_quotes_and_a_labelled_test_split(tmp_path):
    header = "sentence1\tsentence2\tgold_label\n"
    rows = [
        '그리고 그가 말했다, "엄마, 저 왔어요."\t그는 학교 버스가 그를 내려주자마자 엄마에게 전화를 걸었다.\tneutral',
        '그리고 그가 말했다, "엄마, 저 왔어요."\t그는 한마디도 하지 않았다.\tcontradiction',
        "그리고 그가 말했다\t그는 엄마에게 집에 왔다고 말했다.\tentailment",
    ]
    for f in ("multinli.train.ko.tsv", "xnli.dev.ko.tsv", "xnli.test.ko.tsv"):
        (tmp_path / f).write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
    task = _task("kornli", f"task.local.data_dir={tmp_path}")
    data = load_task(task)
    assert data.splits["train"][0].text_a == '그리고 그가 말했다, "엄마, 저 왔어요."'
    assert [e.label for e in data.splits["test"]] == ["neutral", "contradiction", "entailment"]
    assert eval_splits(task) == ["dev", "test"]


def test_errors_in_korean_files_point_at_the_right_line_and_character(tmp_path):
    (tmp_path / "train.jsonl").write_text(
        '{"text": "좋아요", "label": "pos"}\n{"text": "별로예요 정말", "label": }\n', encoding="utf-8"
    )
    task = compose(["task=custom", f"task.local.data_dir={tmp_path}"]).task
    # the column counts characters, not UTF-8 bytes: `}` is the 30th character of line 2
    with pytest.raises(DataError, match=r"train.jsonl:2:30: invalid JSON"):
        load_task(task)
    (tmp_path / "a.json").write_text('[{"text": "하나", "label": "x"},\n {"text": "둘", "label": }]', encoding="utf-8")
    with pytest.raises(DataError, match=r"a.json:2:25: invalid JSON"):
        load_task(
            compose(
                [
                    "task=custom",
                    f"task.local.data_dir={tmp_path}",
                    "task.local.files.train=a.json",
                    "task.local.format=json",
                ]
            ).task
        )
    with pytest.raises(
        DataError, match=r"a.json:1:\d+: invalid JSON .*\(one JSON array in the file\? set task.local.format=json\)"
    ):
        load_task(compose(["task=custom", f"task.local.data_dir={tmp_path}", "task.local.files.train=a.json"]).task)
