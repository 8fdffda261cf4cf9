"""Passage batches: every question of a chunk in one batch, the chunk encoded once per step.

Generated data holds several questions per chunk (two per call by default, and llama-index's
datasets two per chunk). Batched as (question, chunk) pairs, a chunk is encoded once for each of
its questions, and the chunks, a few hundred tokens against a question's twenty, are most of the
cost of a step. Batched by passage (``train.passage_batches``, off by default: measured 1.32x
faster training at two questions per chunk, with slightly lower gains in each comparison so far,
BENCHMARKS.md, Train), ``train.batch_size`` counts distinct chunks:

- :class:`PassageBatchSampler` shuffles the chunks (seeded, anew each epoch) and fills each batch
  with ``batch_size`` of them, each with all of its questions;
- :class:`PassageRankingLoss` encodes each distinct chunk of the batch once and ranks it for
  every question that asks about it. The other chunks of the batch are the negatives, as in
  MultipleNegativesRankingLoss; a chunk is never a negative of its own question.

An epoch then takes one step per ``batch_size`` chunks instead of one per ``batch_size`` pairs,
with the same number of chunks encoded per step.

    >>> from datasets import Dataset
    >>> rows = Dataset.from_dict({"anchor": ["q1", "q2", "q3", "q4"], "positive": ["a", "b", "a", "c"]})
    >>> sampler = PassageBatchSampler(rows, batch_size=2, drop_last=False, seed=0)
    >>> len(sampler), sorted(i for batch in sampler for i in batch)
    (2, [0, 1, 2, 3])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from datasets import Dataset
from sentence_transformers.base.sampler import DefaultBatchSampler
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from torch import Tensor

from embedtune.config import TrainConfig

__all__ = [
    "PassageBatchSampler",
    "PassageRankingLoss",
    "passage_count",
    "distinct_rows",
    "uses_passage_batches",
]

POSITIVE = "positive"


def uses_passage_batches(cfg: TrainConfig, world_size: int) -> bool:
    """Whether a run batches by passage: ``train.passage_batches``, except where another part of
    the recipe needs sentence-transformers' own loss (training across devices gathers every
    device's embeddings; Matryoshka and cached MNRL compute their own)."""
    return (
        cfg.passage_batches and world_size == 1 and not cfg.matryoshka_dims and cfg.loss == "mnrl"
    )


def passage_count(data: Dataset) -> int:
    """How many distinct chunks ``data`` asks about: the rows an epoch of passage batches takes
    ``batch_size`` at a time."""
    return len(set(data[POSITIVE]))


class PassageBatchSampler(DefaultBatchSampler):
    """Batches of ``batch_size`` distinct chunks, each with every row that has it as positive.

    The order of the chunks is drawn from ``seed`` and the epoch, so a run repeats and each epoch
    differs. The last batch may hold fewer chunks unless ``drop_last``.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=batch_size,
            drop_last=drop_last,
            valid_label_columns=valid_label_columns,
            generator=generator,
            seed=seed,
        )
        groups: dict[str, list[int]] = {}
        for index, passage in enumerate(dataset[POSITIVE]):
            groups.setdefault(passage, []).append(index)
        self.groups = list(groups.values())

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.Generator().manual_seed(self.seed + self.epoch)
        shuffled = torch.randperm(len(self.groups), generator=order).tolist()
        for start in range(0, len(shuffled), self.batch_size):
            chosen = shuffled[start : start + self.batch_size]
            if self.drop_last and len(chosen) < self.batch_size:
                return
            yield [index for g in chosen for index in self.groups[g]]

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.groups) // self.batch_size
        return math.ceil(len(self.groups) / self.batch_size)


def distinct_rows(features: dict[str, Any]) -> tuple[dict[str, Any], Tensor, Tensor]:
    """The distinct texts of one tokenised column: their features, ``inverse`` (each row's
    index among them) and ``first`` (the first row holding each)."""
    ids = features["input_ids"]
    _, inverse = torch.unique(ids, dim=0, return_inverse=True)
    rows = torch.arange(ids.size(0), device=ids.device)
    first = torch.full((int(inverse.max()) + 1,), ids.size(0), device=ids.device)
    first = first.scatter_reduce(0, inverse, rows, reduce="amin")
    kept = {
        k: v[first] if torch.is_tensor(v) and v.dim() > 0 and v.size(0) == ids.size(0) else v
        for k, v in features.items()
    }
    return kept, inverse, first


class PassageRankingLoss(MultipleNegativesRankingLoss):
    """MultipleNegativesRankingLoss over the batch's distinct chunks, each encoded once.

    Rows are (anchor, positive[, negative_1, ...]); rows that share a positive share its
    embedding and its column of the score matrix, so no question is trained to rank its own
    chunk below a copy of it. Negatives are encoded as given. Subclasses add terms through
    :meth:`grouped_loss`. With ``grouped=False`` it is sentence-transformers' loss unchanged
    (for training across devices, which gathers every device's embeddings).
    """

    def __init__(self, model: Any, *, grouped: bool = True, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.grouped = grouped

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        if not self.grouped:
            return super().forward(sentence_features, labels)
        columns = list(sentence_features)
        passages, inverse, first = distinct_rows(columns[1])
        embeddings = [self.model(f)["sentence_embedding"] for f in [columns[0], passages]]
        embeddings += [self.model(f)["sentence_embedding"] for f in columns[2:]]
        return self.grouped_loss(embeddings, inverse, first, labels)

    def grouped_loss(
        self, embeddings: list[Tensor], inverse: Tensor, first: Tensor, labels: Tensor | None
    ) -> Tensor:
        """Cross-entropy of each question over the distinct chunks (then the negatives), with
        its own chunk, ``inverse``, as the answer. ``first`` is unused here: subclasses pick
        the labels of the distinct chunks with it."""
        queries, candidates = embeddings[0], torch.cat(embeddings[1:])
        scores = self.similarity_fct(queries, candidates) * self.scale
        return F.cross_entropy(scores, inverse)
