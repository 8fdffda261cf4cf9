"""Long steps show a progress bar with rate and time left where a person watches, and nothing
in logs; the rates they measure are kept for the dry run's estimates."""

from __future__ import annotations

import numpy as np

from embedtune.embeddings import EmbeddingCache, loaded_model_fingerprint
from embedtune.progress import bar, recorded_rate

TEXTS = [f"How do I read file number {i} into a data frame with read.csv?" for i in range(40)]


def test_encoding_shows_a_labelled_bar_with_rate_and_gives_the_same_embeddings(
    minilm, capsys, monkeypatch
):
    plain = EmbeddingCache(None).encode_with(minilm, TEXTS, "query", batch_size=8)
    monkeypatch.setenv("EMBEDTUNE_PROGRESS", "on")
    shown = EmbeddingCache(None).encode_with(
        minilm, TEXTS, "query", batch_size=8, progress="evaluate: queries"
    )
    err = capsys.readouterr().err
    assert "evaluate: queries" in err and "40/40" in err and "text/s" in err
    np.testing.assert_allclose(shown, plain, atol=1e-5)  # in blocks, longest first: same rows


def test_no_bar_where_nobody_watches(minilm, capsys, monkeypatch):
    monkeypatch.delenv("EMBEDTUNE_PROGRESS", raising=False)  # stderr is no terminal here
    EmbeddingCache(None).encode_with(minilm, TEXTS, "query", batch_size=8, progress="quiet")
    monkeypatch.setenv("EMBEDTUNE_PROGRESS", "off")
    with bar(10, "never") as b:
        b.update(10)
    assert capsys.readouterr().err == ""


def test_encoding_records_the_models_speed_here(minilm):
    cache = EmbeddingCache(loaded_model_fingerprint(minilm))
    texts = [t + " " + "padding words " * 20 for t in TEXTS * 3]
    cache.encode_with(minilm, texts, "document", batch_size=16)
    rate = recorded_rate("encode", cache.fingerprint)
    assert rate is not None and rate["chars_per_second"] > 0
    assert cache.estimate_seconds(texts) > 0
