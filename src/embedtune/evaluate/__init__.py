"""Retrieval evaluation: base model first, then each other model with a bootstrap verdict.

- :mod:`~embedtune.evaluate.metrics`: paired bootstrap intervals and verdicts over the
  per-query metrics of :mod:`embedtune.retrieval` (sentence-transformers' definitions).
- :mod:`~embedtune.evaluate.results`: what an evaluation gives, per model and dataset.
- embeddings come through :mod:`embedtune.embeddings`, the on-disk cache that generation and
  training share.
- :mod:`~embedtune.evaluate.evaluator`: :func:`evaluate_models` for any models and datasets,
  :func:`run_evaluate` for a run directory.
- :mod:`~embedtune.evaluate.report`: report.md, self-contained report.html, terminal table.
"""

from __future__ import annotations

from embedtune.evaluate.evaluator import ModelSpec, evaluate_models, run_evaluate
from embedtune.evaluate.metrics import Comparison, paired_bootstrap, verdict
from embedtune.evaluate.results import (
    DatasetResult,
    EvaluateSummary,
    EvaluationResult,
    ModelScores,
)
from embedtune.retrieval import PRIMARY_METRIC

__all__ = [
    "PRIMARY_METRIC",
    "Comparison",
    "DatasetResult",
    "EvaluateSummary",
    "EvaluationResult",
    "ModelScores",
    "ModelSpec",
    "evaluate_models",
    "paired_bootstrap",
    "run_evaluate",
    "verdict",
]
