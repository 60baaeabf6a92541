"""The one records reader (data/records.py) that corpora and tasks share: compressed input on both
sides, and one error format, `path:line:column: message`, whichever side reads the file."""

import gzip
import json
import lzma
import re

import pytest
from omegaconf import OmegaConf

from bertforge.config import DataError, compose
from bertforge.data.corpus import read_corpus
from bertforge.data.records import delimited_records, format_suffix, json_array_records, jsonl_records
from bertforge.finetuning.tasks import load_task

BAD_LINE_2 = '{"text": "첫 문장이다. 둘째 문장이다.", "label": "x"}\n{"text": "한국어 \\q 이스케이프", "label": "y"}\n'


def _corpus(path, **over):
    return compose(["corpus=jsonl", f"corpus.files=[{path}]", *[f"corpus.{k}={v}" for k, v in over.items()]]).corpus


def _task(tmp_path, name):
    task = compose(["task=custom", f"task.local.data_dir={tmp_path}", f"task.local.files.train={name}"]).task
    OmegaConf.set_struct(task, False)
    return task


@pytest.mark.parametrize(
    "opener, suffix", [(open, ""), (gzip.open, ".gz"), (lzma.open, ".xz")], ids=["plain", "gz", "xz"]
)
def test_corpus_and_task_name_the_same_place_for_the_same_bad_file(tmp_path, opener, suffix):
    path = tmp_path / f"train.jsonl{suffix}"
    with opener(path, "wt", encoding="utf-8") as fh:
        fh.write(BAD_LINE_2)
    # column 15 counts characters, not bytes: the Hangul before the bad escape is 3 bytes each (byte 21)
    where = re.escape(f"{path.name}:2:15: invalid JSON")
    with pytest.raises(DataError, match=where):
        list(read_corpus(_corpus(path)))
    with pytest.raises(DataError, match=where):
        load_task(_task(tmp_path, path.name))


def test_compressed_task_files_read_like_plain_ones(tmp_path):
    rows = [{"text": f"문장 {i}", "label": "ab"[i % 2]} for i in range(40)]
    with gzip.open(tmp_path / "train.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    with lzma.open(tmp_path / "dev.tsv.xz", "wt", encoding="utf-8") as fh:
        fh.write('text\tlabel\n"따옴표" 그대로\tb\n')
    task = _task(tmp_path, "train.jsonl.gz")
    task.local.files.dev = "dev.tsv.xz"
    data = load_task(task)
    assert [e.text_a for e in data.splits["train"]] == [r["text"] for r in rows]
    assert [(e.text_a, e.label) for e in data.splits["dev"]] == [('"따옴표" 그대로', "b")]  # TSV quotes are literal
    assert format_suffix(tmp_path / "dev.tsv.xz") == ".tsv" and format_suffix(tmp_path / "a.JSONL") == ".jsonl"


def test_records_name_physical_lines_and_array_items(tmp_path):
    csv_path = tmp_path / "a.csv"
    csv_path.write_text('a,b\n"two\nlines",x\nlast,y\n', encoding="utf-8")
    assert list(delimited_records(csv_path, ",")) == [(1, ["a", "b"]), (2, ["two\nlines", "x"]), (4, ["last", "y"])]
    jl = tmp_path / "a.jsonl"
    jl.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    assert list(jsonl_records(jl)) == [(f"{jl}:1", {"a": 1}), (f"{jl}:3", {"a": 2})]
    arr = tmp_path / "a.json"
    arr.write_text('[{"a": 1}, 7]', encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{arr}[1]: expected a JSON object, found int")):
        list(json_array_records(arr))
    latin = tmp_path / "l.tsv"
    latin.write_bytes("a\tb\nok\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=re.escape(f"{latin}:2:7: not valid UTF-8")):
        list(delimited_records(latin, "\t"))
