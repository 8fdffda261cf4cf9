"""Bad input at every stage but serving (tests/test_serve_bad_input.py has the server's): the
command exits with the code a user expects (2 for an input they can fix), says so in one line
that names the file or field, shows no traceback, and leaves every file it did not write as it
was.

Each case lays out its inputs in a temporary folder and returns the command line; the table at
the end lists them by stage. Nothing here loads a model: cases that reach training or
evaluation fail on their data first, and generate talks to the fake OpenAI server with the
round-trip filter off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI
from pdfs import (
    PARAGRAPHS,
    corrupt_pdf,
    empty_file,
    encrypted_pdf,
    image_only_pdf,
    text_pdf,
    truncated_pdf,
    undecodable_text,
)
from test_ingest import deny_reading
from typer.testing import CliRunner

from embedtune.cli import app
from embedtune.config import dump_config, load_config
from embedtune.dataset import QADataset
from embedtune.generate import run_generate
from embedtune.records import Chunk, write_jsonl


@dataclass
class Env:
    """Where a case lays out its inputs: ``inputs`` is the user's folder (never changed),
    ``run`` the run directory; ``server`` the fake OpenAI server, for generate."""

    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    server: FakeOpenAI | None
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    url: str = ""  # the server's, kept when a case stops it

    @property
    def inputs(self) -> Path:
        return self.tmp / "in"

    @property
    def run(self) -> Path:
        return self.tmp / "run"

    def fill(self, text: str) -> str:
        return text.format(inputs=self.inputs, run=self.run, url=self.url)


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Env], list[str]]  # lays out the inputs; returns the command line
    code: int  # the exit code
    says: str  # one line of the output holds it ({inputs}, {run}, {url} filled in)
    kept: tuple[str, ...] = ()  # run-dir folders this command must not change (as inputs)


# ----------------------------------------------------------------------------- helpers
def _snapshot(roots: list[Path]) -> dict[str, tuple[str, ...]]:
    """Every file and link under ``roots``: content hash and mode, or where a link points."""
    out: dict[str, tuple[str, ...]] = {}
    for root in roots:
        if not root.exists() and not root.is_symlink():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                st = path.lstat()
                if path.is_symlink():
                    out[str(path)] = ("link", os.readlink(path))
                elif path.is_file():
                    with open(path, "rb") as f:  # builtins: deny_reading guards pathlib only
                        digest = hashlib.sha256(f.read()).hexdigest()
                    out[str(path)] = ("file", digest, oct(st.st_mode))
                elif not path.is_dir():
                    out[str(path)] = ("other", oct(st.st_mode))
    return out


def _lines(path: Path) -> list[bytes]:
    if not path.is_file():
        return []
    with open(path, "rb") as f:  # builtins: deny_reading guards pathlib only
        return f.read().splitlines()


def _docs(folder: Path, n: int = 3) -> Path:
    """``n`` good PDFs with distinct text: enough for a train and a validation split."""
    for i in range(n):
        pages = [f"Manual {i}, part {j}. " + " ".join(PARAGRAPHS[(i + j) % 8 :]) for j in range(3)]
        text_pdf(folder / f"manual-{i}.pdf", pages)
    return folder


def _prepare(env: Env, *paths: Path) -> list[str]:
    return ["prepare", *map(str, paths), "--run", str(env.run), "--chunk-size", "128",
            "--chunk-overlap", "16"]  # fmt: skip


def _hold_run(env: Env, stage: str = "prepare") -> None:
    """Another embedtune process writing the run, until the case is over."""
    code = (
        "import sys, time\nfrom embedtune.runlock import lock_run\n"
        "with lock_run(sys.argv[1], sys.argv[2]):\n    print('held', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(env.run), stage], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    env.cleanups.append(lambda: (proc.kill(), proc.wait()))


# ----------------------------------------------------------------------------- prepare
def p_unreadable_file_among_good(env: Env) -> list[str]:
    docs = _docs(env.inputs / "docs")
    locked = docs / "notes.md"
    locked.write_text(" ".join(PARAGRAPHS), encoding="utf-8")
    deny_reading(env.monkeypatch, locked)
    return _prepare(env, docs)


def p_only_file_unreadable(env: Env) -> list[str]:
    locked = env.inputs / "notes.md"
    locked.parent.mkdir(parents=True)
    locked.write_text(" ".join(PARAGRAPHS), encoding="utf-8")
    deny_reading(env.monkeypatch, locked)
    return _prepare(env, locked)


def p_link_loop_named_beside_a_folder(env: Env) -> list[str]:
    docs = _docs(env.inputs / "docs")
    loop = env.inputs / "loop.md"
    loop.symlink_to(loop)
    return _prepare(env, loop, docs)


def p_only_a_link_loop(env: Env) -> list[str]:
    env.inputs.mkdir()
    loop = env.inputs / "loop.md"
    loop.symlink_to(loop)
    return _prepare(env, loop)


def p_dangling_link_in_folder(env: Env) -> list[str]:
    docs = _docs(env.inputs / "docs")
    (docs / "gone.pdf").symlink_to(env.inputs / "moved.pdf")
    return _prepare(env, docs)


def p_link_loop_in_folder(env: Env) -> list[str]:
    docs = _docs(env.inputs / "docs")
    (docs / "a.md").symlink_to(docs / "b.md")
    (docs / "b.md").symlink_to(docs / "a.md")
    return _prepare(env, docs)


def p_link_to_folder_in_folder(env: Env) -> list[str]:
    docs = _docs(env.inputs / "docs")
    (docs / "again").symlink_to(docs, target_is_directory=True)
    return _prepare(env, docs)


def p_missing_path(env: Env) -> list[str]:
    env.inputs.mkdir()
    return _prepare(env, env.inputs / "nope")


def p_empty_path(env: Env) -> list[str]:
    env.inputs.mkdir()
    (env.inputs / "notes.txt").write_text("Not to be read: the path given was empty. " * 20)
    return ["prepare", "", "--run", str(env.run)]  # "$DOCS" with DOCS unset


def p_empty_folder(env: Env) -> list[str]:
    (env.inputs / "empty").mkdir(parents=True)
    return _prepare(env, env.inputs / "empty")


def p_folder_of_other_types(env: Env) -> list[str]:
    (env.inputs / "pics").mkdir(parents=True)
    (env.inputs / "pics" / "cat.png").write_bytes(b"\x89PNG\r\n")
    return _prepare(env, env.inputs / "pics")


def _one_bad(make: Callable[[Path], object], name: str) -> Callable[[Env], list[str]]:
    def build(env: Env) -> list[str]:
        docs = _docs(env.inputs / "docs")
        make(docs / name)
        return _prepare(env, docs)

    build.__name__ = f"p_{name}"
    return build


def p_every_file_bad(env: Env) -> list[str]:
    env.inputs.mkdir()
    corrupt_pdf(env.inputs / "a.pdf")
    empty_file(env.inputs / "b.md")
    return _prepare(env, env.inputs)


def p_html_with_only_a_doctype(env: Env) -> list[str]:
    docs = _docs(env.inputs / "docs")
    (docs / "blank.html").write_text(
        '<!DOCTYPE html PUBLIC "-//W3C//DTD HTML 4.01//EN">\n<html><head><title></title>'
        "</head><body><script>x()</script></body></html>",
        encoding="utf-8",
    )
    return _prepare(env, docs)


def p_a_pipe_named(env: Env) -> list[str]:
    env.inputs.mkdir()
    os.mkfifo(env.inputs / "pipe.txt")
    return _prepare(env, env.inputs / "pipe.txt")


def p_documents_too_short(env: Env) -> list[str]:
    for i in range(3):
        (env.inputs / f"n{i}.md").parent.mkdir(parents=True, exist_ok=True)
        (env.inputs / f"n{i}.md").write_text(f"Note {i}.", encoding="utf-8")
    return [*_prepare(env, env.inputs), "--val-ratio", "0.3"]


def p_run_is_a_file(env: Env) -> list[str]:
    docs = _docs(env.inputs / "docs")
    env.run.write_text("my shopping list", encoding="utf-8")
    return _prepare(env, docs)


def p_run_in_use(env: Env) -> list[str]:
    docs = _docs(env.inputs / "docs")
    _hold_run(env, "generate")
    return _prepare(env, docs)


def p_summary_of_another_version(env: Env) -> list[str]:
    """A finished prepare whose saved summary this version cannot read (a field's type changed)."""
    args = _prepare(env, _docs(env.inputs / "docs"))
    assert _invoke(args).exit_code == 0
    manifest = env.run / "chunks" / "manifest.json"
    saved = json.loads(manifest.read_text(encoding="utf-8"))
    saved["summary"]["chunks"] = 12
    manifest.write_text(json.dumps(saved), encoding="utf-8")
    return args


PREPARE = [
    Case("unreadable file among good ones", p_unreadable_file_among_good, 0,
         "skipped {inputs}/docs/notes.md: cannot be read (Permission denied); check its permissions"),
    Case("the only file unreadable", p_only_file_unreadable, 2,
         "none of the 1 input file(s) could be read: {inputs}/notes.md: cannot be read (Permission denied)"),
    Case("link loop named beside a folder", p_link_loop_named_beside_a_folder, 0,
         "skipped {inputs}/loop.md: a symbolic link loop (it leads back to itself)"),
    Case("only a link loop", p_only_a_link_loop, 2,
         "none of the 1 input file(s) could be read: {inputs}/loop.md: a symbolic link loop"),
    Case("dangling link in a folder", p_dangling_link_in_folder, 0,
         "skipped {inputs}/docs/gone.pdf: a symbolic link to {inputs}/moved.pdf, which does not exist"),
    Case("link loop in a folder", p_link_loop_in_folder, 0,
         "skipped {inputs}/docs/a.md: a symbolic link loop"),
    Case("link to a folder in a folder", p_link_to_folder_in_folder, 0,
         "skipped {inputs}/docs/again: a symbolic link to the folder {inputs}/docs, which is not followed"),
    Case("missing path", p_missing_path, 2, "{inputs}/nope does not exist; check the path"),
    Case("empty path (an unset shell variable)", p_empty_path, 2,
         "an empty path (an unset shell variable?): give a file or folder, or '.' for the "
         "current folder (got ['']) from PATHS"),
    Case("empty folder", p_empty_folder, 2, "no documents in {inputs}/empty: it holds no"),
    Case("folder of other file types", p_folder_of_other_types, 2,
         "no documents in {inputs}/pics: it holds no .htm, .html, .markdown, .md, .pdf"),
    Case("corrupt PDF", _one_bad(corrupt_pdf, "broken.pdf"), 0, "skipped {inputs}/docs/broken.pdf:"),
    Case("encrypted PDF", _one_bad(lambda p: encrypted_pdf(p, password="s3cret"), "locked.pdf"), 0,
         "skipped {inputs}/docs/locked.pdf: encrypted"),
    Case("scanned PDF without text", _one_bad(image_only_pdf, "scan.pdf"), 0,
         "skipped {inputs}/docs/scan.pdf: no text layer"),
    Case("truncated PDF", _one_bad(truncated_pdf, "cut.pdf"), 0, "skipped {inputs}/docs/cut.pdf:"),
    Case("empty file", _one_bad(empty_file, "empty.md"), 0,
         "skipped {inputs}/docs/empty.md: empty file"),
    Case("text in an unknown encoding", _one_bad(undecodable_text, "odd.txt"), 0,
         "skipped {inputs}/docs/odd.txt: not text in UTF-8, UTF-16 or Windows-1252"),
    Case("every file bad", p_every_file_bad, 2, "none of the 2 input file(s) could be read:"),
    Case("HTML with nothing visible", p_html_with_only_a_doctype, 0,
         "skipped {inputs}/docs/blank.html: no visible text"),
    Case("a pipe named as a document", p_a_pipe_named, 2,
         "{inputs}/pipe.txt: not a regular file or folder (a pipe, socket or device)"),
    Case("documents too short to chunk", p_documents_too_short, 2,
         "no training chunks: the 2 training document(s) hold fewer than chunk.min_chunk_tokens"),
    Case("--run is a file", p_run_is_a_file, 2, "--run {run} is a file, not a folder"),
    Case("saved summary of another version", p_summary_of_another_version, 0,
         "{run}/chunks/manifest.json: the saved summary cannot be read (chunks: Input should be a "
         "valid dictionary); preparing the chunks again"),
    Case("run in use by another process", p_run_in_use, 2,
         "{run} is in use by another embedtune process (pid"),
]  # fmt: skip


# ---------------------------------------------------------------------------- generate
TOPICS = [
    "The lm function fits linear regression models from a formula and a data frame.",
    "install.packages downloads packages from CRAN mirrors and installs them locally.",
    "Factors store categorical variables; levels returns the categories of a factor.",
]


def _chunked(env: Env, **generate: object) -> Path:
    """A run as prepare leaves it (chunks, config.yaml), set to ask the fake server, with the
    round-trip filter off (it would load a model)."""
    env.inputs.mkdir(parents=True, exist_ok=True)
    chunks = [
        Chunk(id=f"c{i}", doc_id="d", text=t, n_tokens=12, page_start=1, page_end=1)
        for i, t in enumerate(TOPICS)
    ]
    write_jsonl(env.run / "chunks" / "train.jsonl", chunks[:2])
    write_jsonl(env.run / "chunks" / "val.jsonl", chunks[2:])
    cfg = load_config(
        overrides={
            "generate": {"base_url": env.url, "model": "fake-model", **generate},
        },
        environ={},
    )
    cfg.generate.roundtrip_top_k = None
    (env.run / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
    return env.run


def _generate(env: Env, *more: str) -> list[str]:
    return ["generate", "--run", str(env.run), *more]


def _cached(env: Env) -> Path:
    """A run whose replies are cached already; returns the training split's cache file."""
    cfg = load_config(env.run / "config.yaml", environ={})
    run_generate(cfg, env.run)
    return env.run / "generate" / "cache" / "train.jsonl"


def _damage(row_change: Callable[[dict], object]) -> Callable[[Env], list[str]]:
    """A cached row rewritten by ``row_change`` (its return value replaces the row's line)."""

    def build(env: Env) -> list[str]:
        _chunked(env)
        cache = _cached(env)
        lines = cache.read_text(encoding="utf-8").splitlines(keepends=True)
        new = row_change(json.loads(lines[0]))
        lines[0] = new if isinstance(new, str) else json.dumps(new) + "\n"
        cache.write_text("".join(lines), encoding="utf-8")
        return _generate(env)

    return build


def g_torn_last_line(env: Env) -> list[str]:
    _chunked(env)
    cache = _cached(env)
    data = cache.read_bytes()
    cache.write_bytes(data[: len(data) - 20])  # killed mid-write
    return _generate(env)


def g_binary_line(env: Env) -> list[str]:
    _chunked(env)
    cache = _cached(env)
    cache.write_bytes(b"\xff\xfe\x00garbage\n" + cache.read_bytes())
    return _generate(env)


def g_cache_unreadable(env: Env) -> list[str]:
    _chunked(env)
    deny_reading(env.monkeypatch, _cached(env))
    return _generate(env)


def g_no_chunks(env: Env) -> list[str]:
    env.inputs.mkdir()
    env.run.mkdir()
    return _generate(env, "--base-url", env.url, "--model", "fake-model")


def _chunks_file(text: str | bytes) -> Callable[[Env], list[str]]:
    def build(env: Env) -> list[str]:
        _chunked(env)
        path = env.run / "chunks" / "train.jsonl"
        if isinstance(text, bytes):
            path.write_bytes(path.read_bytes() + text)
        else:
            path.write_text(text, encoding="utf-8")
        return _generate(env)

    return build


def g_refused(env: Env) -> list[str]:
    _chunked(env)
    env.server.stop()  # nothing listens at its address any more
    return _generate(env)


def g_not_an_openai_server(env: Env) -> list[str]:
    """--base-url at a plain web server (a web UI's address, a typo'd port): POST gets 501."""
    _chunked(env)
    web = ThreadingHTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    env.cleanups.append(lambda: (web.shutdown(), web.server_close()))
    env.url = f"http://127.0.0.1:{web.server_address[1]}/v1"
    return _generate(env, "--base-url", env.url)


def g_wrong_key(env: Env) -> list[str]:
    _chunked(env)
    env.server.api_key = "sk-right"
    env.monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    return _generate(env)


def g_unknown_model(env: Env) -> list[str]:
    _chunked(env)
    env.server.models = ("fake-model",)
    return _generate(env, "--model", "no-such-model")


def g_writer_unknown(env: Env) -> list[str]:
    _chunked(env)
    return _generate(env, "--backend", "local", "--local-model", "gemma-7b")


def g_writer_file_missing(env: Env) -> list[str]:
    _chunked(env)
    return _generate(env, "--backend", "local", "--local-model", str(env.inputs / "w.gguf"))


def g_writer_not_gguf(env: Env) -> list[str]:
    _chunked(env)
    (env.inputs / "w.gguf").write_bytes(b"not a model")
    return _generate(env, "--backend", "local", "--local-model", str(env.inputs / "w.gguf"))


def g_prompt_missing(env: Env) -> list[str]:
    _chunked(env)
    return _generate(env, "--prompt-file", str(env.inputs / "prompt.txt"))


def g_prompt_without_placeholders(env: Env) -> list[str]:
    _chunked(env)
    (env.inputs / "prompt.txt").write_text("Write questions.", encoding="utf-8")
    return _generate(env, "--prompt-file", str(env.inputs / "prompt.txt"))


def g_prompt_not_utf8(env: Env) -> list[str]:
    _chunked(env)
    (env.inputs / "prompt.txt").write_bytes(
        "Fragen über {context} {num_questions}".encode("cp1252")
    )
    return _generate(env, "--prompt-file", str(env.inputs / "prompt.txt"))


def g_openai_without_model(env: Env) -> list[str]:
    env.inputs.mkdir()
    _chunked(env)
    (env.run / "config.yaml").unlink()
    return _generate(env, "--backend", "openai")


def g_run_in_use(env: Env) -> list[str]:
    _chunked(env)
    _hold_run(env, "train")
    return _generate(env)


def g_report_of_another_version(env: Env) -> list[str]:
    """A finished generate whose report lacks a field this version needs."""
    _chunked(env)
    _cached(env)
    report = env.run / "generate" / "report.json"
    saved = json.loads(report.read_text(encoding="utf-8"))
    report.write_text(json.dumps({k: v for k, v in saved.items() if k != "backend"}))
    return _generate(env)


CACHE = "{run}/generate/cache/train.jsonl"
SET_ASIDE = CACHE + ": set aside 1 row(s) that were not replies (torn or wrong types) in " + CACHE
SET_ASIDE += ".set-aside; their calls will be made again"
CHUNKS = "{run}/chunks/train.jsonl"
GENERATE = [
    Case("cache row with a number for text", _damage(lambda r: {**r, "text": 12345}), 0,
         SET_ASIDE, ("chunks",)),
    Case("cache row with null text", _damage(lambda r: {**r, "text": None}), 0, SET_ASIDE,
         ("chunks",)),
    Case("cache row without a key", _damage(lambda r: {k: v for k, v in r.items() if k != "key"}),
         0, SET_ASIDE, ("chunks",)),
    Case("cache row that is a JSON list", _damage(lambda r: [r["key"], r["text"]]), 0, SET_ASIDE,
         ("chunks",)),
    Case("cache row with usage of the wrong type", _damage(lambda r: {**r, "usage": "lots"}), 0,
         SET_ASIDE, ("chunks",)),
    Case("cache row with attempts of the wrong type", _damage(lambda r: {**r, "attempts": [1]}),
         0, SET_ASIDE, ("chunks",)),
    Case("cache row cut in the middle", _damage(lambda r: json.dumps(r)[:30] + "\n"), 0,
         SET_ASIDE, ("chunks",)),
    Case("cache torn by a kill mid-write", g_torn_last_line, 0, SET_ASIDE, ("chunks",)),
    Case("cache line of binary bytes", g_binary_line, 0, SET_ASIDE, ("chunks",)),
    Case("cache file unreadable", g_cache_unreadable, 2,
         "the reply cache " + CACHE + " cannot be read (Permission denied)", ("chunks",)),
    Case("no chunks: prepare never ran", g_no_chunks, 2,
         CHUNKS + " not found: run 'embedtune prepare DOCS --run {run}' first"),
    Case("chunks file not JSON", _chunks_file(b"{not json\n"), 2,
         CHUNKS + ":3 is not valid JSON", ("chunks",)),
    Case("chunks file not UTF-8", _chunks_file(b'{"id": "caf\xe9"}\n'), 2,
         CHUNKS + ":3 is not UTF-8 text; convert the file to UTF-8", ("chunks",)),
    Case("chunk row with a number for text",
         _chunks_file('{"id": "c0", "doc_id": "d", "text": 42, "n_tokens": 1, "page_start": 1, '
                      '"page_end": 1}\n'),
         2, CHUNKS + ": row 1 is not a chunk", ("chunks",)),
    Case("chunk row missing fields", _chunks_file('{"id": "c0"}\n'), 2,
         CHUNKS + ": row 1 is not a chunk", ("chunks",)),
    Case("chunk row that is a list", _chunks_file("[1, 2]\n"), 2,
         CHUNKS + ":1 is a JSON list, not an object", ("chunks",)),
    Case("no training chunks", _chunks_file(""), 2, CHUNKS + " holds no chunks", ("chunks",)),
    Case("server refuses the connection", g_refused, 2,
         "the server at {url} refused the connection: is it running?", ("chunks",)),
    Case("a web server that is not OpenAI-compatible", g_not_an_openai_server, 2,
         "the server at {url} does not serve chat completions (501): is it an OpenAI-compatible "
         "server?", ("chunks",)),
    Case("server rejects the API key", g_wrong_key, 2,
         "the server at {url} rejected the API key for model 'fake-model' (401 Unauthorized)",
         ("chunks",)),
    Case("model unknown to the server", g_unknown_model, 2,
         "model 'no-such-model' was not found at {url} (404)", ("chunks",)),
    Case("offline writer unknown", g_writer_unknown, 2,
         "generate.local_model: 'gemma-7b' is neither a known offline writer (smollm2, "
         "gemma3-270m) nor a GGUF file", ("chunks",)),
    Case("offline writer's GGUF file missing", g_writer_file_missing, 2,
         "generate.local_model: {inputs}/w.gguf not found; give the path to a .gguf file",
         ("chunks",)),
    Case("offline writer's file is not a GGUF model", g_writer_not_gguf, 2,
         "generate.local_model: {inputs}/w.gguf cannot be loaded as a GGUF language model",
         ("chunks",)),
    Case("prompt file missing", g_prompt_missing, 2,
         "generate.prompt_file {inputs}/prompt.txt not found", ("chunks",)),
    Case("prompt file without placeholders", g_prompt_without_placeholders, 2,
         "prompt template {inputs}/prompt.txt lacks the placeholder(s) {{context}}, "
         "{{num_questions}}", ("chunks",)),
    Case("prompt file not UTF-8", g_prompt_not_utf8, 2,
         "generate.prompt_file {inputs}/prompt.txt cannot be read as UTF-8 text", ("chunks",)),
    Case("openai backend without a model", g_openai_without_model, 2,
         "generate.model is not set: name the model to call", ("chunks",)),
    Case("report of another version", g_report_of_another_version, 0,
         "{run}/generate/report.json: the saved summary cannot be read (backend: Field required); "
         "filtering the cached questions again (no new call)", ("chunks",)),
    Case("run in use by another process", g_run_in_use, 2,
         "{run} is in use by another embedtune process (pid", ("chunks",)),
]  # fmt: skip


# ------------------------------------------------------------------------------- train
def _dataset_json(env: Env, name: str, obj: object | bytes) -> Path:
    path = env.inputs / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, bytes):
        path.write_bytes(obj)
    else:
        path.write_text(json.dumps(obj), encoding="utf-8")
    return path


GOOD = {
    "queries": {"q1": "What does lm fit?", "q2": "Where do packages come from?"},
    "corpus": {"c1": TOPICS[0], "c2": TOPICS[1]},
    "relevant_docs": {"q1": ["c1"], "q2": ["c2"]},
}


def _train_on(obj: object | bytes) -> Callable[[Env], list[str]]:
    def build(env: Env) -> list[str]:
        data = _dataset_json(env, "train.json", obj)
        out = env.tmp / "out" / "model"
        return ["train", "--train-data", str(data), "--output", str(out), "--teacher", "none"]

    return build


def t_missing_data(env: Env) -> list[str]:
    env.inputs.mkdir()
    return ["train", "--train-data", str(env.inputs / "nope.json"), "--output", str(env.tmp / "m")]


def t_output_is_a_user_folder(env: Env) -> list[str]:
    data = _dataset_json(env, "train.json", GOOD)
    thesis = env.inputs / "Documents"
    thesis.mkdir()
    (thesis / "thesis.tex").write_text("years of work", encoding="utf-8")
    return ["train", "--train-data", str(data), "--output", str(thesis), "--teacher", "none"]


def t_missing_model(env: Env) -> list[str]:
    data = _dataset_json(env, "train.json", GOOD)
    out = env.tmp / "out" / "model"
    return ["train", "--train-data", str(data), "--output", str(out), "--teacher", "none",
            "--model", str(env.inputs / "no-such-model")]  # fmt: skip


def t_run_without_data(env: Env) -> list[str]:
    env.inputs.mkdir()
    env.run.mkdir()
    return ["train", "--run", str(env.run), "--teacher", "none"]


def t_beir_empty_qrels(env: Env) -> list[str]:
    beir = _beir(env, qrels="query-id\tcorpus-id\tscore\n")
    return ["train", "--train-data", str(beir), "--output", str(env.tmp / "m"), "--teacher", "none"]


def t_run_in_use(env: Env) -> list[str]:
    env.inputs.mkdir()
    env.run.mkdir()
    QADataset(**GOOD).to_json(env.run / "data" / "train.json")
    _hold_run(env, "evaluate")
    return ["train", "--run", str(env.run), "--teacher", "none"]


def t_torn_rejects(env: Env) -> list[str]:
    env.inputs.mkdir()
    QADataset(**GOOD).to_json(env.run / "data" / "train.json")
    (env.run / "data" / "train_rejects.json").write_text('{"queries": {', encoding="utf-8")
    return ["train", "--run", str(env.run), "--teacher", "all-MiniLM-L6-v2"]


def t_device_unknown(env: Env) -> list[str]:
    return [*_train_on(GOOD)(env), "--device", "gpu"]


def t_device_missing(env: Env) -> list[str]:
    env.monkeypatch.setenv("EMBEDTUNE_DEVICE", "cuda:7")  # no GPU here, or fewer than 8
    return _train_on(GOOD)(env)


TRAIN_JSON = "{inputs}/train.json"
TRAIN = [
    Case("training data missing", t_missing_data, 2, "{inputs}/nope.json not found"),
    Case("training data not JSON", _train_on(b'{"queries": '), 2, TRAIN_JSON + " is not valid JSON"),
    Case("training data not UTF-8", _train_on('{"queries": {"q": "caf\xe9"}}'.encode("cp1252")), 2,
         TRAIN_JSON + " is not UTF-8 text"),
    Case("training data missing relevant_docs",
         _train_on({k: v for k, v in GOOD.items() if k != "relevant_docs"}), 2,
         TRAIN_JSON + " is not an EmbeddingQAFinetuneDataset JSON: missing relevant_docs"),
    Case("training corpus text a number", _train_on({**GOOD, "corpus": {"c1": 42, "c2": "x"}}), 2,
         TRAIN_JSON + ": field 'corpus.c1': Input should be a valid string"),
    Case("training queries a list", _train_on({**GOOD, "queries": ["q1"]}), 2,
         TRAIN_JSON + ": field 'queries': Input should be a valid dictionary"),
    Case("relevant doc not in the corpus",
         _train_on({**GOOD, "relevant_docs": {"q1": ["c9"], "q2": ["c2"]}}), 2,
         TRAIN_JSON + ": query 'q1' points to corpus id 'c9', which is not in the corpus"),
    Case("no training queries", _train_on({**GOOD, "queries": {}, "relevant_docs": {}}), 2,
         TRAIN_JSON + " has no queries"),
    Case("an empty query", _train_on({**GOOD, "queries": {"q1": " ", "q2": "Where?"}}), 2,
         TRAIN_JSON + ": query 'q1' is empty"),
    Case("output is a folder embedtune did not write", t_output_is_a_user_folder, 2,
         "the output folder {inputs}/Documents already exists and was not written by embedtune"),
    Case("base model missing", t_missing_model, 2, "{inputs}/no-such-model"),
    Case("a device torch does not know", t_device_unknown, 2,
         "Invalid value for '--device': 'gpu' is not a device; use auto, cpu, cuda, cuda:N or mps"),
    Case("EMBEDTUNE_DEVICE names a GPU the machine lacks", t_device_missing, 2,
         "EMBEDTUNE_DEVICE: 'cuda:7' asks for "),
    Case("run without generated data", t_run_without_data, 2,
         "{run}/data/train.json not found; run `embedtune generate --run {run}` first"),
    Case("BEIR training set with empty qrels", t_beir_empty_qrels, 2,
         "no relevance judgements (qrels) in {inputs}/beir/qrels/test.tsv"),
    Case("torn rejects file", t_torn_rejects, 2,
         "{run}/data/train_rejects.json is not a llama-index JSON file", ("data",)),
    Case("run in use by another process", t_run_in_use, 2,
         "{run} is in use by another embedtune process (pid", ("data",)),
]  # fmt: skip


# ---------------------------------------------------------------------------- evaluate
def _beir(
    env: Env,
    *,
    corpus: str | bytes | None = None,
    queries: str | bytes | None = None,
    qrels: str | bytes | None = "query-id\tcorpus-id\tscore\nq1\tc1\t1\nq2\tc2\t1\n",
) -> Path:
    folder = env.inputs / "beir"
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    good_corpus = "".join(
        json.dumps({"_id": f"c{i}", "title": "", "text": t}) + "\n" for i, t in enumerate(TOPICS, 1)
    )
    good_queries = '{"_id": "q1", "text": "What does lm fit?"}\n{"_id": "q2", "text": "CRAN?"}\n'
    for name, value in (
        ("corpus.jsonl", corpus or good_corpus),
        ("queries.jsonl", queries or good_queries),
        ("qrels/test.tsv", qrels),
    ):
        if value is None:
            continue
        path = folder / name
        if isinstance(value, bytes):
            path.write_bytes(value)
        else:
            path.write_text(value, encoding="utf-8")
    return folder


def _evaluate(**beir: str | bytes | None) -> Callable[[Env], list[str]]:
    def build(env: Env) -> list[str]:
        folder = _beir(env, **beir)
        return ["evaluate", "--model", "minilm", "--data", str(folder), "--output",
                str(env.tmp / "report")]  # fmt: skip

    return build


def _evaluate_json(obj: object | bytes) -> Callable[[Env], list[str]]:
    def build(env: Env) -> list[str]:
        path = _dataset_json(env, "val.json", obj)
        return ["evaluate", "--model", "minilm", "--data", str(path), "--output",
                str(env.tmp / "report")]  # fmt: skip

    return build


def e_output_is_a_user_folder(env: Env) -> list[str]:
    folder = _beir(env)
    notes = env.inputs / "notes"
    notes.mkdir()
    (notes / "report.md").write_text("my own report", encoding="utf-8")
    return ["evaluate", "--model", "minilm", "--data", str(folder), "--output", str(notes)]


def e_missing_data(env: Env) -> list[str]:
    env.inputs.mkdir()
    return ["evaluate", "--model", "minilm", "--data", str(env.inputs / "nope")]


def e_run_without_data(env: Env) -> list[str]:
    env.inputs.mkdir()
    env.run.mkdir()
    return ["evaluate", "--run", str(env.run)]


def e_run_in_use(env: Env) -> list[str]:
    env.inputs.mkdir()
    QADataset(**GOOD).to_json(env.run / "data" / "val.json")
    _hold_run(env, "train")
    return ["evaluate", "--run", str(env.run)]


def e_run_extra_set_missing(env: Env) -> list[str]:
    env.inputs.mkdir()
    QADataset(**GOOD).to_json(env.run / "data" / "val.json")
    return ["evaluate", "--run", str(env.run), "--data", str(env.inputs / "gone")]


QUERIES, CORPUS_F = "{inputs}/beir/queries.jsonl", "{inputs}/beir/corpus.jsonl"
QRELS = "{inputs}/beir/qrels/test.tsv"
EVALUATE = [
    Case("queries not UTF-8", _evaluate(queries='{"_id": "q1", "text": "caf\xe9"}\n'.encode("cp1252")),
         2, QUERIES + ":1 is not UTF-8 text; convert the file to UTF-8"),
    Case("corpus text a number", _evaluate(corpus='{"_id": "c1", "text": 42}\n'), 2,
         CORPUS_F + ": line 1: 'text' must be a string, not int (42)"),
    Case("corpus title a list", _evaluate(corpus='{"_id": "c1", "title": ["a"], "text": "x"}\n'),
         2, CORPUS_F + ": line 1: 'title' must be a string, not list"),
    Case("query text null", _evaluate(queries='{"_id": "q1", "text": null}\n'), 2,
         QUERIES + ": line 1: 'text' must be a string, not null"),
    Case("corpus row without an id", _evaluate(corpus='{"text": "x"}\n'), 2,
         CORPUS_F + ": line 1 needs '_id' and 'text'"),
    Case("corpus line not JSON", _evaluate(corpus='{"_id": "c1", "text": "x"\n'), 2,
         CORPUS_F + ":1 is not valid JSON"),
    Case("corpus row a JSON string", _evaluate(corpus='"just text"\n'), 2,
         CORPUS_F + ":1 is a JSON str, not an object"),
    Case("empty qrels", _evaluate(qrels="query-id\tcorpus-id\tscore\n"), 2,
         "no relevance judgements (qrels) in " + QRELS),
    Case("qrels of unknown queries", _evaluate(qrels="x1\tc1\t1\n"), 2,
         "none of the 1 queries judged in " + QRELS + " is in " + QUERIES),
    Case("qrels score not a number", _evaluate(qrels="q1\tc1\thigh\n"), 2,
         QRELS + ":1: score 'high' is not a number"),
    Case("qrels line too short", _evaluate(qrels="q1 c1 1\n"), 2,
         QRELS + ":1: expected query-id, corpus-id, score"),
    Case("qrels not UTF-8", _evaluate(qrels="q1\tc\xe91\t1\n".encode("cp1252")), 2,
         QRELS + " is not UTF-8 text"),
    Case("qrels naming a passage not in the corpus", _evaluate(qrels="q1\tc9\t1\n"), 2,
         "query 'q1' points to corpus id 'c9', which is not in the corpus"),
    Case("no qrels folder", _evaluate(qrels=None), 2,
         "{inputs}/beir is not a BEIR folder: no qrels/<split>.tsv"),
    Case("llama-index JSON not UTF-8", _evaluate_json('{"queries": {"q": "\xe9"}}'.encode("cp1252")),
         2, "{inputs}/val.json is not UTF-8 text"),
    Case("llama-index JSON a list", _evaluate_json([GOOD]), 2,
         "{inputs}/val.json: expected a JSON object with queries, corpus, relevant_docs"),
    Case("llama-index corpus text a number", _evaluate_json({**GOOD, "corpus": {"c1": 42, "c2": "x"}}),
         2, "{inputs}/val.json: field 'corpus.c1': Input should be a valid string"),
    Case("evaluation data missing", e_missing_data, 2, "{inputs}/nope not found"),
    Case("report folder embedtune did not write", e_output_is_a_user_folder, 2,
         "the report folder {inputs}/notes already exists and was not written by embedtune"),
    Case("run without generated data", e_run_without_data, 2,
         "{run}/data/val.json not found: generate questions first"),
    Case("run's extra evaluation set missing", e_run_extra_set_missing, 2,
         "evaluate.data: {inputs}/gone not found", ("data",)),
    Case("run in use by another process", e_run_in_use, 2,
         "{run} is in use by another embedtune process (pid", ("data",)),
]  # fmt: skip

STAGES = {"prepare": PREPARE, "generate": GENERATE, "train": TRAIN, "evaluate": EVALUATE}
CASES = [pytest.param(stage, case, id=f"{stage}: {case.name}") for stage, cases in STAGES.items()
         for case in cases]  # fmt: skip


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch):
    from embedtune.generate import client

    monkeypatch.setattr(client, "INITIAL_DELAY", 0.01)


def _invoke(args: list[str]):
    """The command as a user's terminal shows it: library warnings reach the console (pytest's
    own log capture would take them), and lines are not wrapped at 80 columns."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()
    try:
        return CliRunner(env={"COLUMNS": "1000", "NO_COLOR": "1"}).invoke(app, args)
    finally:
        root.handlers[:] = saved


@pytest.mark.parametrize("stage, case", CASES)
def test_bad_input(stage, case, tmp_path, monkeypatch):
    with FakeOpenAI() if stage == "generate" else nullcontext() as server:
        env = Env(tmp_path, monkeypatch, server, url=server.url if server else "")
        try:
            args = case.build(env)
            assert args[0] == stage
            kept = [env.inputs, *(env.run / k for k in case.kept)]
            before = _snapshot(kept)
            cache = env.run / "generate" / "cache" / "train.jsonl"
            cached = _lines(cache)
            result = _invoke(args)
        finally:
            for cleanup in env.cleanups:
                cleanup()
    output = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    assert "Traceback" not in output
    assert result.exit_code == case.code, output
    says = env.fill(case.says)
    assert any(says in line for line in output.splitlines()), f"{says!r} not in:\n{output}"
    assert _snapshot(kept) == before, "a file the command did not write was changed or lost"
    if cached:  # every cached reply is still in the cache, or set aside beside it
        aside = cache.with_name(cache.name + ".set-aside")
        now = _lines(cache) + _lines(aside)
        assert {line for line in cached if line.strip()} <= set(now)


def test_the_suite_covers_every_stage_but_serving_with_forty_cases_or_more():
    counts = {stage: len(cases) for stage, cases in STAGES.items()}
    assert sum(counts.values()) >= 40 and min(counts.values()) >= 10, counts
