"""Ranking a corpus for each query and the retrieval metrics of the ranked lists.

A shared service: the evaluation scores every model with it, and training scores the base model
with it before fine-tuning, so both report the same numbers for the same embeddings.
Definitions follow sentence-transformers' ``InformationRetrievalEvaluator`` exactly, so numbers
agree with it to float precision on the same embeddings:

- relevance is binary: a document is relevant when the dataset lists it for the query (BEIR
  qrels with a score above 0), as in sentence-transformers;
- candidates are ranked by score, ties broken by ascending corpus id;
- ``accuracy@k`` (hit rate): 1 if any relevant document is in the top k;
- ``precision@k``: relevant documents in the top k divided by k (even when the corpus is smaller);
- ``recall@k``: relevant documents in the top k divided by the number of relevant documents;
- ``mrr@10``: 1 / rank of the first relevant document within the top 10, else 0;
- ``ndcg@10``: binary gains, DCG = sum 1/log2(rank+1), ideal DCG over min(#relevant, 10) hits;
- ``map@100``: sum of precision at each relevant hit within the top 100, divided by
  min(100, #relevant).

Per-query values are kept (not only means) because the bootstrap resamples queries::

    >>> hits = np.array([[False, True, False], [True, False, False]])
    >>> per_query_metrics(hits, np.array([1, 2]), k_values=[1, 3])["ndcg@10"].round(4)
    array([0.6309, 0.6131])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MRR_K",
    "NDCG_K",
    "MAP_K",
    "PRIMARY_METRIC",
    "Retrieval",
    "score_retrieval",
    "metric_names",
    "retrieval_depth",
    "rank_corpus",
    "hit_matrix",
    "per_query_metrics",
    "hit_rate_curve",
    "aggregate",
]

MRR_K = 10
NDCG_K = 10
MAP_K = 100
PRIMARY_METRIC = f"ndcg@{NDCG_K}"


def metric_names(k_values: Sequence[int]) -> list[str]:
    """Metric names in sentence-transformers' order: accuracy, precision, recall, MRR, NDCG, MAP."""
    ks = sorted(set(k_values))
    return (
        [f"accuracy@{k}" for k in ks]
        + [f"precision@{k}" for k in ks]
        + [f"recall@{k}" for k in ks]
        + [f"mrr@{MRR_K}", f"ndcg@{NDCG_K}", f"map@{MAP_K}"]
    )


def retrieval_depth(k_values: Sequence[int]) -> int:
    """How many ranked documents every metric (and the k = 1..10 hit-rate curve) needs."""
    return max([*k_values, MRR_K, NDCG_K, MAP_K])


# --------------------------------------------------------------------------- ranking
def _similarity(queries: np.ndarray, corpus: np.ndarray, fn: str) -> np.ndarray:
    if fn == "cosine" or fn == "dot":
        return queries @ corpus.T
    if fn == "euclidean":
        sq = (queries**2).sum(1)[:, None] + (corpus**2).sum(1)[None, :] - 2 * queries @ corpus.T
        return -np.sqrt(np.maximum(sq, 0))
    if fn == "manhattan":
        return -np.abs(queries[:, None, :] - corpus[None, :, :]).sum(-1)
    raise ValueError(f"unknown similarity function {fn!r}: use cosine, dot, euclidean or manhattan")


def _normalise(x: np.ndarray) -> np.ndarray:
    # torch.nn.functional.normalize's eps, as sentence-transformers' cos_sim uses
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def rank_corpus(
    query_emb: np.ndarray,
    corpus_emb: np.ndarray,
    corpus_ids: Sequence[str],
    depth: int,
    similarity: str = "cosine",
    *,
    batch_size: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``depth`` best corpus positions per query and their scores, best first.

    Ties are broken by ascending corpus id (as sentence-transformers does), including ties at the
    cut-off: every candidate scoring exactly the k-th score competes by id for the last places.
    Returns ``(indices [n_queries, depth], scores [n_queries, depth])``; depth is capped at the
    corpus size.
    """
    q = np.asarray(query_emb, dtype=np.float32)
    c = np.asarray(corpus_emb, dtype=np.float32)
    if similarity == "cosine":
        q, c = _normalise(q), _normalise(c)
    n = c.shape[0]
    top = min(depth, n)
    id_rank = np.empty(n, dtype=np.int64)
    id_rank[np.array(sorted(range(n), key=list(corpus_ids).__getitem__), dtype=np.int64)] = (
        np.arange(n)
    )
    out_idx = np.empty((q.shape[0], top), dtype=np.int64)
    out_scores = np.empty((q.shape[0], top), dtype=np.float32)
    for start in range(0, q.shape[0], batch_size):
        scores = _similarity(q[start : start + batch_size], c, similarity).astype(np.float32)
        if top < n:
            part = np.argpartition(-scores, top - 1, axis=1)[:, :top]
        else:
            part = np.broadcast_to(np.arange(n), scores.shape).copy()
        part_scores = np.take_along_axis(scores, part, axis=1)
        thresholds = part_scores.min(axis=1, keepdims=True)
        tied = (scores >= thresholds).sum(axis=1) > top
        order = np.lexsort((id_rank[part], -part_scores), axis=-1)
        idx = np.take_along_axis(part, order, axis=1)
        for row in np.flatnonzero(tied):
            # argpartition picked arbitrary members of a tie at the cut-off: redo that row
            cand = np.flatnonzero(scores[row] >= thresholds[row, 0])
            keep = np.lexsort((id_rank[cand], -scores[row, cand]))[:top]
            idx[row] = cand[keep]
        out_idx[start : start + batch_size] = idx
        out_scores[start : start + batch_size] = np.take_along_axis(scores, idx, axis=1)
    return out_idx, out_scores


def hit_matrix(
    ranked_ids: Sequence[Sequence[str]], relevant: Sequence[set[str]], depth: int
) -> tuple[np.ndarray, np.ndarray]:
    """``hits[i, j]``: is the j-th ranked document of query i relevant; and #relevant per query."""
    hits = np.zeros((len(ranked_ids), depth), dtype=bool)
    for i, (ids, rel) in enumerate(zip(ranked_ids, relevant, strict=True)):
        for j, cid in enumerate(ids[:depth]):
            hits[i, j] = cid in rel
    n_rel = np.array([len(r) for r in relevant], dtype=np.int64)
    return hits, n_rel


# --------------------------------------------------------------------------- metrics
def per_query_metrics(
    hits: np.ndarray, n_relevant: np.ndarray, k_values: Sequence[int]
) -> dict[str, np.ndarray]:
    """Every metric for every query, from the hit matrix of the ranked lists.

    ``hits`` may be narrower than the deepest k (a corpus smaller than k): missing ranks count as
    misses, as they do in sentence-transformers.
    """
    depth = retrieval_depth(k_values)
    n_q = hits.shape[0]
    if hits.shape[1] < depth:
        hits = np.concatenate([hits, np.zeros((n_q, depth - hits.shape[1]), dtype=bool)], axis=1)
    h = hits.astype(np.float64)
    n_rel = np.asarray(n_relevant, dtype=np.float64)
    if np.any(n_rel <= 0):
        raise ValueError("every query needs at least one relevant document")
    cum = np.cumsum(h, axis=1)
    ranks = np.arange(1, depth + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1)
    out: dict[str, np.ndarray] = {}
    ks = sorted(set(k_values))
    for k in ks:
        out[f"accuracy@{k}"] = (cum[:, k - 1] > 0).astype(np.float64)
    for k in ks:
        out[f"precision@{k}"] = cum[:, k - 1] / k
    for k in ks:
        out[f"recall@{k}"] = cum[:, k - 1] / n_rel

    first = np.where(hits[:, :MRR_K].any(axis=1), hits[:, :MRR_K].argmax(axis=1) + 1, 0)
    out[f"mrr@{MRR_K}"] = np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0)

    dcg = (h[:, :NDCG_K] * discount[:NDCG_K]).sum(axis=1)
    ideal_cum = np.concatenate([[0.0], np.cumsum(discount[:NDCG_K])])
    idcg = ideal_cum[np.minimum(n_rel, NDCG_K).astype(np.int64)]
    out[f"ndcg@{NDCG_K}"] = dcg / idcg

    prec_at_hit = (cum[:, :MAP_K] / ranks[:MAP_K]) * h[:, :MAP_K]
    out[f"map@{MAP_K}"] = prec_at_hit.sum(axis=1) / np.minimum(MAP_K, n_rel)
    return out


def hit_rate_curve(hits: np.ndarray, max_k: int = 10) -> list[float]:
    """Hit rate (accuracy@k) for k = 1..max_k, for the line chart."""
    n_q = hits.shape[0]
    width = min(max_k, hits.shape[1])
    any_by_k = np.logical_or.accumulate(hits[:, :width], axis=1) if width else hits[:, :0]
    curve = [float(any_by_k[:, k - 1].mean()) if n_q else 0.0 for k in range(1, width + 1)]
    curve += [curve[-1] if curve else 0.0] * (max_k - width)
    return curve


def aggregate(per_query: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean over queries of each metric."""
    return {name: float(values.mean()) for name, values in per_query.items()}


@dataclass
class Retrieval:
    """One model's retrieval over one query set: what it ranked, and how well."""

    ranked: list[list[str]]  # the top corpus ids per query, best first
    hits: np.ndarray  # hits[i, j]: is query i's j-th ranked document relevant
    per_query: dict[str, np.ndarray]  # every metric for every query
    metrics: dict[str, float]  # their means


def score_retrieval(
    query_emb: np.ndarray,
    corpus_emb: np.ndarray,
    corpus_ids: Sequence[str],
    relevant: Sequence[Sequence[str]],
    k_values: Sequence[int],
    similarity: str = "cosine",
) -> Retrieval:
    """Rank ``corpus_ids`` for every query embedding and score the ranking against ``relevant``
    (the relevant ids of each query, in the same order as ``query_emb``)::

        >>> r = score_retrieval(np.eye(2), np.eye(2), ["a", "b"], [["b"], ["b"]], [1])
        >>> r.ranked, r.metrics["accuracy@1"]
        ([['a', 'b'], ['b', 'a']], 0.5)
    """
    depth = retrieval_depth(k_values)
    idx, _ = rank_corpus(query_emb, corpus_emb, corpus_ids, depth, similarity)
    ranked = [[corpus_ids[j] for j in row] for row in idx]
    hits, n_rel = hit_matrix(ranked, [set(r) for r in relevant], depth)
    per_query = per_query_metrics(hits, n_rel, k_values)
    return Retrieval(ranked=ranked, hits=hits, per_query=per_query, metrics=aggregate(per_query))
