"""Teacher distillation: the student is pulled towards the teacher's in-batch ranking."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from embedtune.train.distill import TeacherDistillLoss, ranking_kl, teacher_labels


def _embeddings(seed: int, n: int = 6, dim: int = 8) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [F.normalize(torch.randn(n, dim, generator=g), dim=-1) for _ in range(2)]


def test_kl_term_vanishes_when_the_student_ranks_like_the_teacher(minilm):
    student = _embeddings(0)
    labels = torch.stack(student, dim=1)  # teacher == student
    loss = TeacherDistillLoss(minilm, distill_weight=1.0)
    plain = TeacherDistillLoss(minilm, distill_weight=0.0)
    same = loss.compute_loss_from_embeddings(student, labels)
    assert torch.isclose(same, plain.compute_loss_from_embeddings(student, labels), atol=1e-5)

    other_teacher = torch.stack(_embeddings(1), dim=1)
    differs = loss.compute_loss_from_embeddings(student, other_teacher)
    assert differs > same + 1e-3


def test_distillation_gradient_moves_the_student_towards_the_teacher(minilm):
    teacher = torch.stack(_embeddings(3), dim=1)
    q, d = (t.clone().requires_grad_(True) for t in _embeddings(4))
    loss = TeacherDistillLoss(minilm, distill_weight=5.0)
    opt = torch.optim.SGD([q, d], lr=0.5)

    @torch.no_grad()
    def kl() -> float:
        t = F.log_softmax(teacher[:, 0] @ teacher[:, 1].T * 20, dim=1)
        s = F.log_softmax(F.normalize(q, dim=-1) @ F.normalize(d, dim=-1).T * 20, dim=1)
        return float(F.kl_div(s, t, log_target=True, reduction="batchmean"))

    before = kl()
    for _ in range(30):
        opt.zero_grad()
        loss.compute_loss_from_embeddings([q, d], teacher).backward()
        opt.step()
    assert kl() < before * 0.5


def test_teacher_labels_are_normalised_per_column_and_row(minilm):
    cols = {"anchor": ["What is R?", "How to plot?"], "positive": ["R is a language.", "plot()"]}
    labels = np.asarray(teacher_labels(minilm, cols))
    assert labels.shape == (2, 2, 384)
    assert np.allclose(np.linalg.norm(labels, axis=-1), 1.0, atol=1e-4)
    expected = minilm.encode(["R is a language."], normalize_embeddings=True)[0]
    assert np.allclose(labels[0, 1], expected, atol=1e-4)


def test_without_the_contrastive_term_only_the_teacher_ranking_counts(minilm):
    student = _embeddings(5)
    same_teacher = torch.stack(student, dim=1)
    kl_only = TeacherDistillLoss(minilm, distill_weight=1.0, contrastive_weight=0.0)
    assert float(kl_only.compute_loss_from_embeddings(student, same_teacher)) < 1e-5
    other = torch.stack(_embeddings(6), dim=1)
    assert float(kl_only.compute_loss_from_embeddings(student, other)) > 1e-3


def test_teacher_labels_read_back_from_the_embedding_cache(minilm, tmp_path):
    from embedtune.embeddings import EmbeddingCache

    cols = {"anchor": ["What is R?", "How to plot?"], "positive": ["R is a language.", "plot()"]}
    first_cache = EmbeddingCache("test-teacher", root=tmp_path)
    first = np.asarray(teacher_labels(minilm, cols, cache=first_cache))
    assert first_cache.encoded == 4

    again = EmbeddingCache("test-teacher", root=tmp_path)  # a later run, same teacher
    second = np.asarray(teacher_labels(minilm, cols, cache=again))
    assert again.encoded == 0 and again.hits == 4
    assert np.allclose(first, second, atol=1e-6)
    assert np.allclose(np.linalg.norm(second, axis=-1), 1.0, atol=1e-4)


def _teacher_prefers_another_chunk() -> tuple[list[torch.Tensor], torch.Tensor]:
    """Student embeddings of 4 pairs and teacher labels in which question 0 is closer to
    chunk 1 (0.89) than to its own chunk 0 (0.71): a false negative in MNRL's eyes; every
    other question is closest to its own chunk."""
    student = _embeddings(7, n=4)
    queries = torch.eye(4, 8)
    chunks = torch.eye(4, 8)
    chunks[0, 2] = 1.0  # chunk 0: e0 + e2
    chunks[1, 0] = 2.0  # chunk 1: e1 + 2 e0
    teacher = torch.stack([queries, F.normalize(chunks, dim=-1)], dim=1)
    return student, teacher


def _gradient_on_chunk(loss, student, teacher, chunk: int, grouped_args=None) -> torch.Tensor:
    q, d = (t.clone().requires_grad_(True) for t in student)
    if grouped_args is None:
        value = loss.compute_loss_from_embeddings([q, d], teacher)
    else:
        value = loss.grouped_loss([q, d], *grouped_args, teacher)
    value.backward()
    return d.grad[chunk]


def test_a_chunk_the_teacher_ranks_above_the_own_is_not_pushed_away(minilm):
    student, teacher = _teacher_prefers_another_chunk()
    # MNRL alone (no KL term) so only the contrastive term acts on the chunks
    plain = TeacherDistillLoss(minilm, distill_weight=0.0)
    masked = TeacherDistillLoss(minilm, distill_weight=0.0, false_negative_margin=0.0)
    # Only question 0 sees chunk 1 as a false negative: with the mask, chunk 1's gradient is
    # MNRL's with that one score left out of question 0's softmax.
    unmasked_grad = _gradient_on_chunk(plain, student, teacher, 1)
    masked_grad = _gradient_on_chunk(masked, student, teacher, 1)
    assert not torch.allclose(unmasked_grad, masked_grad, atol=1e-6)
    q, d = (t.clone().requires_grad_(True) for t in student)
    scores = F.normalize(q, dim=-1) @ F.normalize(d, dim=-1).T * 20
    left_out = torch.zeros(4, 4, dtype=torch.bool)
    left_out[0, 1] = True
    scores = scores.masked_fill(left_out, -torch.inf)
    F.cross_entropy(scores, torch.arange(4)).backward()
    assert torch.allclose(masked_grad, d.grad[1], atol=1e-6)
    # the run reports the tally: one of the 12 in-batch negatives was masked
    assert (masked.negatives_masked, masked.negatives_seen) == (1, 12)


def test_the_mask_applies_to_passage_batches_too(minilm):
    student, teacher = _teacher_prefers_another_chunk()
    grouped = (torch.arange(4), torch.arange(4))  # four distinct chunks: inverse, first
    masked = TeacherDistillLoss(minilm, distill_weight=0.0, false_negative_margin=0.0)
    ungrouped_grad = _gradient_on_chunk(masked, student, teacher, 1)
    grouped_grad = _gradient_on_chunk(masked, student, teacher, 1, grouped_args=grouped)
    assert torch.allclose(ungrouped_grad, grouped_grad, atol=1e-6)


def test_without_a_margin_the_loss_is_the_unmasked_one(minilm):
    student, teacher = _teacher_prefers_another_chunk()
    loss = TeacherDistillLoss(minilm, distill_weight=0.5)
    wide = TeacherDistillLoss(minilm, distill_weight=0.5, false_negative_margin=-10.0)
    # a margin of -10 masks nothing (cosines lie within 2 of each other)
    assert torch.isclose(
        loss.compute_loss_from_embeddings(student, teacher),
        wide.compute_loss_from_embeddings(student, teacher),
        atol=1e-5,
    )


def test_over_the_negatives_the_teacher_never_disputes_the_own_chunk():
    # the teacher puts question 0's own chunk (column 0) last; the student first, and ranks
    # the other chunks as the teacher does (up to a shift, which a softmax ignores)
    teacher = torch.tensor([[-5.0, 8.0, 3.0, 1.0], [0.0, 6.0, 2.0, -1.0]])
    student = teacher + torch.tensor([[4.0], [-2.0]])
    student[:, 0] = torch.tensor([15.0, -3.0])
    own = torch.tensor([0, 0])
    assert float(ranking_kl(teacher, student)) > 1.0  # over the batch: it disputes chunk 0
    assert float(ranking_kl(teacher, student, own)) < 1e-6  # over the others: agreed
    # and where the others are ranked differently, the term still teaches that
    other = student.clone()
    other[:, 1:] = other[:, 1:].flip(1)
    assert float(ranking_kl(teacher, other, own)) > 1.0


def test_the_rejects_kl_keeps_the_whole_batch(minilm):
    student, teacher = _teacher_prefers_another_chunk()
    whole = TeacherDistillLoss(minilm, distill_weight=1.0, contrastive_weight=0.0)
    over = TeacherDistillLoss(
        minilm, distill_weight=1.0, contrastive_weight=0.0, distill_over="negatives"
    )
    assert torch.isclose(
        whole.compute_loss_from_embeddings(student, teacher),
        over.compute_loss_from_embeddings(student, teacher),
    )
    # with the pairs' term on, the KL part changes: the own chunk is left out
    pairs = TeacherDistillLoss(minilm, distill_weight=1.0)
    pairs_over = TeacherDistillLoss(minilm, distill_weight=1.0, distill_over="negatives")
    assert not torch.isclose(
        pairs.compute_loss_from_embeddings(student, teacher),
        pairs_over.compute_loss_from_embeddings(student, teacher),
    )
