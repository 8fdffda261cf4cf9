"""A margin teacher (GPL's MarginMSE): a cross-encoder's or an embedding model's margins between
each pair's chunk and its mined hard negatives, taught to the student."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from sentence_transformers import CrossEncoder, SentenceTransformer
from test_train import _cfg, _run_dir

from embedtune.config import TrainConfig
from embedtune.errors import ConfigError
from embedtune.models import is_cross_encoder
from embedtune.train import run_train
from embedtune.train.margins import SCALE, MarginDistillLoss, margin_labels

ROWS = Dataset.from_dict(
    {
        "anchor": ["Why do volcanoes erupt?", "How do bees make honey?"],
        "positive": [
            "Magma rises through cracks in the crust and erupts.",
            "Bees turn nectar into honey in the hive.",
        ],
        "negative_1": ["The stock market closed higher.", "Volcanoes erupt when magma rises."],
    }
)


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory, minilm_path) -> str:
    """A cross-encoder built on the packaged MiniLM (its scoring head freshly drawn): a stand-in
    with the files and behaviour of a real reranker, not its judgement."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ce") / "tiny-reranker"
    CrossEncoder(minilm_path, num_labels=1, device="cpu").save(str(folder))
    return str(folder)


def test_a_cross_encoder_is_told_from_an_embedding_model(tiny_cross_encoder, minilm_path, tmp_path):
    assert is_cross_encoder(tiny_cross_encoder)
    assert not is_cross_encoder(minilm_path)
    # an older reranker: a transformers sequence classifier, no sentence-transformers files
    old = tmp_path / "old-reranker"
    old.mkdir()
    (old / "config.json").write_text(
        json.dumps({"architectures": ["BertForSequenceClassification"]})
    )
    assert is_cross_encoder(str(old))


def test_cross_encoder_margins_are_its_score_differences(tiny_cross_encoder):
    ce = CrossEncoder(tiny_cross_encoder, device="cpu")
    margins = np.asarray(margin_labels(ce, ROWS, cross_encoder=True))
    assert margins.shape == (2, 1)
    for i, q in enumerate(ROWS["anchor"]):
        pos, neg = ce.predict(
            [(q, ROWS["positive"][i]), (q, ROWS["negative_1"][i])],
            activation_fn=torch.nn.Identity(),
        )
        assert margins[i, 0] == pytest.approx(pos - neg, abs=1e-4)


def test_an_embedding_teachers_margins_favour_the_relevant_chunk(minilm):
    margins = np.asarray(margin_labels(minilm, ROWS, cross_encoder=False))
    q = minilm.encode_query(ROWS["anchor"], normalize_embeddings=True)
    p = minilm.encode_document(ROWS["positive"], normalize_embeddings=True)
    n = minilm.encode_document(ROWS["negative_1"], normalize_embeddings=True)
    expected = ((q * p).sum(1) - (q * n).sum(1)) * SCALE
    assert np.allclose(margins[:, 0], expected, atol=1e-3)
    assert (margins > 0).all()  # each question's own chunk scores above the other topic


def _student(seed: int, rows: int = 6, dim: int = 8) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [F.normalize(torch.randn(rows, dim, generator=g), dim=-1) for _ in range(3)]


def test_the_margin_term_vanishes_where_the_student_agrees(minilm):
    q, p, n = _student(0)
    loss = MarginDistillLoss(minilm, distill_weight=1.0)
    plain = MarginDistillLoss(minilm, distill_weight=0.0)
    own = loss.student_margins(q, p, [n]).detach()
    same = loss.compute_loss_from_embeddings([q, p, n], own)
    assert torch.isclose(same, plain.compute_loss_from_embeddings([q, p, n], own), atol=1e-5)
    assert loss.compute_loss_from_embeddings([q, p, n], own + 3.0) > same + 1.0


def test_the_gradient_moves_the_students_margins_to_the_teachers(minilm):
    target = torch.tensor([[4.0], [-2.0], [6.0], [0.0], [3.0], [-4.0]])  # some negatives win
    q, p, n = (t.clone().requires_grad_(True) for t in _student(1))
    loss = MarginDistillLoss(minilm, distill_weight=1.0, contrastive_weight=0.0)
    opt = torch.optim.SGD([q, p, n], lr=0.05)

    def error() -> float:
        with torch.no_grad():
            return float(F.mse_loss(loss.student_margins(q, p, [n]), target))

    before = error()
    for _ in range(50):
        opt.zero_grad()
        loss.compute_loss_from_embeddings([q, p, n], target).backward()
        opt.step()
    assert error() < before * 0.2


def test_a_named_cross_encoder_teaches_the_pairs(tmp_path, tiny_cross_encoder, minilm):
    run = _run_dir(tmp_path / "run")
    cfg = _cfg(
        matryoshka_dims=None,
        epochs=1,
        eval_steps=None,
        save_steps=None,
        hard_negatives=1,
        margin_teacher=tiny_cross_encoder,
    )
    summary = run_train(cfg, run)
    assert summary.recipe.margin_teacher["model"] == tiny_cross_encoder
    assert summary.recipe.margin_teacher["kind"] == "cross-encoder"
    assert summary.recipe.distill_weight == 0.5
    card = (run / "model" / "README.md").read_text()
    assert "| margin teacher | " in card and "(cross-encoder, MarginMSE) |" in card
    texts = ["Why do volcanoes erupt?", "Magma rises through cracks in the crust."]
    after = SentenceTransformer(str(run / "model"), device="cpu").encode(texts)
    assert np.abs(after - minilm.encode(texts)).max() > 1e-3


def test_beside_a_teacher_the_margins_teach_the_pairs_and_the_teacher_the_rejects(tmp_path):
    from test_train import _rejects

    from embedtune.dataset import QADataset

    run = _run_dir(tmp_path / "run")
    train = QADataset.from_json(run / "data" / "train.json")
    _rejects(train).to_json(run / "data" / "train_rejects.json")
    cfg = _cfg(
        teacher="all-MiniLM-L6-v2",
        matryoshka_dims=None,
        epochs=1,
        eval_steps=None,
        save_steps=None,
        hard_negatives=1,
        margin_teacher="all-MiniLM-L6-v2",  # the same embedding model: loaded once
    )
    summary = run_train(cfg, run)
    assert summary.recipe.margin_teacher["kind"] == "embedding model"
    assert summary.recipe.teacher["model"] == "all-MiniLM-L6-v2"
    assert summary.data.reject_rows == 12 and summary.steps == 6  # 4 batches of pairs, 2 rejects


def test_margins_need_mined_negatives(tmp_path):
    with pytest.raises(ValueError, match="set hard_negatives to 1 or more"):
        TrainConfig(margin_teacher="cross-encoder/ms-marco-MiniLM-L6-v2")
    run = _run_dir(tmp_path / "run")
    with pytest.raises(ConfigError, match=r"train\.margin_teacher: model path .*nope does not"):
        run_train(_cfg(hard_negatives=1, margin_teacher=str(tmp_path / "nope")), run)
    assert not (run / "train" / "base_metrics.json").exists()


def test_a_cross_encoder_named_as_the_teacher_is_pointed_to_margin_teacher(
    tmp_path, tiny_cross_encoder
):
    run = _run_dir(tmp_path / "run")
    with pytest.raises(ConfigError, match=r"is a cross-encoder .* train\.margin_teacher"):
        run_train(_cfg(teacher=tiny_cross_encoder), run)


def test_a_hub_teacher_that_cannot_load_offline_is_named_before_any_work(tmp_path, monkeypatch):
    """Without a network and not in the hub's cache: said at once, not after the round trip
    and the mining (minutes on a real corpus)."""
    from embedtune import models

    monkeypatch.setattr(models, "hub_reachable", lambda: False)
    run = _run_dir(tmp_path / "run")
    with pytest.raises(ConfigError) as caught:
        run_train(_cfg(hard_negatives=1, margin_teacher="someone/not-cached-reranker"), run)
    assert str(caught.value).startswith(
        "train.margin_teacher: could not load model 'someone/not-cached-reranker': it is not a "
        "local folder, the Hugging Face hub cannot be reached (no network)"
    )
    assert not (run / "train" / "base_metrics.json").exists()


def test_a_cross_encoders_scores_are_read_back_after_a_crash(tiny_cross_encoder, tmp_path):
    """The scores are the slow part of a cross-encoder teacher (a forward pass per pair): a
    rerun scores nothing twice."""
    from embedtune.embeddings import EmbeddingCache

    ce = CrossEncoder(tiny_cross_encoder, device="cpu")
    first_cache = EmbeddingCache("test-reranker-pair-scores", root=tmp_path)
    first = margin_labels(ce, ROWS, cross_encoder=True, cache=first_cache)
    assert first_cache.encoded == 4  # 2 questions x (own chunk + negative)
    again = EmbeddingCache("test-reranker-pair-scores", root=tmp_path)
    second = margin_labels(ce, ROWS, cross_encoder=True, cache=again)
    assert again.encoded == 0 and again.hits == 4
    assert np.allclose(first, second, atol=1e-4)


def test_a_teacher_folder_with_a_broken_json_file_is_named_before_any_work(tmp_path):
    broken = tmp_path / "reranker"
    broken.mkdir()
    (broken / "config.json").write_text('{"architectures": [', encoding="utf-8")
    run = _run_dir(tmp_path / "run")
    with pytest.raises(ConfigError) as caught:
        run_train(_cfg(teacher=str(broken)), run)
    assert str(caught.value).startswith(
        f"train.teacher: could not load the model in {broken}: {broken / 'config.json'} is not "
        "valid JSON"
    )
    assert not (run / "train" / "base_metrics.json").exists()


def test_a_margin_teacher_alone_takes_the_teachers_settings_and_says_so():
    from embedtune.recipe import resolve_train

    cfg, why = resolve_train(
        "all-MiniLM-L6-v2",
        TrainConfig(teacher=None, margin_teacher="a-reranker", hard_negatives=1),
    )
    assert (cfg.epochs, cfg.learning_rate, cfg.merge_base) == (2.0, 5e-5, 0.0)
    assert why["train.learning_rate"].why == "with a margin teacher, as with a teacher: 5e-5"
