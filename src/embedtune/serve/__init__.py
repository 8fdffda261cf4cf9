"""Serve a model over HTTP (OpenAI and text-embeddings-inference APIs), and export it to ONNX.

``serve`` blocks until Ctrl-C stops it::

    >>> from embedtune.serve import serve
    >>> serve("runs/first/model")              # doctest: +SKIP
"""

from __future__ import annotations

from embedtune.serve.app import ApiError, create_app, serve
from embedtune.serve.backends import load_backend
from embedtune.serve.batcher import Batcher
from embedtune.serve.export import export_onnx
from embedtune.serve.settings import ServeSettings

__all__ = [
    "create_app",
    "serve",
    "load_backend",
    "export_onnx",
    "Batcher",
    "ApiError",
    "ServeSettings",
]
