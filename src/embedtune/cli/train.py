from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from embedtune.cli._app import ConfigFile, app, run_config
from embedtune.errors import ConfigError

if TYPE_CHECKING:
    from embedtune.train import TrainSummary


def _dims(raw: str | None) -> list[int] | None:
    if raw is None:
        return None
    try:
        dims = [int(x) for x in raw.replace(" ", "").split(",") if x]
    except ValueError:
        raise ConfigError(
            f"--matryoshka-dims {raw!r}: give comma-separated integers, e.g. 384,256,128"
        ) from None
    return dims or None


@app.command()
def train(
    run: Annotated[
        Path | None,
        typer.Option(
            "--run",
            "--run-dir",
            help="Run directory: reads RUN/data, writes RUN/model, RUN/train (--run-dir under "
            "torchrun, which takes --run as its own --run-path).",
        ),
    ] = None,
    config: ConfigFile = None,
    train_data: Annotated[
        Path | None,
        typer.Option(help="Your own training set: llama-index JSON file or BEIR folder."),
    ] = None,
    val_data: Annotated[
        Path | None, typer.Option(help="Your own validation set (same formats).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Base model: hub id, alias or path.")] = None,
    output: Annotated[
        Path | None, typer.Option(help="Where to save the model (with --train-data).")
    ] = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the training pairs.")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Pairs per batch (more in-batch negatives).")
    ] = None,
    learning_rate: Annotated[float | None, typer.Option()] = None,
    warmup_ratio: Annotated[float | None, typer.Option()] = None,
    max_seq_length: Annotated[int | None, typer.Option(help="Tokens kept per text.")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    eval_steps: Annotated[
        int | None, typer.Option(help="Validate every N steps (default: each epoch).")
    ] = None,
    save_steps: Annotated[
        int | None, typer.Option(help="Checkpoint every N steps (a multiple of eval-steps).")
    ] = None,
    loss: Annotated[
        Literal["mnrl", "cached_mnrl"] | None,
        typer.Option(help="mnrl, or cached_mnrl (GradCache) for batches beyond memory."),
    ] = None,
    hard_negatives: Annotated[
        int | None, typer.Option(help="Hard negatives mined per pair from the base model.")
    ] = None,
    teacher: Annotated[
        str | None,
        typer.Option(
            help="Stronger model whose in-batch ranking is distilled, e.g. all-mpnet-base-v2; "
            "'auto' (default): mpnet for MiniLM; 'none': off."
        ),
    ] = None,
    distill_weight: Annotated[
        float | None, typer.Option(help="Weight of the teacher's KL term (default 1).")
    ] = None,
    rejects: Annotated[
        bool | None,
        typer.Option(
            "--rejects/--no-rejects",
            help="With a teacher, also learn its ranking of the questions the round trip "
            "dropped (default on).",
        ),
    ] = None,
    rejects_data: Annotated[
        Path | None,
        typer.Option(help="With --train-data: those dropped questions (llama-index JSON)."),
    ] = None,
    keep: Annotated[
        Literal["last", "best"] | None,
        typer.Option(help="Save the last weights (default) or the best on the validation data."),
    ] = None,
    matryoshka_dims: Annotated[
        str | None, typer.Option(help="Also train truncated sizes, e.g. 384,256,128.")
    ] = None,
    lora: Annotated[
        bool | None, typer.Option("--lora/--no-lora", help="Train LoRA adapters (merged).")
    ] = None,
    query_prompt: Annotated[
        str | None, typer.Option(help="Prefix for queries, saved into the model.")
    ] = None,
    document_prompt: Annotated[
        str | None, typer.Option(help="Prefix for passages, saved into the model.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the last checkpoint.")
    ] = False,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Train again even when RUN/model is up to date; earlier checkpoints are "
            "discarded, and the old model stays until the new one replaces it.",
        ),
    ] = False,
) -> None:
    """Fine-tune the embedding model on the generated questions.

    \b
    Example, on a run prepared by `embedtune generate`:
      embedtune train --run runs/first --epochs 2 --batch-size 32
    With your own llama-index or BEIR data:
      embedtune train --train-data train.json --val-data val.json \\
        --model all-MiniLM-L6-v2 --output models/mine --epochs 2 --batch-size 10
    Across 2 processes (negatives gathered across devices):
      torchrun --nproc_per_node 2 "$(which embedtune)" train --run-dir runs/first
    """
    from embedtune.layout import RunLayout
    from embedtune.runlock import lock_run
    from embedtune.train import finetune, run_train
    from embedtune.train.data import load_sets, merged_corpus

    if run is None and train_data is None:
        raise ConfigError("give --run DIR, or --train-data PATH with --output DIR")
    overrides = {
        "model": model,
        "train": {
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "warmup_ratio": warmup_ratio,
            "max_seq_length": max_seq_length,
            "seed": seed,
            "eval_steps": eval_steps,
            "save_steps": save_steps,
            "loss": loss,
            "hard_negatives": hard_negatives,
            "teacher": teacher,
            "distill_weight": distill_weight,
            "rejects": rejects,
            "keep": keep,
            "matryoshka_dims": _dims(matryoshka_dims),
            "lora": lora,
            "query_prompt": query_prompt,
            "document_prompt": document_prompt,
        },
    }
    cfg = run_config(run, config, overrides)
    rank0 = os.environ.get("RANK", "0") == "0"  # under torchrun only the first process talks

    def echo(msg: str) -> None:
        if rank0:
            typer.echo(msg, err=True)

    if train_data is None:
        summary = run_train(cfg, run, fresh=fresh, resume=resume, echo=echo)
        if summary.skipped:
            typer.echo(f"{RunLayout(run).model_dir} is up to date (pass --fresh to train again)")
    else:
        if output is None:
            if run is None:
                raise ConfigError("--train-data needs --output DIR (or --run DIR)")
            output = RunLayout(run).model_dir
        work = RunLayout(run).train.root if run is not None else None  # None: <output>.train
        tr, va = load_sets(train_data, val_data)
        extra = None
        if rejects_data is not None:
            from embedtune.dataset import load_dataset_path

            extra = load_dataset_path(rejects_data)
            extra.metadata["source"] = str(rejects_data)
        # Into a run directory: hold it, as the train stage does (another process may write it).
        with lock_run(run, "train") if run is not None else nullcontext():
            summary = finetune(
                cfg.model,
                tr,
                va,
                cfg.train,
                output,
                resume=resume,
                full_corpus=merged_corpus(tr, va) if va is not None else None,
                work_dir=work,
                echo=echo,
                rejects=extra,
                val_batch_size=cfg.evaluate.batch_size,
            )
    if rank0:
        _print_summary(summary)


def _print_summary(s: TrainSummary) -> None:
    if s.base and s.final:
        typer.echo(f"{'metric':<10} {'base':>8} {'tuned':>8} {'change':>8}")
        for m in ("ndcg@10", "mrr@10", "hit@1", "hit@5", "hit@10"):
            b, f = s.base.get(m), s.final.get(m)
            if b is not None and f is not None:
                typer.echo(f"{m:<10} {b:>8.4f} {f:>8.4f} {f - b:>+8.4f}")
    for w in s.warnings:
        typer.echo(f"warning: {w}")
    typer.echo(s.verdict)
    typer.echo(f"model: {s.output}")
