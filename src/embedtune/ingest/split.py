"""Train/validation split by document, and the guard that keeps copies of training text out of
validation.

Splitting by document (not by chunk) means validation questions are asked about text the model
never trained on, as in deployment. The split depends only on the documents' contents and the
seed: each document is ranked by a hash of (seed, its content hash), so renaming or moving
files, or the order the file system lists them in, changes nothing.

Documents repeat themselves across files (a licence, a shared introduction, a copied section),
so after chunking every validation chunk whose normalised text equals a training chunk's, or
whose word 5-gram Jaccard similarity to one reaches the threshold, is dropped from validation.
Candidates come from MinHash with banded locality-sensitive hashing (128 hashes) and each is
confirmed by its exact Jaccard similarity, so nothing below the threshold is ever dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np

from embedtune.records import Chunk, Document, Page, content_hash

__all__ = ["DocumentSplit", "split_documents", "drop_leaked_chunks", "jaccard"]

log = logging.getLogger("embedtune.ingest")


@dataclass
class DocumentSplit:
    train: list[Document]
    val: list[Document]
    notes: list[str] = field(default_factory=list)


def _cut_text(text: str, at: int) -> int:
    """The paragraph, sentence or word boundary nearest after ``at`` (or before, if none)."""
    for pattern in (r"\n\n", r"(?<=[.!?])\s", r"\s"):
        m = re.compile(pattern).search(text, at)
        if m and m.start() < len(text) - 1:
            return m.start()
        before = [m.start() for m in re.finditer(pattern, text[:at])]
        if before and before[-1] > 0:
            return before[-1]
    return at


def _split_single(doc: Document, val_ratio: float) -> tuple[Document, Document | None, str]:
    n = len(doc.pages)
    if n >= 2:
        n_val = min(n - 1, max(1, round(n * val_ratio)))
        train_pages, val_pages = doc.pages[: n - n_val], doc.pages[n - n_val :]
        where = f"pages {val_pages[0].number}-{val_pages[-1].number}"
    else:
        page = doc.pages[0]
        cut = _cut_text(page.text, int(len(page.text) * (1 - val_ratio)))
        head, tail = page.text[:cut].strip(), page.text[cut:].strip()
        if not head or not tail:
            return doc, None, f"only one document ({doc.path}) and it is too short to split"
        train_pages = [Page(number=page.number, text=head)]
        val_pages = [Page(number=page.number, text=tail)]
        where = f"last {len(tail) / max(1, len(page.text)):.0%} of text"
    train = doc.model_copy(update={"pages": train_pages})
    val = doc.model_copy(update={"pages": val_pages})
    note = (
        f"only one document ({doc.path}): validation is its {where}, which shares topics "
        "and terms with the training part, so scores will be optimistic; add more documents "
        "for an honest evaluation"
    )
    return train, val, note


def split_documents(docs: Sequence[Document], val_ratio: float, seed: int) -> DocumentSplit:
    """Hold out ``round(len(docs) * val_ratio)`` documents (at least one, and at least one left
    for training) for validation; a single document is cut into a leading training part and a
    trailing validation part instead, with a warning."""
    if not docs:
        return DocumentSplit([], [])
    if len(docs) == 1:
        train, val, note = _split_single(docs[0], val_ratio)
        log.warning(note)
        return DocumentSplit([train], [val] if val else [], [note])
    ranked = sorted(docs, key=lambda d: (content_hash(str(seed), d.content_hash), d.id))
    n_val = min(len(docs) - 1, max(1, round(len(docs) * val_ratio)))
    val_ids = {d.id for d in ranked[:n_val]}
    train = sorted((d for d in docs if d.id not in val_ids), key=lambda d: d.id)
    val = sorted((d for d in docs if d.id in val_ids), key=lambda d: d.id)
    return DocumentSplit(train, val)


# --- leakage guard ---------------------------------------------------------------------------

_WORD = re.compile(r"\w+")
_N_HASHES = 128
_SHINGLE = 5


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads a polynomial hash of word ids over all 64 bits."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _shingles(ids: np.ndarray) -> np.ndarray:
    """Sorted unique hashes of the word 5-grams of a sequence of word ids (a text shorter than
    five words is one shingle)."""
    k = min(_SHINGLE, len(ids))
    n = len(ids) - k + 1
    h = np.zeros(n if k else 0, np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            h = h * np.uint64(0x100000001B3) + ids[j : j + n]
    return np.unique(_mix(h))


def _rows_per_band(threshold: float) -> int:
    """The most rows per band that still finds a pair at ``threshold`` with 99.9% probability."""
    best = 1
    for r in (1, 2, 4, 8, 16, 32):
        if 1 - (1 - threshold**r) ** (_N_HASHES // r) >= 0.999:
            best = r
    return best


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sorted unique hash arrays."""
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter) if len(a) + len(b) else 1.0


def drop_leaked_chunks(
    train: Sequence[Chunk], val: Sequence[Chunk], threshold: float, *, examples: int = 5
) -> tuple[list[Chunk], dict[str, Any]]:
    """Validation chunks with no exact or near-duplicate in training, and a report of the rest:
    ``{"exact": n, "near": n, "threshold": t, "examples": [...]}``."""
    report: dict[str, Any] = {"exact": 0, "near": 0, "threshold": threshold, "examples": []}
    if not train or not val:
        return list(val), report
    train_words = [_WORD.findall(c.text.lower()) for c in train]
    val_words = [_WORD.findall(c.text.lower()) for c in val]
    exact = {" ".join(w): c.id for w, c in zip(train_words, train, strict=True)}
    # Word ids from one table over both splits, so hashes are deterministic across runs.
    vocab = dict.fromkeys(chain.from_iterable(chain(train_words, val_words)))
    ids = {w: i for i, w in enumerate(vocab, 1)}

    def shingle(words: list[str]) -> np.ndarray:
        return _shingles(np.fromiter(map(ids.__getitem__, words), np.uint64, len(words)))

    rng = np.random.default_rng(0x5EED)
    a = rng.integers(1, 2**63, _N_HASHES, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, _N_HASHES, dtype=np.uint64)

    def signature(h: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return ((h[:, None] * a[None, :] + b[None, :]) >> np.uint64(32)).min(axis=0)

    r = _rows_per_band(threshold)
    bands = _N_HASHES // r
    buckets: dict[tuple[int, bytes], list[int]] = {}
    train_sh = []
    for words in train_words:
        sh = shingle(words)
        train_sh.append(sh)
        sig = signature(sh)
        for band in range(bands):
            key = (band, sig[band * r : (band + 1) * r].tobytes())
            buckets.setdefault(key, []).append(len(train_sh) - 1)

    kept: list[Chunk] = []
    for c, words in zip(val, val_words, strict=True):
        twin = exact.get(" ".join(words))
        if twin is not None:
            report["exact"] += 1
            _example(report, c, twin, 1.0, examples)
            continue
        sh = shingle(words)
        sig = signature(sh)
        candidates: set[int] = set()
        for band in range(bands):
            candidates.update(buckets.get((band, sig[band * r : (band + 1) * r].tobytes()), ()))
        best, best_i = 0.0, -1
        for i in candidates:
            s = jaccard(sh, train_sh[i])
            if s > best:
                best, best_i = s, i
        if best >= threshold:
            report["near"] += 1
            _example(report, c, train[best_i].id, best, examples)
            continue
        kept.append(c)
    dropped = report["exact"] + report["near"]
    if dropped:
        log.warning(
            "dropped %d validation chunk(s) that repeat training text (%d exact, %d with word "
            "5-gram Jaccard >= %.2f), so validation does not reward memorising training chunks",
            dropped,
            report["exact"],
            report["near"],
            threshold,
        )
    return kept, report


def _example(report: dict[str, Any], c: Chunk, twin: str, sim: float, limit: int) -> None:
    if len(report["examples"]) < limit:
        snippet = c.text[:160] + ("..." if len(c.text) > 160 else "")
        report["examples"].append(
            {"val_chunk": c.id, "train_chunk": twin, "similarity": round(sim, 3), "text": snippet}
        )
