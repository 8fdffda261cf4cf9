"""ONNX export: files written, embeddings close to PyTorch, and the server loading them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from embedtune.config import ServeConfig
from embedtune.errors import InputError
from embedtune.serve.backends import cpu_int8_config, load_backend, onnx_file
from embedtune.serve.export import MIN_COSINE

needs_onnx = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("onnxruntime", "onnx", "onnxscript")),
    reason="needs the onnx extra: pip install -e '.[onnx]'",
)

# Mixed lengths in one batch: padding must be masked in the exported graph. The last is longer
# than the model's 256-token window, so both sides must truncate alike.
TEXTS = [
    "R",
    "How do I install a package from CRAN?",
    "A data frame is a list of equal-length vectors. " * 20,
    "Packages are installed from CRAN with install.packages(). " * 40,
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


@pytest.fixture(scope="module")
def exported(minilm_path, tmp_path_factory) -> tuple[Path, dict]:
    """all-MiniLM-L6-v2 exported once for this module's tests (about 20 s)."""
    from embedtune.serve.export import export_onnx

    out = tmp_path_factory.mktemp("export") / "model-onnx"
    return out, export_onnx(minilm_path, out)


@needs_onnx
def test_export_writes_a_whole_model_whose_onnx_files_match_torch(exported, _minilm_session):
    out, info = exported
    assert (out / "onnx" / "model.onnx").is_file()
    assert info["min_cosine_onnx"] >= MIN_COSINE["onnx"] == 0.999
    assert info["min_cosine_int8"] >= MIN_COSINE["onnx-int8"]
    assert "int8" in onnx_file(out, "onnx-int8").name
    manifest = json.loads((out / "onnx" / "manifest.json").read_text())
    assert manifest["min_cosine_int8"] == info["min_cosine_int8"]

    # The folder is still a whole sentence-transformers model, loading without embedtune.
    from sentence_transformers import SentenceTransformer

    reference = _minilm_session.encode(TEXTS)
    reloaded = SentenceTransformer(str(out), device="cpu").encode(TEXTS)
    assert _cos(reloaded, reference).min() > 0.99999

    onnx = load_backend(str(out), "onnx")
    assert onnx.get_backend() == "onnx" and onnx.get_embedding_dimension() == 384
    assert _cos(onnx.encode(TEXTS), reference).min() >= 0.999
    # The model's own normalisation is in the graph: unit vectors, as PyTorch gives.
    assert np.allclose(np.linalg.norm(onnx.encode(TEXTS), axis=1), 1.0, atol=1e-5)
    # Batching longest first must not change a text's vector or the order.
    one_by_one = np.stack([onnx.encode([t])[0] for t in TEXTS])
    assert _cos(onnx.encode(TEXTS, batch_size=2), one_by_one).min() >= 0.9999
    assert onnx.encode(TEXTS[1]).shape == (384,)

    int8 = load_backend(str(out), "onnx-int8")
    assert _cos(int8.encode(TEXTS), reference).min() >= MIN_COSINE["onnx-int8"]


@needs_onnx
def test_a_second_export_of_the_same_model_is_skipped(exported, minilm_path):
    from embedtune.serve.export import export_onnx

    out, info = exported
    mtime = (out / "onnx" / "model.onnx").stat().st_mtime_ns
    again = export_onnx(minilm_path, out)
    assert again == info
    assert (out / "onnx" / "model.onnx").stat().st_mtime_ns == mtime


@needs_onnx
@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_served_onnx_backends_return_the_vectors_the_export_was_checked_with(
    exported, _minilm_session, backend
):
    from embedtune.serve import create_app

    out, _ = exported
    model = load_backend(str(out), backend)  # type: ignore[arg-type]
    direct = model.encode(TEXTS)
    app = create_app(model, ServeConfig(backend=backend), model_name="m")
    with TestClient(app) as c:
        info = c.get("/info").json()
        assert info["backend"] == backend and info["dimension"] == 384
        assert info["max_seq_length"] == 256
        got = np.array(c.post("/embed", json={"inputs": TEXTS, "truncate": True}).json())
        body = c.post("/v1/embeddings", json={"input": TEXTS[:2], "model": "m"}).json()
    openai = np.array([d["embedding"] for d in body["data"]])
    if backend == "onnx":
        assert np.allclose(got, direct, atol=1e-5)
        assert np.allclose(openai, direct[:2], atol=1e-5)
    else:
        # Dynamic int8 scales activations per batch, so a text's vector moves a little with
        # the texts the server batches it with: as close as the export's own check asks.
        assert _cos(got, direct).min() >= MIN_COSINE[backend]
        assert _cos(openai, direct[:2]).min() >= MIN_COSINE[backend]
    tokens = _minilm_session.tokenizer(TEXTS[:2])["input_ids"]
    assert body["usage"]["prompt_tokens"] == sum(map(len, tokens))
    assert _cos(got, _minilm_session.encode(TEXTS)).min() >= MIN_COSINE[backend]


@needs_onnx
def test_an_export_that_ignores_padding_is_caught_and_deleted(minilm_path, tmp_path, monkeypatch):
    """The classic broken export: a graph that attends to padding. Its embeddings of short texts
    batched with long ones drift, the export raises saying so, and nothing is left to serve."""
    import embedtune.serve.export as export

    def ignoring_the_mask(model):
        graph = real(model)
        forward = graph.forward

        def broken(input_ids, attention_mask, token_type_ids=None):
            return forward(input_ids, attention_mask * 0 + 1, token_type_ids)

        graph.forward = broken
        return graph

    real = export._graph_module
    monkeypatch.setattr(export, "_graph_module", ignoring_the_mask)
    out = tmp_path / "model-onnx"
    with pytest.raises(InputError, match=r"the onnx export is off: .* cosine similarity of only"):
        export.export_onnx(minilm_path, out, int8=False)
    assert not list((out / "onnx").glob("*.onnx"))
    with pytest.raises(InputError, match="embedtune export"):
        load_backend(str(out), "onnx")


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


@needs_onnx  # without onnxruntime the backend says to install it first, before reading the folder
def test_an_export_from_before_encoder_json_is_refused_with_the_fix(tmp_path):
    """Folders exported by Optimum (embedtune before this exporter) hold a graph without the
    model's pooling and no encoder.json: serving one says to export again."""
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"an Optimum export")
    with pytest.raises(InputError, match=r"no encoder.json in .*onnx: .* --fresh"):
        load_backend(str(tmp_path), "onnx")
