"""The CLI's help is documentation: every command explains itself with a runnable example."""

from __future__ import annotations

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


def test_help_imports_no_model_or_settings_library():
    """`embedtune --help` stays fast: torch, sentence-transformers, pydantic-settings and the
    config are imported by the commands that use them, not by the CLI's import."""
    import subprocess
    import sys

    heavy = ["torch", "sentence_transformers", "transformers", "pydantic_settings", "pydantic"]
    code = f"import sys, embedtune.cli; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
