"""The on-disk contracts between stages: documents, chunks, and JSON-lines helpers.

Every stage reads the previous stage's files and nothing else, so these shapes are the API
between them. Chunks live in ``RUN/chunks/{train,val}.jsonl``, one JSON object a line.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from embedtune.errors import InputError

__all__ = [
    "Page",
    "Document",
    "Chunk",
    "content_hash",
    "write_jsonl",
    "read_jsonl",
    "read_chunks",
    "read_json",
    "write_json_atomic",
    "write_text_atomic",
]


def content_hash(*parts: str | bytes, length: int = 16) -> str:
    """A short, stable hex digest of the given parts (order matters)."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:length]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Page(_Record):
    """The text of one page (1-based number); text formats are a single page 1."""

    number: int
    text: str


class Document(_Record):
    """A loaded source file."""

    id: str
    path: str
    content_hash: str
    pages: list[Page]

    @property
    def text(self) -> str:
        return "\n\n".join(p.text for p in self.pages)

    @property
    def n_chars(self) -> int:
        return sum(len(p.text) for p in self.pages)


class Chunk(_Record):
    """A passage the retriever will index, and the unit questions are written for."""

    id: str
    doc_id: str
    text: str
    n_tokens: int
    page_start: int
    page_end: int
    source: str = ""


R = TypeVar("R", bound=BaseModel)


def _tmp_name(path: Path) -> Path:
    """A temporary name beside ``path`` that no other process or thread writes to."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def write_jsonl(path: str | Path, rows: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Write rows atomically (a temporary file renamed into place); returns the row count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            obj = row.model_dump() if isinstance(row, BaseModel) else row
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield one JSON object per non-empty line, naming the file and line of any line that is
    not UTF-8 text, not JSON, or not an object."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} not found")
    try:
        f = path.open("rb")
    except OSError as exc:
        raise InputError(
            f"{path} cannot be read ({exc.strerror or exc}); check its permissions"
        ) from None
    with f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError:
                raise InputError(
                    f"{path}:{lineno} is not UTF-8 text; convert the file to UTF-8 (e.g. "
                    "iconv -f <its encoding> -t utf-8)"
                ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno} is not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise InputError(
                    f"{path}:{lineno} is a JSON {type(row).__name__}, not an object "
                    '({"key": value, ...})'
                )
            yield row


def read_chunks(path: str | Path) -> list[Chunk]:
    """Read a ``chunks/*.jsonl`` file written by `embedtune prepare`."""
    out = []
    for i, row in enumerate(read_jsonl(path), 1):
        try:
            out.append(Chunk.model_validate(row))
        except Exception as exc:  # pydantic's message names the field
            raise InputError(f"{path}: row {i} is not a chunk: {exc}") from None
    return out


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` through a temporary file of this process's own, renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def read_json(path: str | Path) -> Any:
    """The JSON in ``path``; None when the file is missing or is not JSON (a torn write)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
