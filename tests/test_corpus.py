"""Text corpus readers: document boundaries, skipped lines, compressed streams, real-corpus profiles."""

import json
import lzma

import pytest

from bertforge.config import ConfigError, compose
from bertforge.data.corpus import clean_text, read_corpus, sentence_splitter
from conftest import needs_shared

WIKI = """<doc id="1" url="?curid=1" title="Only A Title">
Only A Title


</doc>
<doc id="2" url="?curid=2" title="Jarred Shaw">
Jarred Shaw

Jarred Shaw (born 1990) is an American player. He plays for Trouville.
Professional career.
On October 31, 2015, Shaw was selected 18th. He signed later.
</doc>
"""


def test_wikipedia_records_become_documents_of_sentences(tmp_path):
    path = tmp_path / "wiki_00.txt.xz"
    with lzma.open(path, "wt", encoding="utf-8") as fh:
        fh.write(WIKI)
    cfg = compose(["corpus=wikipedia_en", f"corpus.files=[{tmp_path}/*.txt.xz]"]).corpus
    docs = list(read_corpus(cfg))
    assert docs == [
        [
            "Jarred Shaw",
            "Jarred Shaw (born 1990) is an American player.",
            "He plays for Trouville.",
            "Professional career.",
            "On October 31, 2015, Shaw was selected 18th.",
            "He signed later.",
        ]
    ]


def test_glob_matching_nothing_names_the_key(tmp_path):
    cfg = compose(["corpus=wikipedia_en", f"corpus.files=[{tmp_path}/*.xz]"]).corpus
    with pytest.raises(ConfigError, match=r"corpus.files: pattern .* matches no file"):
        list(read_corpus(cfg))


def test_shared_wikipedia_profile_reads_articles():
    needs_shared("wikipedia-en")
    docs = read_corpus(compose(["corpus=wikipedia_en"]).corpus)
    first = [next(docs) for _ in range(50)]
    assert all(len(d) >= 2 for d in first) and first[0][0] == "Jarred Shaw"


BOOK = """=== 0001 | Doe, Jane | A Tale ===
The Project Gutenberg EBook of A Tale, by Jane Doe

This eBook is for the use of anyone anywhere.

*** START OF THIS PROJECT GUTENBERG EBOOK A TALE ***

CHAPTER I.

It was a dark night. Mr. Smith walked
home slowly; the rain fell.

"Who is there?" he asked.

End of the Project Gutenberg EBook of A Tale, by Jane Doe

*** END OF THIS PROJECT GUTENBERG EBOOK A TALE ***
Licence text follows here.
=== 0002 | Roe, Max | No Markers ===
Just one paragraph
of wrapped text.
"""


def _compose(*overrides):
    return compose(list(overrides)).corpus


def test_gutenberg_books_are_stripped_and_unwrapped(tmp_path):
    from collections import Counter

    (tmp_path / "books.txt").write_text(BOOK, encoding="utf-8")
    stats = Counter()
    docs = list(read_corpus(_compose("corpus=gutenberg", f"corpus.files=[{tmp_path}/books.txt]"), stats))
    assert docs == [
        [
            "CHAPTER I.",
            "It was a dark night.",
            "Mr. Smith walked home slowly; the rain fell.",
            '"Who is there?" he asked.',
        ],
        ["Just one paragraph of wrapped text."],
    ]
    assert stats["documents_without_body_start"] == 1 and stats["documents"] == 2


def test_jsonl_records_titles_ids_and_skips(tmp_path):
    from collections import Counter

    rows = [
        {"id": 1, "title": "제목", "content": "첫 문장입니다. 둘째 문장입니다!"},
        {"id": 1, "title": "x", "content": "같은 문서의 다음 줄입니다."},
        {"id": 2, "title": "빈 글", "content": ""},
        {"id": 3, "title": "셋", "content": "Line one.\nLine two."},
    ]
    (tmp_path / "a.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8"
    )
    stats = Counter()
    cfg = _compose(
        "corpus=jsonl",
        f"corpus.files=[{tmp_path}/*.jsonl]",
        "corpus.text_column=content",
        "corpus.title_column=title",
        "corpus.id_column=id",
        "corpus.language=ko",
    )
    assert list(read_corpus(cfg, stats)) == [
        ["제목", "첫 문장입니다.", "둘째 문장입니다!", "같은 문서의 다음 줄입니다."],
        ["셋", "Line one.", "Line two."],
    ]
    assert stats["skipped_empty_records"] == 1
    # a missing column names the file, line and key; broken JSON names the column too (10: where the unterminated string starts)
    (tmp_path / "a.jsonl").write_text('{"content": "ok"}\n{"text": "no content"}\n', encoding="utf-8")
    with pytest.raises(
        ValueError, match=r"a.jsonl:2: no column 'content' \(corpus.text_column\); the record has: text"
    ):
        list(read_corpus(_compose("corpus=jsonl", f"corpus.files=[{tmp_path}/a.jsonl]", "corpus.text_column=content")))
    (tmp_path / "a.jsonl").write_text('{"text": "ok"}\n{"text": "broken}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"a.jsonl:2:10: invalid JSON"):
        list(read_corpus(_compose("corpus=jsonl", f"corpus.files=[{tmp_path}/a.jsonl]")))


def test_csv_and_tsv_records(tmp_path):
    (tmp_path / "a.csv").write_text(
        'doc,text\n7,"First, with a comma. Second one."\n7,Third.\n8,Other.\n', encoding="utf-8"
    )
    (tmp_path / "b.tsv").write_text("text\tdoc\nTab separated.\t1\n", encoding="utf-8")
    cfg = _compose(
        "corpus=jsonl", "corpus.format=csv", f"corpus.files=[{tmp_path}/a.csv,{tmp_path}/b.tsv]", "corpus.id_column=doc"
    )
    assert list(read_corpus(cfg)) == [["First, with a comma.", "Second one.", "Third."], ["Other."], ["Tab separated."]]


@pytest.mark.parametrize("saved", [False, True])
def test_hf_dataset_from_a_local_directory(tmp_path, saved):
    import datasets

    rows = {"text": ["Alpha one. Alpha two.", "Beta one.\nBeta two."], "title": ["A", "B"]}
    if saved:
        datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ds"))
    else:
        (tmp_path / "ds").mkdir()
        (tmp_path / "ds" / "train.jsonl").write_text(
            "".join(json.dumps({"text": t, "title": h}) + "\n" for t, h in zip(rows["text"], rows["title"]))
        )
    cfg = _compose("corpus=hf", f"corpus.dataset={tmp_path}/ds", "corpus.title_column=title")
    assert list(read_corpus(cfg)) == [["A", "Alpha one.", "Alpha two."], ["B", "Beta one.", "Beta two."]]


def test_mix_reads_every_source_in_order(tmp_path):
    from collections import Counter

    (tmp_path / "books.txt").write_text(BOOK, encoding="utf-8")
    (tmp_path / "wiki.txt.xz").write_bytes(lzma.compress(WIKI.encode()))
    stats = Counter()
    cfg = _compose(
        "corpus=books_wiki",
        f"corpus.sources.books.files=[{tmp_path}/books.txt]",
        f"corpus.sources.wikipedia.files=[{tmp_path}/wiki.txt.xz]",
    )
    docs = list(read_corpus(cfg, stats))
    assert [d[0] for d in docs] == ["CHAPTER I.", "Just one paragraph of wrapped text.", "Jarred Shaw"]
    assert stats["documents_books"] == 2 and stats["documents_wikipedia"] == 1 and stats["skipped_short_documents"] == 1


def test_cleaning_and_normalization():
    assert clean_text("a\u200bb\x07 \t c\ufeff\u00a0d", "NFC") == "ab c d"
    assert clean_text("ﬁ ①", "NFKC") == "fi 1" and clean_text("ﬁ", "NFC") == "ﬁ"
    # NFC composes jamo into syllables; it never decomposes them
    assert clean_text("\u1112\u1161\u11ab", "NFC") == "한"


def test_sentencex_splits_english_and_korean():
    from omegaconf import OmegaConf

    en = sentence_splitter(OmegaConf.create({"sentence_splitter": "sentencex", "language": "en"}))
    assert en("Mr. Smith went to Washington D.C. yesterday. It rained!") == [
        "Mr. Smith went to Washington D.C. yesterday.",
        "It rained!",
    ]
    assert en("Dr. Watson arrived at 5 p.m. on Jan. 3. The U.K. office closed.") == [
        "Dr. Watson arrived at 5 p.m. on Jan. 3.",
        "The U.K. office closed.",
    ]
    ko = sentence_splitter(OmegaConf.create({"sentence_splitter": "sentencex", "language": "ko"}))
    assert ko("안녕하세요. 저는 학생입니다! 정말요?네 그렇습니다.") == [
        "안녕하세요.",
        "저는 학생입니다!",
        "정말요?",
        "네 그렇습니다.",
    ]


def test_bad_files_give_one_error_with_file_and_line(tmp_path):
    from collections import Counter

    (tmp_path / "bin.txt").write_bytes(b"fine line\n\x00\x01\x02binary\n")
    with pytest.raises(ValueError, match=r"bin.txt:2: binary data"):
        list(read_corpus(_compose("corpus=text", f"corpus.files=[{tmp_path}/bin.txt]")))
    (tmp_path / "latin1.txt").write_bytes("ok\nok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt:3:4: not valid UTF-8"):
        list(read_corpus(_compose("corpus=text", f"corpus.files=[{tmp_path}/latin1.txt]")))
    # a many-megabyte line is skipped and counted, the rest is read
    (tmp_path / "long.txt").write_text("first.\n" + "x" * 3_000_000 + "\nlast.\n", encoding="utf-8")
    stats = Counter()
    docs = list(read_corpus(_compose("corpus=text", f"corpus.files=[{tmp_path}/long.txt]"), stats))
    assert docs == [["first.", "last."]] and stats["skipped_long_lines"] == 1


def test_hf_corpus_without_a_dataset_names_the_key():
    with pytest.raises(ConfigError, match="corpus.dataset: name a Hugging Face dataset"):
        list(read_corpus(_compose("corpus=hf")))
