"""The embeddings service through its HTTP API, on the real all-MiniLM-L6-v2 (no port needed)."""

from __future__ import annotations

import asyncio
import base64
import re

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from embedtune.config import ServeConfig
from embedtune.serve import create_app
from embedtune.serve.app import served_name

TEXTS = ["How do I install a package from CRAN?", "R is a language for statistics."]


@pytest.fixture(scope="module")
def client(_minilm_session):
    app = create_app(_minilm_session, ServeConfig(), model_name="minilm-test")
    with TestClient(app) as c:
        yield c


def _tokens(model, text: str) -> int:
    return len(model.tokenizer(text)["input_ids"])


def test_openai_embeddings_match_model_encode_and_count_tokens(client, _minilm_session):
    r = client.post("/v1/embeddings", json={"input": TEXTS, "model": "my-model"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "my-model"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert all(d["object"] == "embedding" for d in body["data"])
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    expected = _minilm_session.encode(TEXTS, normalize_embeddings=True)
    assert got.shape == (2, 384)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    n = sum(_tokens(_minilm_session, t) for t in TEXTS)
    assert body["usage"] == {"prompt_tokens": n, "total_tokens": n}


def test_single_string_input_gives_one_embedding(client):
    r = client.post("/v1/embeddings", json={"input": TEXTS[0]})
    assert r.status_code == 200
    assert len(r.json()["data"]) == 1
    assert r.json()["model"] == "minilm-test"


def test_base64_decodes_to_the_float_embedding(client):
    floats = client.post("/v1/embeddings", json={"input": TEXTS}).json()["data"]
    b64 = client.post("/v1/embeddings", json={"input": TEXTS, "encoding_format": "base64"})
    for f, b in zip(floats, b64.json()["data"], strict=True):
        decoded = np.frombuffer(base64.b64decode(b["embedding"]), dtype="<f4")
        np.testing.assert_array_equal(decoded, np.array(f["embedding"], dtype=np.float32))


def test_dimensions_truncates_then_renormalises(client, _minilm_session):
    r = client.post("/v1/embeddings", json={"input": TEXTS[0], "dimensions": 64})
    got = np.array(r.json()["data"][0]["embedding"])
    assert got.shape == (64,)
    assert np.linalg.norm(got) == pytest.approx(1.0, abs=1e-5)
    full = _minilm_session.encode([TEXTS[0]])[0][:64]
    np.testing.assert_allclose(got, full / np.linalg.norm(full), atol=1e-5)

    too_many = client.post("/v1/embeddings", json={"input": "x", "dimensions": 1024})
    assert too_many.status_code == 422
    assert "384" in too_many.json()["error"]["message"]


def test_tei_embed_shape_and_values(client, _minilm_session):
    r = client.post("/embed", json={"inputs": TEXTS})
    assert r.status_code == 200
    got = np.array(r.json())
    assert got.shape == (2, 384)
    np.testing.assert_allclose(got, _minilm_session.encode(TEXTS), atol=1e-5)
    one = client.post("/embed", json={"inputs": TEXTS[0], "dimensions": 32}).json()
    assert np.array(one).shape == (1, 32)


def test_tei_long_input_is_413_unless_truncate(client, _minilm_session):
    long_text = "The R FAQ answers questions about packages. " * 80  # ~ 640 tokens > 256
    r = client.post("/embed", json={"inputs": long_text})
    assert r.status_code == 413
    err = r.json()
    assert err["error_type"] == "Validation"
    assert "256" in err["error"] and "truncate" in err["error"]

    r = client.post("/embed", json={"inputs": long_text, "truncate": True})
    assert r.status_code == 200
    np.testing.assert_allclose(r.json()[0], _minilm_session.encode(long_text), atol=1e-5)


def test_prompt_name_is_applied(minilm):
    minilm.prompts["query"] = "query: "
    app = create_app(minilm, ServeConfig(), model_name="m")
    with TestClient(app) as c:
        with_prompt = np.array(
            c.post("/embed", json={"inputs": TEXTS[0], "prompt_name": "query"}).json()[0]
        )
        plain = np.array(c.post("/embed", json={"inputs": TEXTS[0]}).json()[0])
        expected = minilm.encode(TEXTS[0], prompt_name="query")
        np.testing.assert_allclose(with_prompt, expected, atol=1e-5)
        assert not np.allclose(with_prompt, plain, atol=1e-3)
        usage = c.post("/v1/embeddings", json={"input": TEXTS[0], "prompt_name": "query"}).json()[
            "usage"
        ]
        assert usage["prompt_tokens"] == _tokens(minilm, "query: " + TEXTS[0])

        bad = c.post("/embed", json={"inputs": "x", "prompt_name": "passage"})
        assert bad.status_code == 422
        assert "'passage'" in bad.json()["error"] and "query" in bad.json()["error"]
        assert c.get("/info").json()["prompts"]["query"] == "query: "


def test_api_key_required_on_every_route_but_health(_minilm_session):
    app = create_app(_minilm_session, ServeConfig(), model_name="m", api_key="s3cret")
    with TestClient(app) as c:
        r = c.post("/embed", json={"inputs": "x"})
        assert r.status_code == 401
        assert r.json()["error_type"] == "Unauthorized" and "Bearer" in r.json()["error"]
        r = c.post("/v1/embeddings", json={"input": "x"}, headers={"Authorization": "Bearer no"})
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "authentication_error"
        assert c.get("/metrics").status_code == 401
        assert c.get("/health").status_code == 200
        ok = c.post("/embed", json={"inputs": "x"}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_pages_work_offline_with_the_key(_minilm_session, page):
    """The pages load Swagger UI / ReDoc from the server itself, not a CDN: every URL the page
    names is on the server and answers 200 (with the key, which the page and its files need)."""
    app = create_app(_minilm_session, ServeConfig(), model_name="m", api_key="s3cret")
    key = {"Authorization": "Bearer s3cret"}
    with TestClient(app) as c:
        assert c.get(page).status_code == 401
        r = c.get(page, headers=key)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        html = r.text
        assert not re.findall(r"(?:https?:)?//[^\s\"'<>]+", html), "the page names another host"
        urls = re.findall(r"""(?:src|href|spec-url)=["']([^"']+)["']""", html)
        urls += re.findall(r"""\burl: ?["']([^"']+)["']""", html)  # Swagger UI's schema
        assert any(u.endswith(".js") for u in urls) and "/openapi.json" in urls
        for url in urls:
            assert url.startswith("/"), url
            assert c.get(url).status_code == 401, f"{url} is served without the key"
            got = c.get(url, headers=key)
            assert got.status_code == 200 and got.content, url
        assert '"validatorUrl": null' in html or page == "/redoc"


def test_api_key_from_the_configured_environment_variable(_minilm_session, monkeypatch):
    monkeypatch.setenv("MY_SERVE_KEY", "k1")
    app = create_app(_minilm_session, ServeConfig(api_key_env="MY_SERVE_KEY"), model_name="m")
    with TestClient(app) as c:
        assert c.get("/info").status_code == 401
        info = c.get("/info", headers={"Authorization": "Bearer k1"}).json()
        assert info["auth"] is True


def test_limits_name_the_setting(_minilm_session):
    app = create_app(_minilm_session, ServeConfig(max_inputs=2, max_chars=50), model_name="m")
    with TestClient(app) as c:
        r = c.post("/v1/embeddings", json={"input": ["a", "b", "c"]})
        assert r.status_code == 413
        assert "max_inputs=2" in r.json()["error"]["message"]
        r = c.post("/embed", json={"inputs": ["short", "y" * 51]})
        assert r.status_code == 413
        assert "max_chars=50" in r.json()["error"] and "[1]" in r.json()["error"]


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        ("this is not json", "not valid JSON"),
        ("", "missing"),
        ("[1, 2]", "JSON object"),
        ("{}", "required"),
        ('{"@": null}', "string or a list of strings, not null"),
        ('{"@": 3}', "string or a list of strings"),
        ('{"@": {"text": "x"}}', "string or a list of strings"),
        ('{"@": ["ok", 4]}', "string or a list of strings"),
        ('{"@": ""}', "empty"),
        ('{"@": ["a", "   "]}', "[1] is empty"),
        ('{"@": []}', "empty list"),
        ('{"@": [[101, 2054]]}', "token ids"),
    ],
)
def test_bad_bodies_get_422_with_a_message_on_both_apis(client, content, expect):
    for route, field in (("/v1/embeddings", "input"), ("/embed", "inputs")):
        r = client.post(
            route, content=content.replace("@", field), headers={"content-type": "application/json"}
        )
        assert r.status_code == 422, (route, content, r.text)
        body = r.json()
        message = body["error"]["message"] if route.startswith("/v1") else body["error"]
        assert expect in message, (route, content, message)


def test_wrong_option_types_get_422(client):
    r = client.post("/embed", json={"inputs": "x", "normalize": "yes"})
    assert r.status_code == 422 and "normalize" in r.json()["error"]
    r = client.post("/v1/embeddings", json={"input": "x", "encoding_format": "int8"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "encoding_format"
    r = client.post("/v1/embeddings", json={"input": "x", "dimensions": 0})
    assert r.status_code == 422
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404 and "error" in r.json()


def test_info_models_health(client):
    info = client.get("/info").json()
    assert info["dimension"] == 384 and info["max_seq_length"] == 256
    assert info["backend"] == "torch" and info["max_inputs"] == ServeConfig().max_inputs
    assert info["max_concurrent_requests"] == 512 and info["max_batch_tokens"] == 2048
    models = client.get("/v1/models").json()
    assert models["data"][0]["id"] == "minilm-test"
    assert client.get("/health").json() == {"status": "ok"}


def _metric_samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def test_concurrent_requests_share_model_calls(_minilm_session):
    app = create_app(
        _minilm_session, ServeConfig(max_batch_size=64, max_wait_ms=200), model_name="m"
    )

    async def main() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            rs = await asyncio.gather(
                *(c.post("/embed", json={"inputs": f"question number {i}"}) for i in range(16))
            )
            metrics = (await c.get("/metrics")).text
        await app.state.batcher.close()
        app.state.batcher.shutdown()
        return [r.status_code for r in rs], metrics

    statuses, metrics = asyncio.run(main())
    assert statuses == [200] * 16
    samples = _metric_samples(metrics)
    calls = samples["embedtune_batch_size_count"][0].value
    texts = samples["embedtune_batch_size_sum"][0].value
    assert texts == 16
    assert 1 <= calls < 16, f"16 concurrent requests took {calls} model calls"


def test_metrics_count_requests_by_route_and_status(client):
    client.post("/embed", json={"inputs": "counted"})
    client.post("/embed", json={"inputs": 5})
    samples = _metric_samples(client.get("/metrics").text)
    by_labels = {
        (s.labels["route"], s.labels["status"]): s.value
        for s in samples["embedtune_requests_total"]
    }
    assert by_labels[("/embed", "200")] >= 1
    assert by_labels[("/embed", "422")] >= 1
    errors = {s.labels["type"] for s in samples["embedtune_errors_total"]}
    assert "invalid_type" in errors
    assert samples["embedtune_inputs_total"][0].value >= 1
    assert "embedtune_request_latency_seconds_bucket" in samples


def test_a_folder_is_served_under_its_name_never_its_path(tmp_path):
    (tmp_path / "first" / "model").mkdir(parents=True)
    (tmp_path / "bge-ft").mkdir()
    assert served_name(str(tmp_path / "first" / "model")) == "first"  # RUN/model: the run's name
    assert served_name(str(tmp_path / "bge-ft")) == "bge-ft"
    assert served_name("sentence-transformers/all-MiniLM-L6-v2") == (
        "sentence-transformers/all-MiniLM-L6-v2"
    )


def test_the_loaded_model_is_left_out_of_garbage_collections_while_serving(
    monkeypatch, _minilm_session
):
    """Full collections over the model's objects stopped the server 0.3 s at a time (issue 16)."""
    import gc

    import uvicorn

    import embedtune.serve.backends as backends

    seen: dict[str, int] = {}
    monkeypatch.setattr(backends, "load_backend", lambda *a, **k: _minilm_session)
    monkeypatch.setattr(uvicorn, "run", lambda app, **k: seen.update(frozen=gc.get_freeze_count()))
    from embedtune.serve.app import serve

    try:
        serve("all-MiniLM-L6-v2", ServeConfig(backend="torch"))
    finally:
        gc.unfreeze()
    # Every object alive when serving began, the model's included, is frozen.
    assert seen["frozen"] > len(list(_minilm_session.parameters()))
