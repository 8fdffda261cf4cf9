"""Export a model to ONNX and int8-quantized ONNX, checked against the PyTorch original.

Writes, into ``output``: the sentence-transformers model itself (so the folder serves, and loads
with ``SentenceTransformer(output)``, on its own), ``onnx/model.onnx`` (float32: the transformer
with the model's own pooling and normalisation in one graph, by ``torch.onnx.export``, PyTorch's
own exporter) and ``onnx/model_qint8_<cpu>.onnx`` (ONNX Runtime's dynamic int8 quantization,
named for this CPU's instruction set), plus
``onnx/encoder.json``, what :class:`~embedtune.serve.onnx_encoder.OnnxEncoder` needs to serve
them. ``onnx/manifest.json`` records the cosine similarity of each export's served embeddings to
the PyTorch ones on a few probe texts; an export below :data:`MIN_COSINE` is deleted and raises,
so a broken export is caught when it is made, not when search results go wrong::

    >>> export_onnx("runs/first/model", "runs/first/model-onnx")          # doctest: +SKIP
    {'onnx': 'runs/first/model-onnx/onnx/model.onnx', 'min_cosine_onnx': 1.0,
     'int8': 'runs/first/model-onnx/onnx/model_qint8_avx512_vnni.onnx', 'min_cosine_int8': 0.99...}

Then ``embedtune serve runs/first/model-onnx --backend onnx-int8``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from embedtune.artifacts import is_current, read_manifest, stage_key, write_manifest
from embedtune.errors import InputError
from embedtune.models import load_model, resolve_model
from embedtune.ownership import check_replaceable, mark
from embedtune.serve.backends import cpu_int8_config, load_backend, require_onnx
from embedtune.serve.onnx_encoder import ENCODER_FILE, OUTPUT_NAME, EncoderSpec

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

__all__ = ["export_onnx", "PROBE_TEXTS", "MIN_COSINE", "Quantization"]

Quantization = Literal["auto", "arm64", "avx2", "avx512", "avx512_vnni"]

log = logging.getLogger(__name__)

# Short and long on purpose: a batch that mixes them checks the exported attention mask handles
# padding, the usual way an ONNX export of a transformer goes subtly wrong. The last is longer
# than all-MiniLM-L6-v2's 256-token window, so truncation is checked too.
PROBE_TEXTS = [
    "R",
    "How do I install a package from CRAN?",
    "What is the difference between a list and a data frame in R, and when should I use each?",
    " ".join(["The R FAQ answers common questions about installing, using and extending R."] * 24),
]

#: The least cosine similarity to PyTorch's embedding of every probe text an export must reach.
#: float32 differs from PyTorch by rounding only; int8 weights and activations cost more.
MIN_COSINE = {"onnx": 0.999, "onnx-int8": 0.95}


# Bumped when the files an export writes change, so older exports are made again.
EXPORTER = "torch.onnx-dynamo/2"

# Models whose weights pass this are written with external data: a protobuf holds at most 2 GB.
_EXTERNAL_DATA_BYTES = 1_500_000_000


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
    settings (``fresh=True`` redoes it). Raises InputError, and leaves no ONNX file behind, when an
    export's embeddings of :data:`PROBE_TEXTS` are further from PyTorch's than :data:`MIN_COSINE`.
    """
    _check_onnx_folder(Path(output) / "onnx")
    require_onnx(export=True)
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
        "export",
        source=_fingerprint(source),
        int8=int8,
        quantization=q,
        same=source == output,
        exporter=EXPORTER,
    )
    if not fresh and is_current(onnx_dir, key):
        manifest = read_manifest(onnx_dir) or {}
        return {k: v for k, v in manifest.items() if k not in ("key", "complete", "versions")}

    started = time.perf_counter()
    if output.resolve() != source.resolve():
        check_replaceable(output, "--output")
    torch_model = load_model(str(source), device="cpu")
    _check_exportable(torch_model, model)
    output.mkdir(parents=True, exist_ok=True)
    if output.resolve() != source.resolve():
        torch_model.save(str(output))
        mark(output, "export")
    onnx_dir.mkdir(parents=True, exist_ok=True)
    _remove_exports(onnx_dir)

    reference = torch_model.encode(PROBE_TEXTS, convert_to_numpy=True)
    try:
        info = _export_and_check(torch_model, output, reference, int8=int8, quantization=q)
    except BaseException:
        _remove_exports(onnx_dir)  # nothing half-made or off is left to serve
        raise
    info = {"source": str(source), **info, "seconds": round(time.perf_counter() - started, 1)}
    write_manifest(onnx_dir, key, info)
    return info


def _export_and_check(
    torch_model: SentenceTransformer,
    output: Path,
    reference: np.ndarray,
    *,
    int8: bool,
    quantization: str,
) -> dict[str, Any]:
    """Write the float32 (and int8) graphs, and check each one as it is served."""
    onnx_dir = output / "onnx"
    float_path = onnx_dir / "model.onnx"
    _export_float(torch_model, output, float_path)
    info: dict[str, Any] = {"onnx": str(float_path)}
    info["min_cosine_onnx"] = _check(output, "onnx", reference)
    if int8:
        info["int8"] = str(_quantize(float_path, quantization))
        info["quantization"] = quantization
        info["min_cosine_int8"] = _check(output, "onnx-int8", reference)
    return info


def _check_exportable(model: SentenceTransformer, name: str) -> None:
    """Refuse, before any work, a model the one-graph export cannot represent."""
    first = model[0]
    modalities = getattr(first, "modalities", ["text"])
    if type(first).__name__ != "Transformer" or list(modalities) != ["text"]:
        raise InputError(
            f"cannot export {name!r} to ONNX: its first module is {type(first).__name__} "
            f"({', '.join(map(str, modalities))}); embedtune exports text models whose first "
            "module is a Transformer. Serve it with --backend torch"
        )
    for module in list(model)[1:]:
        if getattr(module, "include_prompt", True) is False:
            raise InputError(
                f"cannot export {name!r} to ONNX: its pooling leaves the prompt's tokens out "
                "(include_prompt=false), which needs each prompt's length at run time. Serve it "
                "with --backend torch"
            )


def _graph_module(model: SentenceTransformer) -> torch.nn.Module:
    """The module ``torch.onnx.export`` traces: token ids in, finished sentence embeddings out.

    It runs every module of the model in order (transformer, pooling, dense, normalize), so the
    graph holds the model's own pooling and normalisation exactly as PyTorch runs them.
    """
    import torch

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor | None = None,
        ) -> torch.Tensor:
            features = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                features["token_type_ids"] = token_type_ids
            return self.model(features)[OUTPUT_NAME]

    return SentenceEmbedding().eval()


def _export_float(model: SentenceTransformer, output: Path, path: Path) -> None:
    """Trace ``model`` on the probe texts into ``path``, batch and sequence length left free."""
    import torch

    tokenizer = model.tokenizer
    batch = tokenizer(
        PROBE_TEXTS,
        padding=True,
        truncation="longest_first",
        max_length=model.max_seq_length,
        return_tensors="pt",
    )
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in batch]
    inputs = {n: batch[n] for n in names}
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    external = params > _EXTERNAL_DATA_BYTES
    with torch.no_grad(), _quiet():
        torch.onnx.export(
            _graph_module(model),
            (),
            str(path),
            kwargs=inputs,
            input_names=names,
            output_names=[OUTPUT_NAME],
            dynamic_shapes={n: {0: "batch", 1: "sequence"} for n in names},
            dynamo=True,
            external_data=external,
            verbose=False,
        )
    EncoderSpec(
        inputs=names,
        tokenizer=_tokenizer_folder(output),
        max_seq_length=model.max_seq_length,
        prompts={k: v or "" for k, v in (model.prompts or {}).items()},
        default_prompt_name=model.default_prompt_name,
        truncate_dim=model.truncate_dim,
    ).write(path.parent)


def _tokenizer_folder(output: Path) -> str:
    """The first module's folder in ``modules.json``: where sentence-transformers saves the
    Transformer's tokenizer ("" for the model folder itself)."""
    modules = json.loads((output / "modules.json").read_text())
    return str(modules[0].get("path", ""))


def _quantize(float_path: Path, quantization: str) -> Path:
    """Dynamic int8 quantization of ``float_path``, named for the ``quantization`` preset.

    The settings are those of the Optimum presets sentence-transformers used (weights int8,
    symmetric, per channel; activations uint8 per batch), for every preset: Optimum's avx2 preset
    made the weights uint8, which on an AVX2 CPU measured slower (1.35x torch against 1.47x) and
    lost more NDCG@10 on the R FAQ (0.012 against 0.002). ONNX Runtime picks the CPU's kernels
    when it runs the graph, so the name only tells which CPU the file was made for.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = float_path.with_name(f"model_qint8_{quantization}.onnx")
    with _quiet():
        quantize_dynamic(
            float_path,
            path,
            per_channel=True,
            reduce_range=False,
            weight_type=QuantType.QInt8,
            use_external_data_format=float_path.with_name(float_path.name + ".data").exists(),
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )
    return path


def _check(output: Path, backend: str, reference: np.ndarray) -> float:
    """``backend``'s embeddings of the probe texts, as served, against PyTorch's."""
    served = load_backend(str(output), backend).encode(PROBE_TEXTS, convert_to_numpy=True)  # type: ignore[arg-type]
    cosine = round(_min_cosine(reference, served), 6)
    if not cosine >= MIN_COSINE[backend]:  # not >=, so that NaN fails too
        raise InputError(
            f"the {backend} export is off: its embeddings of the probe texts reach a cosine "
            f"similarity of only {cosine} to PyTorch's (at least {MIN_COSINE[backend]} expected), "
            "so it was deleted. Try another --quantization, or report it with the model's name"
        )
    return cosine


def _remove_exports(onnx_dir: Path) -> None:
    for stale in [*onnx_dir.glob("*.onnx"), *onnx_dir.glob("*.onnx.data"), onnx_dir / ENCODER_FILE]:
        stale.unlink(missing_ok=True)


class _DropOnnxRuntimeNotes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep the exporter's and quantizer's notes out of the CLI's output: the exporter's progress
    and "torchvision is not installed", and the quantizer's advice, on the root logger, to
    pre-process the graph (which changes nothing measurable here)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    drop = _DropOnnxRuntimeNotes()
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    logging.getLogger().addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            yield
    finally:
        logging.getLogger().removeFilter(drop)
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
