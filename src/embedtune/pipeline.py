"""Runs the stages in order, each reading the previous stage's files in the run directory.

    ingest + chunk -> generate -> train -> evaluate
    (prepare)         RUN/data     RUN/model  RUN/eval

Every stage keys its outputs by a hash of its inputs and settings (see ``artifacts``), so a
re-run skips what is current and resumes what was interrupted (cached LLM calls, training
checkpoints). The run's result (``RUN/result.json``) is the fine-tuned model or the base, by
the evaluation's verdict on the validation sets and ``evaluate.use_fine_tuned``
(:func:`choose_result`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from embedtune.artifacts import StageResult
from embedtune.config import PipelineConfig
from embedtune.evaluate import EvaluateSummary, run_evaluate
from embedtune.evaluate.results import DatasetSummary
from embedtune.generate import run_generate
from embedtune.layout import RunLayout
from embedtune.prepare import run_prepare
from embedtune.recipe import settle
from embedtune.records import write_json_atomic
from embedtune.runlock import holds_run
from embedtune.train import check_train_settings, run_train

__all__ = ["STAGES", "RunResult", "PipelineRun", "run_pipeline", "choose_result"]

log = logging.getLogger(__name__)

Stage = Literal["prepare", "generate", "train", "evaluate"]
STAGES: tuple[Stage, ...] = ("prepare", "generate", "train", "evaluate")
_STAGE_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "prepare": run_prepare,
    "generate": run_generate,
    "train": run_train,
    "evaluate": run_evaluate,
}


class RunResult(BaseModel):
    """The run's result (``RUN/result.json``): the model to use, and why."""

    model: str  # the model to use: the fine-tuned one when the rule chose it, else the base
    fine_tuned: str | None
    base: str
    fine_tuned_is_better: bool  # the verdict is "better"
    verdict: str
    uses_fine_tuned: bool = False  # ``model`` is the fine-tuned one
    rule: str = "if-better"  # the evaluate.use_fine_tuned that chose (before it existed: this)
    judged_on: list[str] | None = None
    validation: DatasetSummary | None = None
    recommendations: dict[str, dict[str, Any]] = {}


@dataclass
class PipelineRun:
    """Each stage's summary in the order they ran, and the result when evaluation ran."""

    stages: dict[str, StageResult] = field(default_factory=dict)
    result: RunResult | None = None


#: The verdicts on which each ``evaluate.use_fine_tuned`` gives the fine-tuned model.
USES_FINE_TUNED: dict[str, frozenset[str]] = {
    "if-better": frozenset({"better"}),
    "unless-worse": frozenset({"better", "no clear difference"}),
}


def choose_result(cfg: PipelineConfig, run_dir: Path, evaluation: EvaluateSummary) -> RunResult:
    """The run's result: the fine-tuned model or the base, by the verdict on the run's own
    validation sets and ``evaluate.use_fine_tuned``.

    The verdict (see :func:`~embedtune.evaluate.evaluator.run_verdict`) is read from the paired
    bootstrap interval of NDCG@10 on the validation documents' headings and their chunks' own
    sentences (else the writer's validation questions): "better" when it lies above zero on at
    least one and below zero on none. ``if-better`` gives the fine-tuned model only then;
    ``unless-worse`` also when the sets cannot tell ("no clear difference"), and keeps the base
    when they find it worse or disagree ("mixed").
    """
    run = RunLayout(run_dir)
    fine_tuned = run.model_dir
    trained = fine_tuned.is_dir()
    rule = cfg.evaluate.use_fine_tuned
    uses = trained and evaluation.verdict in USES_FINE_TUNED[rule]
    result = RunResult(
        model=str(fine_tuned) if uses else cfg.model,
        fine_tuned=str(fine_tuned) if trained else None,
        base=cfg.model,
        fine_tuned_is_better=trained and evaluation.verdict == "better",
        verdict=evaluation.verdict,
        uses_fine_tuned=uses,
        rule=rule,
        judged_on=evaluation.judged_on,
        validation=evaluation.validation,
        recommendations={
            name: row.recommendation
            for name, row in evaluation.datasets.items()
            if row.recommendation
        },
    )
    write_json_atomic(run.result, result.model_dump(mode="json", by_alias=True))
    return result


@holds_run("run", create=True)
def run_pipeline(
    cfg: PipelineConfig,
    run_dir: Path,
    *,
    fresh: bool = False,
    stages: tuple[Stage, ...] = STAGES,
    on_stage: Callable[[str, StageResult], None] | None = None,
) -> PipelineRun:
    """Run ``stages`` in order on ``run_dir``; returns each stage's summary and the result."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = settle(cfg)  # once: every stage reads the same settled values
    if "train" in stages:  # not after the questions are written, an hour in
        check_train_settings(cfg.train)
    out = PipelineRun()
    for stage in stages:
        summary = _STAGE_FUNCTIONS[stage](cfg, run_dir, fresh=fresh)
        out.stages[stage] = summary
        if on_stage is not None:
            on_stage(stage, summary)
    evaluation = out.stages.get("evaluate")
    if isinstance(evaluation, EvaluateSummary):
        out.result = choose_result(cfg, run_dir, evaluation)
    return out
