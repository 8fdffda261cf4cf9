"""The official openai client against a real uvicorn server on 127.0.0.1, unchanged."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import openai
import pytest
import uvicorn

from embedtune.config import ServeConfig
from embedtune.serve import create_app

TEXTS = ["How do I install a package from CRAN?", "What is a data frame?"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(_minilm_session):
    port = _free_port()
    app = create_app(_minilm_session, ServeConfig(port=port), model_name="minilm", api_key="k")
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    srv.should_exit = True
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_openai_client_float_and_default_base64(server, _minilm_session):
    client = openai.OpenAI(base_url=server, api_key="k", max_retries=0)
    expected = _minilm_session.encode(TEXTS, normalize_embeddings=True)

    as_float = client.embeddings.create(input=TEXTS, model="minilm", encoding_format="float")
    got = np.array([d.embedding for d in as_float.data], dtype=np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert as_float.usage.prompt_tokens > len(TEXTS)

    # No encoding_format: the SDK asks for base64 and decodes it itself.
    default = client.embeddings.create(input=TEXTS, model="minilm")
    got = np.array([d.embedding for d in default.data], dtype=np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert default.model == "minilm"

    short = client.embeddings.create(input=TEXTS[0], model="minilm", dimensions=128)
    assert len(short.data[0].embedding) == 128
    assert [m.id for m in client.models.list()] == ["minilm"]


def test_openai_client_sees_auth_and_validation_errors(server):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server, api_key="wrong", max_retries=0).embeddings.create(
            input="x", model="minilm"
        )
    client = openai.OpenAI(base_url=server, api_key="k", max_retries=0)
    with pytest.raises(openai.UnprocessableEntityError, match="empty"):
        client.embeddings.create(input="", model="minilm")
