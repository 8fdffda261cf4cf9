"""Which folders embedtune wrote, so that it never deletes or replaces one it did not.

Every folder embedtune writes as a whole (a saved model, a training work folder with its
checkpoints) carries a small marker file, ``.embedtune``. Before embedtune deletes or replaces a
folder (``--fresh``, or saving a model over an older one) it checks that the folder is missing,
empty, or carries the marker; anything else is refused with a message naming the folder::

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / "model"
    >>> check_replaceable(folder, "--output")   # missing: fine
    >>> mark(folder, "model")
    >>> is_ours(folder)
    True

Folders written before the marker existed are recognised by what only embedtune writes there:
a training work folder's ``started.json``, or a model card tagged ``embedtune``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from embedtune import __version__
from embedtune.errors import InputError

__all__ = ["MARKER", "mark", "is_ours", "check_replaceable", "remove_owned"]

MARKER = ".embedtune"


def mark(folder: str | Path, kind: str) -> None:
    """Create ``folder`` if needed and record that embedtune owns it (``kind``: model, train)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / MARKER
    if not marker.is_file():
        marker.write_text(
            json.dumps({"written_by": "embedtune", "version": __version__, "kind": kind}) + "\n",
            encoding="utf-8",
        )


def _legacy_ours(folder: Path) -> bool:
    if (folder / "started.json").is_file() or (folder / "base_metrics.json").is_file():
        return True  # a training work folder (RUN/train, <output>.train)
    if (folder / "onnx" / "manifest.json").is_file():
        return True  # an `embedtune export` output
    if (folder / "metrics.json").is_file() and (folder / "per_query.jsonl").is_file():
        return True  # an `embedtune evaluate` report folder
    card = folder / "README.md"
    if (folder / "modules.json").is_file() and card.is_file():
        try:
            head = card.read_text(encoding="utf-8", errors="replace")[:2000]
        except OSError:
            return False
        return "embedtune" in head and "Fine-tuned embedding model" in head
    return False


def is_ours(folder: str | Path) -> bool:
    """True when ``folder`` carries embedtune's marker (or is a run folder of an older embedtune)."""
    folder = Path(folder)
    return (folder / MARKER).is_file() or _legacy_ours(folder)


def check_replaceable(folder: str | Path, source: str) -> None:
    """Raise InputError unless ``folder`` is missing, empty, or embedtune's own.

    ``source`` names where the path came from (a flag such as ``--output``), for the message.
    """
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise InputError(
            f"{source} {folder} is a file, not a folder; give a new folder name for the output"
        )
    if is_ours(folder) or not any(folder.iterdir()):
        return
    raise InputError(
        f"{source} {folder} already exists and was not written by embedtune (it has no "
        f"{MARKER} marker), so embedtune will not replace or delete it; give a new folder, or "
        "move that one away yourself"
    )


def remove_owned(folder: str | Path, source: str) -> bool:
    """Delete ``folder`` if embedtune wrote it; refuse (InputError) if not. True if removed."""
    folder = Path(folder)
    check_replaceable(folder, source)
    if folder.is_dir():
        shutil.rmtree(folder)
        return True
    return False
