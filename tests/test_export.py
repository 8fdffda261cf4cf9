"""ONNX export: files written, embeddings close to PyTorch, and the server loading them."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from fastapi.testclient import TestClient

from embedtune.config import ServeConfig
from embedtune.errors import InputError
from embedtune.serve.backends import cpu_int8_config, load_backend, onnx_file

needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("optimum") is None,
    reason="needs the onnx extra: pip install -e '.[onnx]'",
)

# Mixed lengths in one batch: padding must be masked in the exported graph.
TEXTS = [
    "R",
    "How do I install a package from CRAN?",
    "A data frame is a list of equal-length vectors. " * 20,
]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def test_serving_onnx_without_an_export_says_how_to_make_one(minilm_path, tmp_path):
    with pytest.raises(InputError, match="embedtune export"):
        onnx_file(tmp_path, "onnx-int8")
    with pytest.raises(InputError, match="embedtune export"):
        onnx_file(tmp_path, "onnx")
    assert cpu_int8_config() in ("arm64", "avx2", "avx512", "avx512_vnni")


@needs_onnx
@pytest.mark.slow
def test_export_onnx_and_int8_close_to_torch_and_servable(minilm_path, _minilm_session, tmp_path):
    from embedtune.serve.export import export_onnx

    out = tmp_path / "model-onnx"
    info = export_onnx(minilm_path, out)
    assert (out / "onnx" / "model.onnx").is_file()
    assert (out / "modules.json").is_file()  # the folder is a whole model on its own
    assert info["min_cosine_onnx"] > 0.99 and info["min_cosine_int8"] > 0.95

    reference = _minilm_session.encode(TEXTS)
    onnx = load_backend(str(out), "onnx")
    assert onnx.get_backend() == "onnx"
    assert _cos(onnx.encode(TEXTS), reference).min() > 0.99
    int8 = load_backend(str(out), "onnx-int8")
    assert "int8" in onnx_file(out, "onnx-int8").name
    assert _cos(int8.encode(TEXTS), reference).min() > 0.95

    # A second export of the same model with the same settings is skipped.
    again = export_onnx(minilm_path, out)
    assert again["onnx"] == info["onnx"] and again["seconds"] == info["seconds"]

    from embedtune.serve import create_app

    app = create_app(int8, ServeConfig(backend="onnx-int8"), model_name="m")
    with TestClient(app) as c:
        assert c.get("/info").json()["backend"] == "onnx-int8"
        got = np.array(c.post("/embed", json={"inputs": TEXTS}).json())
        assert _cos(got, reference).min() > 0.95


def test_an_export_never_replaces_onnx_files_it_did_not_write(tmp_path):
    """Exporting in place into a downloaded model that ships its own ONNX files would delete
    them (every *.onnx in onnx/ is replaced): refused, naming them, before any work."""
    from embedtune.serve.export import export_onnx

    model = tmp_path / "hub-model"
    (model / "onnx").mkdir(parents=True)
    (model / "onnx" / "model.onnx").write_bytes(b"the hub's own export")
    (model / "onnx" / "model_O4.onnx").write_bytes(b"an optimised one")
    with pytest.raises(
        InputError,
        match=r"hub-model/onnx holds ONNX files embedtune did not write \(model.onnx, "
        r"model_O4.onnx\), and an export replaces them; export into another folder with --output",
    ):
        export_onnx(str(model), model)
    assert (model / "onnx" / "model.onnx").read_bytes() == b"the hub's own export"
    assert (model / "onnx" / "model_O4.onnx").read_bytes() == b"an optimised one"
