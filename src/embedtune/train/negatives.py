"""Hard negatives mined from the base model, with a margin that keeps false negatives out.

For each training query the base model ranks the *training* chunks; a chunk becomes a hard
negative when it ranks high yet scores at least ``margin`` below the query's weakest relevant
chunk. Chunks relevant to the query are never negatives, whatever their score, and neither is a
chunk whose text equals a relevant one.

Why not ``sentence_transformers.util.mine_hard_negatives``: with ``output_format="n-tuple"`` it
drops every pair for which fewer than ``num_negatives`` candidates survive the margin within
``range_max``, silently shrinking the training set; here a pair always keeps its place and takes
the best negatives that pass the margin (the corpus has far more chunks than negatives needed).
It also matches positives by text, whereas we know them by chunk id.

    rows = mine_hard_negatives(model, train, num_negatives=1, margin=0.1)
    rows.column_names  # ['anchor', 'positive', 'negative_1']
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import torch
from datasets import Dataset

from embedtune.dataset import QADataset
from embedtune.embeddings import EmbeddingCache
from embedtune.errors import TrainingError
from embedtune.train.data import pair_rows

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["mine_hard_negatives"]

logger = logging.getLogger(__name__)


def mine_hard_negatives(
    model: SentenceTransformer,
    train: QADataset,
    num_negatives: int,
    margin: float = 0.1,
    *,
    query_prompt_name: str | None = None,
    document_prompt_name: str | None = None,
    batch_size: int = 64,
    stats: dict | None = None,
    cache: EmbeddingCache | None = None,
) -> Dataset:
    """Training rows ``anchor, positive, negative_1..negative_n`` (one per query/chunk pair).

    ``margin`` is absolute in cosine similarity: a candidate must score at most
    ``min(positive scores) - margin``. ``stats``, if given, receives counts for the summary.
    ``cache`` (the embedding cache of ``model``'s fingerprint; only without prompt names, since
    the cache holds the model's own query/document encodings) reads back texts the model
    encoded before, e.g. a teacher's embeddings of the chunks from the round trip.
    """
    cids = list(train.corpus)
    n_needed = num_negatives + max(len(v) for v in train.relevant_docs.values())
    if len(cids) < n_needed:
        raise TrainingError(
            f"hard_negatives={num_negatives} needs at least {n_needed} training chunks, the "
            f"training corpus has {len(cids)}; lower hard_negatives or set it to 0"
        )
    qids = [qid for qid in train.queries if train.relevant_docs.get(qid)]
    index = {cid: i for i, cid in enumerate(cids)}
    text_to_rows: dict[str, list[int]] = {}
    for i, cid in enumerate(cids):
        text_to_rows.setdefault(train.corpus[cid], []).append(i)

    use_cache = cache is not None and query_prompt_name is None and document_prompt_name is None

    def embed(texts: list[str], role: str, prompt_name: str | None) -> torch.Tensor:
        """Normalised float32 embeddings on the CPU, read from ``cache`` when it applies."""
        progress = f"hard negatives: {role}s"
        if use_cache:
            vectors = cache.encode_with(
                model, texts, role, batch_size=batch_size, progress=progress
            )
        else:

            def encode(batch: list[str]) -> np.ndarray:
                with torch.no_grad():
                    return model.encode(
                        batch, prompt_name=prompt_name, batch_size=batch_size, convert_to_numpy=True
                    )

            store = EmbeddingCache(None)  # stores nothing: prompts change the embeddings
            vectors = store.get_or_encode(texts, role, encode, progress=progress, block=batch_size)
        return torch.nn.functional.normalize(torch.from_numpy(vectors).float(), dim=-1)

    scores = (
        embed([train.queries[q] for q in qids], "query", query_prompt_name)
        @ embed([train.corpus[c] for c in cids], "document", document_prompt_name).T
    )

    negatives_of: dict[str, list[str]] = {}
    skipped_margin = 0
    for row, qid in enumerate(qids):
        s = scores[row].clone()
        pos_rows = sorted(
            {r for cid in train.relevant_docs[qid] for r in text_to_rows[train.corpus[cid]]}
            | {index[cid] for cid in train.relevant_docs[qid]}
        )
        pos_min = float(s[pos_rows].min())
        s[pos_rows] = -float("inf")
        too_close = s > pos_min - margin
        skipped_margin += int((too_close & torch.isfinite(s)).sum())
        s[too_close] = -float("inf")
        top = torch.topk(s, k=min(num_negatives, len(cids))).indices.tolist()
        chosen = [cids[i] for i in top if torch.isfinite(s[i])]
        if len(chosen) < num_negatives:
            # Every remaining chunk scored above the margin: fall back to the lowest-scoring ones.
            rest = [cids[i] for i in torch.argsort(scores[row]).tolist() if i not in pos_rows]
            chosen += [c for c in rest if c not in chosen][: num_negatives - len(chosen)]
        negatives_of[qid] = chosen

    rows: dict[str, list[str]] = {"anchor": [], "positive": []}
    for k in range(1, num_negatives + 1):
        rows[f"negative_{k}"] = []
    text_pairs = set(pair_rows(train))
    for qid in qids:
        for cid in train.relevant_docs[qid]:
            pair = (train.queries[qid], train.corpus[cid])
            if pair not in text_pairs:
                continue
            text_pairs.discard(pair)
            rows["anchor"].append(pair[0])
            rows["positive"].append(pair[1])
            for k, neg in enumerate(negatives_of[qid], 1):
                rows[f"negative_{k}"].append(train.corpus[neg])
    if stats is not None:
        stats.update(
            {
                "queries": len(qids),
                "candidates_skipped_by_margin": skipped_margin,
                "margin": margin,
                "negatives_per_pair": num_negatives,
            }
        )
    logger.info(
        "mined %d hard negatives for each of %d pairs (%d candidates within the margin skipped)",
        num_negatives,
        len(rows["anchor"]),
        skipped_margin,
    )
    return Dataset.from_dict(rows)
