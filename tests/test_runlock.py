"""One writer per run directory: a second process is told, at once, who holds it; a killed
holder never blocks the next run. With real processes, as a user would meet it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from pdfs import PARAGRAPHS, text_pdf

from embedtune.runlock import RunInUse, lock_run

EMBEDTUNE = [sys.executable, "-m", "embedtune"]
HOLD = """
import sys, time
from embedtune.runlock import lock_run
with lock_run(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(run: Path, stage: str = "prepare") -> subprocess.Popen:
    """Another process that holds ``run`` until it is killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run), stage], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _docs(root: Path) -> Path:
    for i in range(3):
        text_pdf(root / f"manual-{i}.pdf", [" ".join(PARAGRAPHS[i:] + PARAGRAPHS[:i])] * 3)
    return root


def test_a_second_process_is_told_who_holds_the_run_and_a_killed_holder_blocks_nothing(
    tmp_path,
):
    run = tmp_path / "run"
    docs = _docs(tmp_path / "docs")
    holder = _holder(run)
    try:
        # In this process: refused within a second, naming the holder.
        t0 = time.perf_counter()
        with pytest.raises(RunInUse) as refused, lock_run(run, "generate"):
            pass
        assert time.perf_counter() - t0 < 1.0
        assert str(refused.value) == (
            f"{run} is in use by another embedtune process (pid {holder.pid}, stage prepare, "
            f"since {json.loads((run / '.embedtune.lock.json').read_text())['since']}); wait for "
            "it to finish or use another --run"
        )
        # The command line: one line, exit code 2, and nothing written into the run.
        out = subprocess.run(
            [*EMBEDTUNE, "prepare", str(docs), "--run", str(run)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 2, out.stderr
        assert f"is in use by another embedtune process (pid {holder.pid}" in out.stderr
        assert "Traceback" not in out.stderr
        assert not (run / "config.yaml").exists() and not (run / "chunks").exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # as a crash or `kill -9` would end it
        holder.wait()
    # The OS released the dead holder's lock: the next run starts at once.
    t0 = time.perf_counter()
    with lock_run(run, "prepare"):
        assert json.loads((run / ".embedtune.lock.json").read_text())["pid"] == os.getpid()
    assert time.perf_counter() - t0 < 1.0
    assert not (run / ".embedtune.lock.json").exists()  # said only while held


def test_the_same_process_may_enter_again_and_stages_of_a_run_share_it(tmp_path):
    run = tmp_path / "run"
    with lock_run(run, "run"), lock_run(run, "prepare"), lock_run(run, "generate"):
        pass
    with lock_run(run, "evaluate"):  # released after the outermost one
        pass


def test_a_stage_on_a_missing_run_creates_no_folder_to_lock_it(tmp_path):
    with lock_run(tmp_path / "typo", "generate", create=False):
        pass
    assert not (tmp_path / "typo").exists()


def test_two_prepares_at_once_leave_one_consistent_run(tmp_path):
    """The race of issue 16: two prepares on one run. One runs; the other is told so, or runs
    after it; config.yaml always matches the chunks it sits beside."""
    run = tmp_path / "run"
    docs = _docs(tmp_path / "docs")
    procs = [
        subprocess.Popen(
            [*EMBEDTUNE, "prepare", str(docs), "--run", str(run), "--chunk-size", str(size)]
            + ["--chunk-overlap", "16"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for size in (96, 160)
    ]
    results = [(p.communicate(timeout=300)[1], p.returncode) for p in procs]
    results = [(code, err) for err, code in results]
    for code, err in results:
        assert "Traceback" not in err
        assert code == 0 or (code == 2 and "is in use by another embedtune process" in err), err
    assert any(code == 0 for code, _ in results)
    manifest = json.loads((run / "chunks" / "manifest.json").read_text())
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["chunk"]["chunk_size"] == manifest["config"]["chunk"]["chunk_size"]
    assert not list(run.rglob("*.tmp"))
