from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from embedtune.cli._app import ConfigFile, Device, app, default, run_config
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
            metavar="DIR",
            help="Run directory: reads RUN/data, writes RUN/model, RUN/train (--run-dir under "
            "torchrun, which takes --run as its own --run-path).",
        ),
    ] = None,
    config: ConfigFile = None,
    train_data: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH", help="Your own training set: llama-index JSON file or BEIR folder."
        ),
    ] = None,
    val_data: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help="Your own validation set (same formats)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            metavar="MODEL",
            help="Base model: hub id, alias or path.",
            show_default=default("model"),
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Where to save the model (with --train-data)."),
    ] = None,
    epochs: Annotated[
        float | None,
        typer.Option(
            metavar="N",
            help="Passes over the training pairs (may be fractional, e.g. 0.5).",
            show_default=default("train.epochs", when_unset="2 with a teacher, else 1"),
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Pairs per batch (passages, each with all of its questions, with "
            "--passage-batches): each question is told apart from the other passages in its "
            "batch, so larger batches teach finer distinctions.",
            show_default=default("train.batch_size"),
        ),
    ] = None,
    passage_batches: Annotated[
        bool | None,
        typer.Option(
            "--passage-batches/--no-passage-batches",
            help="Encode each passage once per step for all of its questions: training 1.32x "
            "faster at two questions per passage, gains slightly lower so far; off: batches "
            "of pairs.",
            show_default=default("train.passage_batches", flag="passage-batches"),
        ),
    ] = None,
    learning_rate: Annotated[
        float | None,
        typer.Option(
            metavar="LR",
            help="Peak learning rate of the AdamW optimiser.",
            show_default=default(
                "train.learning_rate",
                when_unset="1e-3 with --lora, else 5e-5 with a teacher, 2e-5 without",
            ),
        ),
    ] = None,
    warmup_ratio: Annotated[
        float | None,
        typer.Option(
            metavar="RATIO",
            help="Share of the training steps over which the learning rate rises from 0 to LR.",
            show_default=default("train.warmup_ratio"),
        ),
    ] = None,
    max_seq_length: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Tokens the model reads of each text, up to what it can read (MiniLM: 512).",
            show_default=default("train.max_seq_length", when_unset="the model's own"),
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Seed of the shuffling, sampling and weight initialisation, for repeatable runs.",
            show_default=default("train.seed"),
        ),
    ] = None,
    eval_steps: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Validate every N steps.",
            show_default=default("train.eval_steps", when_unset="once per epoch"),
        ),
    ] = None,
    save_steps: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Checkpoint every N steps (a multiple of --eval-steps).",
            show_default=default("train.save_steps", when_unset="once per epoch"),
        ),
    ] = None,
    loss: Annotated[
        Literal["mnrl", "cached_mnrl"] | None,
        typer.Option(
            metavar="[mnrl|cached_mnrl]",
            help="MultipleNegativesRankingLoss, or its cached variant (GradCache) for batches "
            "larger than memory allows.",
            show_default=default("train.loss"),
        ),
    ] = None,
    hard_negatives: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Hard negatives (similar but wrong passages) mined per pair with the base model.",
            show_default=default("train.hard_negatives"),
        ),
    ] = None,
    teacher: Annotated[
        str | None,
        typer.Option(
            metavar="MODEL",
            help="Stronger model whose ranking of each batch the base model learns to imitate, "
            "e.g. all-mpnet-base-v2; 'auto': mpnet for the default MiniLM (when installed), "
            "else none; 'none': off.",
            show_default=default("train.teacher"),
        ),
    ] = None,
    teacher_max_seq_length: Annotated[
        str | None,
        typer.Option(
            metavar="N",
            help="Tokens the teacher reads of each text; 'auto': as many as the student reads, "
            "so it labels only what the student sees; 'none': the teacher's own window.",
            show_default=default("train.teacher_max_seq_length"),
        ),
    ] = None,
    margin_teacher: Annotated[
        str | None,
        typer.Option(
            metavar="MODEL",
            help="A cross-encoder (reranker, e.g. cross-encoder/ms-marco-MiniLM-L6-v2) or "
            "embedding model whose score margins between each pair's passage and its mined hard "
            "negatives the base model learns (GPL's MarginMSE); needs --hard-negatives 1 or "
            "more.",
            show_default=default("train.margin_teacher"),
        ),
    ] = None,
    distill_weight: Annotated[
        float | None,
        typer.Option(
            metavar="WEIGHT",
            help="Weight of imitating the teacher, against learning the question-passage pairs.",
            show_default=default("train.distill_weight"),
        ),
    ] = None,
    distill_over: Annotated[
        str | None,
        typer.Option(
            metavar="WHAT",
            help="What the teacher's KL term compares: 'batch' (every chunk in the batch) or "
            "'negatives' (the other chunks only, so the teacher never disputes a pair's own).",
            show_default=default("train.distill_over"),
        ),
    ] = None,
    loss_directions: Annotated[
        str | None,
        typer.Option(
            metavar="DIRECTIONS",
            help="The pairs' contrastive term: 'query_to_doc' (each question against the "
            "batch's chunks) or 'gte' (also questions against questions and chunks against "
            "both, in one softmax).",
            show_default=default("train.loss_directions"),
        ),
    ] = None,
    hardness_strength: Annotated[
        float | None,
        typer.Option(
            metavar="ALPHA",
            help="Weigh harder in-batch negatives more in the pairs' softmax (Lan et al. 2025 "
            "use 9); 0: off.",
            show_default=default("train.hardness_strength"),
        ),
    ] = None,
    false_negative_margin: Annotated[
        float | None,
        typer.Option(
            metavar="MARGIN",
            help="With a teacher: a chunk it scores above a question's own chunk minus MARGIN is "
            "no negative of that question (0: what the teacher ranks above the own chunk).",
            show_default=default("train.false_negative_margin"),
        ),
    ] = None,
    roundtrip_top_k: Annotated[
        str | None,
        typer.Option(
            metavar="K",
            help="With a teacher: pairs whose chunk it ranks outside its top K of the training "
            "chunks learn its ranking only (a round trip for --train-data pairs); 'auto': K 20 "
            "where it doubts more than a third of them; 'none': off.",
            show_default=default("train.roundtrip_top_k"),
        ),
    ] = None,
    rejects: Annotated[
        bool | None,
        typer.Option(
            "--rejects/--no-rejects",
            help="With a teacher, also learn its ranking for the questions that `generate` "
            "dropped as doubtful (never taught as the answer).",
            show_default=default("train.rejects", flag="rejects"),
        ),
    ] = None,
    rejects_data: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="With --train-data: those dropped questions (llama-index JSON).",
        ),
    ] = None,
    keep: Annotated[
        Literal["last", "best"] | None,
        typer.Option(
            metavar="[last|best]",
            help="Save the last weights, or the best checkpoint on the validation data.",
            show_default=default("train.keep"),
        ),
    ] = None,
    merge_base: Annotated[
        float | None,
        typer.Option(
            metavar="SHARE",
            help="Average this share of the base's weights back into the saved model "
            "(WiSE-FT; 0.5 = halfway): keeps more of a strong base's zero-shot skill. "
            "Unset: 0.5 without a teacher, 0 with one or with --lora.",
            show_default=default("train.merge_base"),
        ),
    ] = None,
    matryoshka_dims: Annotated[
        str | None,
        typer.Option(
            metavar="DIMS",
            help="Also train truncated embedding sizes, e.g. 384,256,128.",
            show_default=False,
        ),
    ] = None,
    lora: Annotated[
        bool | None,
        typer.Option(
            "--lora/--no-lora",
            help="Train LoRA adapters instead of every weight (merged into the saved model; "
            "needs peft). On people's questions of three domains, from 0.014 NDCG@10 below to "
            "0.015 above full fine-tuning with the default teacher; level with it without one "
            "(BENCHMARKS.md, Quality).",
            show_default=default("train.lora", flag="lora"),
        ),
    ] = None,
    query_prompt: Annotated[
        str | None,
        typer.Option(metavar="TEXT", help="Prefix for queries, saved into the model."),
    ] = None,
    document_prompt: Annotated[
        str | None,
        typer.Option(metavar="TEXT", help="Prefix for passages, saved into the model."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue from the last checkpoint (a rerun with the same data and settings "
            "does so by itself after a stop; --resume fails where they changed).",
        ),
    ] = False,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Train again from the start even when RUN/model is up to date or a training "
            "stopped on the way; earlier checkpoints are discarded, and the old model stays "
            "until the new one replaces it.",
        ),
    ] = False,
    device: Device = None,
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
    from embedtune.train import run_train, train_on_files

    if run is None and train_data is None:
        raise ConfigError("give --run DIR, or --train-data PATH with --output DIR")
    overrides = {
        "model": model,
        "train": {
            "epochs": epochs,
            "batch_size": batch_size,
            "passage_batches": passage_batches,
            "learning_rate": learning_rate,
            "warmup_ratio": warmup_ratio,
            "max_seq_length": max_seq_length,
            "seed": seed,
            "eval_steps": eval_steps,
            "save_steps": save_steps,
            "loss": loss,
            "hard_negatives": hard_negatives,
            "teacher": teacher,
            "teacher_max_seq_length": teacher_max_seq_length,
            "margin_teacher": margin_teacher,
            "distill_weight": distill_weight,
            "false_negative_margin": false_negative_margin,
            "distill_over": distill_over,
            "loss_directions": loss_directions,
            "hardness_strength": hardness_strength,
            "roundtrip_top_k": roundtrip_top_k,
            "rejects": rejects,
            "keep": keep,
            "merge_base": merge_base,
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
        # Into a run directory: hold it, as the train stage does (another process may write it).
        with lock_run(run, "train") if run is not None else nullcontext():
            summary = train_on_files(
                cfg,
                train_data,
                val_data,
                output,
                rejects_path=rejects_data,
                work_dir=work,
                fresh=fresh,
                resume=resume,
                echo=echo,
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
