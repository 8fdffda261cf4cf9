"""The loss a fine-tuning run trains with, built from ``train`` settings.

- ``MultipleNegativesRankingLoss`` over (query, chunk) pairs (with ``passage_batches``
  over each batch's distinct chunks, :mod:`embedtune.train.passages`), or its GradCache form
  ``CachedMultipleNegativesRankingLoss`` (``loss: cached_mnrl``) for batches beyond memory;
- with a teacher, :class:`~embedtune.train.distill.TeacherDistillLoss` (MNRL plus the KL term
  towards the teacher's in-batch ranking, weighted ``distill_weight``), and for the round
  trip's rejects the KL term alone, at weight 1 (they have no pairs to weigh it against);
  with ``false_negative_margin`` the teacher also keeps false negatives out of the pairs' term;
- with a margin teacher, :class:`~embedtune.train.margins.MarginDistillLoss` on the pairs
  instead (MNRL plus MarginMSE towards its margins over each pair's mined negatives: GPL);
- ``loss_directions`` and ``hardness_strength``: MultipleNegativesRankingLoss's own variants
  (GTE's four directions in one softmax; Lan et al.'s weighting of hard in-batch negatives);
- wrapped in ``MatryoshkaLoss`` when ``matryoshka_dims`` are set.

Negatives are gathered across devices when training runs on several.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sentence_transformers.sentence_transformer import losses

from embedtune.config import TrainConfig
from embedtune.errors import ConfigError
from embedtune.train.distill import TeacherDistillLoss
from embedtune.train.margins import MarginDistillLoss
from embedtune.train.passages import PassageRankingLoss, uses_passage_batches

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["build_loss"]


def build_loss(
    model: SentenceTransformer, cfg: TrainConfig, world_size: int, *, kl_only: bool = False
) -> Any:
    """The loss of the pairs; with ``kl_only`` the rejects' loss (the teacher's KL term alone)."""
    gather = world_size > 1
    grouped = uses_passage_batches(cfg, world_size)
    options = {} if kl_only else _contrastive_options(cfg)
    if kl_only:
        loss = TeacherDistillLoss(
            model,
            distill_weight=1.0,
            contrastive_weight=0.0,
            grouped=grouped,
            gather_across_devices=gather,
        )
    elif cfg.margin_teacher:
        loss = MarginDistillLoss(
            model,
            distill_weight=cfg.distill_weight,
            grouped=grouped,
            gather_across_devices=gather,
            **options,
        )
    elif cfg.teacher:
        if cfg.loss == "cached_mnrl":
            raise ConfigError(
                "train.teacher works with loss 'mnrl' only; set train.loss to 'mnrl' or "
                "train.teacher to null"
            )
        loss = TeacherDistillLoss(
            model,
            distill_weight=cfg.distill_weight,
            false_negative_margin=cfg.false_negative_margin,
            distill_over=cfg.distill_over,
            grouped=grouped,
            gather_across_devices=gather,
            **options,
        )
    elif cfg.loss == "cached_mnrl":
        loss = losses.CachedMultipleNegativesRankingLoss(
            model, mini_batch_size=cfg.mini_batch_size, gather_across_devices=gather
        )
    elif grouped:
        loss = PassageRankingLoss(model)
    else:
        loss = losses.MultipleNegativesRankingLoss(model, gather_across_devices=gather, **options)
    if cfg.matryoshka_dims:
        loss = losses.MatryoshkaLoss(model, loss, matryoshka_dims=_matryoshka_dims(model, cfg))
    return loss


#: ``train.loss_directions`` as sentence-transformers' MultipleNegativesRankingLoss names them
DIRECTIONS = {
    "query_to_doc": ("query_to_doc",),
    "gte": ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"),
}


def _contrastive_options(cfg: TrainConfig) -> dict[str, Any]:
    """``loss_directions`` and ``hardness_strength`` as MultipleNegativesRankingLoss's
    arguments (TrainConfig refuses them beside the settings that replace that loss)."""
    options: dict[str, Any] = {}
    if cfg.loss_directions != "query_to_doc":
        options["directions"] = DIRECTIONS[cfg.loss_directions]
    if cfg.hardness_strength:
        options["hardness_mode"] = "in_batch_negatives"
        options["hardness_strength"] = cfg.hardness_strength
    return options


def _matryoshka_dims(model: SentenceTransformer, cfg: TrainConfig) -> list[int]:
    dim = model.get_embedding_dimension()
    dims = cfg.matryoshka_dims or []
    bad = [d for d in dims if d > dim or d < 1]
    if bad:
        raise ConfigError(
            f"train.matryoshka_dims {bad} exceed the model's embedding size {dim}; use "
            f"dimensions between 1 and {dim}"
        )
    return sorted(set(dims) | {dim}, reverse=True)
