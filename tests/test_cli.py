"""The CLI's help is documentation: every command explains itself with a runnable example."""

from __future__ import annotations

import re
import socket

import pytest
import typer
from typer.testing import CliRunner

from embedtune.cli import app

runner = CliRunner()


def _commands() -> list[str]:
    group = typer.main.get_command(app)
    return sorted(group.commands)


def test_every_command_has_help_with_an_example():
    commands = _commands()
    assert {"init", "run"} <= set(commands)
    for name in commands:
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, name
        examples = [
            line
            for line in result.output.splitlines()
            if line.strip().startswith(f"embedtune {name}")
        ]
        assert examples, f"`embedtune {name} --help` shows no runnable example"


def test_init_writes_a_config_that_loads(tmp_path):
    from embedtune.config import load_config

    path = tmp_path / "c.yaml"
    result = runner.invoke(app, ["init", str(path)])
    assert result.exit_code == 0
    assert load_config(path).chunk.chunk_size == 1024
    again = runner.invoke(app, ["init", str(path)])
    assert again.exit_code != 0 and "--force" in again.output


def test_run_without_documents_says_what_to_pass(tmp_path):
    result = runner.invoke(app, ["run", "--run", str(tmp_path / "r")])
    assert result.exit_code != 0
    assert "--docs" in result.output


def test_library_errors_become_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("chunk:\n  chunk_sise: 5\n")
    result = runner.invoke(app, ["run", str(bad), "--run", str(tmp_path / "r"), "--docs", "x"])
    assert result.exit_code == 2
    assert "did you mean 'chunk.chunk_size'" in result.output
    assert "Traceback" not in result.output


def test_serve_on_a_port_in_use_says_so_before_loading_the_model(monkeypatch, minilm_path):
    from embedtune.serve import backends

    def load_backend(*args, **kwargs):
        raise AssertionError("the model loaded before the port was checked")

    monkeypatch.setattr(backends, "load_backend", load_backend)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", minilm_path, "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert f"port {port} on 127.0.0.1 is in use" in result.output
    assert "pass another --port" in result.output


def test_serve_of_a_run_not_trained_yet_says_what_to_run(tmp_path):
    run = tmp_path / "runs" / "first"
    (run / "chunks").mkdir(parents=True)
    result = runner.invoke(app, ["serve", "--run", str(run)])
    assert result.exit_code == 2, result.output
    assert f"no fine-tuned model in {run} yet" in result.output
    assert f"run `embedtune train --run {run}`" in " ".join(result.output.split())


@pytest.mark.parametrize("kept_base", [True, False], ids=["base kept", "fine-tuned given"])
def test_serve_of_a_run_serves_the_model_the_run_chose(tmp_path, monkeypatch, kept_base):
    """A run that kept the base serves the base, not the fine-tuned weights it judged worse."""
    import json

    from embedtune.serve import app as serve_app

    run = tmp_path / "runs" / "first"
    (run / "model").mkdir(parents=True)
    (run / "model" / "modules.json").write_text("[]")
    base = "all-MiniLM-L6-v2"
    chosen = base if kept_base else "runs/first/model"  # as `embedtune run` wrote it, relative
    (run / "result.json").write_text(json.dumps({
        "model": chosen, "fine_tuned": "runs/first/model", "base": base,
        "fine_tuned_is_better": False, "verdict": "worse" if kept_base else "no clear difference",
        "uses_fine_tuned": not kept_base, "rule": "unless-worse",
    }))  # fmt: skip
    served = []
    monkeypatch.setattr(serve_app, "serve", lambda model, *a, **k: served.append(model))
    result = runner.invoke(app, ["serve", "--run", str(run)])
    assert result.exit_code == 0, result.output
    assert served == [base if kept_base else str(run / "model")]
    if kept_base:
        assert f"the run kept the base model {base}" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("argv", "flag", "said"),
    [
        (["serve", "--model", "runs/first/model"], "--model", "`embedtune serve MODEL [OPTIONS]`"),
        (["export", "--model=runs/first/model"], "--model", "`embedtune export MODEL [OPTIONS]`"),
        (
            ["push", "runs/first/model", "--repo-id", "me/m"],
            "--repo-id",
            "`embedtune push MODEL REPO_ID",
        ),
        (["run", "--config", "my.yaml"], "--config", "`embedtune run CONFIG [OPTIONS]`"),
        (["prepare", "--docs", "docs/"], "--docs", "`embedtune prepare PATHS [OPTIONS]`"),
    ],
)
def test_a_flag_for_what_a_command_takes_as_an_argument_says_how_to_give_it(argv, flag, said):
    # `train` and `evaluate` take --model, every command but `run` --config, and `run` --docs;
    # these take them as arguments, where click's own answer suggested only --help.
    result = runner.invoke(app, argv, prog_name="embedtune")
    assert result.exit_code == 2
    assert f"No such option: {flag}: give " in result.output
    assert " without a flag, as in " in " ".join(result.output.split())
    assert said in " ".join(result.output.split())
    assert "Possible options" not in result.output


@pytest.mark.parametrize(
    ("verdict", "rule", "uses", "says"),
    [
        ("better", "if-better", True, "is better on the validation sets"),
        ("no clear difference", "unless-worse", True, "is not worse on the validation sets"),
        ("no clear difference", "if-better", False, "is not clearly better on the validation"),
        ("worse", "unless-worse", False, "is worse on the validation sets"),
        ("mixed", "unless-worse", False, "is better on one validation set, worse on another"),
    ],
    ids=[
        "better",
        "no clear difference, unless-worse",
        "no clear difference, if-better",
        "worse",
        "mixed",
    ],
)
def test_a_finished_run_says_which_model_it_chose_and_how_to_serve_it(verdict, rule, uses, says):
    from rich.console import Console

    from embedtune.cli.run import _print_verdict
    from embedtune.pipeline import PipelineRun, RunResult

    model, base = "runs/first/model", "all-MiniLM-L6-v2"
    result = RunResult(model=model if uses else base, fine_tuned=model, base=base,
                       fine_tuned_is_better=verdict == "better", verdict=verdict,
                       uses_fine_tuned=uses, rule=rule, judged_on=["val-sentences"])  # fmt: skip
    out = Console(record=True, width=80)
    _print_verdict(out, PipelineRun(result=result))
    said = " ".join(out.export_text().split())
    assert says in said and f"(val-sentences: {verdict})" in said
    if uses:
        assert f"serve it over HTTP: embedtune serve {model}; load it in Python: " in said
        assert f"SentenceTransformer('{model}')" in said
    else:
        assert f"keeping the base model {base}" in said
        assert f"serve the base over HTTP: embedtune serve {base}" in said


def test_the_runs_table_keeps_each_interval_on_one_line_in_80_columns():
    """Three validation rows and their intervals in an 80-column terminal: an interval cut
    over two lines ("[-0.0126," then "+0.0236]") read as two numbers (session 38's demo)."""
    from rich.console import Console

    from embedtune.cli.run import _print_verdict
    from embedtune.evaluate.results import DatasetSummary, EvaluateSummary
    from embedtune.pipeline import PipelineRun

    def row(base: float, tuned: float, low: float, high: float) -> DatasetSummary:
        return DatasetSummary(n_queries=200, n_corpus=600, corpus="full", base=base,
                              fine_tuned=tuned, diff=tuned - base, ci_low=low, ci_high=high,
                              verdict="no clear difference")  # fmt: skip

    rows = {
        "val": row(0.3313, 0.3374, -0.0126, 0.0236),
        "val-headings": row(0.8172, 0.8190, -0.0128, 0.0179),
        "val-sentences": row(0.3514, 0.3633, -0.0013, 0.0256),
    }
    summary = EvaluateSummary(models={}, datasets=rows, validation=rows["val"],
                              verdict="no clear difference", judged_on=["val-headings"], output="")  # fmt: skip
    out = Console(record=True, width=80)
    _print_verdict(out, PipelineRun(stages={"evaluate": summary}))
    text = out.export_text()
    for interval in ("[-0.0126, +0.0236]", "[-0.0128, +0.0179]", "[-0.0013, +0.0256]"):
        assert interval in text
    assert "val-sentences" in text and max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text and text.count("difference") == 3  # no word cut short either


def test_a_full_disk_is_one_line_that_says_to_free_space_and_rerun(monkeypatch, tmp_path):
    import errno

    from embedtune import prepare

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "r" / "chunks"))

    monkeypatch.setattr(prepare, "run_prepare", full)
    (tmp_path / "d.md").write_text("# Notes\n\nSome text.")
    result = runner.invoke(app, ["prepare", str(tmp_path / "d.md"), "--run", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert f"{tmp_path / 'r' / 'chunks'}: the disk is full: free space, then run the same" in said
    assert "Traceback" not in result.output


def _help(name: str) -> str:
    """A command's help with its lines joined, so that wrapping cannot split what is checked."""
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_every_option_and_argument_says_what_it_does():
    group = typer.main.get_command(app)
    silent = [
        f"embedtune {name} {'/'.join(param.opts)}"
        for name, command in group.commands.items()
        for param in command.params
        if not (getattr(param, "help", None) or "").strip()
    ]
    assert not silent, f"no help text: {silent}"


# cli/serve.py is reworked on its own branch; its flags still show typer's <type> placeholders.
_OWN_PLACEHOLDERS = {"serve"}


def test_help_uses_one_placeholder_style():
    """Placeholders are uppercase words (DIR, N, MODEL) or [choice|choice], never typer's
    Python types such as <path> or <list[Path]>."""
    for name in sorted(set(_commands()) - _OWN_PLACEHOLDERS):
        types = re.findall(r"<[\w\[\]|,. ]+>", _help(name))
        assert not types, f"`embedtune {name} --help` shows {types}"


def test_help_shows_the_defaults_a_run_uses():
    from embedtune.config import PipelineConfig

    cfg = PipelineConfig()
    train = _help("train")
    assert re.search(rf"--batch-size N [^[]*\[default: {cfg.train.batch_size}\]", train)
    assert re.search(rf"--warmup-ratio RATIO [^[]*\[default: {cfg.train.warmup_ratio}\]", train)
    assert "--rejects / --no-rejects" in train and "[default: rejects]" in train
    generate = _help("generate")
    assert f"[default: {cfg.generate.questions_per_chunk}]" in generate
    # the judge of the generated questions defaults to the teacher ("auto"), not the base model
    assert "(default: the base model)" not in generate
    assert re.search(r"--roundtrip-model MODEL [^[]*'auto': the training teacher", generate)


def test_version_names_the_installed_release():
    from importlib.metadata import version

    from embedtune import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith(f"embedtune {__version__} (Python ")
    assert "torch " in result.output
    # the installed metadata (pyproject) and the package agree
    assert version("embedtune") == __version__


def test_help_imports_no_model_or_settings_library():
    """`embedtune --help` stays fast: torch, sentence-transformers, pydantic-settings and the
    config are imported by the commands that use them, not by the CLI's import."""
    import subprocess
    import sys

    heavy = ["torch", "sentence_transformers", "transformers", "pydantic_settings", "pydantic"]
    code = f"import sys, embedtune.cli; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_device_reaches_every_stage_for_the_command_and_no_further(monkeypatch, tmp_path):
    import embedtune.train as train_stage

    seen: list[str | None] = []

    def fake_run_train(*args, **kwargs):
        import os

        seen.append(os.environ.get("EMBEDTUNE_DEVICE"))
        raise SystemExit(0)

    monkeypatch.delenv("EMBEDTUNE_DEVICE", raising=False)
    monkeypatch.setattr(train_stage, "run_train", fake_run_train)
    (tmp_path / "data").mkdir()
    result = runner.invoke(app, ["train", "--run", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert seen == ["cpu"]  # models.default_device() reads it in every stage
    import os

    assert "EMBEDTUNE_DEVICE" not in os.environ  # restored when the command ends

    bad = runner.invoke(app, ["evaluate", "--run", str(tmp_path), "--device", "gpu"])
    assert bad.exit_code == 2
    assert "Invalid value for '--device': 'gpu' is not a device; use auto, cpu" in bad.output


def test_run_with_an_empty_docs_path_reads_nothing(tmp_path, monkeypatch):
    """`embedtune run --docs "$DOCS"` with DOCS unset: typer would read "" as the current
    folder (a home directory, say); the run refuses and names the flag instead."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "private.txt").write_text("Not a document for this run. " * 20)
    result = runner.invoke(app, ["run", "--docs", "", "--run", str(tmp_path / "runs" / "x")])
    assert result.exit_code == 2
    assert "an empty path (an unset shell variable?)" in result.output
    assert "from --docs" in result.output
    assert not (tmp_path / "runs").exists()
