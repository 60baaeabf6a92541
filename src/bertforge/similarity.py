"""How alike two texts are (`bertforge similarity`): the cosine of their sentence vectors, made
as `embed` makes them (a sentence model's own pooling, e.g. MiniLM-L6's normalised mean; else
BERT's pooled_output), for each pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bertforge.config import ConfigError
from bertforge.predict import Predictions, example_name, parse_examples


def similarity(
    model_dir: str | Path,
    texts: list,
    sep: str = "\t",
    pooling: str = "auto",
    normalize: bool | None = None,
    max_length: int | None = None,
    batch_size: int = 32,
    place=None,
    names: list[str] | None = None,
    prompt: str | None = None,
    prompt_name: str | None = None,
) -> Predictions:
    """The cosine similarity of each pair in `texts` (strings whose two texts `sep` divides, or
    (text, text) tuples; order kept), as a regression's Predictions (`values`: [n] in [-1, 1]).
    A text that recurs is embedded once."""
    from bertforge.embeddings import embed

    examples = parse_examples(texts, sep, names)
    for i, (first, second) in enumerate(examples):
        if second is None:
            raise ConfigError(
                f"{example_name(names, i)} ({first[:60]!r}): similarity compares two texts; separate them "
                f"by {sep!r} (--sep), or give two --columns"
            )
    unique = list(dict.fromkeys(t for pair in examples for t in pair))
    emb = embed(
        model_dir,
        unique,
        pooling=pooling,
        normalize=normalize,
        max_length=max_length,
        batch_size=batch_size,
        place=place,
        prompt=prompt,
        prompt_name=prompt_name,
    )
    row = {t: i for i, t in enumerate(unique)}
    vectors = emb.sentences / np.maximum(np.linalg.norm(emb.sentences, axis=1, keepdims=True), 1e-12)
    a = vectors[[row[t] for t, _ in examples]]
    b = vectors[[row[t] for _, t in examples]]
    scores = (a * b).sum(1)
    how = f"cosine of sentence vectors: {emb.recipe.describe()}"
    return Predictions(examples, names, None, scores.astype(np.float32), how)
