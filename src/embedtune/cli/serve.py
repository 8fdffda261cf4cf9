"""`embedtune serve`: the embeddings HTTP service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from embedtune.cli._app import ConfigFile, Device, app


@app.command()
def serve(
    model: Annotated[
        str | None,
        typer.Argument(
            help="Model to serve: a fine-tuned folder (RUN/model), a local path, a hub id or an "
            "alias such as all-MiniLM-L6-v2. Default with --run: the model the run chose."
        ),
    ] = None,
    run: Annotated[
        Path | None,
        typer.Option(
            "--run",
            help="Run directory: serves the model `embedtune run` chose (RUN/result.json: "
            "RUN/model, or the base it kept), else RUN/model.",
        ),
    ] = None,
    config: ConfigFile = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="Require 'Authorization: Bearer KEY' on every route but /health (/docs too). "
            "Prefer the environment variable EMBEDTUNE_API_KEY (or the one named by "
            "serve.api_key_env): a flag's value shows in `ps` to every user of the machine."
        ),
    ] = None,
    served_model_name: Annotated[
        str | None,
        typer.Option(
            help="Name shown in /v1/models, /info and answers. Default: a hub id as given, a "
            "folder by its name (RUN/model by RUN's), never its path."
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(help="torch, onnx or onnx-int8 (the last two need `embedtune export`)."),
    ] = None,
    max_batch_size: Annotated[
        int | None, typer.Option(help="Most texts per model call, across requests.")
    ] = None,
    max_wait_ms: Annotated[
        float | None, typer.Option(help="How long a batch waits for more requests to join.")
    ] = None,
    max_inputs: Annotated[int | None, typer.Option(help="Most texts per request.")] = None,
    max_chars: Annotated[int | None, typer.Option(help="Most characters per text.")] = None,
    max_batch_tokens: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Most padded tokens (texts x longest) per model call [default: 2048]: how long "
            "a small request can wait behind a big one.",
        ),
    ] = None,
    max_queue_seconds: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="New requests get 429 Retry-After once those in progress would keep them "
            "waiting about this long for a turn at the model [default: 10].",
        ),
    ] = None,
    max_concurrent_requests: Annotated[
        int | None,
        typer.Option(min=1, help="Embedding requests at once before 429 [default: 512]."),
    ] = None,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(min=1, help="Largest request body before 413 [default: 16 MiB]."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
    device: Device = None,
) -> None:
    """Serve embeddings over HTTP, in OpenAI's and text-embeddings-inference's APIs.

    \b
    Example:
      embedtune serve runs/first/model --port 8080
      curl -s localhost:8080/v1/embeddings -H 'Content-Type: application/json' \\
           -d '{"input": ["How do I install a package?"], "model": "first"}'
      curl -s localhost:8080/embed -H 'Content-Type: application/json' \\
           -d '{"inputs": "How do I install a package?"}'
    \b
    With a key, kept out of `ps` by passing it in the environment:
      EMBEDTUNE_API_KEY=$(cat key.txt) embedtune serve runs/first/model
    \b
    Faster on CPU, after `embedtune export runs/first/model --output runs/first/model-onnx`:
      embedtune serve runs/first/model-onnx --backend onnx-int8
    """
    from embedtune.cli._app import run_config
    from embedtune.errors import InputError
    from embedtune.serve.settings import ServeSettings

    if model is None:
        if run is None:
            raise InputError("give the model to serve (e.g. runs/first/model) or --run RUN")
        model = _run_model(run)
    cfg = run_config(
        run,
        config,
        {
            "serve": {
                "host": host,
                "port": port,
                "backend": backend,
                "max_batch_size": max_batch_size,
                "max_wait_ms": max_wait_ms,
                "max_inputs": max_inputs,
                "max_chars": max_chars,
                "max_batch_tokens": max_batch_tokens,
                "max_queue_seconds": max_queue_seconds,
                "max_concurrent_requests": max_concurrent_requests,
                "max_body_bytes": max_body_bytes,
            }
        },
    )
    s = ServeSettings.from_config(cfg.serve)
    if api_key is not None:
        typer.echo(
            f"note: --api-key shows in `ps` to every user of this machine; set ${s.api_key_env} "
            "instead",
            err=True,
        )
    typer.echo(
        f"loading {model} ({s.backend}) to serve on http://{s.host}:{s.port}; OpenAI clients use "
        f"base_url='http://{s.host}:{s.port}/v1'; also /embed, /info, /metrics, /docs",
        err=True,
    )
    from embedtune.serve.app import serve as run_server

    run_server(model, s, api_key=api_key, model_name=served_model_name, log_level=log_level)


def _run_model(run: Path) -> str:
    """The model a run gives: the one its RUN/result.json names (``embedtune run`` chose the
    fine-tuned RUN/model or kept the base), else RUN/model (a run trained stage by stage)."""
    from embedtune.errors import InputError
    from embedtune.layout import RunLayout
    from embedtune.records import read_json

    layout = RunLayout(run)
    result = read_json(layout.result)
    if isinstance(result, dict) and isinstance(result.get("base"), str):
        if result.get("model") == result["base"]:  # the run kept the base
            typer.echo(
                f"{run}: the run kept the base model {result['base']} (its verdict: "
                f"{result.get('verdict')}); serving that, as RUN/result.json says. Name "
                f"{layout.model_dir} to serve the fine-tuned weights anyway.",
                err=True,
            )
            return result["base"]
    if not (layout.model_dir / "modules.json").is_file():
        raise InputError(
            f"no fine-tuned model in {run} yet ({layout.model_dir} holds none): run "
            f"`embedtune train --run {run}` (or `embedtune run`) first, or name a model to serve"
        )
    return str(layout.model_dir)
