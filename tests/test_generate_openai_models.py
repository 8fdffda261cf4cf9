"""OpenAI's reasoning models (o3, o4-mini, gpt-5) refuse max_tokens, temperature and top_p.

The test server answers those parameters with the 400 body OpenAI sends
(``fake_openai.OPENAI_UNSUPPORTED``); generation must still write its questions.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from embedtune.config import load_config
from embedtune.errors import GenerationError
from embedtune.generate import run_generate
from embedtune.generate.client import REASONING_ALLOWANCE, is_reasoning_model
from embedtune.records import Chunk, write_jsonl

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import FakeOpenAI  # noqa: E402

REFUSED = ("max_tokens", "temperature", "top_p")
TEXTS = [
    "The lm function fits linear regression models from a formula and a data frame.",
    "install.packages downloads packages from CRAN mirrors and installs them locally.",
    "Factors store categorical variables; levels returns the categories of a factor.",
    "The apply family applies a function over the margins of an array or matrix.",
    "read.csv reads a comma separated file into a data frame with a header row.",
]


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    from embedtune.generate import client

    monkeypatch.setattr(client, "INITIAL_DELAY", 0.01)


def _run(tmp_path: Path, n_train: int = 4) -> Path:
    run = tmp_path / "run"
    chunks = [
        Chunk(id=f"c{i}", doc_id="d", text=t, n_tokens=20, page_start=1, page_end=1)
        for i, t in enumerate(TEXTS)
    ]
    write_jsonl(run / "chunks" / "train.jsonl", chunks[:n_train])
    write_jsonl(run / "chunks" / "val.jsonl", chunks[n_train:])
    return run


def _config(server: FakeOpenAI, model: str, **generate):
    cfg = load_config(
        overrides={"generate": {"base_url": server.url, "model": model, **generate}}, environ={}
    )
    cfg.generate.roundtrip_top_k = None
    return cfg


def _refusals(server: FakeOpenAI) -> int:
    return server.calls_total - sum(server.delivered.values())


@pytest.mark.parametrize(
    ("name", "reasoning"),
    [
        ("o3", True),
        ("o4-mini", True),
        ("o1-preview", True),
        ("o3-2025-04-16", True),
        ("gpt-5", True),
        ("gpt-5-mini", True),
        ("gpt-5.1", True),
        ("openai/gpt-5-nano", True),
        ("gpt-5-chat-latest", False),
        ("gpt-4o-mini", False),
        ("gpt-4.1", False),
        ("gpt-oss-20b", False),
        ("qwen2.5:7b", False),
    ],
)
def test_reasoning_models_are_known_by_name(name, reasoning):
    assert is_reasoning_model(name) is reasoning


def test_a_reasoning_model_is_asked_right_the_first_time(tmp_path):
    run = _run(tmp_path)
    with FakeOpenAI(unsupported=REFUSED) as server:
        report = run_generate(_config(server, "o4-mini", concurrency=1), run)
    assert _refusals(server) == 0
    body = server.requests[0]["body"]
    assert body["max_completion_tokens"] == 256 + REASONING_ALLOWANCE
    assert body["reasoning_effort"] == "low"
    assert not {"max_tokens", "temperature", "top_p"} & set(body)
    assert report.splits["train"].kept == 8


def test_a_model_that_refuses_parameters_is_asked_again_without_them_once(tmp_path, caplog):
    run = _run(tmp_path)
    with caplog.at_level(logging.WARNING, logger="embedtune"):
        with FakeOpenAI(unsupported=REFUSED) as server:
            report = run_generate(_config(server, "house-reasoner", concurrency=1), run)
    # one 400 per refused parameter for the whole run, then every request is accepted
    assert _refusals(server) == 3
    assert server.calls_total == len(TEXTS) + 3
    last = server.requests[-1]["body"]
    assert last["max_completion_tokens"] == 256 and not {"max_tokens", "temperature"} & set(last)
    assert report.splits["train"].kept == 8
    assert "refused 'max_tokens'" in caplog.text and "sending max_completion_tokens" in caplog.text
    assert "refused 'temperature'" in caplog.text and "for the rest of the run" in caplog.text


def test_concurrent_requests_that_hit_the_same_refusal_all_recover(tmp_path):
    run = _run(tmp_path)
    with FakeOpenAI(unsupported=REFUSED, latency=0.05) as server:
        report = run_generate(_config(server, "house-reasoner", concurrency=4), run)
    assert report.splits["train"].kept == 8
    assert 3 <= _refusals(server) <= 3 * 4


def test_models_that_accept_sampling_settings_still_get_them(tmp_path):
    run = _run(tmp_path, n_train=1)
    with FakeOpenAI() as server:
        run_generate(_config(server, "gpt-4o-mini", concurrency=1, temperature=0.3), run)
    body = server.requests[0]["body"]
    assert body["max_tokens"] == 256 and body["temperature"] == 0.3 and body["top_p"] == 0.95
    assert "reasoning_effort" not in body


def test_a_reply_cut_before_any_text_says_to_raise_max_tokens(tmp_path):
    run = _run(tmp_path, n_train=1)
    with FakeOpenAI() as server:
        server.script = [("cut",)] * 3
        with pytest.raises(GenerationError, match="raise generate.max_tokens"):
            run_generate(_config(server, "o3", concurrency=1, max_retries=2), run)


def test_dry_run_warns_that_the_api_key_variable_is_unset(tmp_path, caplog, monkeypatch):
    monkeypatch.delenv("ET_UNSET_KEY", raising=False)
    run = _run(tmp_path)
    cfg = load_config(
        overrides={"generate": {"model": "gpt-5-mini", "api_key_env": "ET_UNSET_KEY"}}
    )
    with caplog.at_level(logging.WARNING, logger="embedtune"):
        report = run_generate(cfg, run, dry_run=True)
    assert report.dry_run and report.calls == len(TEXTS)
    assert "ET_UNSET_KEY is not set: the real run will stop at once" in caplog.text
    caplog.clear()
    monkeypatch.setenv("ET_UNSET_KEY", "sk-test")
    with caplog.at_level(logging.WARNING, logger="embedtune"):
        run_generate(cfg, run, dry_run=True)
    assert "is not set" not in caplog.text
