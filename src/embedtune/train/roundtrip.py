"""The teacher's round trip for pairs that no round trip checked (``train.roundtrip_top_k``).

``embedtune generate`` keeps a written question as a training pair only if the judge ranks its
chunk in its top k (:func:`embedtune.generate.filters.roundtrip_keep`). Pairs a user brings with
``--train-data`` had no such check, and pairs from a weak writer then teach the student their
mistakes: on every question SmolLM2 wrote for cvs, unfiltered, people's questions lost 0.027
NDCG@10 with the teacher's KL term and 0.066 without it (BENCHMARKS.md, Quality). Here the
teacher ranks each pair's chunk among the training chunks; a pair outside its top k moves to the
rejects, which learn the teacher's in-batch ranking alone, as generate's rejects do.

The teacher cannot tell a weak writer's wrong pairs from a good writer's hard ones pair by pair
(removing the 12% of GPT-written 10-K pairs it doubted cost 0.024), but the share it doubts
tells the writers apart: ``auto`` (the default) counts the round trip and applies it only where
the teacher doubts more than a third of the pairs (SmolLM2's: 62% on cvs, 75% on perl).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sentence_transformers import SentenceTransformer

from embedtune.dataset import QADataset
from embedtune.embeddings import EmbeddingCache
from embedtune.errors import InputError
from embedtune.generate.filters import roundtrip_keep
from embedtune.train.data import merged_corpus

__all__ = ["AUTO_TOP_K", "AUTO_SHARE", "RoundTrip", "roundtrip_split", "apply_roundtrip", "joined"]

#: ``auto``'s k: generate's default round trip.
AUTO_TOP_K = 20
#: ``auto`` applies the round trip where the teacher doubts more than this share of the pairs.
AUTO_SHARE = 1 / 3


@dataclass
class RoundTrip:
    """What the round trip found: the pairs it keeps, those it doubts, and how it ranked."""

    kept: QADataset
    doubted: QADataset | None
    top_k: int
    chunks: int  # the training chunks each question's chunk was ranked among
    applied: bool = True  # False: counted only, every pair trains as given

    @property
    def asked(self) -> int:
        return len(self.kept.queries) + self.n_doubted

    @property
    def n_doubted(self) -> int:
        return len(self.doubted.queries) if self.doubted is not None else 0

    @property
    def share(self) -> float:
        return self.n_doubted / self.asked if self.asked else 0.0


def roundtrip_split(
    teacher: SentenceTransformer,
    train: QADataset,
    top_k: int,
    *,
    cache: EmbeddingCache | None = None,
    name: str = "the teacher",
) -> RoundTrip:
    """``train`` split into the pairs whose chunk ``teacher`` ranks in its top ``top_k`` of the
    training chunks and the others; a question with several chunks passes if one of them does."""
    ids = list(train.corpus)
    index = {cid: i for i, cid in enumerate(ids)}
    asked = [(qid, cid) for qid in train.queries for cid in train.relevant_docs.get(qid, [])]
    ranks = roundtrip_keep(
        teacher,
        [train.corpus[cid] for cid in ids],
        [train.queries[qid] for qid, _ in asked],
        [index[cid] for _, cid in asked],
        top_k,
        cache=cache,
        progress=f"round trip ({name})",
    )
    best: dict[str, int] = {}
    for (qid, _), rank in zip(asked, ranks, strict=True):
        best[qid] = min(rank, best.get(qid, rank))
    kept = [q for q in train.queries if best.get(q, top_k) < top_k]
    doubted = [q for q in train.queries if q in best and best[q] >= top_k]
    return RoundTrip(
        kept=_subset(train, kept),
        doubted=_subset(train, doubted) if doubted else None,
        top_k=top_k,
        chunks=len(ids),
    )


def apply_roundtrip(
    setting: int | str,
    teacher: SentenceTransformer,
    train: QADataset,
    say: Callable[[str], None],
    *,
    cache: EmbeddingCache | None = None,
    name: str = "the teacher",
) -> RoundTrip:
    """The round trip ``train.roundtrip_top_k`` asks for (a k, or ``auto``), said to the user.
    Under ``auto`` the split is applied only where the teacher doubts more than
    :data:`AUTO_SHARE` of the pairs (``applied`` says whether it was)."""
    auto = setting == "auto"
    trip = roundtrip_split(
        teacher, train, AUTO_TOP_K if auto else int(setting), cache=cache, name=name
    )
    doubted = (
        f"round trip ({name}): {trip.n_doubted} of {trip.asked} questions ({trip.share:.0%}) have "
        f"their chunk outside its top {trip.top_k} of {trip.chunks} training chunks"
    )
    if auto and trip.share <= AUTO_SHARE:
        say(
            f"{doubted}; a third or less, as a good writer's hard questions are: every pair "
            "trains as given (train.roundtrip_top_k: auto)"
        )
        trip.applied = False
        return trip
    if not trip.kept.queries:
        source = train.metadata.get("source", "the training data")
        raise InputError(
            f"{source}: {name} ranks none of its {trip.asked} questions' chunks in its top "
            f"{trip.top_k} of {trip.chunks}; check that relevant_docs names each question's "
            "chunk, or set train.roundtrip_top_k: null"
        )
    why = (
        " (more than a third, as a weak writer's are; train.roundtrip_top_k: auto; null keeps "
        "them as pairs)"
        if auto
        else ""
    )
    say(f"{doubted}{why}; they learn its ranking alone")
    return trip


def joined(first: QADataset | None, second: QADataset | None) -> QADataset | None:
    """Two sets of questions as one (either may be None)."""
    if first is None or second is None:
        return first if second is None else second
    return QADataset(
        queries={**first.queries, **second.queries},
        corpus=merged_corpus(first, second),
        relevant_docs={**first.relevant_docs, **second.relevant_docs},
        mode=first.mode,
        metadata=dict(first.metadata),
    )


def _subset(data: QADataset, queries: list[str]) -> QADataset:
    return QADataset(
        queries={q: data.queries[q] for q in queries},
        corpus=data.corpus,
        relevant_docs={q: data.relevant_docs[q] for q in queries},
        mode=data.mode,
        metadata=dict(data.metadata),
    )
