"""The pairs' contrastive term and its options, as build_loss makes them from settings."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from embedtune.config import TrainConfig
from embedtune.train.losses import build_loss


def _pairs(seed: int = 0, n: int = 5, dim: int = 8) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [F.normalize(torch.randn(n, dim, generator=g), dim=-1) for _ in range(2)]


def _loss(minilm, embeddings: list[torch.Tensor], **settings) -> float:
    cfg = TrainConfig(teacher=None, matryoshka_dims=None, **settings)
    return float(
        build_loss(minilm, cfg, world_size=1).compute_loss_from_embeddings(embeddings, None)
    )


def test_gte_directions_also_push_the_batchs_questions_apart(minilm):
    queries, chunks = _pairs()
    twins = queries.clone()
    twins[1] = twins[0]  # two questions the student cannot tell apart
    # InfoNCE looks at questions against chunks only: the twin questions change nothing of
    # their own terms but their row; GTE's question-to-question term pays for them
    plain = _loss(minilm, [twins, chunks]) - _loss(minilm, [queries, chunks])
    gte = _loss(minilm, [twins, chunks], loss_directions="gte") - _loss(
        minilm, [queries, chunks], loss_directions="gte"
    )
    assert gte > plain + 0.05


def test_hardness_makes_a_hard_negative_cost_more(minilm):
    queries, chunks = _pairs(1)
    harder = chunks.clone()
    harder[1] = F.normalize(queries[0] + 0.3 * chunks[1], dim=-1)  # chunk 1 close to question 0
    plain = _loss(minilm, [queries, harder]) - _loss(minilm, [queries, chunks])
    weighted = _loss(minilm, [queries, harder], hardness_strength=9.0) - _loss(
        minilm, [queries, chunks], hardness_strength=9.0
    )
    assert weighted > plain + 0.05


def test_the_options_reach_the_teachers_loss(minilm):
    cfg = TrainConfig(teacher="all-MiniLM-L6-v2", matryoshka_dims=None, loss_directions="gte")
    loss = build_loss(minilm, cfg, world_size=1)
    assert len(loss.directions) == 4
    # the rejects' KL-only batches have no contrastive term to change
    assert build_loss(minilm, cfg, world_size=1, kl_only=True).directions == ("query_to_doc",)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"passage_batches": True}, "passage_batches"),
        ({"loss": "cached_mnrl"}, "loss cached_mnrl"),
        ({"false_negative_margin": 0.0}, "false_negative_margin"),
    ],
)
def test_options_the_loss_would_ignore_are_refused_by_name(settings, named):
    with pytest.raises(ValidationError, match=rf"hardness_strength works .* {named} replaces"):
        TrainConfig(hardness_strength=9.0, **settings)
    TrainConfig(**settings)  # each alone is fine
