"""What an evaluation gives: every model's scores per dataset and their comparisons with the base.

The evaluator (:mod:`~embedtune.evaluate.evaluator`) fills these; the reports
(:mod:`~embedtune.evaluate.report`) read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from embedtune.artifacts import StageResult
from embedtune.config import EvaluateConfig
from embedtune.evaluate.metrics import Comparison
from embedtune.retrieval import MAP_K, MRR_K, PRIMARY_METRIC

__all__ = [
    "HEADLINE_METRICS",
    "ModelScores",
    "DatasetResult",
    "TrainingCurves",
    "EvaluationResult",
    "best_model",
    "Versus",
    "DatasetSummary",
    "EvaluateSummary",
]

#: Metrics shown in tables and charts (those a config's k values produce; others stay in JSON).
HEADLINE_METRICS = (
    PRIMARY_METRIC,
    f"mrr@{MRR_K}",
    "accuracy@1",
    "accuracy@5",
    "recall@10",
    f"map@{MAP_K}",
)


@dataclass
class ModelScores:
    """One model on one dataset."""

    label: str
    source: str
    fingerprint: str | None
    similarity: str
    metrics: dict[str, float]
    per_query: dict[str, np.ndarray]
    ranked: list[list[str]]  # top corpus ids per query, best first (retrieval depth)
    hit_rate: list[float]  # accuracy@k for k = 1..max(10, max k)
    encoded: int  # texts encoded now
    cached: int  # texts served from the cache
    seconds: float


@dataclass
class DatasetResult:
    """All models on one dataset, and each later model compared with the first."""

    name: str
    corpus_mode: str
    query_ids: list[str]
    queries: list[str]
    relevant: list[list[str]]
    corpus: dict[str, str]
    scores: list[ModelScores]
    comparisons: dict[str, dict[str, Comparison]] = field(default_factory=dict)

    @property
    def base(self) -> ModelScores:
        return self.scores[0]

    def verdict(self, label: str) -> str:
        return self.comparisons[label][PRIMARY_METRIC].verdict


@dataclass
class TrainingCurves:
    """How the fine-tuned model got there: the training loss as logged and the validation
    NDCG@10 at each evaluation during training, beside the base's (read from
    ``RUN/train/metrics.json``, written by the train stage)."""

    source: str
    loss: list[dict[str, float]]  # step, epoch, loss
    validation: list[dict[str, float]]  # step, epoch, ndcg@10, ...
    base: float | None = None  # the base model's NDCG@10 on the same validation
    kept_step: int | None = None  # the evaluation whose weights were kept, when known
    steps: int | None = None

    @classmethod
    def from_summary(cls, data: dict[str, Any], source: str) -> TrainingCurves | None:
        """The curves of a training summary (its JSON); None when it has none."""
        loss = [e for e in data.get("loss_curve") or [] if "step" in e and "loss" in e]
        validation = [e for e in data.get("evaluations") or [] if PRIMARY_METRIC in e]
        if not loss and not validation:
            return None
        base = (data.get("base") or {}).get(PRIMARY_METRIC)
        keep_best = (data.get("recipe") or {}).get("keep") == "best"
        return cls(
            source=source,
            loss=loss,
            validation=validation,
            base=base,
            kept_step=data.get("best_step") if keep_best else data.get("steps"),
            steps=data.get("steps"),
        )

    def rows(self, limit: int = 40) -> list[dict[str, Any]]:
        """One row per step logged (loss, NDCG@10 or both), at most ``limit`` evenly spread
        (every evaluation kept)."""
        by_step: dict[int, dict[str, Any]] = {}
        for e in self.loss:
            by_step.setdefault(int(e["step"]), {"step": int(e["step"]), "epoch": e.get("epoch")})[
                "loss"
            ] = e["loss"]
        for e in self.validation:
            row = by_step.setdefault(int(e["step"]), {"step": int(e["step"])})
            row["epoch"] = e.get("epoch", row.get("epoch"))
            row[PRIMARY_METRIC] = e[PRIMARY_METRIC]
        rows = [by_step[k] for k in sorted(by_step)]
        if len(rows) <= limit:
            return rows
        every = len(rows) / limit
        keep = {round(i * every) for i in range(limit)} | {len(rows) - 1}
        return [r for i, r in enumerate(rows) if i in keep or PRIMARY_METRIC in r]


@dataclass
class EvaluationResult:
    """What :func:`evaluate_models` returns: per dataset, every model's scores and comparisons.

    ``labels[0]`` is the base every other model is compared with. ``summary()`` gives the
    headline numbers as plain JSON; ``metrics.json`` in ``output_dir`` holds all of them.
    """

    labels: list[str]
    sources: dict[str, str]
    datasets: dict[str, DatasetResult]
    config: EvaluateConfig
    output_dir: Path | None
    training: TrainingCurves | None = None  # the fine-tuned model's curves, in a run

    @property
    def base(self) -> str:
        return self.labels[0]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"base": self.base, "models": list(self.labels), "datasets": {}}
        for name, ds in self.datasets.items():
            entry: dict[str, Any] = {
                "n_queries": len(ds.query_ids),
                "n_corpus": len(ds.corpus),
                "corpus": ds.corpus_mode,
                f"base_{PRIMARY_METRIC}": ds.base.metrics[PRIMARY_METRIC],
                "models": {},
            }
            for label, comps in ds.comparisons.items():
                c = comps[PRIMARY_METRIC]
                entry["models"][label] = {
                    PRIMARY_METRIC: c.model,
                    "diff": c.diff,
                    "ci_low": c.ci_low,
                    "ci_high": c.ci_high,
                    "verdict": c.verdict,
                }
            out["datasets"][name] = entry
        if self.output_dir is not None:
            out["output"] = str(self.output_dir)
        return out

    def to_json(self) -> dict[str, Any]:
        datasets: dict[str, Any] = {}
        for name, ds in self.datasets.items():
            datasets[name] = {
                "n_queries": len(ds.query_ids),
                "n_corpus": len(ds.corpus),
                "corpus": ds.corpus_mode,
                "metrics": {s.label: s.metrics for s in ds.scores},
                "hit_rate_at_k": {s.label: s.hit_rate for s in ds.scores},
                "comparisons": {
                    label: {m: c.as_dict() for m, c in comps.items()}
                    for label, comps in ds.comparisons.items()
                },
                "verdicts": {label: ds.verdict(label) for label in ds.comparisons},
                "timing": {
                    s.label: {"seconds": s.seconds, "encoded": s.encoded, "cached": s.cached}
                    for s in ds.scores
                },
            }
        return {
            "primary_metric": PRIMARY_METRIC,
            "base": self.base,
            "models": [{"label": lb, "source": self.sources[lb]} for lb in self.labels],
            "config": self.config.model_dump(mode="json"),
            "bootstrap": {
                "samples": self.config.bootstrap_samples,
                "confidence": 0.95,
                "seed": self.config.seed,
                "method": "paired percentile bootstrap over queries",
            },
            "datasets": datasets,
        }


def best_model(ds: DatasetResult) -> str | None:
    """The label of the model with the highest NDCG@10 on ``ds``, when that model is clearly
    better than the base (interval above zero); None when no model clearly beats the base."""
    better = [s for s in ds.scores[1:] if ds.verdict(s.label) == "better"]
    if not better:
        return None
    return max(better, key=lambda s: s.metrics[PRIMARY_METRIC]).label


class Versus(BaseModel):
    """One model against the base on one dataset: its NDCG@10, the difference, the 95%
    interval of the difference and the verdict."""

    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    score: float = Field(alias=PRIMARY_METRIC)
    diff: float
    ci_low: float
    ci_high: float
    verdict: str


class DatasetSummary(BaseModel):
    """The base and the fine-tuned model on one dataset (``verdict`` "missing" when nothing was
    fine-tuned), each baseline beside them, and a recommended base if one stands out."""

    n_queries: int
    n_corpus: int
    corpus: str
    base: float
    fine_tuned: float | None = None
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    verdict: str = "missing"
    baselines: dict[str, Versus] = {}
    recommendation: dict[str, Any] | None = None


class EvaluateSummary(StageResult):
    """The evaluate stage of a run: every dataset's summary, and the verdict over the run's
    validation sets (``judged_on``) that decides whether the fine-tuned model is the result."""

    primary_metric: str = PRIMARY_METRIC
    models: dict[str, str]  # label -> source
    datasets: dict[str, DatasetSummary]
    validation: DatasetSummary  # == datasets["val"]
    verdict: str
    judged_on: list[str]
    output: str
    base_model: str | None = None
    warnings: list[str] = []  # e.g. evaluation questions the fine-tuned model trained on
