from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from embedtune.cli._app import ConfigFile, RunDir, app, console, default, log_to_console, run_config

if TYPE_CHECKING:
    from embedtune.prepare import PrepareSummary


def _tables(summary: PrepareSummary) -> list[Any]:
    """The split table (documents, chunks, tokens), the facts beside it, and skipped files."""
    from rich.table import Table

    split = Table(title="embedtune prepare", header_style="bold")
    split.add_column("")
    for name in ("train", "val", "total"):
        split.add_column(name, justify="right")
    for name in ("documents", "chunks", "tokens"):
        counts = getattr(summary, name)
        tr, va = counts.get("train", 0), counts.get("val", 0)
        split.add_row(name, f"{tr:,}", f"{va:,}", f"{tr + va:,}")

    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(summary.skipped_by_reason.items()))
    facts.add_row("files read", f"{summary.files_read:,}")
    facts.add_row("files skipped", f"{summary.files_skipped:,}" + (f" ({reasons})" * bool(reasons)))
    facts.add_row("pages", f"{summary.pages:,}")
    facts.add_row("characters", f"{summary.chars:,}")
    dup = summary.dropped_duplicates
    facts.add_row(
        "dropped from val",
        f"{dup['exact']} exact and {dup['near']} near-duplicate(s) of training chunks "
        f"(Jaccard >= {dup['threshold']})",
    )
    c = summary.chunking
    facts.add_row(
        "chunking",
        f"{c['chunk_size']} tokens, overlap {c['chunk_overlap']} ({c['model']} reads "
        f"{c['max_seq_length']} tokens incl. {c['special_tokens']} special)",
    )
    h = summary.headings  # absent in manifests written before PREPARE_VERSION 2
    if h:
        facts.add_row(
            "val headings",
            f"{h['queries']} usable as queries, from {h['documents_with_headings']} of "
            f"{h['documents']} validation document(s)"
            + (" (written to val_headings.json)" if h["written"] else " (too few: not written)"),
        )
    facts.add_row("seconds", f"{summary.seconds['total']:.1f}")
    out = [split, facts]
    if summary.skipped_files:
        skipped = Table(title="skipped files", header_style="bold")
        skipped.add_column("file", overflow="fold")
        skipped.add_column("reason", overflow="fold")
        for s in summary.skipped_files[:20]:
            skipped.add_row(s.path, s.reason)
        if len(summary.skipped_files) > 20:
            more = len(summary.skipped_files) - 20
            skipped.add_row(f"... and {more} more", "see manifest.json")
        out.append(skipped)
    return out


def _absolute(path: Path) -> str:
    """The path as saved in the run's config: absolute, links resolved where they resolve (a
    link loop or a dangling link is kept as given, for the loader to name and skip)."""
    path = path.expanduser()
    try:
        return str(path.resolve(strict=True))
    except (OSError, RuntimeError):
        return os.path.abspath(path)


@app.command()
def prepare(
    run: RunDir,
    paths: Annotated[
        list[str] | None,  # str, not Path: typer would read "" (an unset variable) as "."
        typer.Argument(
            metavar="PATHS",
            help="PDF, text, Markdown or HTML files, or folders of them (recursive). Default: "
            "ingest.paths of the config.",
            show_default=False,
        ),
    ] = None,
    config: ConfigFile = None,
    model: Annotated[
        str | None,
        typer.Option(
            metavar="MODEL",
            help="Base model, whose tokenizer sizes the chunks (hub id, alias or path).",
            show_default=default("model"),
        ),
    ] = None,
    chunk_size: Annotated[
        int | None,
        typer.Option(
            metavar="N", help="Tokens per chunk.", show_default=default("chunk.chunk_size")
        ),
    ] = None,
    chunk_overlap: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Tokens shared by neighbouring chunks.",
            show_default=default("chunk.chunk_overlap"),
        ),
    ] = None,
    val_ratio: Annotated[
        float | None,
        typer.Option(
            metavar="RATIO",
            help="Share of documents held out for validation.",
            show_default=default("ingest.val_ratio"),
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Seed of the train/validation split.",
            show_default=default("ingest.seed"),
        ),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Redo the work even if the chunks are current.")
    ] = False,
) -> None:
    """Read documents, split them by document into train/validation, and chunk them.

    Writes RUN/config.yaml and RUN/chunks/{train,val}.jsonl (one chunk a line, with its
    source file and pages). Files that cannot be read (encrypted, corrupt, scanned without a
    text layer, empty) are skipped with a reason and the run goes on. Running it again with
    the same documents and settings does nothing; --fresh redoes it.

    \b
    Example:
      embedtune prepare ./docs manual.pdf --run runs/first
      embedtune prepare ./docs --run runs/first --model all-mpnet-base-v2 --chunk-size 384
      embedtune prepare --run runs/first --fresh      # the paths saved in the run's config
    """
    from embedtune.layout import RunLayout
    from embedtune.prepare import run_prepare
    from embedtune.recipe import settle

    overrides: dict[str, Any] = {
        "model": model,
        "ingest": {
            "paths": [_absolute(Path(p)) if p.strip() else p for p in paths] if paths else None,
            "val_ratio": val_ratio,
            "seed": seed,
        },
        "chunk": {"chunk_size": chunk_size, "chunk_overlap": chunk_overlap},
    }
    # prepare starts a run: "auto" is resolved afresh (a teacher installed since counts)
    cfg = settle(run_config(run, config, overrides), afresh=True)
    with log_to_console():
        summary = run_prepare(cfg, run, fresh=fresh)
    layout = RunLayout(run)
    out = console()
    if summary.skipped:
        out.print(f"chunks in {layout.chunks_dir} are up to date (pass --fresh to redo them)")
    for table in _tables(summary):
        out.print(table)
    for ex in summary.dropped_duplicates.get("examples", [])[:3]:
        out.print(f"  dropped from val (similarity {ex['similarity']}): {ex['text'][:100]!r}")
    typer.echo(f"wrote {layout.chunks_file('train')} and {layout.chunks_file('val')}")
