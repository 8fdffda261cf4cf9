"""The typer app and what every command shares: --run, --config, clean error lines, and one
style of help (uppercase placeholders such as DIR, N, MODEL; defaults read from the config)."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Annotated, Any

import typer

# typer 0.29 vendors its own click: its exception is the one its main loop catches and shows.
from typer._click.exceptions import ClickException, NoSuchOption
from typer._click.globals import get_current_context
from typer.core import TyperCommand, TyperGroup

from embedtune.errors import EmbedtuneError
from embedtune.models import default_device

__all__ = [
    "app",
    "RunDir",
    "ConfigFile",
    "Device",
    "run_config",
    "console",
    "default",
    "Shown",
    "log_to_console",
]


class UserError(ClickException):
    """Something the user can fix: shown as one line, exit code 2 (as for bad flags)."""

    exit_code = 2


#: What the machine refused while writing, which the user fixes and then reruns: a full disk
#: or quota, a read-only file system, a file or folder they may not write.
_MACHINE_REFUSED = {
    errno.ENOSPC: "the disk is full: free space",
    errno.EDQUOT: "the disk quota is used up: free space",
    errno.EROFS: "the file system is read-only: give a folder that can be written",
    errno.EACCES: "permission denied: check the permissions",
    errno.EPERM: "not permitted: check the permissions",
}


class _Group(TyperGroup):
    """Turns library errors into one line on stderr and exit code 2: no traceback for bad input,
    nor for a full disk or a folder that cannot be written."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EmbedtuneError as exc:
            raise UserError(str(exc)) from None
        except OSError as exc:
            if exc.errno not in _MACHINE_REFUSED:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            raise UserError(
                f"{where}{_MACHINE_REFUSED[exc.errno]}, then run the same command again "
                "(finished stages and cached replies are kept and reused)"
            ) from None


class Shown(str):
    """A default shown in help as a value (``[default: 2]``); click would bracket a plain string
    (``[default: (2)]``), as it does for descriptions."""


@cache
def _defaults() -> Any:
    from embedtune.config import PipelineConfig

    return PipelineConfig()


def default(key: str, *, when_unset: str | None = None, flag: str | None = None) -> str | bool:
    """The config's default for ``key`` ("train.batch_size"), for a flag's ``show_default``, so
    that help shows what a run uses without the flag. Flags default to None (so that the config
    file and environment variables apply), which typer would show as no default at all.
    ``when_unset`` says what an unset (None) default means, e.g. "all chunks"; ``flag`` names an
    on/off flag ("rejects" for --rejects/--no-rejects)."""
    value: Any = _defaults()
    for part in key.split("."):
        if not hasattr(value, part):
            raise KeyError(f"help refers to config key {key!r}, which the config lacks")
        value = getattr(value, part)
    if value is None:
        return Shown(when_unset) if when_unset else False
    if isinstance(value, bool):
        return Shown(flag if value else f"no-{flag}") if flag else Shown("on" if value else "off")
    if isinstance(value, list):
        value = ",".join(map(str, value))
    return Shown(value)


#: Flags that other commands take for what a command takes as an argument: `run --docs` is
#: `prepare`'s PATHS.
_ARGUMENT_FLAGS = {"docs": "paths"}


class _Command(TyperCommand):
    """Help with one placeholder style: an argument by its name alone (PATHS...), where typer
    0.29 adds its Python type (``PATHS... <list[Path]>``), and config defaults unbracketed; and
    a flag named as one of the command's arguments (``serve --model M``, as ``train`` takes it)
    answered with how to give it, where click would suggest ``--help``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except NoSuchOption as exc:
            arguments = [p for p in self.params if p.param_type_name == "argument"]
            named = exc.option_name.lstrip("-").replace("-", "_")
            named = _ARGUMENT_FLAGS.get(named, named)
            if any(p.name == named for p in arguments):
                usage = " ".join((p.name or "").upper() for p in arguments)
                exc.message = (
                    f"No such option: {exc.option_name}: give {named.upper()} without a flag, as "
                    f"in `{ctx.command_path} {usage} [OPTIONS]`"
                )
                exc.possibilities = None
            raise

    def format_options(self, ctx: Any, formatter: Any) -> None:
        args, opts = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            name, text = record
            if isinstance(param.show_default, Shown):
                shown = param.show_default
                text = text.replace(f"default: ({shown})", f"default: {shown}")
            if param.param_type_name == "argument":
                args.append((name.split(" <", 1)[0], text))
            elif param.param_type_name == "option":
                opts.append((name, text))
        if args:
            with formatter.section("Arguments"):
                formatter.write_dl(args)
        if opts:
            with formatter.section("Options"):
                formatter.write_dl(opts)


class _Typer(typer.Typer):
    def command(self, *args: Any, cls: Any = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or _Command, **kwargs)


app = _Typer(
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
    typer.Option(
        "--run", metavar="DIR", help="Run directory: each stage reads and writes its files here."
    ),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        help="YAML config (default: RUN/config.yaml if present; see `embedtune init`).",
    ),
]


def _pin_device(ctx: typer.Context, value: str | None) -> str | None:
    """--device checked at once (a bad name fails before any model loads) and set as
    ``$EMBEDTUNE_DEVICE`` for the command, which every stage reads (models.default_device)."""
    if value is None:
        return None
    try:
        chosen = default_device(value)
    except EmbedtuneError as exc:
        raise typer.BadParameter(str(exc).removeprefix("--device: ")) from None
    before = os.environ.get("EMBEDTUNE_DEVICE")
    os.environ["EMBEDTUNE_DEVICE"] = chosen

    def restore() -> None:
        if before is None:
            os.environ.pop("EMBEDTUNE_DEVICE", None)
        else:
            os.environ["EMBEDTUNE_DEVICE"] = before

    ctx.call_on_close(restore)
    return chosen


Device = Annotated[
    str | None,
    typer.Option(
        "--device",
        metavar="DEVICE",
        callback=_pin_device,
        help="Where models run: auto (the GPU when torch sees one), cpu, cuda, cuda:N or mps. "
        "Training uses the first visible GPU (choose with CUDA_VISIBLE_DEVICES).",
        show_default=Shown("$EMBEDTUNE_DEVICE, else auto"),
    ),
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


def run_config(
    run: Path | None,
    config: Path | None,
    overrides: dict[str, Any] | None = None,
    *,
    given_by: dict[str, str] | None = None,
):
    """The config for a stage: --config, else the run's saved config.yaml, else defaults;
    then environment variables, then flags (``overrides``). An invalid value is blamed on its
    flag, its environment variable or its file. ``given_by`` names the parameter of an override
    named otherwise (``{"ingest.paths": "docs"}``)."""
    from embedtune.config import load_config
    from embedtune.layout import RunLayout

    if config is None and run is not None and RunLayout(run).config.is_file():
        config = RunLayout(run).config
    flags = flag_names(overrides or {}, given_by=given_by or {})
    return load_config(config, overrides=overrides, flags=flags)


def flag_names(
    overrides: dict[str, Any], prefix: str = "", *, given_by: dict[str, str] | None = None
) -> dict[str, str]:
    """``{"train.epochs": "--epochs"}``: each override's flag, found among the current command's
    parameters by name (an override is named after the parameter that gives it, or in
    ``given_by``)."""
    ctx = click_context()
    params = {p.name: p for p in ctx.command.params} if ctx is not None else {}
    given_by = given_by or {}
    out: dict[str, str] = {}
    for key, value in overrides.items():
        dotted = f"{prefix}{key}"
        name = given_by.get(dotted, key)
        if isinstance(value, dict):
            out.update(flag_names(value, dotted + ".", given_by=given_by))
        elif name in params:
            param = params[name]
            flags = [o for o in param.opts if o.startswith("--")]
            out[dotted] = flags[0] if flags else str(param.name).upper()  # an argument
    return out


def _versions() -> str:
    """embedtune's version and those of the libraries that decide its results, read from the
    installed packages' metadata (nothing heavy is imported)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from embedtune import __version__

    parts = [f"Python {platform.python_version()}"]
    for name in ("torch", "sentence-transformers", "transformers"):
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} not installed")
    return f"embedtune {__version__} ({', '.join(parts)})"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(_versions())
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Show the version (and those of torch, sentence-transformers, transformers).",
        ),
    ] = False,
) -> None:
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
