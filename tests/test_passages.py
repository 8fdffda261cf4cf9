"""Passage batches: all of a chunk's questions in one batch, the chunk encoded once per step."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import Dataset
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from test_train_data import make_sets

from embedtune.config import TrainConfig
from embedtune.dataset import QADataset
from embedtune.train import finetune
from embedtune.train.distill import TeacherDistillLoss
from embedtune.train.passages import PassageBatchSampler, PassageRankingLoss

# q0..q9 over 5 chunks: a has 3 questions, b 2, c 2, d 2, e 1
POSITIVES = ["a", "b", "a", "c", "d", "b", "a", "c", "d", "e"]
ROWS = Dataset.from_dict({"anchor": [f"q{i}" for i in range(10)], "positive": POSITIVES})


def _epoch(sampler: PassageBatchSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_each_batch_holds_whole_chunks_and_every_row_once_per_epoch():
    sampler = PassageBatchSampler(ROWS, batch_size=2, drop_last=False, seed=7)
    batches = _epoch(sampler, 0)
    assert len(batches) == len(sampler) == 3  # 5 chunks, 2 per batch
    assert sorted(i for b in batches for i in b) == list(range(10))
    for batch in batches:
        chunks = {POSITIVES[i] for i in batch}
        assert len(chunks) <= 2
        # every question of each chunk in the batch is in this batch
        assert sorted(batch) == sorted(i for i, p in enumerate(POSITIVES) if p in chunks)


def test_the_order_repeats_for_a_seed_and_changes_with_the_epoch():
    one = PassageBatchSampler(ROWS, batch_size=2, drop_last=False, seed=7)
    two = PassageBatchSampler(ROWS, batch_size=2, drop_last=False, seed=7)
    assert _epoch(one, 0) == _epoch(two, 0)
    assert any(_epoch(one, e) != _epoch(one, 0) for e in range(1, 5))


class _Counting(torch.nn.Module):
    """Wraps a model and counts the texts it encodes."""

    def __init__(self, model):
        super().__init__()
        self.model, self.texts = model, 0

    def forward(self, features):
        self.texts += features["input_ids"].size(0)
        return self.model(features)


def _features(model, column: list[str]) -> dict:
    return model.tokenize(column)


def test_a_chunk_is_encoded_once_and_is_never_its_own_questions_negative(minilm):
    minilm.eval()
    queries = ["How do volcanoes erupt?", "What makes magma rise?", "Why is the sky blue?"]
    passages = [
        "Magma rises through cracks in the crust and erupts.",
        "Magma rises through cracks in the crust and erupts.",
        "Sunlight scatters off air molecules, blue most of all.",
    ]
    features = [_features(minilm, queries), _features(minilm, passages)]
    counting = _Counting(minilm)
    grouped = PassageRankingLoss(minilm)
    grouped.model = counting
    with torch.no_grad():
        loss = grouped(features, None)
    assert counting.texts == 3 + 2  # three questions, two distinct chunks

    # the same loss by hand: each question over the two distinct chunks
    with torch.no_grad():
        q = minilm.encode(queries, convert_to_tensor=True)
        d = minilm.encode(passages[1:], convert_to_tensor=True)
    scores = torch.nn.functional.cosine_similarity(q[:, None], d[None], dim=-1) * grouped.scale
    expected = torch.nn.functional.cross_entropy(scores, torch.tensor([0, 0, 1]))
    assert loss.item() == pytest.approx(expected.item(), abs=1e-4)

    # pairs-style MNRL scores the copy as a negative of the first two questions: a higher loss
    with torch.no_grad():
        pairwise = MultipleNegativesRankingLoss(minilm)(features, None)
    assert pairwise.item() > loss.item() + 0.1


@pytest.mark.parametrize("loss_class", [PassageRankingLoss, TeacherDistillLoss])
def test_without_repeated_chunks_the_loss_is_the_pairs_loss(minilm, loss_class):
    minilm.eval()
    queries = ["How do volcanoes erupt?", "Why is the sky blue?", "What do bees eat?"]
    passages = ["Magma rises and erupts.", "Air scatters blue light.", "Bees eat nectar."]
    features = [_features(minilm, queries), _features(minilm, passages)]
    labels = torch.nn.functional.normalize(torch.randn(3, 2, 16), dim=-1)  # a teacher's rows
    with torch.no_grad():
        grouped = loss_class(minilm)(features, labels)
        pairs = loss_class(minilm, grouped=False)(features, labels)
    assert grouped.item() == pytest.approx(pairs.item(), abs=1e-4)


def _with_repeated_chunks(data: QADataset) -> QADataset:
    """Every chunk asked twice: a second question per chunk (its first reworded)."""
    queries, relevant = dict(data.queries), {k: list(v) for k, v in data.relevant_docs.items()}
    for qid, text in data.queries.items():
        queries[qid + "-2"] = "Tell me: " + text
        relevant[qid + "-2"] = list(data.relevant_docs[qid])
    return QADataset(queries=queries, corpus=dict(data.corpus), relevant_docs=relevant)


def test_a_run_takes_one_step_per_batch_of_chunks(tmp_path):
    train, val = make_sets()
    train = _with_repeated_chunks(train)
    chunks = len({d for docs in train.relevant_docs.values() for d in docs})
    pairs = sum(len(v) for v in train.relevant_docs.values())
    assert pairs == 2 * chunks
    cfg = TrainConfig(
        epochs=1,
        batch_size=7,
        max_seq_length=32,
        teacher=None,
        bf16="off",
        keep="last",
        passage_batches=True,
    )
    summary = finetune("all-MiniLM-L6-v2", train, val, cfg, tmp_path / "model")
    assert summary.steps == -(-chunks // 7)  # not one step per 7 pairs: half as many
    metrics = json.loads((tmp_path / "model.train" / "metrics.json").read_text())
    assert metrics["recipe"]["batch_sampler"] == "passages"

    off = cfg.model_copy(update={"passage_batches": False})
    summary = finetune("all-MiniLM-L6-v2", train, val, off, tmp_path / "pairs")
    assert summary.steps == -(-pairs // 7)
