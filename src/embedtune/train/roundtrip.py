"""The teacher's round trip for pairs that no round trip checked (``train.roundtrip_top_k``).

``embedtune generate`` keeps a written question as a training pair only if the judge ranks its
chunk in its top k (:func:`embedtune.generate.filters.roundtrip_keep`). Pairs a user brings with
``--train-data`` had no such check, and pairs from a weak writer then teach the student their
mistakes: on every question SmolLM2 wrote for cvs, unfiltered, people's questions lost 0.027
NDCG@10 with the teacher's KL term and 0.066 without it (BENCHMARKS.md, Quality). Here the
teacher ranks each pair's chunk among the training chunks; a pair outside its top k moves to the
rejects, which learn the teacher's in-batch ranking alone, as generate's rejects do.
"""

from __future__ import annotations

from collections.abc import Callable

from sentence_transformers import SentenceTransformer

from embedtune.dataset import QADataset
from embedtune.embeddings import EmbeddingCache
from embedtune.errors import InputError
from embedtune.generate.filters import roundtrip_keep
from embedtune.train.data import merged_corpus

__all__ = ["roundtrip_split", "joined"]


def roundtrip_split(
    teacher: SentenceTransformer,
    train: QADataset,
    top_k: int,
    say: Callable[[str], None],
    *,
    cache: EmbeddingCache | None = None,
    name: str = "the teacher",
) -> tuple[QADataset, QADataset | None]:
    """``train`` as (the pairs whose chunk ``teacher`` ranks in its top ``top_k`` of the
    training chunks, the others); a question with several chunks passes if one of them does."""
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
    if not kept:
        raise InputError(
            f"{train.metadata.get('source', 'the training data')}: {name} ranks none of its "
            f"{len(best)} questions' chunks in its top {top_k} of {len(ids)}; check that "
            "relevant_docs names each question's chunk, or set train.roundtrip_top_k: null"
        )
    say(
        f"round trip ({name}): {len(doubted)} of {len(best)} questions have their chunk outside "
        f"its top {top_k} of {len(ids)} training chunks; they learn its ranking alone"
    )
    return _subset(train, kept), (_subset(train, doubted) if doubted else None)


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
