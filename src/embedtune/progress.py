"""How long the slow steps take: progress bars while they run, and the rates they measured.

Every step that can take more than a few seconds (the local writer's calls, the encoding passes
of the round trip's judge, the teacher, the base model and the evaluation) shows a tqdm bar with
its rate and time left on stderr. Bars show where stderr is a terminal and stay quiet in logs and
under pytest; ``EMBEDTUNE_PROGRESS=on`` shows them anyway, ``off`` never (tqdm's
``TQDM_DISABLE=1`` too). A bar appears only once its step has run for a second, so quick steps
print nothing::

    with bar(total=len(texts), desc="evaluate: encoding passages") as b:
        for block in blocks:
            encode(block)
            b.update(len(block))

The rates measured on the way (texts per second of an encoder, seconds per call of the local
writer) are kept in ``cache_dir()/rates.json``, keyed by what determines them on this machine,
so that ``embedtune generate --dry-run`` estimates how long a run will take here::

    record_rate("encode", "dir-1a2b", chars_per_second=41_000.0)
    recorded_rate("encode", "dir-1a2b")  # {'chars_per_second': 41000.0, 'when': '...'}
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from embedtune.models import cache_dir

__all__ = ["bars_shown", "bar", "record_rate", "recorded_rate", "machine_key"]

log = logging.getLogger(__name__)

_ON = {"1", "on", "true", "yes"}
_OFF = {"0", "off", "false", "no"}


def _setting() -> str:
    return os.environ.get("EMBEDTUNE_PROGRESS", "").strip().lower()


def bars_shown() -> bool:
    """Whether progress bars show: on a terminal, or forced by ``EMBEDTUNE_PROGRESS``."""
    setting = _setting()
    if setting in _ON:
        return True
    if setting in _OFF or os.environ.get("TQDM_DISABLE", "").strip().lower() in _ON:
        return False
    return sys.stderr.isatty()


def bar(total: int, desc: str, unit: str = "text", **kwargs: Any) -> tqdm:
    """A progress bar on stderr with rate and time left; a silent one where bars don't show.

    It appears after one second (``delay``), so a quick step prints nothing; forced on with
    ``EMBEDTUNE_PROGRESS=on`` it appears at once.
    """
    forced = _setting() in _ON
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=not bars_shown(),
        delay=0 if forced else 1.0,
        dynamic_ncols=True,
        smoothing=0.1,
        **kwargs,
    )


# --------------------------------------------------------------------------- rates
def _rates_path() -> Path:
    return cache_dir() / "rates.json"


def machine_key() -> str:
    """What makes a rate of this machine comparable: its CPU count and torch's threads."""
    threads = os.environ.get("OMP_NUM_THREADS") or "default"
    return f"cpus={os.cpu_count()},threads={threads}"


def _read() -> dict[str, Any]:
    try:
        data = json.loads(_rates_path().read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def recorded_rate(kind: str, key: str) -> dict[str, Any] | None:
    """The last rate recorded for ``kind`` (``encode``, ``local-writer``) and ``key`` on this
    machine, or None."""
    entry = _read().get(kind, {}).get(f"{key}|{machine_key()}")
    return entry if isinstance(entry, dict) else None


def record_rate(kind: str, key: str, **values: float | int | str) -> None:
    """Keep a measured rate for estimates; a cache that cannot be written only costs them."""
    data = _read()
    entries = data.setdefault(kind, {})
    name = f"{key}|{machine_key()}"
    earlier = entries.get(name) if isinstance(entries.get(name), dict) else {}
    # merged: a rate measured without loading the model keeps the loading time measured before
    entries[name] = {**earlier, **values, "when": time.strftime("%Y-%m-%d %H:%M")}
    path = _rates_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("could not record a rate in %s: %s", path, exc)
