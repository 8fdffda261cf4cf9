"""`embedtune push`: upload a fine-tuned model folder to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from embedtune.cli._app import app


def _size(n: float) -> str:
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("kB", "MB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} GB"


@app.command()
def push(
    model: Annotated[
        Path,
        typer.Argument(
            metavar="MODEL",
            help="Model folder to upload, as written by `embedtune train` (RUN/model), with its "
            "model card (README.md).",
            show_default=False,
        ),
    ],
    repo_id: Annotated[
        str,
        typer.Argument(
            metavar="REPO_ID",
            help="Hub repository: NAME (in your namespace) or USER/NAME or ORG/NAME; created if "
            "missing.",
            show_default=False,
        ),
    ],
    private: Annotated[
        bool, typer.Option("--private", help="Create the repository as private.")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            metavar="TOKEN",
            help="Hub token with write access. Default: the environment variable HF_TOKEN, else "
            "the login saved by `hf auth login`.",
            show_default=False,
        ),
    ] = None,
    message: Annotated[
        str | None,
        typer.Option(
            "--message",
            metavar="TEXT",
            help="Commit message.",
            show_default="Upload MODEL with embedtune push",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="List the files that would be uploaded; upload nothing."),
    ] = False,
) -> None:
    """Upload a model folder to the Hugging Face Hub, in one commit.

    Hidden files (such as embedtune's .embedtune marker) are left out. Once pushed, anyone with
    access loads it with SentenceTransformer("USER/NAME").

    \b
    Example:
      embedtune push runs/first/model me/r-manuals-minilm --dry-run
      embedtune push runs/first/model me/r-manuals-minilm --private
    """
    from embedtune.hub import plan_push
    from embedtune.hub import push as push_model

    plan = plan_push(model, repo_id, private=private, token=token)
    for warning in plan.warnings:
        typer.echo(f"warning: {warning}", err=True)
    visibility = "private" if private else "visibility: the Hub's default"
    if dry_run:
        typer.echo(
            f"would upload {len(plan.files)} files ({_size(plan.total_bytes)}) from {plan.folder} "
            f"to {plan.url} ({visibility}):"
        )
        width = max((len(f.path) for f in plan.files), default=0)
        for f in plan.files:
            typer.echo(f"  {f.path:<{width}}  {_size(f.size):>8}")
        typer.echo(
            f"token: from {plan.token_source}"
            if plan.token_source
            else "token: none found; pass --token, set HF_TOKEN, or run `hf auth login` first"
        )
        return
    typer.echo(
        f"uploading {len(plan.files)} files ({_size(plan.total_bytes)}) to {plan.url}...", err=True
    )
    url = push_model(plan, commit_message=message)
    typer.echo(f"pushed {plan.folder} to {plan.url} ({url})")
