"""Teacher distillation: a stronger embedding model's in-batch ranking taught to the student.

A small generator (SmolLM2-135M) writes noisy questions; MultipleNegativesRankingLoss alone
then teaches the student whatever those questions get wrong. A stronger embedding model (the
packaged all-mpnet-base-v2, or any model the user names) already ranks passages well: for every
query in a batch we take the teacher's softmax over the batch's passages and ask the student's
to match it (KL divergence), on top of the usual contrastive loss. The teacher's embeddings are
computed once before training and travel with each row as its ``label``, so the teacher costs
one encoding pass, not a forward pass per step.

    loss = contrastive_weight * MNRL(student)
           + distill_weight * KL(teacher in-batch distribution || student's)

With ``distill_over="negatives"`` the KL term compares the two rankings of each question's
other candidates only: the teacher says which other chunks come close, and never disputes the
pair's own chunk, which MNRL asserts.

With ``false_negative_margin`` the teacher also vets the contrastive term's negatives, as
GISTEmbed does with its guide model (sentence-transformers' ``GISTEmbedLoss``, which runs the
guide on every batch): a candidate the teacher scores above the question's own chunk minus the
margin is no negative of that question. A generic question that a neighbouring chunk answers as
well is then not taught to push that chunk away.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from embedtune.embeddings import EmbeddingCache
from embedtune.train.passages import PassageRankingLoss

__all__ = ["TeacherDistillLoss", "ranking_kl", "teacher_labels"]


class TeacherDistillLoss(PassageRankingLoss):
    """MultipleNegativesRankingLoss plus KL divergence to a teacher's in-batch distribution.

    Rows are (anchor, positive[, negative_1, ...]) with a ``label`` of shape
    (n_columns, teacher_dim): the teacher's normalised embedding of each column. Grouped (the
    default, see :mod:`embedtune.train.passages`), both rankings run over the batch's distinct
    chunks.
    """

    def __init__(
        self,
        model: Any,
        *,
        distill_weight: float = 1.0,
        contrastive_weight: float = 1.0,
        scale: float = 20.0,
        teacher_scale: float = 20.0,
        false_negative_margin: float | None = None,
        distill_over: str = "batch",
        **kwargs: Any,
    ) -> None:
        super().__init__(model, scale=scale, **kwargs)
        self.distill_weight = distill_weight
        self.contrastive_weight = contrastive_weight
        self.teacher_scale = teacher_scale
        self.false_negative_margin = false_negative_margin
        self.distill_over = distill_over
        #: the mask's tally over training: in-batch negatives seen, and those the teacher masked
        self.negatives_seen = 0
        self.negatives_masked = 0

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        if not _has_teacher(labels):
            return super().compute_loss_from_embeddings(embeddings, labels)
        teacher = labels.detach().float()
        docs = teacher[:, 1:].transpose(0, 1).reshape(-1, teacher.size(-1))
        # row i's own chunk is candidate i (no duplicates within a batch)
        own = torch.arange(teacher.size(0), device=teacher.device)
        if self._masks() and not self.gather_across_devices:
            loss = self._masked_ranking(embeddings, own, teacher[:, 0], docs)
        else:  # across devices the other devices' labels are not here: unmasked
            loss = super().compute_loss_from_embeddings(embeddings, labels)
        return self._with_kl(loss, embeddings, teacher[:, 0], docs, own)

    def grouped_loss(
        self, embeddings: list[Tensor], inverse: Tensor, first: Tensor, labels: Tensor | None
    ) -> Tensor:
        if not _has_teacher(labels):
            return super().grouped_loss(embeddings, inverse, first, labels)
        teacher = labels.detach().float()
        # the teacher's candidates in the student's order: the distinct chunks, then negatives
        docs = torch.cat(
            [teacher[first, 1], teacher[:, 2:].transpose(0, 1).reshape(-1, teacher.size(-1))]
        )
        if self._masks():
            loss = self._masked_ranking(embeddings, inverse, teacher[:, 0], docs)
        else:
            loss = super().grouped_loss(embeddings, inverse, first, labels)
        return self._with_kl(loss, embeddings, teacher[:, 0], docs, inverse)

    def _masks(self) -> bool:
        return self.false_negative_margin is not None and self.contrastive_weight != 0

    def _with_kl(
        self,
        loss: Tensor,
        embeddings: list[Tensor],
        t_query: Tensor,
        t_docs: Tensor,
        own: Tensor,
    ) -> Tensor:
        if self.distill_weight == 0:
            return loss
        # over the negatives only where the pairs' term asserts the own chunk (not the
        # rejects' KL-only batches, whose own chunk is the doubted one)
        leave_out = own if self.distill_over == "negatives" and self.contrastive_weight else None
        return loss * self.contrastive_weight + self._kl(embeddings, t_query, t_docs, leave_out)

    def _masked_ranking(
        self, embeddings: list[Tensor], own: Tensor, t_query: Tensor, t_docs: Tensor
    ) -> Tensor:
        """Cross-entropy of each question over the candidates, ``own`` its chunk's column,
        without the candidates the teacher scores above that chunk minus the margin."""
        t_scores = F.normalize(t_query, dim=-1) @ F.normalize(t_docs, dim=-1).T
        rows = torch.arange(own.size(0), device=own.device)
        threshold = t_scores[rows, own].unsqueeze(1) - self.false_negative_margin
        masked = t_scores > threshold
        masked[rows, own] = False
        self.negatives_seen += masked.numel() - own.size(0)
        self.negatives_masked += int(masked.sum())
        queries, candidates = embeddings[0], torch.cat(embeddings[1:])
        scores = self.similarity_fct(queries, candidates) * self.scale
        scores = scores.masked_fill(masked.to(scores.device), float("-inf"))
        return F.cross_entropy(scores, own.to(scores.device))

    def _kl(
        self,
        embeddings: list[Tensor],
        t_query: Tensor,
        t_docs: Tensor,
        leave_out: Tensor | None = None,
    ) -> Tensor:
        """The distill term: KL of the student's in-batch distribution to the teacher's; with
        ``leave_out`` (each question's own candidate) over the other candidates only."""
        t_query, t_docs = F.normalize(t_query, dim=-1), F.normalize(t_docs, dim=-1)
        # Under Matryoshka the student's embeddings arrive truncated; the teacher's stay whole.
        s_query = F.normalize(embeddings[0].float(), dim=-1)
        s_docs = F.normalize(torch.cat(embeddings[1:]).float(), dim=-1)
        t_logits = t_query @ t_docs.T * self.teacher_scale
        s_logits = s_query @ s_docs.T * self.scale
        return self.distill_weight * ranking_kl(t_logits, s_logits, leave_out)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            **super().get_config_dict(),
            "distill_weight": self.distill_weight,
            "contrastive_weight": self.contrastive_weight,
            "teacher_scale": self.teacher_scale,
            "false_negative_margin": self.false_negative_margin,
            "distill_over": self.distill_over,
        }


def ranking_kl(t_logits: Tensor, s_logits: Tensor, leave_out: Tensor | None = None) -> Tensor:
    """KL of the student's softmax over each row's candidates to the teacher's, batch mean;
    with ``leave_out`` (one column per row) over the other candidates only."""
    if leave_out is not None:
        keep = torch.ones_like(t_logits, dtype=torch.bool)
        keep[torch.arange(keep.size(0), device=keep.device), leave_out.to(keep.device)] = False
        t_logits = t_logits[keep].view(keep.size(0), -1)
        s_logits = s_logits[keep.to(s_logits.device)].view(keep.size(0), -1)
    t_logp = F.log_softmax(t_logits, dim=1)
    s_logp = F.log_softmax(s_logits, dim=1)
    return F.kl_div(s_logp, t_logp, log_target=True, reduction="batchmean")


def _has_teacher(labels: Tensor | None) -> bool:
    """Whether a batch's labels are the teacher's embeddings, (rows, columns, dim)."""
    return labels is not None and labels.dim() == 3


def teacher_labels(
    teacher: Any,
    columns: dict[str, list[str]],
    *,
    query_column: str = "anchor",
    batch_size: int = 32,
    cache: EmbeddingCache | None = None,
    progress: str = "teacher labels",
) -> list[list[list[float]]]:
    """The teacher's normalised embedding of every text column, one (n_columns, dim) per row.

    Each distinct text is encoded once; queries through ``encode_query`` and passages through
    ``encode_document`` so the teacher's own prompts apply, in the teacher's own dtype. With
    ``cache`` (the embedding cache of the teacher's fingerprint, which names that dtype) texts
    the teacher encoded before, in the round trip or an earlier run, are read back.
    ``progress`` labels the progress bars.
    """
    store = cache if cache is not None else EmbeddingCache(None)  # None: stores nothing
    names = list(columns)
    n_rows = len(columns[names[0]])
    encoded: dict[str, dict[str, np.ndarray]] = {"query": {}, "document": {}}
    for role in ("query", "document"):
        texts = sorted(
            {
                t
                for name in names
                if (name == query_column) == (role == "query")
                for t in columns[name]
            }
        )
        if not texts:
            continue
        vectors = store.encode_with(
            teacher, texts, role, batch_size=batch_size, progress=f"{progress}: {role}s"
        )
        vectors = vectors.astype(np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        encoded[role] = dict(zip(texts, vectors, strict=True))
    rows = []
    for i in range(n_rows):
        row = []
        for name in names:
            role = "query" if name == query_column else "document"
            row.append(encoded[role][columns[name][i]].tolist())
        rows.append(row)
    return rows
