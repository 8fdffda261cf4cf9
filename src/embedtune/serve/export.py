"""Export a model to ONNX and int8-quantized ONNX, checked against the PyTorch original.

Writes, into ``output``: the sentence-transformers model itself (so the folder serves and loads on
its own), ``onnx/model.onnx`` (float32, via sentence-transformers' ONNX backend and Optimum) and
``onnx/model_qint8_<cpu>.onnx`` (dynamic int8 quantization for this CPU's instruction set, via
``sentence_transformers.export_dynamic_quantized_onnx_model``). ``onnx/manifest.json`` records the
cosine similarity of each export to the PyTorch embeddings of a few probe texts, so a broken export
is caught when it is made, not when search results go wrong::

    >>> export_onnx("runs/first/model", "runs/first/model-onnx")          # doctest: +SKIP
    {'onnx': 'runs/first/model-onnx/onnx/model.onnx', 'min_cosine_onnx': 1.0,
     'int8': 'runs/first/model-onnx/onnx/model_qint8_avx512_vnni.onnx', 'min_cosine_int8': 0.99...}

Then ``embedtune serve runs/first/model-onnx --backend onnx-int8``.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from embedtune.artifacts import is_current, read_manifest, stage_key, write_manifest
from embedtune.errors import InputError
from embedtune.models import load_model, resolve_model
from embedtune.ownership import check_replaceable, mark
from embedtune.serve.backends import cpu_int8_config, load_backend, require_onnx

__all__ = ["export_onnx", "PROBE_TEXTS", "Quantization"]

Quantization = Literal["auto", "arm64", "avx2", "avx512", "avx512_vnni"]

log = logging.getLogger(__name__)

# Short and long on purpose: a batch that mixes them checks the exported attention mask handles
# padding, the usual way an ONNX export of a transformer goes subtly wrong.
PROBE_TEXTS = [
    "R",
    "How do I install a package from CRAN?",
    "What is the difference between a list and a data frame in R, and when should I use each?",
    " ".join(["The R FAQ answers common questions about installing, using and extending R."] * 12),
]


@contextlib.contextmanager
def _optimum_mask_compat() -> Iterator[None]:
    """Let Optimum's ONNX exporter trace transformers 5 models.

    The exporter registers its own copy of transformers' ``sdpa_mask`` for tracing, written for
    transformers 4.53-4.57 (it takes ``cache_position``); transformers 5 calls it with
    ``q_length`` and fails with "missing 1 required positional argument: 'cache_position'". Its
    reason to exist (``torch.vmap`` cannot be traced) is gone in transformers 5, whose own
    ``sdpa_mask`` no longer uses vmap by default, so for the export the exporter is handed
    transformers' function. Nothing changes when the installed versions do not need it.
    """
    try:
        from optimum.exporters.onnx import model_patcher
        from transformers import masking_utils
    except ImportError:
        yield
        return
    theirs = getattr(model_patcher, "sdpa_mask_without_vmap", None)
    ours = getattr(masking_utils, "sdpa_mask", None)
    if (
        theirs is None
        or ours is None
        or "cache_position" not in inspect.signature(theirs).parameters
        or "q_length" not in inspect.signature(ours).parameters
    ):
        yield
        return
    model_patcher.sdpa_mask_without_vmap = ours
    try:
        yield
    finally:
        model_patcher.sdpa_mask_without_vmap = theirs


def _fingerprint(folder: Path) -> list[tuple[str, int, int]]:
    """Names, sizes and mtimes of a model folder's files: cheap, and changes when it is re-saved."""
    out = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "onnx" not in path.relative_to(folder).parts:
            st = path.stat()
            out.append((path.relative_to(folder).as_posix(), st.st_size, int(st.st_mtime)))
    return out


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


def _check_onnx_folder(onnx_dir: Path) -> None:
    """Refuse an ``onnx/`` folder holding ONNX files that no export of ours wrote (a hub model's
    own exports, say): exporting replaces every ``*.onnx`` there."""
    if read_manifest(onnx_dir) is not None or not onnx_dir.is_dir():
        return
    theirs = sorted(p.name for p in onnx_dir.glob("*.onnx"))
    if theirs:
        raise InputError(
            f"{onnx_dir} holds ONNX files embedtune did not write ({', '.join(theirs[:3])}"
            + (", ..." if len(theirs) > 3 else "")
            + "), and an export replaces them; export into another folder with --output"
        )


def export_onnx(
    model: str,
    output: str | Path,
    *,
    int8: bool = True,
    quantization: Quantization = "auto",
    fresh: bool = False,
) -> dict[str, Any]:
    """Write ONNX (and int8 ONNX) versions of ``model`` into ``output``; return a summary.

    Skips the work when ``output`` already holds exports of the same model files made with the same
    settings (``fresh=True`` redoes it).
    """
    _check_onnx_folder(Path(output) / "onnx")
    require_onnx()
    source = Path(resolve_model(model))
    if not source.is_dir():
        raise InputError(
            f"cannot export {model!r}: it is not a local folder or a packaged model. Download it "
            "first, e.g. SentenceTransformer(name).save('DIR'), and export DIR"
        )
    output = Path(output)
    onnx_dir = output / "onnx"
    q = cpu_int8_config() if quantization == "auto" else quantization
    key = stage_key(
        "export", source=_fingerprint(source), int8=int8, quantization=q, same=source == output
    )
    if not fresh and is_current(onnx_dir, key):
        manifest = read_manifest(onnx_dir) or {}
        return {k: v for k, v in manifest.items() if k not in ("key", "complete", "versions")}

    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    started = time.perf_counter()
    if output.resolve() != source.resolve():
        check_replaceable(output, "--output")
    torch_model = load_model(str(source), device="cpu")
    output.mkdir(parents=True, exist_ok=True)
    if output.resolve() != source.resolve():
        torch_model.save(str(output))
        mark(output, "export")
    onnx_dir.mkdir(parents=True, exist_ok=True)
    for stale in onnx_dir.glob("*.onnx"):
        stale.unlink()

    with _optimum_mask_compat():
        onnx_model = SentenceTransformer(
            str(output), backend="onnx", device="cpu", model_kwargs={"export": True}
        )
    with tempfile.TemporaryDirectory() as tmp:
        onnx_model.save(tmp)
        shutil.copy(Path(tmp) / "onnx" / "model.onnx", onnx_dir / "model.onnx")
    info: dict[str, Any] = {"source": str(source), "onnx": str(onnx_dir / "model.onnx")}

    reference = torch_model.encode(PROBE_TEXTS, convert_to_numpy=True)
    exported = load_backend(str(output), "onnx").encode(PROBE_TEXTS, convert_to_numpy=True)
    info["min_cosine_onnx"] = round(_min_cosine(reference, exported), 6)

    if int8:
        export_dynamic_quantized_onnx_model(onnx_model, q, str(output))
        quantized = sorted(onnx_dir.glob(f"model_*int8_{q}.onnx"))
        if not quantized:
            raise InputError(f"int8 quantization wrote no model_*int8_{q}.onnx into {onnx_dir}")
        info["int8"] = str(quantized[0])
        info["quantization"] = q
        vectors = load_backend(str(output), "onnx-int8").encode(PROBE_TEXTS, convert_to_numpy=True)
        info["min_cosine_int8"] = round(_min_cosine(reference, vectors), 6)

    info["seconds"] = round(time.perf_counter() - started, 1)
    write_manifest(onnx_dir, key, info)
    return info
