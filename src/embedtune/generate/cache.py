"""An append-only cache of LLM responses: no completed call is ever paid for twice.

Each response is one JSON line in ``RUN/generate/cache/<split>.jsonl``, written, flushed and
fsynced the moment it arrives, keyed by a hash of everything that shaped it (chunk text, prompt
template, backend, model, sampling settings, question index). A crash, ``kill -9`` or Ctrl-C
loses only the calls still in flight, and the next run makes only the calls the cache lacks::

    cache = ResponseCache(run / "generate/cache/train.jsonl")
    if key not in cache:
        cache.append({"key": key, "text": reply})

Every row is checked when the file is read (:class:`CachedReply`). A row that is not one (a line
torn by a kill mid-write, a hand edit with ``"text": null``) is moved to
``<split>.jsonl.set-aside`` beside the cache, never deleted, and said in one line; its call is
made again, and every good row is kept.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from embedtune.errors import InputError
from embedtune.records import content_hash

__all__ = ["CachedReply", "ResponseCache", "response_key", "move_aside", "SET_ASIDE_SUFFIX"]

log = logging.getLogger("embedtune.generate")

#: Rows of ``<split>.jsonl`` that are not replies go to ``<split>.jsonl.set-aside``.
SET_ASIDE_SUFFIX = ".set-aside"


class CachedReply(BaseModel):
    """One cached reply as the runner reads it back; other keys are kept as written."""

    model_config = ConfigDict(extra="allow")

    key: str
    text: str
    # token counts; the local writer's prompt_tokens_read is fractional (shared beginnings
    # divided among their prompts)
    usage: dict[str, int | float] | None = None
    attempts: int = 1


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
    """Responses by key, loaded from a JSON-lines file and appended to durably.

    ``set_aside`` counts the rows read that were not replies (moved to ``set_aside_path``);
    ``torn_lines`` those of them that were not even JSON (a kill mid-write). ``repair=False``
    (a dry run) leaves the file as it is and only says what the next run will set aside.
    """

    def __init__(self, path: str | Path, *, repair: bool = True) -> None:
        self.path = Path(path)
        self.repair = repair
        self.set_aside_path = self.path.with_name(self.path.name + SET_ASIDE_SUFFIX)
        self._rows: dict[str, dict[str, Any]] = {}
        self.torn_lines = 0
        self.set_aside = 0
        self._load()
        self._file = None

    def _load(self) -> None:
        try:
            if not self.path.is_file():
                return
            data = self.path.read_bytes()
        except OSError as exc:
            raise InputError(
                f"the reply cache {self.path} cannot be read ({exc.strerror or exc}); fix its "
                "permissions, or move it away to ask every question again"
            ) from None
        good: list[bytes] = []
        bad: list[bytes] = []
        for line in data.splitlines(keepends=True):
            if not line.strip():
                continue
            row = self._parse(line)
            if row is None:
                bad.append(line if line.endswith(b"\n") else line + b"\n")
            else:
                good.append(line)
                self._rows[row["key"]] = row
        if bad and self.repair:
            self._set_aside(good, bad)
        elif bad:
            self.set_aside = len(bad)
            log.warning(
                "%s: %d row(s) are not replies (torn or wrong types); the next run moves them "
                "to %s and makes their calls again",
                self.path,
                len(bad),
                self.set_aside_path,
            )

    def _parse(self, line: bytes) -> dict[str, Any] | None:
        """The row on ``line`` as its fields' types (:class:`CachedReply`), or None when it is
        not a whole reply."""
        if not line.endswith(b"\n"):  # a last line without newline: torn by a kill mid-write
            self.torn_lines += 1
            return None
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            self.torn_lines += 1
            return None
        try:
            return CachedReply.model_validate(row).model_dump()
        except ValidationError:
            return None

    def _set_aside(self, good: list[bytes], bad: list[bytes]) -> None:
        """Append ``bad`` rows to the set-aside file, then rewrite the cache with ``good`` only
        (in that order: a crash between the two leaves a row in both, never in neither)."""
        self.set_aside = len(bad)
        try:
            with self.set_aside_path.open("ab") as f:
                f.writelines(bad)
                f.flush()
                os.fsync(f.fileno())
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            with tmp.open("wb") as f:
                f.writelines(good)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            raise InputError(
                f"the reply cache {self.path} holds {len(bad)} broken row(s) that could not be "
                f"moved to {self.set_aside_path} ({exc.strerror or exc}); check the folder's "
                "permissions and space"
            ) from None
        log.warning(
            "%s: set aside %d row(s) that were not replies (torn or wrong types) in %s; "
            "their calls will be made again",
            self.path,
            len(bad),
            self.set_aside_path,
        )

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
