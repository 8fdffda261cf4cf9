"""Margin distillation (GPL's MarginMSE): a scorer's margins between each pair's chunk and its
mined hard negatives, taught to the student.

GPL (Wang et al., 2022) adapts a retriever to new documents with generated questions, hard
negatives mined for each, and a cross-encoder's pseudo-labels: for a question q, its chunk p and
a negative n, the cross-encoder's margin ``CE(q, p) - CE(q, n)`` is the target of the student's
``s(q, p) - s(q, n)`` (MarginMSE, Hofstaetter et al., 2020). A noisy question whose chunk is no
better than the negative gets a small or negative margin, so the writer's mistakes are not taught
as facts. ``train.margin_teacher`` names the scorer:

- a cross-encoder (a reranker such as cross-encoder/ms-marco-MiniLM-L6-v2 or
  BAAI/bge-reranker-base): its raw scores (logits) of each (question, chunk) pair;
- an embedding model: its cosine similarities times ``scale``, the temperature the student's
  contrastive term uses, so both margins are logits of the same softmax scale.

The margins are computed once before training and travel with each row as its ``label``
(shape ``(negatives,)``). The student's margins are its cosine similarities times ``scale``::

    loss = contrastive_weight * MNRL(student) + distill_weight * MSE(student margins, labels)

The cross-encoder reads question and chunk together, so it cannot score a whole batch's
candidates cheaply as an embedding teacher's in-batch ranking can: its term covers each pair's
mined negatives, as in GPL.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from torch import Tensor

from embedtune.embeddings import EmbeddingCache
from embedtune.train.distill import teacher_labels
from embedtune.train.passages import PassageRankingLoss

__all__ = ["MarginDistillLoss", "margin_labels", "negative_columns"]

#: The softmax scale of the student's contrastive term (MultipleNegativesRankingLoss's default),
#: which an embedding teacher's cosine margins are multiplied by.
SCALE = 20.0


def negative_columns(data: Dataset) -> list[str]:
    """The mined negatives' columns of the training rows, in order."""
    return [c for c in data.column_names if c.startswith("negative_")]


def margin_labels(
    scorer: Any,
    data: Dataset,
    *,
    cross_encoder: bool,
    batch_size: int = 32,
    cache: EmbeddingCache | None = None,
    progress: str = "margin teacher",
) -> list[list[float]]:
    """Each row's margins ``score(anchor, positive) - score(anchor, negative_i)``.

    A cross-encoder scores each distinct (question, text) pair once, as raw logits; an
    embedding model encodes each distinct text once and its cosine similarities are multiplied
    by :data:`SCALE`. Through ``cache`` (the model's embedding cache; for a cross-encoder, one
    of its scores) what it scored or encoded before is read back, e.g. after a crash.
    """
    negatives = negative_columns(data)
    if not negatives:
        raise ValueError("margin labels need mined negatives (train.hard_negatives >= 1)")
    texts = {name: list(data[name]) for name in ["anchor", "positive", *negatives]}
    if cross_encoder:  # the columns read once: a Dataset copies a whole column on each read
        anchors = texts["anchor"]
        pairs = sorted(
            {(q, texts[c][i]) for c in ["positive", *negatives] for i, q in enumerate(anchors)}
        )
        logits = _pair_scores(scorer, pairs, batch_size, cache, f"{progress}: pairs")
        score = dict(zip(pairs, logits, strict=True))
        return [
            [float(score[(q, texts["positive"][i])] - score[(q, texts[c][i])]) for c in negatives]
            for i, q in enumerate(anchors)
        ]
    vectors = teacher_labels(
        scorer,
        texts,
        batch_size=batch_size,
        cache=cache,
        progress=progress,
    )
    rows = np.asarray(vectors, dtype=np.float64)  # (rows, 1 + 1 + negatives, dim), normalised
    sims = np.einsum("rd,rcd->rc", rows[:, 0], rows[:, 1:]) * SCALE
    return (sims[:, :1] - sims[:, 1:]).tolist()


def _pair_scores(
    scorer: Any,
    pairs: list[tuple[str, str]],
    batch_size: int,
    cache: EmbeddingCache | None,
    progress: str,
) -> list[float]:
    """A cross-encoder's raw score of each pair, through ``cache``: each pair is kept there as
    a one-number "embedding" of its JSON form."""
    store = cache if cache is not None else EmbeddingCache(None)  # None: stores nothing

    def score(keys: list[str]) -> np.ndarray:
        logits = scorer.predict(
            [tuple(json.loads(k)) for k in keys],
            batch_size=batch_size,
            activation_fn=torch.nn.Identity(),
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(logits, dtype=np.float32).reshape(-1, 1)

    keys = [json.dumps([q, p], ensure_ascii=False) for q, p in pairs]
    scores = store.get_or_encode(keys, "query", score, progress=progress, block=batch_size)
    return scores[:, 0].astype(np.float64).tolist()


class MarginDistillLoss(PassageRankingLoss):
    """MultipleNegativesRankingLoss plus MarginMSE towards a scorer's margins (the ``label``
    of each row: one margin per mined negative). Grouped (passage batches), the positive of
    each row is its distinct chunk's embedding."""

    def __init__(
        self,
        model: Any,
        *,
        distill_weight: float = 1.0,
        contrastive_weight: float = 1.0,
        scale: float = SCALE,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, scale=scale, **kwargs)
        self.distill_weight = distill_weight
        self.contrastive_weight = contrastive_weight

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        loss = super().compute_loss_from_embeddings(embeddings, labels)
        return self._with_margins(loss, embeddings[0], embeddings[1], embeddings[2:], labels)

    def grouped_loss(
        self, embeddings: list[Tensor], inverse: Tensor, first: Tensor, labels: Tensor | None
    ) -> Tensor:
        loss = super().grouped_loss(embeddings, inverse, first, labels)
        positives = embeddings[1][inverse]
        return self._with_margins(loss, embeddings[0], positives, embeddings[2:], labels)

    def _with_margins(
        self,
        loss: Tensor,
        queries: Tensor,
        positives: Tensor,
        negatives: list[Tensor],
        labels: Tensor | None,
    ) -> Tensor:
        if labels is None or labels.dim() != 2 or not negatives:
            return loss
        margins = self.student_margins(queries, positives, negatives)
        target = labels.detach().to(margins.device, margins.dtype)
        return self.contrastive_weight * loss + self.distill_weight * F.mse_loss(margins, target)

    def student_margins(
        self, queries: Tensor, positives: Tensor, negatives: list[Tensor]
    ) -> Tensor:
        """(rows, negatives): the student's cosine margins times ``scale``."""
        q = F.normalize(queries.float(), dim=-1)
        pos = (q * F.normalize(positives.float(), dim=-1)).sum(-1, keepdim=True)
        neg = torch.stack([(q * F.normalize(n.float(), dim=-1)).sum(-1) for n in negatives], 1)
        return (pos - neg) * self.scale

    def get_config_dict(self) -> dict[str, Any]:
        return {
            **super().get_config_dict(),
            "distill_weight": self.distill_weight,
            "contrastive_weight": self.contrastive_weight,
        }
