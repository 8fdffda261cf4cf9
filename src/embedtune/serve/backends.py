"""Load a model for serving with PyTorch or with an ONNX export of it.

``torch`` loads the model as trained. ``onnx`` and ``onnx-int8`` run the files that
``embedtune export`` wrote into ``MODEL/onnx/`` (``model.onnx`` and ``model_qint8_<cpu>.onnx``)
with ONNX Runtime and the model's own tokenizer (:class:`~embedtune.serve.onnx_encoder.
OnnxEncoder`); they need the onnx extra (``pip install -e '.[onnx]'`` in embedtune's clone)::

    >>> model = load_backend("all-MiniLM-L6-v2", "torch")
    >>> model.encode(["What is R?"]).shape
    (1, 384)
    >>> model = load_backend("runs/first/model-onnx", "onnx-int8")     # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias

from embedtune.errors import InputError
from embedtune.models import load_model, resolve_model

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from embedtune.serve.onnx_encoder import OnnxEncoder

    #: What serving runs: the PyTorch model, or an ONNX export with the same ``encode``.
    Encoder: TypeAlias = SentenceTransformer | OnnxEncoder

__all__ = ["Backend", "BACKENDS", "load_backend", "onnx_file", "require_onnx", "cpu_int8_config"]

Backend = Literal["torch", "onnx", "onnx-int8"]
BACKENDS: tuple[str, ...] = ("torch", "onnx", "onnx-int8")

ONNX_INSTALL_HINT = "pip install -e '.[onnx]'"


def require_onnx(*, export: bool = False) -> None:
    """Raise InputError naming the install command when what the ONNX backends (or, with
    ``export``, the export: PyTorch's exporter and ONNX Runtime's quantizer) need is missing."""
    needed = ("onnxruntime", "onnx", "onnxscript") if export else ("onnxruntime",)
    missing = [m for m in needed if not _importable(m)]
    if missing:
        what = "ONNX export" if export else "the ONNX backends"
        raise InputError(
            f"{what} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            f"not installed; run `{ONNX_INSTALL_HINT}` in embedtune's clone"
        )


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def cpu_int8_config() -> Literal["arm64", "avx2", "avx512", "avx512_vnni"]:
    """The int8 kernel set this CPU runs fastest (sentence-transformers' preset names)."""
    import platform

    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    return "avx2"


def onnx_file(model_dir: str | Path, backend: Backend) -> Path:
    """The ONNX file ``backend`` loads from ``model_dir``, or InputError saying how to make it."""
    folder = Path(model_dir) / "onnx"
    if backend == "onnx":
        path = folder / "model.onnx"
        if path.is_file():
            return path
    elif backend == "onnx-int8":
        found = sorted(folder.glob("model_*int8*.onnx"))
        if found:
            preferred = [p for p in found if p.stem.endswith(cpu_int8_config())]
            return (preferred or found)[0]
    else:
        raise InputError(f"backend {backend!r} has no ONNX file; use one of {', '.join(BACKENDS)}")
    what = "model.onnx" if backend == "onnx" else "model_qint8_*.onnx"
    raise InputError(
        f"no {what} in {folder}: export the model first with "
        f"`embedtune export {model_dir} --output {model_dir}`, then serve that folder"
    )


def load_backend(model: str, backend: Backend = "torch", *, device: str = "cpu") -> Encoder:
    """Load ``model`` (alias, hub id or folder) to run with ``backend``; the ONNX backends run
    on the CPU whatever ``device`` says."""
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return load_model(model, device=device)
    require_onnx()
    path = resolve_model(model)
    if not os.path.isdir(path):
        raise InputError(
            f"the {backend} backend serves a local folder written by `embedtune export`, not "
            f"{model!r}; run `embedtune export {model} --output DIR` and serve DIR"
        )
    file = onnx_file(path, backend)
    from embedtune.serve.onnx_encoder import OnnxEncoder

    return OnnxEncoder(path, file.relative_to(path))
