"""What a fine-tuning run reports, kept as ``RUN/train/metrics.json`` and in the model card."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from embedtune.artifacts import StageResult

__all__ = ["TrainData", "Recipe", "TrainSummary"]


class TrainData(BaseModel):
    """How much data the run saw."""

    train_queries: int
    train_chunks: int
    train_pairs: int
    reject_rows: int  # rejected questions trained on the teacher's KL term only
    roundtrip_doubted: int = 0  # of the training pairs, those train.roundtrip_top_k made rejects
    roundtrip_share: float | None = None  # the share the teacher's round trip doubted (None: off)
    val_queries: int
    eval_corpus: int  # chunks the validation queries search


class Recipe(BaseModel):
    """The settings training ran with, after "auto" was resolved and the batch fitted."""

    loss: str
    mini_batch_size: int | None
    batch_sampler: str
    batch_size: int
    world_size: int
    epochs: float | None
    learning_rate: float | None
    warmup_ratio: float
    weight_decay: float
    max_seq_length: int | None
    seed: int
    hard_negatives: int
    hard_negative_margin: float | None
    query_prompt: str | None
    document_prompt: str | None
    matryoshka_dims: list[int] | None
    lora: dict[str, int] | None
    bf16: bool
    attention_dropout: float | None = None  # None: the model's own rate
    teacher: dict[str, Any] | None  # the teacher's name, the tokens it read, its labels' seconds
    distill_weight: float | None
    margin_teacher: dict[str, Any] | None = None  # its name, kind and seconds (GPL's MarginMSE)
    distill_over: str | None = None  # "negatives" where the KL term leaves the own chunk out
    loss_directions: str | None = None  # MNRL's directions where not query_to_doc alone
    hardness_strength: float | None = None  # MNRL's weighting of hard in-batch negatives
    false_negative_margin: float | None = None  # the teacher's mask of false negatives
    false_negatives_masked: float | None = None  # the share of in-batch negatives it masked
    rejects_kl_only: bool
    keep: str
    merge_base: float | None = None  # share of the base's weights averaged back in (WiSE-FT)
    notes: list[str]  # how each "auto" setting was resolved


class TrainSummary(StageResult):
    """A fine-tuning run: data, recipe, the base model's and the saved weights' validation
    scores (NDCG@10 first), and the verdict a user reads."""

    base_model: str
    output: str
    data: TrainData
    recipe: Recipe
    negatives: dict[str, Any] | None = None
    steps: int
    train_seconds: float
    pairs_per_second: float
    resumed_from: str | None = None
    warnings: list[str] = []
    base: dict[str, float] | None = None
    final: dict[str, float] | None = None
    best_step: int | None = None
    best_checkpoint: str | None = None
    evaluations: list[dict[str, float]] = []  # each validation during training: step, scores
    loss_curve: list[dict[str, float]] = []  # the training loss as logged: step, epoch, loss
    beats_base: bool | None = None
    verdict: str
    saved_by_rank: int | None = None
