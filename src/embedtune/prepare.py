"""The prepare stage: documents in, train and validation chunks out.

Reads ``cfg.ingest.paths`` (files and folders), splits the documents into train and validation
sets by document, chunks both with the model's tokenizer, drops validation chunks that repeat
training text, and writes::

    RUN/config.yaml                 the settled config of the run (embedtune.recipe.settle)
    RUN/chunks/train.jsonl          one Chunk a line
    RUN/chunks/val.jsonl
    RUN/chunks/val_headings.json    the validation documents' headings as queries, each with its
                                    section's body (llama-index JSON; ingest/headings.py), when
                                    they have at least 10 usable headings
    RUN/chunks/manifest.json        key, inputs (path, size, mtime, sha256), settings, counts,
                                    skipped files, dropped duplicates, library versions

A second run with the same inputs and settings reads the manifest and returns at once: input
files are recognised by path, size and modification time (their SHA-256 is hashed only when one
of those changed), and the key covers their hashes, the ingest, chunk and model settings and
the extractor's version. ``fresh=True`` redoes the work anyway::

    >>> from embedtune.config import load_config
    >>> cfg = load_config(overrides={"ingest": {"paths": ["docs/"]}})
    >>> summary = run_prepare(cfg, Path("runs/first"))                  # doctest: +SKIP
    >>> summary.chunks                                                  # doctest: +SKIP
    {'train': 1843, 'val': 412}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from embedtune.artifacts import (
    StageResult,
    is_current,
    read_manifest,
    stage_key,
    write_manifest,
)
from embedtune.chunk import Chunker
from embedtune.config import ChunkConfig, PipelineConfig, dump_config
from embedtune.dataset import MIN_HELD_OUT_QUERIES
from embedtune.errors import InputError
from embedtune.ingest import (
    DocumentSplit,
    LoadResult,
    drop_leaked_chunks,
    file_sha256,
    find_files,
    load_documents,
    split_documents,
)
from embedtune.ingest.headings import headings_dataset
from embedtune.layout import SPLITS, RunLayout
from embedtune.recipe import settle
from embedtune.records import Chunk, Document, write_jsonl, write_text_atomic
from embedtune.runlock import holds_run

__all__ = ["PrepareSummary", "run_prepare", "write_run_config", "PREPARE_VERSION"]

#: Below this many validation chunks (about twice as many generated questions), the bootstrap
#: intervals of the evaluation are too wide for a verdict worth the name: prepare says so.
FEW_VAL_CHUNKS = 10

log = logging.getLogger("embedtune.prepare")

# Bump when extraction, normalisation or chunking changes what they write for the same input.
PREPARE_VERSION = "3"  # 2: writes val_headings.json; 3: HTML without its doctype, HTML headings
_KEY_LIBS = ("pypdfium2", "beautifulsoup4", "tokenizers", "transformers")


def write_run_config(cfg: PipelineConfig, run_dir: Path) -> Path:
    """Write ``RUN/config.yaml`` (the settled config); an identical file is left untouched."""
    path = RunLayout(run_dir).config
    text = dump_config(cfg, "embedtune prepare")
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        write_text_atomic(path, text)
    return path


def _versions() -> dict[str, str]:
    out = {}
    for lib in _KEY_LIBS:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            continue
    return out


def _inputs(cfg: PipelineConfig, previous: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every input file with size, mtime and SHA-256, reusing the previous run's hash of a file
    whose path, size and mtime are unchanged. A file that cannot be read has no hash here: the
    loader names it and skips it."""
    files, _ = find_files(cfg.ingest.paths, cfg.ingest.extensions)
    known = {e["path"]: e for e in (previous or {}).get("inputs", []) if isinstance(e, dict)}
    out = []
    for src in files:
        entry: dict[str, Any] = {"path": str(src.path), "rel": src.rel, "sha256": None}
        out.append(entry)
        if src.problem is not None:
            continue
        try:
            st = src.path.stat()
            entry.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
            old = known.get(entry["path"])
            if old and old.get("size") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns:
                entry["sha256"] = old.get("sha256")
            else:
                entry["sha256"] = file_sha256(src.path)
        except OSError:
            entry["sha256"] = None  # unreadable (permissions, gone): load_documents says so
    return out


class SkippedFile(BaseModel):
    path: str
    reason: str


class PrepareSummary(StageResult):
    """What prepare read, split and cut: counts per split (``train``, ``val``), the files it
    skipped and why, the validation chunks dropped as repeats of training text, the chunk
    settings, warnings and timings."""

    files_read: int = 0
    files_skipped: int = 0
    skipped_by_reason: dict[str, int] = {}
    skipped_files: list[SkippedFile] = []
    files_ignored: int = 0
    pages: int = 0
    chars: int = 0
    documents: dict[str, int] = {}
    documents_by_split: dict[str, list[str]] = {}
    chunks: dict[str, int] = {}
    tokens: dict[str, int] = {}
    dropped_duplicates: dict[str, Any] = {}
    dropped_short_chunks: int = 0
    headings: dict[str, Any] | None = None
    chunking: dict[str, Any] = {}
    warnings: list[str] = []
    seconds: dict[str, float] = {}


@holds_run("prepare", create=True)
def run_prepare(cfg: PipelineConfig, run_dir: Path, *, fresh: bool = False) -> PrepareSummary:
    """Load, split, chunk and de-duplicate ``cfg.ingest.paths`` into ``RUN/chunks``.

    Returns the summary a user reads (``skipped`` when the previous run's files were current
    and reused). Raises InputError when there is nothing usable (no paths, a missing path, an
    empty folder, no readable file, or no chunk long enough), RunInUse when another process is
    writing ``run_dir``.
    """
    t0 = time.perf_counter()
    run = RunLayout(run_dir)
    cfg = settle(cfg)
    write_run_config(cfg, run.root)
    previous = read_manifest(run.chunks_dir)
    inputs = _inputs(cfg, previous)
    key = stage_key(
        "prepare",
        version=PREPARE_VERSION,
        model=cfg.model,
        ingest=cfg.ingest.model_dump(mode="json", exclude={"paths"}),
        chunk=cfg.chunk,
        inputs=[(e["path"], e["sha256"]) for e in inputs],
        libraries=_versions(),
    )
    done = all(run.chunks_file(s).is_file() for s in SPLITS)
    if not fresh and done and is_current(run.chunks_dir, key) and previous:
        seconds = {"total": round(time.perf_counter() - t0, 3)}
        saved = PrepareSummary.read_back(
            previous.get("summary"),
            run.chunks_dir / "manifest.json",
            redo="preparing the chunks again",
            seconds=seconds,
        )
        if saved is not None:
            log.debug("chunks in %s are up to date; nothing to do (pass --fresh to redo)", run)
            return saved

    summary = _Preparation(cfg, run).run(inputs)
    summary.seconds["total"] = round(time.perf_counter() - t0, 3)
    config = {k: cfg.model_dump(mode="json")[k] for k in ("model", "ingest", "chunk")}
    write_manifest(
        run.chunks_dir,
        key,
        {
            "stage": "prepare",
            "config": config,
            "inputs": inputs,
            "libraries": _versions(),
            "summary": summary.to_json(),
        },
    )
    return summary


class _Preparation:
    """The work of one prepare: each step timed into ``seconds``, warnings collected."""

    def __init__(self, cfg: PipelineConfig, run: RunLayout) -> None:
        self.cfg = cfg
        self.run_layout = run
        self.warnings: list[str] = []
        self.seconds: dict[str, float] = {}

    @contextmanager
    def _timed(self, step: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.seconds[step] = round(time.perf_counter() - t0, 3)

    def run(self, inputs: list[dict[str, Any]]) -> PrepareSummary:
        with self._timed("load"):
            loaded = self.load(inputs)
        split = split_documents(loaded.documents, self.cfg.ingest.val_ratio, self.cfg.ingest.seed)
        self.warnings += split.notes
        with self._timed("chunk"):
            chunker, train, val = self.chunk(split)
        with self._timed("dedup"):
            val, dedup = self.drop_leaks(train, val)
        self.check_validation_size(val, split)
        write_jsonl(self.run_layout.chunks_file("train"), train)
        write_jsonl(self.run_layout.chunks_file("val"), val)
        with self._timed("headings"):
            headings = self.write_headings(split.val)
        return PrepareSummary(
            **loaded.summary(),
            documents={"train": len(split.train), "val": len(split.val)},
            documents_by_split={s: [d.id for d in getattr(split, s)] for s in SPLITS},
            chunks={"train": len(train), "val": len(val)},
            tokens={"train": _tokens(train), "val": _tokens(val)},
            dropped_duplicates=dedup,
            dropped_short_chunks=chunker.stats["dropped_short"],
            headings=headings,
            chunking=chunker.settings(),
            warnings=self.warnings,
            seconds=self.seconds,
        )

    def load(self, inputs: list[dict[str, Any]]) -> LoadResult:
        cfg = self.cfg.ingest
        loaded = load_documents(
            cfg.paths,
            cfg.extensions,
            hashes={e["path"]: e["sha256"] for e in inputs if e["sha256"]},
        )
        self.warnings += [f"skipped {s.path}: {s.reason}" for s in loaded.skipped]
        return loaded

    def chunk(self, split: DocumentSplit) -> tuple[Chunker, list[Chunk], list[Chunk]]:
        # A chunk size settled down to what the model reads: a warning when the user chose the
        # size; left at its default, which means "the model's window, at most 1024", a note.
        resolved = self.cfg.resolved or {}
        default = ChunkConfig.model_fields["chunk_size"].default
        capped = []
        for key, r in resolved.items():
            if key != "chunk.chunk_size":
                continue
            if r.given == default:
                log.info("chunks of %s tokens, all that %s reads", r.value, self.cfg.model)
            else:
                capped.append(r.why)
                log.warning(r.why)
        chunker = Chunker.from_config(self.cfg)
        train = chunker.chunk_documents(split.train)
        val = chunker.chunk_documents(split.val)
        self.warnings += capped + chunker.warnings
        if not train:
            raise InputError(
                f"no training chunks: the {len(split.train)} training document(s) hold fewer "
                f"than chunk.min_chunk_tokens={chunker.min_chunk_tokens} tokens of text each; "
                "add longer documents or lower chunk.min_chunk_tokens"
            )
        return chunker, train, val

    def drop_leaks(
        self, train: list[Chunk], val: list[Chunk]
    ) -> tuple[list[Chunk], dict[str, Any]]:
        """Validation chunks that repeat training text are dropped: they would flatter scores."""
        kept, dedup = drop_leaked_chunks(train, val, self.cfg.ingest.near_duplicate_threshold)
        if dedup["exact"] or dedup["near"]:
            self.warnings.append(
                f"dropped {dedup['exact'] + dedup['near']} validation chunk(s) repeating "
                f"training text ({dedup['exact']} exact, {dedup['near']} near-duplicates)"
            )
        if not kept:
            msg = (
                "the validation split has no chunks"
                + (" left after removing duplicates of training text" if val else "")
                + "; evaluation will have nothing to measure. Add more (distinct) documents or "
                "raise ingest.val_ratio"
            )
            self.warnings.append(msg)
            log.warning(msg)
        return kept, dedup

    def check_validation_size(self, val: list[Chunk], split: DocumentSplit) -> None:
        """Warn when the validation split is too small for evaluation to tell models apart."""
        if not val or len(val) >= FEW_VAL_CHUNKS:
            return  # none at all is said by drop_leaks
        msg = (
            f"the validation split holds only {len(val)} chunk(s) from {len(split.val)} "
            f"document(s): the evaluation's verdict will rest on a handful of questions and be "
            f"weak (wide confidence intervals). Raise ingest.val_ratio (now "
            f"{self.cfg.ingest.val_ratio:g}) or add documents, for at least {FEW_VAL_CHUNKS} "
            "validation chunks"
        )
        self.warnings.append(msg)
        log.warning(msg)

    def write_headings(self, documents: list[Document]) -> dict[str, Any]:
        """The validation documents' headings as queries, when there are enough of them."""
        headings, report = headings_dataset(documents)
        path = self.run_layout.val_headings
        report["written"] = len(headings.queries) >= MIN_HELD_OUT_QUERIES
        if report["written"]:
            headings.to_json(path)
        else:
            path.unlink(missing_ok=True)
        return report


def _tokens(chunks: list[Chunk]) -> int:
    return sum(c.n_tokens for c in chunks)
