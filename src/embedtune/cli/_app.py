"""The typer app and what every command shares: --run, --config, and clean error lines."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

# typer 0.29 vendors its own click: its exception is the one its main loop catches and shows.
from typer._click.exceptions import ClickException
from typer._click.globals import get_current_context
from typer.core import TyperGroup

from embedtune.errors import EmbedtuneError

__all__ = ["app", "RunDir", "ConfigFile", "run_config", "console", "log_to_console"]


class UserError(ClickException):
    """Something the user can fix: shown as one line, exit code 2 (as for bad flags)."""

    exit_code = 2


class _Group(TyperGroup):
    """Turns library errors into one line on stderr and exit code 2: no traceback for bad input."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EmbedtuneError as exc:
            raise UserError(str(exc)) from None


app = typer.Typer(
    cls=_Group,
    name="embedtune",
    help="Fine-tune a sentence-embedding model on your own documents, and prove it got better.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)

RunDir = Annotated[
    Path,
    typer.Option("--run", help="Run directory: each stage reads and writes its files here."),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config (default: RUN/config.yaml if present)."),
]


def click_context() -> typer.Context | None:
    """The command being run, or None outside one (a library call)."""
    return get_current_context(silent=True)


@contextmanager
def log_to_console() -> Iterator[None]:
    """embedtune's log messages (skipped files, capped chunks, models loading) as one rich line
    each on stderr, for the length of the command (unless the caller already set up logging)."""
    logger = logging.getLogger("embedtune")
    if logger.handlers or logging.getLogger().handlers:
        yield
        return
    from rich.logging import RichHandler

    handler = RichHandler(console=console(), show_time=False, show_path=False, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def console():  # noqa: ANN201 - rich is imported lazily to keep `--help` fast
    from rich.console import Console

    return Console(stderr=True)


def run_config(run: Path | None, config: Path | None, overrides: dict[str, Any] | None = None):
    """The config for a stage: --config, else the run's saved config.yaml, else defaults;
    then environment variables, then flags (``overrides``). An invalid value is blamed on its
    flag, its environment variable or its file."""
    from embedtune.config import load_config
    from embedtune.layout import RunLayout

    if config is None and run is not None and RunLayout(run).config.is_file():
        config = RunLayout(run).config
    return load_config(config, overrides=overrides, flags=flag_names(overrides or {}))


def flag_names(overrides: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train.epochs": "--epochs"}``: each override's flag, found among the current command's
    parameters by name (an override is named after the parameter that gives it)."""
    ctx = click_context()
    params = {p.name: p for p in ctx.command.params} if ctx is not None else {}
    out: dict[str, str] = {}
    for key, value in overrides.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flag_names(value, dotted + "."))
        elif key in params:
            param = params[key]
            flags = [o for o in param.opts if o.startswith("--")]
            out[dotted] = flags[0] if flags else str(param.name).upper()  # an argument
    return out


@app.callback()
def _root() -> None:
    """Fine-tune a sentence-embedding model on your own documents, and prove it got better.

    \b
    The whole pipeline on a folder of PDFs, offline:
      embedtune run --docs ./docs --run runs/first
    Or stage by stage, each reading and writing the same run directory:
      embedtune prepare ./docs --run runs/first
      embedtune generate --run runs/first
      embedtune train --run runs/first
      embedtune evaluate --run runs/first
      embedtune serve runs/first/model
    """
