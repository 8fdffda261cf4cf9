"""Runs the stages in order, each reading the previous stage's files in the run directory.

    ingest + chunk -> generate -> train -> evaluate
    (prepare)         RUN/data     RUN/model  RUN/eval

Every stage keys its outputs by a hash of its inputs and settings (see ``artifacts``), so a
re-run skips what is current and resumes what was interrupted (cached LLM calls, training
checkpoints). The run's result is the fine-tuned model only when evaluation shows it better than
the base on the validation sets; otherwise the run says so and keeps the base
(``RUN/result.json``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from embedtune.config import PipelineConfig
from embedtune.recipe import settle
from embedtune.records import write_json_atomic

__all__ = ["STAGES", "run_pipeline", "choose_result"]

log = logging.getLogger(__name__)

Stage = Literal["prepare", "generate", "train", "evaluate"]
STAGES: tuple[Stage, ...] = ("prepare", "generate", "train", "evaluate")


def _stage_functions() -> dict[str, Callable[..., dict[str, Any]]]:
    from embedtune.evaluate import run_evaluate
    from embedtune.generate import run_generate
    from embedtune.prepare import run_prepare
    from embedtune.train import run_train

    return {
        "prepare": run_prepare,
        "generate": run_generate,
        "train": run_train,
        "evaluate": run_evaluate,
    }


def choose_result(cfg: PipelineConfig, run_dir: Path, evaluation: dict[str, Any]) -> dict[str, Any]:
    """Mark the fine-tuned model as the run's result only when it is better than the base.

    "Better" is judged on the run's own validation sets (the data the pipeline is allowed to
    choose on: the generated validation questions and the validation documents' headings, see
    :func:`~embedtune.evaluate.evaluator.run_verdict`): the paired bootstrap interval of NDCG@10
    lies above zero on at least one and below zero on none.
    """
    fine_tuned = run_dir / "model"
    verdict = evaluation.get("verdict", "missing")
    better = verdict == "better" and fine_tuned.is_dir()
    result = {
        "model": str(fine_tuned) if better else cfg.model,
        "fine_tuned": str(fine_tuned) if fine_tuned.is_dir() else None,
        "base": cfg.model,
        "fine_tuned_is_better": better,
        "verdict": verdict,
        "judged_on": evaluation.get("judged_on"),
        "validation": evaluation.get("validation"),
        "recommendations": {
            name: row["recommendation"]
            for name, row in (evaluation.get("datasets") or {}).items()
            if row.get("recommendation")
        },
    }
    write_json_atomic(run_dir / "result.json", result)
    return result


def run_pipeline(
    cfg: PipelineConfig,
    run_dir: Path,
    *,
    fresh: bool = False,
    stages: tuple[Stage, ...] = STAGES,
    on_stage: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run ``stages`` in order on ``run_dir``; returns each stage's summary and the result."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = settle(cfg)  # once: every stage reads the same settled values
    functions = _stage_functions()
    summaries: dict[str, Any] = {}
    for stage in stages:
        summary = functions[stage](cfg, run_dir, fresh=fresh)
        summaries[stage] = summary
        if on_stage is not None:
            on_stage(stage, summary)
    if "evaluate" in summaries:
        summaries["result"] = choose_result(cfg, run_dir, summaries["evaluate"])
    return summaries
