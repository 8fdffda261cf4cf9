"""Embeddings computed once per model and text, kept on disk, and shared by the stages.

The round trip of question generation, hard-negative mining, the teacher's labels, the base
model's score before training and the evaluation all encode the same chunks with the same
models; through this cache each text is encoded once per model, and re-evaluating is near instant.

A model is identified by a fingerprint of what determines its embeddings, not by its name:

- a local folder: the content hash of every file in it (weights included; the hash of a large
  file is remembered by path, size and modification time, so it is read once);
- a hub id: the id and the commit of the locally cached snapshot;
- an already loaded model: a hash of its parameters, prompts and sequence length.

Embeddings live under ``cache_dir()/embeddings/<fingerprint>/`` as ``.npy`` shards, each with a
``.keys`` file listing the hash of every row's text (with its role, query or document, since
prompts and routers embed the two differently). The store is append-only: a lookup encodes only
the texts it has not seen and writes them as a new shard::

    cache = EmbeddingCache(model_fingerprint("all-MiniLM-L6-v2"))
    vectors = cache.get_or_encode(texts, "document", lambda missing: model.encode_document(missing))
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from huggingface_hub import snapshot_download

from embedtune.models import cache_dir, resolve_model
from embedtune.progress import bar, bars_shown, record_rate, recorded_rate
from embedtune.records import content_hash

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["Role", "EmbeddingCache", "model_fingerprint", "loaded_model_fingerprint", "text_key"]

log = logging.getLogger(__name__)

Role = Literal["query", "document"]

_SMALL = 1 << 20  # files below 1 MiB are hashed every time; larger ones are memoised by stat
_SKIP_NAMES = {"README.md", "manifest.json"}
_FORMAT = "v1"
_lock = threading.Lock()
#: Fewer texts than this time the model's loading more than its speed: no rate recorded.
_RATE_MIN_TEXTS = 32
#: Texts encoded between two writes to the cache: a kill during a long pass (mpnet's labels of
#: a large corpus take many minutes on a CPU) loses at most this many, not the whole pass.
SAVE_EVERY = 1024


def text_key(role: Role, text: str) -> str:
    """The cache key of one text in one role."""
    return content_hash(role, text, length=32)


def _file_digest(path: Path, memo: dict[str, str]) -> str:
    st = path.stat()
    if st.st_size < _SMALL:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    stamp = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if stamp in memo:
        return memo[stamp]
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            h.update(block)
    memo[stamp] = h.hexdigest()
    return memo[stamp]


def _memo_path() -> Path:
    return cache_dir() / "embeddings" / "file-hashes.json"


def _load_memo() -> dict[str, str]:
    try:
        return json.loads(_memo_path().read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _save_memo(memo: dict[str, str]) -> None:
    path = _memo_path()
    # forget files that are gone (deleted runs), so the memo does not grow without bound
    memo = {k: v for k, v in memo.items() if os.path.exists(k.rsplit("|", 2)[0])}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        tmp.write_text(json.dumps(memo), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache only costs speed
        log.warning("could not write %s: %s", path, exc)


def _folder_fingerprint(folder: Path) -> str:
    memo = _load_memo()
    before = len(memo)
    parts: list[str] = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if not path.is_file() or path.name in _SKIP_NAMES:
            continue
        if any(p.startswith(".") or p.startswith("checkpoint-") for p in rel.parts):
            continue
        parts.append(f"{rel.as_posix()}:{_file_digest(path, memo)}")
    if len(memo) != before:
        _save_memo(memo)
    return content_hash("folder", *parts, length=24)


def _hub_snapshot(name: str) -> Path | None:
    try:
        return Path(snapshot_download(repo_id=name, local_files_only=True))
    except Exception:  # not cached locally, or not a valid repo id
        return None


def model_fingerprint(
    name: str, *, max_seq_length: int | None = None, dtype: str = "float32"
) -> str | None:
    """A fingerprint of a model given by alias, local path or hub id; None when it cannot be
    determined without downloading (a hub id not yet in the local hub cache). A model read at
    another ``max_seq_length`` than its own, or with other weights than float32 (``dtype``:
    the teacher's and the judge's bfloat16), gives other embeddings, so it gets a fingerprint,
    and a cache, of its own: the evaluation's float32 embeddings never mix with them."""
    path = resolve_model(name)
    if os.path.isdir(path):
        fingerprint = "dir-" + _folder_fingerprint(Path(path))
    else:
        snapshot = _hub_snapshot(path)
        if snapshot is None:
            return None
        # The snapshot folder is named after the commit, which pins every file's content.
        fingerprint = "hub-" + content_hash(path, snapshot.name, length=24)
    if max_seq_length is not None:
        fingerprint += f"-len{max_seq_length}"
    if dtype != "float32":
        fingerprint += f"-{dtype}"
    return fingerprint


def loaded_model_fingerprint(model: SentenceTransformer) -> str:
    """A fingerprint of a model object: its parameters, prompts, modules and sequence length."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    meta = {
        "modules": [type(m).__name__ for m in model],
        "prompts": dict(getattr(model, "prompts", {}) or {}),
        "max_seq_length": getattr(model, "max_seq_length", None),
        "truncate_dim": getattr(model, "truncate_dim", None),
    }
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return "obj-" + h.hexdigest()[:24]


class EmbeddingCache:
    """Append-only store of one model's embeddings, keyed by text hash.

    ``fingerprint=None`` gives a cache that stores nothing (every text is encoded), so callers
    need no special case for models that cannot be fingerprinted.
    """

    def __init__(self, fingerprint: str | None, root: Path | None = None) -> None:
        self.fingerprint = fingerprint
        self.folder = (
            (root or cache_dir() / "embeddings") / f"{_FORMAT}-{fingerprint}"
            if fingerprint
            else None
        )
        self._index: dict[str, tuple[str, int]] | None = None
        self._shards: dict[str, np.ndarray] = {}
        self.encoded = 0  # texts encoded through this cache (misses)
        self.hits = 0

    # ------------------------------------------------------------------ reading
    def _load_index(self) -> dict[str, tuple[str, int]]:
        if self._index is not None:
            return self._index
        index: dict[str, tuple[str, int]] = {}
        if self.folder is not None and self.folder.is_dir():
            # A .keys file is written after its .npy, so its presence means the shard is whole.
            for keys_file in sorted(self.folder.glob("*.keys")):
                shard = keys_file.stem
                if not (self.folder / f"{shard}.npy").is_file():
                    continue
                try:
                    keys = keys_file.read_text(encoding="utf-8").split()
                except OSError:
                    continue
                for row, key in enumerate(keys):
                    index.setdefault(key, (shard, row))
        self._index = index
        return index

    def _shard(self, name: str) -> np.ndarray:
        if name not in self._shards:
            assert self.folder is not None
            self._shards[name] = np.load(self.folder / f"{name}.npy", mmap_mode="r")
        return self._shards[name]

    def __len__(self) -> int:
        return len(self._load_index())

    # ------------------------------------------------------------------ writing
    def _append(self, keys: list[str], vectors: np.ndarray) -> None:
        if self.folder is None or not keys:
            return
        name = f"shard-{uuid.uuid4().hex[:16]}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{name}.npy.tmp"
            with tmp.open("wb") as f:
                np.save(f, np.ascontiguousarray(vectors, dtype=np.float32))
            os.replace(tmp, self.folder / f"{name}.npy")
            tmp_keys = self.folder / f".{name}.keys.tmp"
            tmp_keys.write_text("\n".join(keys) + "\n", encoding="utf-8")
            os.replace(tmp_keys, self.folder / f"{name}.keys")
        except OSError as exc:
            log.warning("could not write embeddings cache %s: %s", self.folder, exc)
            return
        index = self._load_index()
        self._shards[name] = np.asarray(vectors, dtype=np.float32)
        for row, key in enumerate(keys):
            index.setdefault(key, (name, row))

    # ------------------------------------------------------------------ lookup
    def encode_with(
        self,
        model: SentenceTransformer,
        texts: Sequence[str],
        role: Role,
        *,
        batch_size: int = 32,
        progress: str | None = None,
    ) -> np.ndarray:
        """``model``'s embeddings of ``texts`` as queries (``encode_query``) or documents
        (``encode_document``, so the model's own prompts apply), read from and added to this
        cache; ``progress`` labels the bar shown while the missing texts are encoded."""
        fn = model.encode_query if role == "query" else model.encode_document

        def encode(missing: list[str]) -> np.ndarray:
            return fn(
                missing, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
            )

        return self.get_or_encode(list(texts), role, encode, progress=progress, block=batch_size)

    def get_or_encode(
        self,
        texts: Sequence[str],
        role: Role,
        encode: Callable[[list[str]], np.ndarray],
        *,
        progress: str | None = None,
        block: int = 64,
    ) -> np.ndarray:
        """Embeddings of ``texts`` (rows in the same order); only unseen texts reach ``encode``.

        With ``progress``, they reach it ``block`` at a time (longest first, so each block pads
        little) under a progress bar of that label, where bars show.
        """
        keys = [text_key(role, t) for t in texts]
        with _lock:
            index = self._load_index()
            missing: dict[str, str] = {}
            for key, text in zip(keys, texts, strict=True):
                if key not in index and key not in missing:
                    missing[key] = text
        fresh: dict[str, np.ndarray] = {}
        if missing:
            t0 = time.perf_counter()
            missing_keys = list(missing)

            def save(rows: list[int], vectors: np.ndarray) -> None:
                # as the pass goes, so that a kill keeps what was encoded before it
                with _lock:
                    self._append([missing_keys[i] for i in rows], vectors)

            # each block's shape is checked as it comes
            vectors = _encode_in_blocks(list(missing.values()), encode, progress, block, save)
            self._record_rate(list(missing.values()), time.perf_counter() - t0)
            self.encoded += len(missing)
            fresh = dict(zip(missing, vectors, strict=True))
        self.hits += len(texts) - len(missing)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        rows = []
        for key in keys:
            if key in fresh:
                rows.append(fresh[key])
            else:
                shard, row = self._index[key]  # type: ignore[index]
                rows.append(self._shard(shard)[row])
        return np.stack(rows).astype(np.float32, copy=False)

    def missing(self, texts: Sequence[str], role: Role) -> list[str]:
        """The distinct texts of ``texts`` this cache would have to encode."""
        index = self._load_index()
        return list(dict.fromkeys(t for t in texts if text_key(role, t) not in index))

    def _record_rate(self, texts: list[str], seconds: float) -> None:
        """Keep this model's speed on this machine (characters a second), for estimates."""
        if self.fingerprint is None or len(texts) < _RATE_MIN_TEXTS or seconds <= 0:
            return
        chars = sum(len(t) for t in texts)
        record_rate("encode", self.fingerprint, chars_per_second=round(chars / seconds, 1))

    def estimate_seconds(self, texts: Sequence[str]) -> float | None:
        """How long encoding ``texts`` took at the rate last measured here; None: never measured."""
        rate = recorded_rate("encode", self.fingerprint) if self.fingerprint else None
        if not rate or not rate.get("chars_per_second"):
            return None
        return sum(len(t) for t in texts) / float(rate["chars_per_second"])


def _encode_in_blocks(
    texts: list[str],
    encode: Callable[[list[str]], np.ndarray],
    progress: str | None,
    block: int,
    save: Callable[[list[int], np.ndarray], None] | None = None,
) -> np.ndarray:
    """``encode`` over ``texts``, longest first, ``block`` at a time under a progress bar where
    bars show (else :data:`SAVE_EVERY` at a time); every :data:`SAVE_EVERY` texts and at the
    end, ``save`` gets the rows encoded since (indices into ``texts``) and their vectors."""
    shown_bars = progress is not None and bars_shown() and len(texts) > block
    step = block if shown_bars else SAVE_EVERY
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out: np.ndarray | None = None
    unsaved: list[int] = []
    with bar(len(texts), progress or "encoding") if shown_bars else nullcontext() as shown:
        for start in range(0, len(texts), step):
            rows = order[start : start + step]
            vectors = np.asarray(encode([texts[i] for i in rows]), dtype=np.float32)
            if vectors.ndim != 2 or vectors.shape[0] != len(rows):
                raise ValueError(f"encoder returned shape {vectors.shape} for {len(rows)} texts")
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
            unsaved += rows
            if save is not None and (len(unsaved) >= SAVE_EVERY or start + step >= len(texts)):
                save(unsaved, out[unsaved])
                unsaved = []
            if shown is not None:
                shown.update(len(rows))
    assert out is not None, "called with texts to encode"
    return out
