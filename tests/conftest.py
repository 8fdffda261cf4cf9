"""Shared fixtures: the packaged MiniLM loaded once per session, small real documents."""

from __future__ import annotations

import copy
import os

import pytest

# Tests never reach the hub: every model they use ships in an installed package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
