"""`embedtune push`: a model folder reaches the Hub whole, with its card; a dry run uploads nothing.

The Hub is unreachable from tests: `fake_hub.FakeHub` answers its upload API on 127.0.0.1, and
huggingface_hub's own client talks to it (HF_ENDPOINT).
"""

from __future__ import annotations

import huggingface_hub
import huggingface_hub.constants
import pytest
from fake_hub import FakeHub
from typer.testing import CliRunner

from embedtune.cli import app

runner = CliRunner()


@pytest.fixture()
def model_dir(tmp_path):
    """A folder shaped like RUN/model: config, weights, a pooling module, a card, our marker."""
    folder = tmp_path / "run" / "model"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "modules.json").write_text('[{"idx": 0, "path": "", "type": "Transformer"}]')
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 40)
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    (folder / "README.md").write_text("---\ntags:\n- embedtune\n---\n# r-manuals-minilm\n")
    (folder / ".embedtune").write_text('{"kind": "model"}')
    return folder


@pytest.fixture()
def hub(monkeypatch):
    """The stand-in Hub, with the environment of a user who set HF_TOKEN and nothing else."""
    # conftest keeps the tests offline; pushing is the one thing that must reach "the Hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)  # no saved login
    with FakeHub(token="hf_good", writable=("me",)) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", "hf_good")
        yield server


def _push(*args: str):
    return runner.invoke(app, ["push", *args])


def test_dry_run_lists_the_files_and_uploads_nothing(model_dir, hub):
    result = _push(str(model_dir), "me/r-manuals-minilm", "--dry-run")
    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.output.splitlines() if line.startswith("  ")]
    assert listed == [
        "1_Pooling/config.json",
        "README.md",
        "config.json",
        "model.safetensors",
        "modules.json",
    ]
    assert "would upload 5 files" in result.output and "/me/r-manuals-minilm" in result.output
    assert "token: from HF_TOKEN" in result.output
    assert hub.paths == []  # not one request


def test_push_uploads_the_folder_with_its_card_and_without_the_marker(model_dir, hub):
    result = _push(str(model_dir), "me/r-manuals-minilm", "--private")
    assert result.exit_code == 0, result.output
    repo = hub.repos["me/r-manuals-minilm"]
    assert repo["private"] is True
    assert set(repo["files"]) == {
        "README.md",
        "config.json",
        "model.safetensors",
        "modules.json",
        "1_Pooling/config.json",
    }
    for path, content in repo["files"].items():
        assert content == (model_dir / path).read_bytes(), path
    assert "pushed" in result.output and "/me/r-manuals-minilm/commit/" in result.output
    # pushing again updates the same repository in a new commit
    again = _push(str(model_dir), "me/r-manuals-minilm", "--message", "second try")
    assert again.exit_code == 0, again.output
    assert repo["commits"][-1] == "second try"


def test_a_rejected_token_is_one_line_naming_the_flag_and_variable(model_dir, hub):
    result = _push(str(model_dir), "me/m", "--token", "hf_wrong")
    assert result.exit_code == 2
    assert "rejected the token from --token (401)" in result.output
    assert "HF_TOKEN" in result.output and "Traceback" not in result.output


def test_no_token_anywhere_says_how_to_give_one(model_dir, hub, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    dry = _push(str(model_dir), "me/m", "--dry-run")
    assert dry.exit_code == 0 and "token: none found" in dry.output
    result = _push(str(model_dir), "me/m")
    assert result.exit_code == 2
    assert "pass --token, set HF_TOKEN, or run `hf auth login`" in result.output
    assert hub.paths == []


def test_a_namespace_the_token_cannot_write_to_is_named(model_dir, hub):
    result = _push(str(model_dir), "someone-else/m")
    assert result.exit_code == 2
    assert "may not write to" in result.output and "(403)" in result.output
    assert "someone-else" in result.output


def test_a_run_folder_is_refused_with_the_model_folder_suggested(model_dir, hub):
    result = _push(str(model_dir.parent), "me/m", "--dry-run")
    assert result.exit_code == 2
    assert "is not a model folder" in result.output
    assert f"{model_dir} is one, did you mean it?" in " ".join(result.output.split())


def test_bad_repository_ids_are_refused_before_any_request(model_dir, hub):
    result = _push(str(model_dir), "me/has space", "--dry-run")
    assert result.exit_code == 2
    assert "is not a Hub repository id" in result.output


def test_offline_mode_is_named_as_the_reason(model_dir, hub, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    result = _push(str(model_dir), "me/m")
    assert result.exit_code == 2
    assert "HF_HUB_OFFLINE" in result.output and "unset it" in result.output


def test_an_unreachable_hub_is_one_line(model_dir, hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused
    result = _push(str(model_dir), "me/m")
    assert result.exit_code == 2
    assert "could not reach the Hub at http://127.0.0.1:9" in result.output
    assert "Traceback" not in result.output
