from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from embedtune.cli._app import app


@app.command()
def init(
    path: Annotated[Path, typer.Argument(metavar="FILE", help="Where to write the config.")] = Path(
        "embedtune.yaml"
    ),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented default config to edit.

    \b
    Example:
      embedtune init my-run.yaml
      embedtune run my-run.yaml --docs ./docs --run runs/first
    """
    from embedtune.config import dump_default_config

    if path.exists() and not force:
        raise typer.BadParameter(f"{path} exists; pass --force to overwrite it", param_hint="PATH")
    path.write_text(dump_default_config(), encoding="utf-8")
    typer.echo(f"wrote {path}")
