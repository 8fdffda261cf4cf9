"""An append-only cache of LLM responses: no completed call is ever paid for twice.

Each response is one JSON line in ``RUN/generate/cache/<split>.jsonl``, written, flushed and
fsynced the moment it arrives, keyed by a hash of everything that shaped it (chunk text, prompt
template, backend, model, sampling settings, question index). A crash, ``kill -9`` or Ctrl-C
loses only the calls still in flight; a line torn by a kill mid-write is cut off on the next
open, and the next run makes only the calls the cache lacks::

    cache = ResponseCache(run / "generate/cache/train.jsonl")
    if key not in cache:
        cache.append({"key": key, "text": reply})
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from embedtune.records import content_hash

__all__ = ["ResponseCache", "response_key", "move_aside"]


def response_key(
    *,
    chunk_text: str,
    template: str,
    backend: str,
    model: str,
    sampling: Mapping[str, Any],
    index: int = 0,
) -> str:
    """The cache key of one call: a hash of every input that changes its reply."""
    return content_hash(
        chunk_text,
        template,
        backend,
        model,
        json.dumps(dict(sampling), sort_keys=True),
        str(index),
        length=24,
    )


def move_aside(path: Path) -> Path | None:
    """Rename a cache file out of the way (``--fresh``) rather than delete paid-for work."""
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.{stamp}.bak")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.{stamp}-{n}.bak")
        n += 1
    os.replace(path, target)
    return target


class ResponseCache:
    """Responses by key, loaded from a JSON-lines file and appended to durably."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._rows: dict[str, dict[str, Any]] = {}
        self.torn_lines = 0
        self._load()
        self._file = None

    def _load(self) -> None:
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        good_end = 0
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl == -1:  # a last line without newline: torn by a kill mid-write
                self.torn_lines += 1
                break
            line = data[pos:nl]
            pos = nl + 1
            if line.strip():
                try:
                    row = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    self.torn_lines += 1
                    good_end = pos
                    continue
                if isinstance(row, dict) and "key" in row:
                    self._rows[row["key"]] = row
            good_end = pos
        if good_end < len(data):
            # Cut the torn tail so the next append starts on a line of its own.
            with self.path.open("r+b") as f:
                f.truncate(good_end)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._rows.values())

    def get(self, key: str) -> dict[str, Any] | None:
        return self._rows.get(key)

    def append(self, row: dict[str, Any]) -> None:
        """Write one response durably (flush + fsync) before anything else happens."""
        if "key" not in row:
            raise ValueError("a cache row needs a 'key'")
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._rows[row["key"]] = row

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
