"""`embedtune run` end to end: documents in, a verdict and a loadable model out; a re-run skips."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import get_args

import pytest
import yaml
from typer.testing import CliRunner

from embedtune.cli import app
from embedtune.config import EvaluateConfig, PipelineConfig

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import FakeOpenAI  # noqa: E402

TOPICS = {
    "models.md": [
        "The lm function fits linear regression models from a formula and a data frame.",
        "Generalised linear models are fitted with glm and a family such as binomial.",
        "The predict function returns fitted values for new data from a model object.",
    ],
    "packages.md": [
        "install.packages downloads packages from CRAN mirrors and installs them locally.",
        "The library function attaches an installed package to the search path.",
        "Rscript runs an R script from the shell and passes command line arguments.",
    ],
    "data.md": [
        "read.csv reads a comma separated file into a data frame with a header row.",
        "Factors store categorical variables; levels returns the categories of a factor.",
        "Dates are stored as the number of days since 1970-01-01 in class Date.",
    ],
    "graphics.md": [
        "The plot function draws scatter plots; par sets graphical parameters like margins.",
        "Histograms are drawn with hist, and the breaks argument sets the bins.",
        "Colours are given by name or as hexadecimal strings such as #FF0000.",
    ],
}


def write_docs(tmp_path: Path) -> Path:
    """TOPICS as Markdown files in ``tmp_path/docs``, each paragraph long enough to be a chunk."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, paragraphs in TOPICS.items():
        # Each paragraph is its own chunk: long enough, separated by blank lines.
        body = "\n\n".join((p + " ") * 4 for p in paragraphs)
        (docs / name).write_text(f"# {name}\n\n{body}\n")
    return docs


def write_config(tmp_path: Path, server: FakeOpenAI, **generate: object) -> Path:
    """A quick run's config against ``server``: 64-token chunks, a quarter held out, no round
    trip, one short epoch; ``generate`` adds generate settings."""
    config = tmp_path / "cfg.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "chunk": {"chunk_size": 64, "chunk_overlap": 8, "min_chunk_tokens": 8},
                "ingest": {"val_ratio": 0.25},
                "generate": {
                    "base_url": server.url,
                    "model": "fake-model",
                    "roundtrip_top_k": None,
                    **generate,
                },
                # no teacher: "auto" would train with the 420 MB mpnet where it is installed
                "train": {
                    "epochs": 1,
                    "batch_size": 4,
                    "max_seq_length": 66,  # the 64-token chunks whole, with [CLS] and [SEP]
                    "bf16": "off",
                    "teacher": None,
                },
                "evaluate": {"bootstrap_samples": 200},
            }
        )
    )
    return config


def test_run_goes_from_documents_to_a_verdict_and_skips_when_current(tmp_path, monkeypatch):
    docs = write_docs(tmp_path)
    run = tmp_path / "run"
    with FakeOpenAI() as server:
        config = write_config(tmp_path, server)
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        runner = CliRunner()
        first = runner.invoke(app, ["run", str(config), "--docs", str(docs), "--run", str(run)])
        assert first.exit_code == 0, first.output
        calls = server.calls_total

        # Every stage left its artefact in the run directory.
        assert (run / "chunks" / "train.jsonl").is_file()
        assert json.loads((run / "data" / "train.json").read_text())["queries"]
        assert (run / "model" / "modules.json").is_file()
        assert (run / "eval" / "report.html").is_file()
        # The questions are made of their passage's own words, so the base already finds
        # nearly every validation question's chunk, and one short epoch leaves no room to be
        # clearly better: the run says so, and gives the fine-tuned model, which is not worse.
        result = json.loads((run / "result.json").read_text())
        assert result["validation"]["base"] >= 0.9
        assert result["verdict"] == "no clear difference"
        assert result["model"] == str(run / "model") and result["uses_fine_tuned"]
        assert not result["fine_tuned_is_better"]
        assert "is not worse on the validation sets" in " ".join(first.output.split())
        assert "base vs fine-tuned" in first.output

        second = runner.invoke(app, ["run", "--docs", str(docs), "--run", str(run)])
        assert second.exit_code == 0, second.output
        assert server.calls_total == calls  # no paid call made twice
        for stage in ("prepare", "generate", "train", "evaluate"):
            assert f"{stage}: skipped" in second.output, second.output

        # Asking for the fine-tuned model only when it is clearly better re-scores nothing and
        # gives the base.
        strict = runner.invoke(
            app, ["run", "--docs", str(docs), "--run", str(run), "--use-fine-tuned", "if-better"]
        )
        assert strict.exit_code == 0, strict.output
        assert "evaluate: skipped" in strict.output, strict.output
        result = json.loads((run / "result.json").read_text())
        assert result["model"] == result["base"] and not result["uses_fine_tuned"]
        assert f"keeping the base model {result['base']}" in " ".join(strict.output.split())

        # A zero-shot baseline is scored too and gets its own row; only evaluation runs again.
        third = runner.invoke(
            app, ["run", "--docs", str(docs), "--run", str(run), "--baseline", "minilm"]
        )
        assert third.exit_code == 0, third.output
        assert "evaluate: done" in third.output and "train: skipped" in third.output
        assert "  minilm " in third.output
        val = json.loads((run / "result.json").read_text())["validation"]
        assert val["baselines"]["minilm"]["diff"] == 0  # the base itself, zero-shot
        # a baseline no better than the base is never recommended
        assert "recommendation" not in third.output


def test_run_passes_the_offline_writer_on_and_names_it_when_it_is_missing(tmp_path):
    docs = write_docs(tmp_path)
    run = tmp_path / "run"
    writer = tmp_path / "writer.gguf"
    result = CliRunner().invoke(
        app, ["run", "--docs", str(docs), "--run", str(run), "--local-model", str(writer)]
    )
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"generate.local_model: {writer} not found; give the path to a .gguf file" in text
    assert "Traceback" not in result.output
    assert yaml.safe_load((run / "config.yaml").read_text())["generate"]["local_model"] == str(
        writer
    )
    assert (run / "chunks" / "train.jsonl").is_file()  # prepare's work stays for the re-run


def test_run_with_lora_but_no_peft_stops_before_any_stage(tmp_path, monkeypatch):
    # LoRA needs peft only at training: checked there alone, a run wrote every question (an
    # hour on a laptop) and then stopped.
    monkeypatch.setitem(sys.modules, "peft", None)  # as where the lora extra is not installed
    docs = write_docs(tmp_path)
    run = tmp_path / "run"
    config = tmp_path / "lora.yaml"
    config.write_text("train:\n  lora: true\n")
    result = CliRunner().invoke(app, ["run", str(config), "--docs", str(docs), "--run", str(run)])
    assert result.exit_code == 2, result.output
    assert "pip install 'peft~=0.21'" in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (run / "chunks").exists() and not (run / "data").exists()


def test_a_run_on_sentences_asks_the_writer_for_validation_only_and_trains_on_them(
    tmp_path, monkeypatch
):
    """generate.train_queries: sentences through every stage: the writer writes only the
    validation questions, training learns from the documents' sentences, and the verdict is
    judged against the chunks a deployed index would hold."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, sentences in TOPICS.items():  # one chunk of three sentences a document
        (docs / name).write_text(f"# {name}\n\n{' '.join(sentences)}\n")
    run = tmp_path / "run"
    with FakeOpenAI() as server:
        config = write_config(tmp_path, server, train_queries="sentences")
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        result = CliRunner().invoke(
            app, ["run", str(config), "--docs", str(docs), "--run", str(run)]
        )
        assert result.exit_code == 0, result.output
        val_chunks = (run / "chunks" / "val.jsonl").read_text().splitlines()
        assert server.calls_total == len(val_chunks)  # one call a validation chunk, none else
    train = json.loads((run / "data" / "train.json").read_text())
    every_sentence = {s for sentences in TOPICS.values() for s in sentences}
    assert train["queries"] and set(train["queries"].values()) <= every_sentence
    assert (run / "model" / "modules.json").is_file()
    summary = json.loads((run / "result.json").read_text())
    assert summary["verdict"] in ("better", "worse", "no clear difference", "mixed")
    n_chunks = len(val_chunks) + len((run / "chunks" / "train.jsonl").read_text().splitlines())
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["datasets"]["val"]["n_corpus"] == n_chunks


@pytest.mark.parametrize("verdict", ["better", "no clear difference", "worse", "mixed", "missing"])
@pytest.mark.parametrize("rule", get_args(EvaluateConfig.model_fields["use_fine_tuned"].annotation))
def test_the_run_gives_the_fine_tuned_model_by_its_rule_and_verdict(tmp_path, rule, verdict):
    """Every rule a config accepts decides every verdict: unless-worse gives the fine-tuned model
    on "better" and "no clear difference", if-better on "better" alone; RUN/result.json says so."""
    from embedtune.evaluate.results import DatasetSummary, EvaluateSummary
    from embedtune.pipeline import choose_result

    (tmp_path / "model").mkdir()
    val = DatasetSummary(n_queries=50, n_corpus=80, corpus="full", base=0.5)
    summary = EvaluateSummary(models={}, datasets={"val": val}, validation=val, verdict=verdict,
                              judged_on=["val-sentences"], output=str(tmp_path / "eval"))  # fmt: skip
    cfg = PipelineConfig.model_validate({"evaluate": {"use_fine_tuned": rule}})
    result = choose_result(cfg, tmp_path, summary)
    gives = verdict == "better" or (rule == "unless-worse" and verdict == "no clear difference")
    assert result.uses_fine_tuned is gives
    assert result.model == (str(tmp_path / "model") if gives else cfg.model)
    saved = json.loads((tmp_path / "result.json").read_text())
    assert (saved["model"], saved["rule"], saved["verdict"]) == (result.model, rule, verdict)
