"""Retrieval evaluation: base model first, then each other model with a bootstrap verdict.

- :mod:`~embedtune.evaluate.metrics`: per-query metrics (sentence-transformers' definitions),
  means, paired bootstrap intervals, verdicts.
- embeddings come through :mod:`embedtune.embeddings`, the on-disk cache that generation and
  training share.
- :mod:`~embedtune.evaluate.evaluator`: :func:`evaluate_models` for any models and datasets,
  :func:`run_evaluate` for a run directory.
- :mod:`~embedtune.evaluate.report`: report.md, self-contained report.html, terminal table.
"""

from __future__ import annotations

from embedtune.evaluate.evaluator import (
    DatasetResult,
    EvaluationResult,
    ModelScores,
    ModelSpec,
    evaluate_models,
    run_evaluate,
)
from embedtune.evaluate.metrics import PRIMARY_METRIC, Comparison, paired_bootstrap, verdict

__all__ = [
    "PRIMARY_METRIC",
    "Comparison",
    "DatasetResult",
    "EvaluationResult",
    "ModelScores",
    "ModelSpec",
    "evaluate_models",
    "paired_bootstrap",
    "run_evaluate",
    "verdict",
]
