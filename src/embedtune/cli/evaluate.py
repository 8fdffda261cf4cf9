from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from embedtune.cli._app import ConfigFile, Device, Shown, app, console, default, run_config

if TYPE_CHECKING:
    from embedtune.evaluate import EvaluateSummary


def _parse_k(raw: str | None) -> list[int] | None:
    if raw is None:
        return None
    try:
        ks = sorted({int(part) for part in raw.split(",") if part.strip()})
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {raw!r}") from None
    if not ks or ks[0] < 1:
        raise typer.BadParameter(f"k values must be positive, got {raw!r}")
    return ks


@app.command()
def evaluate(
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            metavar="MODEL",
            help="Model to score (hub id, alias such as minilm, or folder); repeat it. The first "
            "is the base the others are compared with. With --run: extra baselines.",
        ),
    ] = None,
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data",
            "-d",
            metavar="PATH",
            help="Evaluation set: BEIR folder or llama-index EmbeddingQAFinetuneDataset JSON; "
            "repeat it. With --run: sets in addition to the run's validation split.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="DIR",
            help="Report folder (without --run).",
            show_default=Shown("./eval"),
        ),
    ] = None,
    run: Annotated[
        Path | None,
        typer.Option(
            "--run",
            metavar="DIR",
            help="Run directory: score its base model, RUN/model and evaluate.baselines on "
            "its validation split; writes RUN/eval/.",
        ),
    ] = None,
    config: ConfigFile = None,
    corpus: Annotated[
        str | None,
        typer.Option(
            metavar="[full|split]",
            help="With --run: 'full' searches validation queries against train+validation "
            "chunks, 'split' against validation chunks only.",
            show_default=default("evaluate.corpus"),
        ),
    ] = None,
    k: Annotated[
        str | None,
        typer.Option(
            "--k",
            metavar="LIST",
            help="Cut-offs k for hit rate, precision and recall at k (comma-separated).",
            show_default=default("evaluate.k_values"),
        ),
    ] = None,
    bootstrap: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Resamples of the queries for the 95% confidence intervals.",
            show_default=default("evaluate.bootstrap_samples"),
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Texts encoded per model call.",
            show_default=default("evaluate.batch_size"),
        ),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="With --run: evaluate again even if current.")
    ] = False,
    device: Device = None,
) -> None:
    """Score models on retrieval data: base first, then each model with a 95% interval and a
    verdict (better / worse / no clear difference) on NDCG@10.

    Writes metrics.json, per_query.jsonl, report.md and a self-contained report.html.
    Embeddings are cached per model and text, so evaluating a model again is near instant.

    \b
    A run (base vs fine-tuned, on its validation split):
      embedtune evaluate --run runs/first
    Any models on any data:
      embedtune evaluate --model minilm --model runs/first/model \\
          --data ./beir/my-set --data val.json --output reports/cmp
    """
    from embedtune.errors import InputError

    if corpus is not None and corpus not in ("full", "split"):
        raise typer.BadParameter(
            f"expected 'full' or 'split', got {corpus!r}", param_hint="--corpus"
        )
    overrides = {
        "evaluate": {
            "k_values": _parse_k(k),
            "corpus": corpus,
            "bootstrap_samples": bootstrap,
            "batch_size": batch_size,
        }
    }
    out = console()
    if run is not None:
        from embedtune.evaluate import run_evaluate

        if output is not None:
            raise typer.BadParameter(
                "with --run the report goes to RUN/eval; drop --output or drop --run",
                param_hint="--output",
            )
        cfg = run_config(run, config, overrides)
        if model:
            cfg.evaluate.baselines = list(dict.fromkeys([*cfg.evaluate.baselines, *model]))
        if data:
            cfg.evaluate.data = list(dict.fromkeys([*cfg.evaluate.data, *map(str, data)]))
        summary = run_evaluate(cfg, run, fresh=fresh, progress=lambda m: out.print(f"[dim]{m}"))
        _print_run_summary(out, summary)
        return

    from embedtune.dataset import load_dataset_path
    from embedtune.evaluate import evaluate_models
    from embedtune.evaluate.evaluator import windows_differ
    from embedtune.evaluate.report import print_table

    if not model:
        raise InputError("give models with --model (the first is the base) or a run with --run")
    if not data:
        raise InputError(
            "give evaluation data with --data (a BEIR folder or llama-index JSON) or a run "
            "with --run"
        )
    cfg = run_config(None, config, overrides)
    datasets = {}
    for path in data:
        name = path.stem if path.is_file() else path.name
        base, n = name, 1
        while name in datasets:
            n += 1
            name = f"{base}-{n}"
        datasets[name] = load_dataset_path(path)
    output = output or Path("eval")
    result = evaluate_models(
        model, datasets, cfg.evaluate, output, progress=lambda m: out.print(f"[dim]{m}")
    )
    print_table(result, out)
    windows = windows_differ(model)
    if windows:
        out.print(f"note: {windows}", markup=False)
    out.print(f"wrote {output / 'report.html'}, {output / 'report.md'}, {output / 'metrics.json'}")


def _print_run_summary(out: Any, summary: EvaluateSummary) -> None:
    from embedtune.evaluate.report import print_rows

    rows: list[tuple[str, str, float, Any]] = []
    for name, row in summary.datasets.items():
        rows.append((name, "base", row.base, None))
        if row.fine_tuned is not None:
            rows.append((name, "fine-tuned", row.fine_tuned, row))
        for label, b in row.baselines.items():
            rows.append((name, label, b.score, b))
    print_rows(rows, "base", out, base_source=summary.base_model)
    for warning in summary.warnings:
        out.print(f"warning: {warning}", markup=False)
    state = "current, not re-evaluated" if summary.skipped else "wrote"
    out.print(f"{state}: {summary.output}/report.html")
