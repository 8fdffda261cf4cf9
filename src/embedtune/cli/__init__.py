"""The `embedtune` command: one thin command per pipeline stage, plus `run` for all of them.

Each command lives in its own module and only parses flags, builds the config and calls the
stage's library function; heavy libraries are imported inside the commands so `--help` is fast.
"""

from __future__ import annotations

from embedtune.cli import evaluate as _evaluate  # noqa: F401
from embedtune.cli import export as _export  # noqa: F401
from embedtune.cli import generate as _generate  # noqa: F401
from embedtune.cli import init as _init  # noqa: F401  (registers commands)
from embedtune.cli import prepare as _prepare  # noqa: F401
from embedtune.cli import push as _push  # noqa: F401
from embedtune.cli import run as _run  # noqa: F401
from embedtune.cli import serve as _serve  # noqa: F401
from embedtune.cli import train as _train  # noqa: F401
from embedtune.cli._app import app

__all__ = ["app", "main"]


def main() -> None:
    app()
