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
    >>> summary["chunks"]                                               # doctest: +SKIP
    {'train': 1843, 'val': 412}
"""

from __future__ import annotations

import logging
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from embedtune.artifacts import is_current, read_manifest, stage_key, write_manifest
from embedtune.config import PipelineConfig, dump_config
from embedtune.errors import InputError
from embedtune.recipe import settle
from embedtune.records import Chunk, write_jsonl

__all__ = ["run_prepare", "write_run_config", "PREPARE_VERSION"]

log = logging.getLogger("embedtune.prepare")

# Bump when extraction, normalisation or chunking changes what they write for the same input.
PREPARE_VERSION = "2"  # 2: writes val_headings.json
_KEY_LIBS = ("pypdfium2", "beautifulsoup4", "tokenizers", "transformers")


def write_run_config(cfg: PipelineConfig, run_dir: Path) -> Path:
    """Write ``RUN/config.yaml`` (the settled config); an identical file is left untouched."""
    path = Path(run_dir) / "config.yaml"
    text = dump_config(cfg, "embedtune prepare")
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".yaml.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
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
    whose path, size and mtime are unchanged."""
    from embedtune.ingest import file_sha256, find_files

    files, _ = find_files(cfg.ingest.paths, cfg.ingest.extensions)
    known = {e["path"]: e for e in (previous or {}).get("inputs", []) if isinstance(e, dict)}
    out = []
    for src in files:
        st = src.path.stat()
        entry = {"path": str(src.path), "rel": src.rel, "size": st.st_size}
        entry["mtime_ns"] = st.st_mtime_ns
        old = known.get(entry["path"])
        if old and old.get("size") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns:
            entry["sha256"] = old["sha256"]
        else:
            entry["sha256"] = file_sha256(src.path)
        out.append(entry)
    return out


def _token_total(chunks: list[Chunk]) -> int:
    return sum(c.n_tokens for c in chunks)


def run_prepare(cfg: PipelineConfig, run_dir: Path, *, fresh: bool = False) -> dict[str, Any]:
    """Load, split, chunk and de-duplicate ``cfg.ingest.paths`` into ``RUN/chunks``.

    Returns the summary a user reads: files read and skipped (with reasons), pages, characters,
    documents, chunks and tokens per split, dropped duplicates, the chunk settings used and any
    warnings; ``cached`` is True when the previous run's files were current and reused.
    Raises InputError when there is nothing usable (no paths, a missing path, an empty folder,
    no readable file, or no chunk long enough).
    """
    from embedtune.chunk import Chunker
    from embedtune.ingest import drop_leaked_chunks, load_documents, split_documents
    from embedtune.ingest.headings import MIN_QUERIES, headings_dataset

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    out = run_dir / "chunks"
    cfg = settle(cfg)
    write_run_config(cfg, run_dir)
    previous = read_manifest(out)
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
    done = (out / "train.jsonl").is_file() and (out / "val.jsonl").is_file()
    if not fresh and done and is_current(out, key) and previous:
        summary = dict(previous.get("summary", {}))
        summary["cached"] = True
        summary["seconds"] = {"total": round(time.perf_counter() - t0, 3)}
        log.debug("chunks in %s are up to date; nothing to do (pass --fresh to redo)", out)
        return summary

    warnings: list[str] = []
    t_load = time.perf_counter()
    loaded = load_documents(
        cfg.ingest.paths,
        cfg.ingest.extensions,
        hashes={e["path"]: e["sha256"] for e in inputs},
    )
    load_s = time.perf_counter() - t_load
    warnings += [f"skipped {s.path}: {s.reason}" for s in loaded.skipped]

    split = split_documents(loaded.documents, cfg.ingest.val_ratio, cfg.ingest.seed)
    warnings += split.notes

    t_chunk = time.perf_counter()
    # A chunk size settled down to what the model reads: said where the chunks are cut.
    capped = [r.why for key, r in (cfg.resolved or {}).items() if key == "chunk.chunk_size"]
    for note in capped:
        log.warning(note)
    warnings += capped
    chunker = Chunker.from_config(cfg)
    train = chunker.chunk_documents(split.train)
    val = chunker.chunk_documents(split.val)
    chunk_s = time.perf_counter() - t_chunk
    warnings += chunker.warnings
    if not train:
        raise InputError(
            f"no training chunks: the {len(split.train)} training document(s) hold fewer than "
            f"chunk.min_chunk_tokens={chunker.min_chunk_tokens} tokens of text each; add longer "
            "documents or lower chunk.min_chunk_tokens"
        )

    t_dedup = time.perf_counter()
    val_kept, dedup = drop_leaked_chunks(train, val, cfg.ingest.near_duplicate_threshold)
    dedup_s = time.perf_counter() - t_dedup
    if dedup["exact"] or dedup["near"]:
        warnings.append(
            f"dropped {dedup['exact'] + dedup['near']} validation chunk(s) repeating training "
            f"text ({dedup['exact']} exact, {dedup['near']} near-duplicates)"
        )
    if not val_kept:
        msg = (
            "the validation split has no chunks"
            + (" left after removing duplicates of training text" if val else "")
            + "; evaluation will have nothing to measure. Add more (distinct) documents or "
            "raise ingest.val_ratio"
        )
        warnings.append(msg)
        log.warning(msg)

    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "val.jsonl", val_kept)
    t_headings = time.perf_counter()
    headings, headings_report = headings_dataset(split.val)
    headings_path = out / "val_headings.json"
    headings_report["written"] = len(headings.queries) >= MIN_QUERIES
    if headings_report["written"]:
        headings.to_json(headings_path)
    else:
        headings_path.unlink(missing_ok=True)
    headings_s = time.perf_counter() - t_headings

    total_s = time.perf_counter() - t0
    load_summary = loaded.summary()
    summary: dict[str, Any] = {
        "cached": False,
        **load_summary,
        "documents": {"train": len(split.train), "val": len(split.val)},
        "documents_by_split": {
            "train": [d.id for d in split.train],
            "val": [d.id for d in split.val],
        },
        "chunks": {"train": len(train), "val": len(val_kept)},
        "tokens": {"train": _token_total(train), "val": _token_total(val_kept)},
        "dropped_duplicates": dedup,
        "dropped_short_chunks": chunker.stats["dropped_short"],
        "headings": headings_report,
        "chunking": chunker.settings(),
        "warnings": warnings,
        "seconds": {
            "load": round(load_s, 3),
            "chunk": round(chunk_s, 3),
            "dedup": round(dedup_s, 3),
            "headings": round(headings_s, 3),
            "total": round(total_s, 3),
        },
    }
    write_manifest(
        out,
        key,
        {
            "stage": "prepare",
            "config": {
                "model": cfg.model,
                "ingest": cfg.ingest.model_dump(mode="json"),
                "chunk": cfg.chunk.model_dump(mode="json"),
            },
            "inputs": inputs,
            "libraries": _versions(),
            "summary": summary,
        },
    )
    return summary
