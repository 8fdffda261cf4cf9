"""embedtune never deletes or replaces a folder it did not write, whatever the flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_train_data import make_sets
from typer.testing import CliRunner

from embedtune.cli import app
from embedtune.errors import InputError
from embedtune.ownership import MARKER, check_replaceable, is_ours, mark, remove_owned


def _user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "thesis.tex").write_text("years of work", encoding="utf-8")
    return path


def _train(*args: str):
    return CliRunner().invoke(app, ["train", *args])


def test_fresh_with_a_missing_data_file_deletes_nothing(tmp_path):
    output = _user_folder(tmp_path / "some" / "folder")
    work = _user_folder(tmp_path / "some" / "folder.train")
    out = _train("--train-data", str(tmp_path / "missing.json"), "--output", str(output), "--fresh")
    assert out.exit_code == 2
    assert "missing.json" in out.output and "Traceback" not in out.output
    assert (output / "thesis.tex").read_text(encoding="utf-8") == "years of work"
    assert (work / "thesis.tex").is_file()


def test_training_into_a_folder_embedtune_did_not_write_is_refused_before_any_work(tmp_path):
    train, val = make_sets()
    train.to_json(tmp_path / "train.json")
    output = _user_folder(tmp_path / "Documents")
    out = _train(
        "--train-data",
        str(tmp_path / "train.json"),
        "--output",
        str(output),
        "--teacher",
        "none",
        "--fresh",
    )
    assert out.exit_code == 2
    assert f"{output} already exists and was not written by embedtune" in out.output
    assert "Traceback" not in out.output
    assert sorted(p.name for p in output.iterdir()) == ["thesis.tex"]
    assert not (tmp_path / "Documents.train").exists()


def test_fresh_run_with_a_misspelt_model_keeps_the_finished_model(tmp_path):
    run = tmp_path / "run"
    train, val = make_sets()
    (run / "data").mkdir(parents=True)
    train.to_json(run / "data" / "train.json")
    val.to_json(run / "data" / "val.json")
    model = run / "model"
    mark(model, "model")
    (model / "model.safetensors").write_bytes(b"finished weights")
    out = _train("--run", str(run), "--fresh", "--model", "./no-such-model", "--teacher", "none")
    assert out.exit_code == 2
    assert "no-such-model" in out.output and "Traceback" not in out.output
    assert (model / "model.safetensors").read_bytes() == b"finished weights"


def test_only_marked_empty_or_missing_folders_are_replaceable(tmp_path):
    check_replaceable(tmp_path / "missing", "--output")
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty", "--output")
    mine = tmp_path / "mine"
    mark(mine, "model")
    (mine / "weights").write_text("x", encoding="utf-8")
    assert is_ours(mine) and (mine / MARKER).is_file()
    assert remove_owned(mine, "--output") and not mine.exists()
    theirs = _user_folder(tmp_path / "theirs")
    with pytest.raises(InputError, match=r"--output .*theirs already exists and was not written"):
        remove_owned(theirs, "--output")
    assert (theirs / "thesis.tex").is_file()
    afile = tmp_path / "afile"
    afile.write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="is a file, not a folder"):
        check_replaceable(afile, "--output")


def test_a_run_folder_from_before_the_marker_is_still_recognised(tmp_path):
    work = tmp_path / "train"
    work.mkdir()
    (work / "started.json").write_text('{"key": "abc"}', encoding="utf-8")
    assert is_ours(work)
    model = tmp_path / "model"
    model.mkdir()
    (model / "modules.json").write_text("[]", encoding="utf-8")
    (model / "README.md").write_text(
        "---\ntags: [sentence-transformers, embedtune]\n---\n# Fine-tuned embedding model\n",
        encoding="utf-8",
    )
    assert is_ours(model)
