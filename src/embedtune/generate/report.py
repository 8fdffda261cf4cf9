"""What the generate stage reports: calls, tokens, questions kept and dropped by reason, the
round trip, timings and samples (``RUN/generate/report.json``); and the plan of a dry run."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from rich.console import Group
from rich.table import Table

from embedtune.artifacts import StageResult
from embedtune.generate.estimate import StepEstimate

__all__ = [
    "SplitReport",
    "GenerateReport",
    "DryRunSplit",
    "DryRunReport",
    "summary_table",
    "duration",
]


class SplitReport(BaseModel):
    """One split: chunks and calls, the questions written, kept and dropped (by reason)."""

    queries: Literal["questions", "sentences"] = "questions"  # generate.train_queries
    chunks: int
    chunks_used: int
    calls: int
    new_calls: int
    raw_questions: int
    kept: int
    kept_share: float
    dropped: dict[str, int]
    cleaned: dict[str, int]
    roundtrip: dict[str, Any] | None = None  # judge, top_k and ranks of the round trip
    torn_cache_lines: int = 0
    cache_rows_set_aside: int = 0  # torn or wrong-typed rows moved to <split>.jsonl.set-aside


class GenerateReport(StageResult):
    """The generate stage's report (also ``RUN/generate/report.json``)."""

    backend: str
    model: str
    base_url: str | None = None
    template: str
    questions_per_chunk: int
    splits: dict[str, SplitReport]
    usage: dict[str, int] = {}
    retries: int = 0
    timings: dict[str, float] = {}
    samples: dict[str, list[dict[str, str]]] = {}
    outputs: dict[str, str] = {}
    cost_usd: float | None = None  # OpenAI's own models on api.openai.com only
    prices_as_of: str | None = None


class DryRunSplit(BaseModel):
    calls: int
    cached: int
    to_call: int
    prompt_tokens: int
    completion_tokens: int


class DryRunReport(BaseModel):
    """What a run would call, and roughly what it would cost; nothing is called or written."""

    dry_run: Literal[True] = True
    backend: str
    model: str
    base_url: str | None = None
    splits: dict[str, DryRunSplit]
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None = None
    prices_as_of: str | None = None
    estimate: list[StepEstimate] = []  # how long each step should take on this machine
    warnings: list[str] = []  # what would stop the real run (an API key not set)

    @property
    def seconds(self) -> float | None:
        """The whole run's estimated time; None when a step has no rate to go by."""
        if any(s.seconds is None for s in self.estimate):
            return None
        return sum(s.seconds or 0.0 for s in self.estimate)


def summary_table(report: GenerateReport | DryRunReport) -> Any:
    """A rich table of a report (or a dry-run report) for the terminal."""
    if isinstance(report, DryRunReport):
        return _dry_run_table(report)
    title = f"generate: {report.backend} / {report.model}"
    if report.skipped:
        title += " (up to date, nothing to do)"
    table = Table(title=title)
    for col in ("split", "chunks", "calls", "new", "questions", "kept", "kept %", "top drops"):
        table.add_column(col, justify="left" if col in ("split", "top drops") else "right")
    for split, s in report.splits.items():
        drops = sorted(s.dropped.items(), key=lambda kv: -kv[1])[:3]
        table.add_row(
            f"{split} ({s.queries})" if s.queries != "questions" else split,
            # a budget (generate.max_chunks) writes for a sample: say of how many
            f"{s.chunks_used} of {s.chunks}" if s.chunks_used < s.chunks else str(s.chunks),
            str(s.calls),
            str(s.new_calls),
            str(s.raw_questions),
            str(s.kept),
            f"{100 * s.kept_share:.0f}",
            ", ".join(f"{r} {n}" for r, n in drops) or "-",
        )
    caption = f"{report.timings.get('generate_s', 0):.1f} s generating"
    if report.cost_usd is not None:
        caption += f", ~${report.cost_usd:.4f} at {report.prices_as_of} prices"
    table.caption = caption
    return table


def _dry_run_table(report: DryRunReport) -> Group:
    table = Table(title=f"generate --dry-run: {report.backend} / {report.model}")
    for col in ("split", "calls", "cached", "to call", "prompt tok", "output tok"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for split, s in report.splits.items():
        table.add_row(
            split,
            str(s.calls),
            str(s.cached),
            str(s.to_call),
            f"~{s.prompt_tokens:,}",
            f"~{s.completion_tokens:,}",
        )
    if report.cost_usd is not None:
        table.caption = f"estimated cost ~${report.cost_usd:.4f} at {report.prices_as_of} prices"
    elif report.backend == "local":
        table.caption = "offline model on this machine: no API cost"
    else:
        table.caption = "no cost estimate: not one of OpenAI's models on api.openai.com"
    parts: list[Any] = [table]
    if report.estimate:
        total = report.seconds
        times = Table(
            title="estimated time on this machine"
            + (f": ~{duration(total)} in all" if total is not None else ""),
            show_lines=False,
        )
        for col in ("step", "time", "how it was estimated"):
            times.add_column(col, overflow="fold")
        for step in report.estimate:
            shown = "?" if step.seconds is None else f"~{duration(step.seconds)}"
            times.add_row(step.step, shown, step.how)
        parts.append(times)
    parts += [f"[bold yellow]warning:[/] {w}" for w in report.warnings]
    return Group(*parts)


def duration(seconds: float) -> str:
    """``42 s``, ``3 min``, ``1 h 20 min``: a time estimate as a person says it::

    >>> duration(42.4), duration(185), duration(4800)
    ('42 s', '3 min', '1 h 20 min')
    """
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"
