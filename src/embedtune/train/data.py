"""Training and validation inputs built from :class:`~embedtune.dataset.QADataset`.

Training rows are ``(anchor, positive)`` pairs: one per query and relevant chunk, the shape
sentence-transformers' in-batch-negative losses expect. Validation searches the held-out queries
against the *full* corpus (training and validation chunks), as a deployed retriever would::

    >>> train = QADataset(queries={"q1": "What is R?"}, corpus={"c1": "R is a language."},
    ...                   relevant_docs={"q1": ["c1"]})
    >>> list(pairs_dataset(train)["anchor"])
    ['What is R?']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets import Dataset

from embedtune.dataset import QADataset, load_dataset_path
from embedtune.errors import InputError

__all__ = [
    "check_dataset",
    "chunks_past_window",
    "load_sets",
    "pair_rows",
    "pairs_dataset",
    "merged_corpus",
]

# The share of a training set's chunks that may run past the model's window unremarked: a few
# long chunks are usual, a tenth means much of what the questions ask about is never read.
LONG_CHUNKS_SHARE = 0.10


def load_sets(train_path: Path, val_path: Path | None) -> tuple[QADataset, QADataset | None]:
    """Read training (and validation) data, either shape, remembering each file for messages."""
    train = load_dataset_path(train_path)
    train.metadata["source"] = str(train_path)
    val = None
    if val_path is not None:
        val = load_dataset_path(val_path)
        val.metadata["source"] = str(val_path)
    return train, val


def check_dataset(ds: QADataset, source: str) -> None:
    """Raise InputError, naming ``source``, when ``ds`` cannot be trained or evaluated on."""
    ds.validate_references(source)
    empty = [qid for qid, text in ds.queries.items() if not str(text).strip()]
    if empty:
        raise InputError(
            f"{source}: query {empty[0]!r} is empty ({len(empty)} empty queries); remove them or "
            "regenerate the questions"
        )
    empty_docs = [
        cid for cids in ds.relevant_docs.values() for cid in cids if not ds.corpus[cid].strip()
    ]
    if empty_docs:
        raise InputError(
            f"{source}: corpus entry {empty_docs[0]!r} is empty but is some query's relevant "
            "document; drop that query or fix the chunk text"
        )


def chunks_past_window(
    ds: QADataset,
    tokenizer: Any,
    window: int,
    limit: int | None,
    model: str,
    source: str,
    *,
    given: bool = False,
) -> str | None:
    """A warning where more than ``LONG_CHUNKS_SHARE`` of the chunks ``ds``'s questions point
    to are longer than the ``window`` tokens the model reads (special tokens included): the
    model learns and embeds only their start. ``limit`` is the most it can read (its position
    embeddings), which the warning offers where it is more than ``window``. ``given``: the
    user chose ``window`` (train.max_seq_length), so the warning says how to cut the chunks to
    it before it offers to read more."""
    cids = sorted({c for cids in ds.relevant_docs.values() for c in cids})
    if not cids:
        return None
    ids = tokenizer([ds.corpus[c] for c in cids], add_special_tokens=True, verbose=False)
    lengths = [len(x) for x in ids["input_ids"]]
    long = sum(n > window for n in lengths)
    if long <= LONG_CHUNKS_SHARE * len(cids):
        return None
    more = limit is not None and limit > window
    if given:
        fix = (
            f"to train on whole chunks, cut them to {window} tokens (a run does where "
            "train.max_seq_length is in RUN/config.yaml: `embedtune run` cuts its chunks again)"
            + (f", or let it read more (--max-seq-length up to {limit})" if more else "")
        )
        reads = f"the {window} tokens train.max_seq_length lets {model} read"
    else:
        fix = (
            f"--max-seq-length {limit} (train.max_seq_length) lets it read up to {limit}, "
            "slower to train and to serve; or cut the chunks shorter"
            if more
            else "cut the chunks shorter"
        )
        reads = f"the {window} tokens {model} reads"
    return (
        f"{source}: {long} of {len(cids)} chunks ({long / len(cids):.0%}) run past {reads} "
        f"(up to {max(lengths)}): it learns and embeds only their first {window}; {fix}"
    )


def pair_rows(ds: QADataset) -> list[tuple[str, str]]:
    """Unique (query text, relevant chunk text) pairs, in the dataset's order."""
    seen: set[tuple[str, str]] = set()
    rows = []
    for pair in ds.pairs():
        if pair not in seen:
            seen.add(pair)
            rows.append(pair)
    return rows


def pairs_dataset(ds: QADataset) -> Dataset:
    """A ``datasets.Dataset`` with columns ``anchor`` and ``positive``."""
    rows = pair_rows(ds)
    return Dataset.from_dict({"anchor": [a for a, _ in rows], "positive": [p for _, p in rows]})


def merged_corpus(*parts: QADataset | dict[str, str] | None) -> dict[str, str]:
    """Union of corpora keyed by chunk id; the same id with different text is an error."""
    out: dict[str, str] = {}
    for part in parts:
        if part is None:
            continue
        corpus = part.corpus if isinstance(part, QADataset) else part
        for cid, text in corpus.items():
            if cid in out and out[cid] != text:
                raise InputError(
                    f"corpus id {cid!r} names two different texts in the training and validation "
                    "data; chunk ids must be unique across splits"
                )
            out[cid] = text
    return out
