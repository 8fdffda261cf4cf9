"""The rows a fine-tuning run trains on, built from question/chunk datasets.

- the (query, chunk) pairs, with ``hard_negatives`` mined from the base model when asked
  (:mod:`embedtune.train.negatives`);
- with a teacher, the questions the round trip rejected, in batches of their own that learn only
  the teacher's in-batch ranking (never their doubted chunk as the answer);
- with a teacher, its embedding of every text column, attached to each row as its ``label``
  (:func:`embedtune.train.distill.teacher_labels`), encoded once before training;
- with a margin teacher (a cross-encoder or embedding model), the pairs' labels are its margins
  between each chunk and the pair's mined negatives instead (:mod:`embedtune.train.margins`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset
from sentence_transformers import SentenceTransformer

from embedtune.config import TrainConfig
from embedtune.dataset import QADataset
from embedtune.embeddings import EmbeddingCache, model_fingerprint
from embedtune.errors import EmbedtuneError, InputError
from embedtune.models import is_cross_encoder, load_cross_encoder, load_model
from embedtune.recipe import same_model, teacher_length
from embedtune.train.data import check_dataset, pair_rows, pairs_dataset
from embedtune.train.distill import teacher_labels
from embedtune.train.margins import margin_labels
from embedtune.train.negatives import mine_hard_negatives
from embedtune.train.passages import passage_count
from embedtune.train.roundtrip import apply_roundtrip, joined

__all__ = ["TrainingRows", "training_rows", "reject_rows", "load_for_training"]

Say = Callable[[str], None]


@dataclass
class TrainingRows:
    """What the trainer is given: the pairs, and the rejects trained on the teacher's KL only."""

    pairs: Dataset
    rejects: Dataset | None = None
    negatives: dict[str, Any] = field(default_factory=dict)  # mining counts, for the summary
    teacher: dict[str, Any] = field(default_factory=dict)  # teacher and seconds, for the summary
    margin_teacher: dict[str, Any] = field(default_factory=dict)  # the same, for the margins
    roundtrip_doubted: int = 0  # pairs the teacher's round trip moved to the rejects
    roundtrip_share: float | None = None  # the share of pairs it doubted (applied or not)

    @property
    def n_pairs(self) -> int:
        return len(self.pairs)

    @property
    def n_rejects(self) -> int:
        return len(self.rejects) if self.rejects is not None else 0

    @property
    def sizes(self) -> list[int]:
        """Rows per dataset the sampler batches apart."""
        return [self.n_pairs, self.n_rejects] if self.n_rejects else [self.n_pairs]

    @property
    def passage_sizes(self) -> list[int]:
        """Distinct chunks per dataset, which passage batches take ``batch_size`` at a time."""
        data = [self.pairs] + ([self.rejects] if self.n_rejects else [])
        return [passage_count(d) for d in data if d is not None]

    def dataset(self) -> Dataset | dict[str, Dataset]:
        # Batches of their own (the multi-dataset sampler never mixes datasets in a batch), so
        # a rejected question's doubted chunk is never any pair's in-batch negative either.
        if self.rejects is None:
            return self.pairs
        return {"pairs": self.pairs, "rejects": self.rejects}

    def prompts(self, model: SentenceTransformer) -> dict[str, str]:
        """The model's query prompt for the query column, its document prompt for the others."""
        query, document = model.prompts.get("query", ""), model.prompts.get("document", "")
        columns = [c for c in self.pairs.column_names if c != "label"]
        prompts = {c: query if c == "anchor" else document for c in columns}
        return {c: p for c, p in prompts.items() if p}


#: Where transformers' configurations keep the dropout rate of the attention weights.
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")


def load_for_training(
    name: str, dtype: str = "float32", *, attention_dropout: float | None = None
) -> SentenceTransformer:
    """A model to train (float32) or teach with, on the GPU when there is one, with a clear
    error. With ``attention_dropout``, its attention layers are built with that rate (its
    config, which the saved model keeps, goes on saying the model's own rate)."""
    model = _load(name, dtype)
    config = getattr(model.transformers_model, "config", None)
    key = next((k for k in ATTENTION_DROPOUT_KEYS if hasattr(config, k)), None)
    if attention_dropout is None or key is None or getattr(config, key) == attention_dropout:
        return model
    # Dropout layers take their rate when they are built: build the model again with this one.
    own = getattr(config, key)
    model = _load(name, dtype, config_kwargs={key: attention_dropout})
    setattr(model.transformers_model.config, key, own)
    return model


def _load(name: str, dtype: str, **kwargs: Any) -> SentenceTransformer:
    try:
        return load_model(name, dtype=dtype, **kwargs)
    except EmbedtuneError:
        raise
    except Exception as exc:  # transformers raises many types for a folder that is no model
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise InputError(
            f"could not load {name!r} as a sentence-transformers model "
            f"({type(exc).__name__}: {first}); give a model folder with modules.json or "
            "config.json, or a hub id"
        ) from None


def training_rows(
    model: SentenceTransformer,
    model_name: str,
    train: QADataset,
    cfg: TrainConfig,
    say: Say,
    *,
    rejects: QADataset | None = None,
    prompt_names: tuple[str | None, str | None] = (None, None),
) -> TrainingRows:
    """The pairs of ``train`` (with hard negatives), the rejects, and the teacher's labels; with
    ``train.roundtrip_top_k`` the pairs the teacher doubts join the rejects first (under
    ``auto``, only where it doubts more than a third of them)."""
    teacher = _Teacher.load(cfg.teacher, cfg, say) if cfg.teacher else None
    trip = None
    if teacher is not None and cfg.roundtrip_top_k is not None:
        t0 = time.perf_counter()
        trip = apply_roundtrip(
            cfg.roundtrip_top_k,
            teacher.model,
            train,
            say,
            cache=teacher.cache,
            name=f"teacher {_short(teacher.name)}",
        )
        teacher.seconds += time.perf_counter() - t0
        if trip.applied:
            train, rejects = trip.kept, joined(rejects, trip.doubted)
    elif teacher is None and cfg.roundtrip_top_k == "auto":
        say(
            "no teacher, so no round trip checks these pairs (train.roundtrip_top_k: auto needs "
            "train.teacher): if a small or careless writer made them, filter them first"
        )
    rows = TrainingRows(pairs=pairs_dataset(train))
    if trip is not None:
        rows.roundtrip_doubted = trip.n_doubted if trip.applied else 0
        rows.roundtrip_share = round(trip.share, 4)
    if cfg.hard_negatives:
        rows.pairs = _with_hard_negatives(model, model_name, train, cfg, say, prompt_names, rows)
    if rejects is not None and cfg.teacher and cfg.rejects:
        rows.rejects = reject_rows(rejects, known=set(rows.pairs["anchor"]))
    if teacher is not None:  # with a margin teacher, the pairs' labels are its margins
        _add_teacher_labels(rows, teacher, pairs=not cfg.margin_teacher)
    if cfg.margin_teacher:
        _add_margin_labels(rows, cfg, say, teacher)
    return rows


def _with_hard_negatives(
    model: SentenceTransformer,
    model_name: str,
    train: QADataset,
    cfg: TrainConfig,
    say: Say,
    prompt_names: tuple[str | None, str | None],
    rows: TrainingRows,
) -> Dataset:
    say(f"mining {cfg.hard_negatives} hard negative(s) per pair with the base model")
    # Where the base judged the round trip in float32, it encoded the training chunks and
    # questions through this embedding cache; read them back (another sequence length, or a
    # bf16 judge, has a cache of its own).
    fingerprint = model_fingerprint(model_name, max_seq_length=cfg.max_seq_length)
    return mine_hard_negatives(
        model,
        train,
        cfg.hard_negatives,
        cfg.hard_negative_margin,
        query_prompt_name=prompt_names[0],
        document_prompt_name=prompt_names[1],
        stats=rows.negatives,
        cache=EmbeddingCache(fingerprint) if fingerprint else None,
    )


def reject_rows(rejects: QADataset, known: set[str]) -> Dataset | None:
    """One row per rejected question not already trained on as a pair; None under two rows."""
    check_dataset(rejects, str(rejects.metadata.get("source", "rejected questions")))
    pairs = []
    for query, passage in pair_rows(rejects):
        if query not in known:
            known.add(query)
            pairs.append((query, passage))
    if len(pairs) < 2:
        return None
    return Dataset.from_dict({"anchor": [q for q, _ in pairs], "positive": [p for _, p in pairs]})


def _short(name: str) -> str:
    """A model's name for a progress bar: the last part of a hub id or path."""
    return name.rstrip("/").rsplit("/", 1)[-1]


@dataclass
class _Teacher:
    """The teacher as the labels and the round trip read it: its weights, its embedding cache."""

    name: str
    model: SentenceTransformer
    cache: EmbeddingCache | None
    seconds: float  # spent loading it, then on the round trip and the labels

    @classmethod
    def load(cls, name: str, cfg: TrainConfig, say: Say) -> _Teacher:
        t0 = time.perf_counter()
        say(
            f"loading the teacher {name} to encode the training rows once (texts it "
            "encoded before are read from the embedding cache)"
        )
        # In bf16 where training is (native bf16 hardware), like the round trip's judge under
        # generate.roundtrip_dtype: auto: 3x faster than float32, the labels barely change.
        dtype = "bfloat16" if cfg.bf16 == "on" else "float32"
        teacher = load_for_training(name, dtype=dtype)
        # It reads what the student reads (train.teacher_max_seq_length: auto), so its labels
        # describe no text beyond the student's window.
        length = teacher_length(cfg)
        if length is not None:
            teacher.max_seq_length = length
        # Through the teacher's embedding cache: a re-run or the round trip it judged (at the
        # same length and dtype) encodes nothing twice. Another length or dtype changes the
        # embeddings, so it has a cache of its own (shared by re-runs at that length and dtype).
        fingerprint = model_fingerprint(name, max_seq_length=length, dtype=dtype)
        cache = EmbeddingCache(fingerprint) if fingerprint else None
        return cls(name, teacher, cache, time.perf_counter() - t0)


def _add_teacher_labels(rows: TrainingRows, teacher: _Teacher, *, pairs: bool = True) -> None:
    """Encode every text column once with the teacher and attach it as each row's label (of
    the rejects only where ``pairs`` is False)."""
    t0 = time.perf_counter()

    def labelled(data: Dataset) -> Dataset:
        columns = {name: data[name] for name in data.column_names}
        labels = teacher_labels(
            teacher.model, columns, cache=teacher.cache, progress=f"teacher {_short(teacher.name)}"
        )
        return data.add_column("label", labels)

    if pairs:
        rows.pairs = labelled(rows.pairs)
    if rows.rejects is not None:
        rows.rejects = labelled(rows.rejects)
    rows.teacher = {
        "model": teacher.name,
        "max_seq_length": teacher.model.max_seq_length,
        "seconds": round(teacher.seconds + time.perf_counter() - t0, 1),
    }


def _add_margin_labels(
    rows: TrainingRows, cfg: TrainConfig, say: Say, teacher: _Teacher | None
) -> None:
    """The margin teacher's margins between each pair's chunk and its mined negatives, as the
    pairs' labels; an embedding teacher already loaded is not loaded twice."""
    name = cfg.margin_teacher
    assert name is not None
    t0 = time.perf_counter()
    cross = is_cross_encoder(name)
    cache = None
    if cross:
        say(
            f"loading the cross-encoder {name} to score each pair against its hard negatives "
            "(pairs it scored before are read from its score cache)"
        )
        dtype = "bfloat16" if cfg.bf16 == "on" else "float32"
        scorer = load_cross_encoder(name, dtype=dtype)
        fingerprint = model_fingerprint(name, dtype=dtype)
        cache = EmbeddingCache(fingerprint + "-pair-scores") if fingerprint else None
    elif teacher is not None and same_model(name, teacher.name):
        scorer, cache = teacher.model, teacher.cache
    else:
        loaded = _Teacher.load(name, cfg, say)
        scorer, cache = loaded.model, loaded.cache
    labels = margin_labels(
        scorer, rows.pairs, cross_encoder=cross, cache=cache, progress=f"margins {_short(name)}"
    )
    rows.pairs = rows.pairs.add_column("label", labels)
    rows.margin_teacher = {
        "model": name,
        "kind": "cross-encoder" if cross else "embedding model",
        "seconds": round(time.perf_counter() - t0, 1),
    }
