"""Shared fixtures: an embedtune cache of each test's own, the packaged MiniLM loaded once per
session."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

# Tests never reach the hub: every model they use ships in an installed package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _fresh_cache(root: Path, models: Path) -> Path:
    """An empty embedtune cache whose unpacked models are the user's: the packaged
    all-mpnet-base-v2 (~420 MB) is unpacked once, never per test."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "models").symlink_to(models, target_is_directory=True)
    return root


@pytest.fixture(scope="session")
def _user_models() -> Path:
    from embedtune.models import cache_dir

    models = cache_dir() / "models"  # the cache of whoever runs the tests
    models.mkdir(parents=True, exist_ok=True)
    return models


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory, _user_models):
    """Session and module fixtures embed into a cache of the session's own."""
    root = _fresh_cache(tmp_path_factory.mktemp("embedtune-cache"), _user_models)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMBEDTUNE_CACHE", str(root))
        yield root


@pytest.fixture(autouse=True)
def embedtune_cache(tmp_path_factory, _user_models, _session_cache, monkeypatch) -> Path:
    """Each test's own embedtune cache (EMBEDTUNE_CACHE): no test reads embeddings that another
    test, or an earlier run in ~/.cache/embedtune, left behind."""
    root = _fresh_cache(tmp_path_factory.mktemp("cache"), _user_models)
    monkeypatch.setenv("EMBEDTUNE_CACHE", str(root))
    return root


@pytest.fixture(scope="session")
def _minilm_session():
    from embedtune.models import load_model

    return load_model("all-MiniLM-L6-v2", device="cpu")


@pytest.fixture()
def minilm(_minilm_session):
    """A fresh copy of all-MiniLM-L6-v2 per test (training may change its weights)."""
    return copy.deepcopy(_minilm_session)


@pytest.fixture(scope="session")
def minilm_path() -> str:
    from embedtune.models import resolve_model

    return resolve_model("all-MiniLM-L6-v2")
