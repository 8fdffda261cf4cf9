"""`embedtune generate --dry-run` says how long each step will take on this machine, how it
knows, and what would stop the run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embedtune.config import load_config
from embedtune.generate import run_generate
from embedtune.generate.estimate import CALIBRATION_TEXTS, judge_estimate, writer_estimate
from embedtune.generate.local import LocalBackend
from embedtune.progress import record_rate, recorded_rate
from embedtune.records import Chunk, write_jsonl

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import FakeOpenAI  # noqa: E402
from test_generate import TOPICS  # noqa: E402


def _run(tmp_path: Path, n_train: int) -> Path:
    """A prepared run of ``n_train`` distinct training chunks and 4 validation chunks."""
    run = tmp_path / "run"

    def chunk(i: int, split: str) -> Chunk:
        text = f"Section {split}-{i}. " + TOPICS[i % len(TOPICS)] + f" See also note {i * 7}."
        return Chunk(
            id=f"{split}{i}", doc_id=split, text=text, n_tokens=30, page_start=1, page_end=1
        )

    write_jsonl(run / "chunks" / "train.jsonl", [chunk(i, "t") for i in range(n_train)])
    write_jsonl(run / "chunks" / "val.jsonl", [chunk(i, "v") for i in range(4)])
    return run


def test_dry_run_times_the_judge_on_a_sample_then_reuses_the_rate(tmp_path, minilm_path):
    run = _run(tmp_path, n_train=2 * CALIBRATION_TEXTS)
    with FakeOpenAI() as server:
        cfg = load_config(
            overrides={
                "model": minilm_path,
                "generate": {"base_url": server.url, "model": "m", "roundtrip_model": minilm_path},
            },
            environ={},
        )
        first = run_generate(cfg, run, dry_run=True, calibrate=True)
        assert server.calls_total == 0
    writer, judge = first.estimate
    assert writer.step.startswith(f"writer: {2 * CALIBRATION_TEXTS + 4} call(s)")
    assert writer.seconds is not None and "assuming 2 s a call" in writer.how
    assert f"encodes {2 * CALIBRATION_TEXTS + 4} chunk(s)" in judge.step
    assert judge.seconds is not None and f"timed now on {CALIBRATION_TEXTS} chunks" in judge.how
    assert first.seconds == pytest.approx(writer.seconds + judge.seconds)
    assert not (run / "generate").exists() and not (run / "data").exists()

    # The sample's embeddings were kept and the rate recorded: the next dry run times nothing.
    again = run_generate(cfg, run, dry_run=True, calibrate=True)
    assert f"({CALIBRATION_TEXTS} cached)" in again.estimate[1].step
    assert "measured here on" in again.estimate[1].how


def test_dry_run_warns_that_the_api_key_is_not_set(tmp_path, monkeypatch):
    run = _run(tmp_path, n_train=4)
    monkeypatch.delenv("ET_NO_SUCH_KEY", raising=False)
    cfg = load_config(
        overrides={"generate": {"model": "gpt-4o-mini", "api_key_env": "ET_NO_SUCH_KEY"}},
        environ={},
    )
    cfg.generate.roundtrip_top_k = None
    report = run_generate(cfg, run, dry_run=True)
    assert len(report.warnings) == 1 and "ET_NO_SUCH_KEY" in report.warnings[0]
    monkeypatch.setenv("ET_NO_SUCH_KEY", "sk-test")
    assert run_generate(cfg, run, dry_run=True).warnings == []


def test_cli_dry_run_prints_each_steps_time_and_the_warning(tmp_path, monkeypatch):
    from embedtune.cli import app

    run = _run(tmp_path, n_train=4)
    monkeypatch.delenv("ET_NO_SUCH_KEY", raising=False)
    (run / "config.yaml").write_text(
        "generate:\n  api_key_env: ET_NO_SUCH_KEY\n  roundtrip_model: all-MiniLM-L6-v2\n"
    )
    args = ["generate", "--run", str(run), "--model", "gpt-4o-mini", "--dry-run"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "estimated time on this machine" in result.output
    assert "writer: 8 call(s)" in result.output and "round trip" in result.output
    assert "warning: no API key" in " ".join(result.output.split())


def test_local_writer_estimate_uses_the_rate_recorded_here(tmp_path):
    backend = LocalBackend(load_config(environ={}).generate)
    key = f"{backend.model}|{backend.dtype}|batch {backend.batch_size}|per-question"
    record_rate("local-writer", key, seconds_per_call=0.5, load_seconds=20.0)
    estimate = writer_estimate(backend, [object()] * 100, [], calibrate=False)
    assert estimate.seconds == pytest.approx(100 * 0.5 + 20)
    assert "0.50 s a call and 20 s to load, measured here on" in estimate.how
    assert backend._model is None  # nothing loaded


def test_without_a_rate_and_without_calibration_the_estimate_says_so(tmp_path):
    backend = LocalBackend(load_config(environ={}).generate)
    estimate = writer_estimate(backend, [object()] * 3, [], calibrate=False)
    assert estimate.seconds is None and "no rate measured" in estimate.how


@pytest.mark.slow
def test_local_writer_is_calibrated_on_one_small_batch(tmp_path):
    run = _run(tmp_path, n_train=6)
    cfg = load_config(environ={})
    cfg.generate.roundtrip_top_k = None
    report = run_generate(cfg, run, dry_run=True, calibrate=True)
    (writer,) = report.estimate
    assert (
        writer.seconds and writer.seconds > 0 and "timed now on 8 of this run's calls" in writer.how
    )
    assert not list((run / "generate" / "cache").glob("*.jsonl")) or all(
        p.stat().st_size == 0 for p in (run / "generate" / "cache").glob("*.jsonl")
    )
    backend = LocalBackend(cfg.generate)
    key = f"{backend.model}|{backend.dtype}|batch {backend.batch_size}|per-question"
    assert recorded_rate("local-writer", key)["calls"] == 8


def test_judge_estimate_counts_only_what_its_cache_lacks(minilm_path):
    texts = [f"chunk number {i} about R packages and data frames" for i in range(10)]
    estimate = judge_estimate(minilm_path, texts, 20, calibrate=False)
    assert "encodes 10 chunk(s) and up to 20 question(s)" in estimate.step
