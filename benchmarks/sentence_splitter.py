"""Sentence-splitter speed and output on the real corpora: sentencex (the default) against the
regex fallback (`corpus.sentence_splitter=rules`), on Wikipedia paragraphs (English and Korean)
and Korean petitions, read and cleaned once beforehand (only the splitting is timed).

    python benchmarks/sentence_splitter.py
"""

from __future__ import annotations

import statistics
import time

from omegaconf import OmegaConf

from common import print_header


def paragraphs(profile: str, limit: int) -> list[str]:
    from bertforge.config import compose
    from bertforge.data.corpus import read_corpus

    cfg = compose([f"corpus={profile}"]).corpus
    cfg = OmegaConf.merge(cfg, {"layout": "sentences"})  # one block per line: the paragraphs, unsplit
    out: list[str] = []
    for doc in read_corpus(cfg):
        out.extend(p for p in doc if len(p) > 40)
        if len(out) >= limit:
            break
    return out[:limit]


def main() -> None:
    from bertforge.data.corpus import sentence_splitter

    print_header()

    print("| text | splitter | MB/s (median of 3) | sentences | mean chars/sentence |\n|---|---|---|---|---|")
    for profile, lang in (("wikipedia_en", "en"), ("wikipedia_ko", "ko"), ("korean_petitions", "ko")):
        paras = paragraphs(profile, 20000)
        mb = sum(len(p.encode()) for p in paras) / 1e6
        for name in ("sentencex", "rules"):
            split = sentence_splitter(OmegaConf.create({"sentence_splitter": name, "language": lang}))
            times = []
            for _ in range(3):
                t = time.perf_counter()
                sents = [s for p in paras for s in split(p)]
                times.append(time.perf_counter() - t)
            print(
                f"| {profile} ({mb:.1f} MB) | {name} | {mb / statistics.median(times):.0f} | {len(sents):,} | "
                f"{sum(map(len, sents)) / len(sents):.0f} |"
            )


if __name__ == "__main__":
    main()
