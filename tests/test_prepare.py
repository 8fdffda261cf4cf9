"""The prepare stage end to end: chunk files and manifest written, bad files reported, val kept
free of training text, re-runs skip finished work, and the CLI."""

from __future__ import annotations

import json
import logging
import os

import pytest
from pdfs import PARAGRAPHS, corrupt_pdf, image_only_pdf, text_pdf
from typer.testing import CliRunner

from embedtune.cli import app
from embedtune.config import load_config
from embedtune.errors import InputError
from embedtune.ownership import mark
from embedtune.prepare import run_prepare
from embedtune.records import read_chunks

LICENCE = " ".join(
    f"Clause {i}: the licensee may copy and redistribute the work provided that this notice "
    f"and the list of conditions in section {i} are kept with every copy made."
    for i in range(1, 25)
)  # about 700 tokens shared by every document, as boilerplate is


def _docs(root, n: int = 5):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        licence = LICENCE if i != 1 else LICENCE.replace("Clause 20:", "Article 20:")
        pages = [licence] + [
            f"Document {i} part {j}. " + " ".join(PARAGRAPHS[(i + j + k) % 8] for k in range(3))
            for j in range(3)
        ]
        text_pdf(root / f"manual-{i}.pdf", pages)
    (root / "notes.md").write_text(LICENCE + "\n\n# Notes\n\n" + " ".join(PARAGRAPHS[::-1]) * 2)
    return root


def _cfg(paths, **chunk):
    return load_config(
        overrides={
            "model": "all-MiniLM-L6-v2",
            "ingest": {"paths": [str(p) for p in paths]},
            "chunk": {"chunk_size": 128, "chunk_overlap": 16, **chunk},
        }
    )


def test_prepare_writes_chunks_and_manifest_and_reports_skips(tmp_path):
    docs = _docs(tmp_path / "docs")
    corrupt_pdf(docs / "broken.pdf")
    image_only_pdf(docs / "scan.pdf")
    run = tmp_path / "run"
    summary = run_prepare(_cfg([docs]), run)

    train, val = read_chunks(run / "chunks/train.jsonl"), read_chunks(run / "chunks/val.jsonl")
    assert summary.chunks == {"train": len(train), "val": len(val)}
    assert summary.files_read == 6 and summary.skipped_by_reason == {
        "corrupt": 1,
        "no text": 1,
    }
    assert summary.documents["train"] + summary.documents["val"] == 6
    assert summary.documents["val"] == 1 and len(val) > 0
    # Split by document: no document on both sides.
    assert not {c.doc_id for c in train} & {c.doc_id for c in val}
    assert all(c.n_tokens <= 128 for c in train + val)
    # The shared licence pages must not sit on both sides.
    train_texts = {c.text for c in train}
    assert not [c for c in val if c.text in train_texts or "Clause 12:" in c.text]
    dropped = summary.dropped_duplicates
    assert dropped["exact"] + dropped["near"] >= 3 and dropped["examples"]

    manifest = json.loads((run / "chunks/manifest.json").read_text())
    assert manifest["complete"] and manifest["summary"]["chunks"] == summary.chunks
    assert manifest["config"]["chunk"]["chunk_size"] == 128
    assert {e["rel"] for e in manifest["inputs"]} >= {"manual-0.pdf", "notes.md", "scan.pdf"}
    assert all(len(e["sha256"]) == 64 for e in manifest["inputs"])
    assert "pypdfium2" in manifest["versions"]
    config = (run / "config.yaml").read_text()
    assert "chunk_size: 128" in config and str(docs) in config


def test_rerun_skips_work_until_inputs_or_settings_change(tmp_path):
    docs = _docs(tmp_path / "docs", n=3)
    run = tmp_path / "run"
    cfg = _cfg([docs])
    first = run_prepare(cfg, run)
    outputs = [run / "chunks" / n for n in ("train.jsonl", "val.jsonl", "manifest.json")]
    stamps = [p.stat().st_mtime_ns for p in outputs]

    again = run_prepare(cfg, run)
    assert again.skipped and again.chunks == first.chunks
    assert [p.stat().st_mtime_ns for p in outputs] == stamps

    assert not run_prepare(cfg, run, fresh=True).skipped
    assert not run_prepare(_cfg([docs], chunk_size=96), run).skipped  # settings changed
    assert run_prepare(_cfg([docs], chunk_size=96), run).skipped
    note = docs / "notes.md"
    note.write_text(note.read_text() + " A new closing sentence was added to the notes.")
    os.utime(note, ns=(note.stat().st_atime_ns, note.stat().st_mtime_ns + 10**9))
    assert not run_prepare(_cfg([docs], chunk_size=96), run).skipped  # input changed


def test_a_run_kept_inside_the_documents_folder_never_reads_its_own_outputs(tmp_path, caplog):
    """``--docs . --run runs/first``: the model card and report the run writes there are not
    documents, so the next prepare finds its chunks current instead of splitting anew."""
    docs = _docs(tmp_path / "docs", n=3)
    run = docs / "runs" / "first"
    cfg = _cfg([docs])
    first = run_prepare(cfg, run)
    # What training and evaluation leave in the run: a model card, an HTML report.
    mark(run / "model", "model")
    (run / "model" / "README.md").write_text("# A fine-tuned model\n\n" + LICENCE * 3)
    mark(run / "eval", "eval")
    (run / "eval" / "report.html").write_text(f"<html><body><p>{LICENCE}</p></body></html>")
    again = run_prepare(cfg, run)
    assert again.skipped and again.chunks == first.chunks and again.files_read == 4
    with caplog.at_level(logging.WARNING, logger="embedtune"):
        redone = run_prepare(cfg, run, fresh=True)
    assert redone.files_read == 4 and redone.chunks == first.chunks
    assert f"skipped {run}: a folder embedtune wrote (a run, model or report)" in caplog.text
    # A documents folder holding only a run says so rather than "it is empty".
    with pytest.raises(
        InputError, match=r"holds no .* files \(only 1 folder\(s\) embedtune wrote\)"
    ):
        run_prepare(_cfg([run.parent]), tmp_path / "other-run")


def test_one_document_warns_and_still_fills_both_splits(tmp_path):
    text_pdf(tmp_path / "only.pdf", [" ".join(PARAGRAPHS[i:] + PARAGRAPHS[:i]) for i in range(8)])
    summary = run_prepare(_cfg([tmp_path / "only.pdf"]), tmp_path / "run")
    assert summary.chunks["train"] > 0 and summary.chunks["val"] > 0
    assert any("only one document" in w for w in summary.warnings)
    val = read_chunks(tmp_path / "run/chunks/val.jsonl")
    assert min(c.page_start for c in val) >= 7  # validation is the end of the document


def test_nothing_to_read_is_an_input_error(tmp_path):
    (tmp_path / "docs").mkdir()
    with pytest.raises(InputError, match="no documents in"):
        run_prepare(_cfg([tmp_path / "docs"]), tmp_path / "run")
    with pytest.raises(InputError, match="no input documents given"):
        run_prepare(_cfg([]), tmp_path / "run")


def test_cli_prepare_end_to_end(tmp_path):
    docs = _docs(tmp_path / "docs", n=3)
    run = tmp_path / "run"
    runner = CliRunner()
    args = ["prepare", str(docs), "--run", str(run), "--model", "minilm"]
    result = runner.invoke(app, [*args, "--chunk-size", "100", "--chunk-overlap", "10"])
    assert result.exit_code == 0, result.output
    assert "chunks" in result.output and "files read" in result.output
    train = read_chunks(run / "chunks/train.jsonl")
    assert train and max(c.n_tokens for c in train) <= 100
    # The saved config remembers the paths and sizes: a bare re-run finds everything current.
    result = runner.invoke(app, ["prepare", "--run", str(run)])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output

    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["prepare", str(tmp_path / "empty"), "--run", str(run)])
    assert result.exit_code != 0 and "no documents in" in result.output
    assert "Traceback" not in result.output


def test_a_tiny_validation_split_is_called_weak_with_the_fix(tmp_path):
    docs = _docs(tmp_path / "docs")
    summary = run_prepare(_cfg([docs]), tmp_path / "run")
    assert 0 < summary.chunks["val"] < 10
    weak = [w for w in summary.warnings if "verdict will rest on a handful" in w]
    assert weak and "ingest.val_ratio (now 0.2)" in weak[0] and "add documents" in weak[0]

    cfg = _cfg([docs], chunk_size=64)  # shorter chunks: more of them
    cfg.ingest.val_ratio = 0.5
    larger = run_prepare(cfg, tmp_path / "run2")
    assert larger.chunks["val"] >= 10
    assert not [w for w in larger.warnings if "verdict will rest on a handful" in w]


def test_the_default_chunk_size_is_the_models_window_without_a_warning(tmp_path):
    from embedtune.recipe import settle

    docs = _docs(tmp_path / "docs", n=2)
    cfg = load_config(
        overrides={"model": "all-MiniLM-L6-v2", "ingest": {"paths": [str(docs)]}}, environ={}
    )
    summary = run_prepare(settle(cfg), tmp_path / "run")
    assert summary.chunking["chunk_size"] == 254  # MiniLM reads 256 tokens, 2 of them special
    assert not [w for w in summary.warnings if "capped" in w]

    chosen = settle(
        load_config(
            overrides={"model": "all-MiniLM-L6-v2", "ingest": {"paths": [str(docs)]}},
            environ={"EMBEDTUNE_CHUNK__CHUNK_SIZE": "512"},
        )
    )
    summary = run_prepare(chosen, tmp_path / "run2")
    assert summary.chunking["chunk_size"] == 254
    assert [w for w in summary.warnings if "capped to 254 tokens (chunk_size was 512)" in w]


def test_chunks_fit_the_window_the_trained_model_will_read(tmp_path):
    """`--set train.max_seq_length=512` on a MiniLM run: the model will read 512 tokens, so
    chunks are cut to 510 (not to the 254 its own window takes); 128 cuts them to 126."""
    from embedtune.recipe import settle

    docs = _docs(tmp_path / "docs", n=2)

    def chunk_lengths(train: dict, run: str) -> tuple[int, list[int], list[str]]:
        cfg = load_config(
            overrides={
                "model": "all-MiniLM-L6-v2",
                "ingest": {"paths": [str(docs)]},
                "train": train,
            },
            environ={},
        )
        summary = run_prepare(settle(cfg), tmp_path / run)
        chunks = read_chunks(tmp_path / run / "chunks/train.jsonl")
        return summary.chunking["chunk_size"], [c.n_tokens for c in chunks], summary.warnings

    size, lengths, warnings = chunk_lengths({"max_seq_length": 512}, "long")
    assert size == 510 and 254 < max(lengths) <= 510
    assert not [w for w in warnings if "capped" in w]  # the user chose it: said in config.yaml
    size, lengths, _ = chunk_lengths({"max_seq_length": 128}, "short")
    assert size == 126 and max(lengths) <= 126
