"""`embedtune export`: ONNX and int8 ONNX versions of a model, for faster CPU serving."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from embedtune.cli._app import app


@app.command()
def export(
    model: Annotated[
        str,
        typer.Argument(
            metavar="MODEL", help="Model to export: a folder such as RUN/model, or an alias."
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="DIR",
            help="Folder to write (may be MODEL itself to add onnx/ to it).",
        ),
    ],
    int8: Annotated[
        bool, typer.Option("--int8/--no-int8", help="Also write a dynamic int8 quantization.")
    ] = True,
    quantization: Annotated[
        str,
        typer.Option(
            metavar="[auto|avx512_vnni|avx512|avx2|arm64]",
            help="CPU the int8 file is named for (ONNX Runtime picks kernels as it runs): auto is this one.",
        ),
    ] = "auto",
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Export again even if up to date.")
    ] = False,
) -> None:
    """Export a model to ONNX and int8 ONNX, and check both against the original.

    \b
    Example:
      embedtune export runs/first/model --output runs/first/model-onnx
      embedtune serve runs/first/model-onnx --backend onnx-int8
    """
    from embedtune.errors import InputError
    from embedtune.serve.export import export_onnx

    if quantization not in ("auto", "avx512_vnni", "avx512", "avx2", "arm64"):
        raise InputError(
            f"--quantization {quantization!r} is not one of auto, avx512_vnni, avx512, avx2, arm64"
        )
    info = export_onnx(model, output, int8=int8, quantization=quantization, fresh=fresh)  # type: ignore[arg-type]
    typer.echo(f"wrote {info['onnx']} (cosine to PyTorch >= {info['min_cosine_onnx']:.4f})")
    if "int8" in info:
        typer.echo(f"wrote {info['int8']} (cosine to PyTorch >= {info['min_cosine_int8']:.4f})")
    typer.echo(f"serve it with: embedtune serve {output} --backend onnx-int8")
