"""Text corpus readers: document boundaries, skipped lines, compressed streams, real-corpus profiles."""
import lzma

import pytest

from bertforge.config import ConfigError, compose
from bertforge.corpus import read_corpus
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
    assert docs == [["Jarred Shaw", "Jarred Shaw (born 1990) is an American player.", "He plays for Trouville.",
                     "Professional career.", "On October 31, 2015, Shaw was selected 18th.", "He signed later."]]


def test_glob_matching_nothing_names_the_key(tmp_path):
    cfg = compose(["corpus=wikipedia_en", f"corpus.files=[{tmp_path}/*.xz]"]).corpus
    with pytest.raises(ConfigError, match=r"corpus.files: pattern .* matches no file"):
        list(read_corpus(cfg))


def test_shared_wikipedia_profile_reads_articles():
    needs_shared("wikipedia-en")
    docs = read_corpus(compose(["corpus=wikipedia_en"]).corpus)
    first = [next(docs) for _ in range(50)]
    assert all(len(d) >= 2 for d in first) and first[0][0] == "Jarred Shaw"
