"""The embedding cache keeps a long encoding pass as it goes: a kill loses little of it."""

from __future__ import annotations

import numpy as np
import pytest

from embedtune import embeddings
from embedtune.embeddings import EmbeddingCache

TEXTS = [f"passage {i} " + "word " * (i % 5) for i in range(10)]


def _fake(batch: list[str]) -> np.ndarray:
    """A stand-in encoder: each text's vector is its length, three times."""
    return np.array([[len(t)] * 3 for t in batch], dtype=np.float32)


def test_a_kill_during_a_long_encoding_keeps_what_was_encoded(tmp_path, monkeypatch):
    monkeypatch.setattr(embeddings, "SAVE_EVERY", 4)  # 10 texts: saved after 4, 8 and 10
    calls: list[int] = []

    def dies_on_the_third_block(batch: list[str]) -> np.ndarray:
        calls.append(len(batch))
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return _fake(batch)

    with pytest.raises(KeyboardInterrupt):
        EmbeddingCache("fake-model", root=tmp_path).get_or_encode(
            TEXTS, "document", dies_on_the_third_block
        )
    again = EmbeddingCache("fake-model", root=tmp_path)  # the rerun
    vectors = again.get_or_encode(TEXTS, "document", _fake)
    assert again.encoded == 2 and again.hits == 8  # only the block the kill cut short
    np.testing.assert_array_equal(vectors, _fake(TEXTS))
