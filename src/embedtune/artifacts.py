"""Content-hash keys for stage outputs, so re-runs skip finished work.

A stage computes a key from everything its output depends on (input files' hashes, its config
section, library versions) and writes it into ``<stage dir>/manifest.json`` when done. A later
run with the same key skips the stage::

    key = stage_key("prepare", config=cfg.chunk, inputs=file_hashes)
    if is_current(run / "chunks", key):
        return
    ...
    write_manifest(run / "chunks", key, {"n_chunks": 123})

What a stage returns is a :class:`StageResult`: typed, written as JSON next to its outputs, and
``skipped`` when the outputs were current and nothing was redone.
"""

from __future__ import annotations

import json
import logging
from importlib import metadata
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from embedtune.errors import InputError
from embedtune.records import content_hash, read_json, write_json_atomic

log = logging.getLogger("embedtune")

__all__ = [
    "StageResult",
    "UnreadableSummary",
    "stage_key",
    "StageKey",
    "key_matches",
    "is_current",
    "write_manifest",
    "read_manifest",
    "library_versions",
]


class StageResult(BaseModel):
    """A stage's summary; ``skipped``: its outputs were current, so nothing was redone.

    Unknown keys are ignored when one is read back, so a summary written by another version of
    embedtune still reads.
    """

    model_config = ConfigDict(extra="ignore")

    skipped: bool = False

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def read_back(
        cls, saved: object, where: str | Path, *, redo: str | None = None, **more: Any
    ) -> Self | None:
        """The summary a finished stage saved in ``where``, marked ``skipped`` (``more``
        replaces saved fields); None where none was saved. Where it lacks a field this version
        needs or holds a wrong one (damaged, or written by an older embedtune whose stage key
        did not change), a stage that can run again says ``redo`` (what it does instead) in a
        warning and gets None; without ``redo`` :class:`UnreadableSummary` is raised, for a
        stage where running again would repeat slow work and the caller says what to do."""
        if not isinstance(saved, dict):
            return None
        try:
            return cls.model_validate({**saved, **more, "skipped": True})
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            problem = f"{where}: the saved summary cannot be read ({field}: {first['msg']})"
        if redo is None:
            raise UnreadableSummary(problem)
        log.warning("%s; %s", problem, redo)
        return None


class UnreadableSummary(InputError):
    """A finished stage's saved summary that does not fit :class:`StageResult`'s fields."""


_LIBS = ("embedtune", "torch", "sentence-transformers", "transformers", "pypdfium2", "openai")


def library_versions() -> dict[str, str]:
    out = {}
    for lib in _LIBS:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            continue
    return out


#: Settings added with a default other than None, and that default: left out of a key while
#: they hold it, so that the stages finished before they existed keep their keys.
DEFAULTS_LEFT_OUT: dict[str, Any] = {"train_queries": "questions"}

#: Settings read only after a stage has written its outputs (which model the run gives, from the
#: evaluation's verdict): left out of every key, so that changing one redoes no stage.
READ_AFTER: frozenset[str] = frozenset({"use_fine_tuned"})


def _without_added_defaults(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {
            k: _without_added_defaults(v)
            for k, v in obj.items()
            if not (k in DEFAULTS_LEFT_OUT and v == DEFAULTS_LEFT_OUT[k]) and k not in READ_AFTER
        }
    return obj


def _plain(obj: Any, *, unset: bool = True) -> Any:
    """``obj`` as JSON values; without ``unset``, settings left None are left out. Settings
    at a default in :data:`DEFAULTS_LEFT_OUT`, and those in :data:`READ_AFTER`, are left out of
    both forms."""
    if isinstance(obj, BaseModel):
        return _without_added_defaults(obj.model_dump(mode="json", exclude_none=not unset))
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v, unset=unset) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v, unset=unset) for v in obj]
    return obj


#: Settings added since the release whose keys held every setting, None included (session 27's):
#: left out of that earlier form of a key, which the stages that release finished carry. Add
#: every new setting that defaults to None here, or those runs redo the stages it feeds (and
#: one with another default to DEFAULTS_LEFT_OUT).
ADDED_SINCE_EARLIER_KEYS = frozenset({"margin_teacher"})


class StageKey(str):
    """A stage's key; ``earlier`` is the key session 27's embedtune gave the same inputs and
    settings (every setting, None included; none added since), which :func:`key_matches`
    accepts and rewrites, so that an upgrade redoes no finished stage."""

    earlier: str | None = None


def stage_key(stage: str, **parts: Any) -> StageKey:
    """A stable hash of a stage name and the JSON form of everything it depends on.

    Settings that are None (off or unset) are left out of a configuration's form, so a setting
    that a later embedtune adds, off by default, leaves the key of a finished stage as it was:
    upgrading does not redo an hour of training that the new setting would not change."""
    blob = json.dumps(_plain(parts, unset=False), sort_keys=True, ensure_ascii=False, default=str)
    key = StageKey(content_hash(stage, blob, length=24))
    earlier = json.dumps(_earlier(_plain(parts)), sort_keys=True, ensure_ascii=False, default=str)
    key.earlier = content_hash(stage, earlier, length=24)
    return key


def _earlier(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {
            k: _earlier(v)
            for k, v in obj.items()
            if not (k in ADDED_SINCE_EARLIER_KEYS and v is None)
        }
    if isinstance(obj, list):
        return [_earlier(v) for v in obj]
    return obj


def key_matches(path: str | Path, key: str) -> bool:
    """Whether the JSON file ``path`` (a manifest, or a training's started.json) holds ``key``;
    where it holds the key's earlier form, it is rewritten to hold ``key``."""
    saved = read_json(path)
    if not isinstance(saved, dict):
        return False
    if saved.get("key") == key:
        return True
    earlier = getattr(key, "earlier", None)
    if earlier is None or saved.get("key") != earlier:
        return False
    write_json_atomic(path, {**saved, "key": str(key)})
    return True


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError):
        return None


def is_current(folder: str | Path, key: str) -> bool:
    """Whether ``folder``'s manifest marks the stage of ``key`` complete."""
    manifest = read_manifest(folder)
    return (
        bool(manifest)
        and bool(manifest.get("complete", False))
        and key_matches(Path(folder) / "manifest.json", key)
    )


def write_manifest(folder: str | Path, key: str, info: dict[str, Any] | None = None) -> None:
    """Mark a stage's outputs complete: written last, so a crash leaves the stage not current."""
    write_json_atomic(
        Path(folder) / "manifest.json",
        {"key": key, "complete": True, "versions": library_versions(), **_plain(info or {})},
    )
