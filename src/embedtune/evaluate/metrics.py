"""Paired bootstrap intervals between two models' per-query metrics, and the verdict they give.

The metrics themselves (per query, as sentence-transformers defines them) come from
:mod:`embedtune.retrieval`; the bootstrap resamples queries, so both models are judged on the
same draws::

    >>> base = {"ndcg@10": np.array([0.5, 0.5, 0.5, 0.5])}
    >>> tuned = {"ndcg@10": np.array([0.6, 0.7, 0.6, 0.7])}
    >>> paired_bootstrap(base, tuned, samples=200)["ndcg@10"].verdict
    'better'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["Verdict", "Comparison", "paired_bootstrap", "verdict"]

Verdict = Literal["better", "worse", "no clear difference"]


@dataclass(frozen=True)
class Comparison:
    """One metric of a model against the base: means, paired difference, and its 95% interval."""

    metric: str
    base: float
    model: float
    diff: float
    ci_low: float
    ci_high: float
    verdict: Verdict

    def as_dict(self) -> dict[str, float | str]:
        return {
            "metric": self.metric,
            "base": self.base,
            "model": self.model,
            "diff": self.diff,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "verdict": self.verdict,
        }


def verdict(ci_low: float, ci_high: float) -> Verdict:
    """'better' when the whole interval is above zero, 'worse' when below, else undecided."""
    if ci_low > 0:
        return "better"
    if ci_high < 0:
        return "worse"
    return "no clear difference"


def paired_bootstrap(
    base: dict[str, np.ndarray],
    model: dict[str, np.ndarray],
    *,
    samples: int = 2000,
    seed: int = 42,
    confidence: float = 0.95,
    metrics: Sequence[str] | None = None,
) -> dict[str, Comparison]:
    """Difference ``model - base`` per metric with a percentile bootstrap interval over queries.

    Both dicts hold per-query values for the same queries in the same order. Every metric is
    resampled with the same query draws, so the intervals of different metrics are consistent.
    """
    names = list(metrics or base.keys())
    a = np.stack([np.asarray(base[m], dtype=np.float64) for m in names])
    b = np.stack([np.asarray(model[m], dtype=np.float64) for m in names])
    if a.shape != b.shape:
        raise ValueError("base and model per-query values must cover the same queries")
    diffs = b - a
    n = diffs.shape[1]
    if n == 0:
        raise ValueError("cannot bootstrap over zero queries")
    rng = np.random.default_rng(seed)
    boot = np.empty((len(names), samples), dtype=np.float64)
    step = max(1, 2_000_000 // max(n, 1))  # bound memory at ~16 MB of indices per block
    for start in range(0, samples, step):
        m = min(step, samples - start)
        idx = rng.integers(0, n, size=(m, n))
        boot[:, start : start + m] = diffs[:, idx].mean(axis=2)
    alpha = (1 - confidence) / 2
    lows = np.quantile(boot, alpha, axis=1)
    highs = np.quantile(boot, 1 - alpha, axis=1)
    out = {}
    for i, name in enumerate(names):
        diff = float(diffs[i].mean())
        low, high = float(lows[i]), float(highs[i])
        out[name] = Comparison(
            metric=name,
            base=float(a[i].mean()),
            model=float(b[i].mean()),
            diff=diff,
            ci_low=low,
            ci_high=high,
            verdict=verdict(low, high),
        )
    return out
