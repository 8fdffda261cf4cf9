"""The model behind the routes: what it is, what it accepts, and embedding through the batcher.

One :class:`EmbeddingService` per app holds the model, its settings, the batcher and the
metrics; the routes hold nothing of their own. It can be used without HTTP::

    >>> from embedtune.models import load_model
    >>> service = EmbeddingService(load_model("all-MiniLM-L6-v2"), ServeSettings(), "minilm")
    >>> await service.start()                                          # doctest: +SKIP
    >>> await service.embed(["What is R?"], prompt_name=None, counts=[5])  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import copy
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np

from embedtune.serve.batcher import Batcher
from embedtune.serve.errors import ApiError
from embedtune.serve.metrics import ServeMetrics
from embedtune.serve.settings import ServeSettings

if TYPE_CHECKING:
    from embedtune.serve.backends import Encoder

__all__ = ["EmbeddingService", "Embedded", "version"]

# Texts per tokenizer call when counting: a big request is counted a slice at a time, so that a
# small request's count slips in between instead of waiting for all of it.
_COUNT_SLICE = 32


@dataclass
class Embedded:
    """Vectors for a request's texts, and the tokens the model read for them."""

    vectors: np.ndarray
    tokens: int


class EmbeddingService:
    """``model`` served with ``settings``: token counts, prompts, limits and shared batches."""

    def __init__(
        self,
        model: Encoder,
        settings: ServeSettings,
        model_name: str,
        *,
        auth: bool = False,
    ) -> None:
        self.model = model
        self.settings = settings
        self.model_name = model_name
        self.auth = auth
        self.metrics = ServeMetrics()
        self.dim, self.max_len, self.prompts = _model_info(model)
        self.default_prompt: str | None = getattr(model, "default_prompt_name", None)
        self.backend = settings.backend if model.get_backend() == "onnx" else model.get_backend()
        # A private tokenizer for counting tokens in another thread: fast tokenizers raise
        # "Already borrowed" when one instance is used from two threads while the model encodes.
        self._tokenizer = copy.deepcopy(model.tokenizer)
        self._token_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedtune-tokens")
        self.batcher = Batcher(
            self._encode,
            max_batch_size=settings.max_batch_size,
            max_batch_tokens=settings.max_batch_tokens,
            max_wait_ms=settings.max_wait_ms,
            on_batch=self.metrics.observe_batch,
            on_queue=self.metrics.queue_depth.set,
        )

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        await self.batcher.start()

    async def close(self) -> None:
        await self.batcher.close()
        self.batcher.shutdown()
        self._token_pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------- checks
    def prompt(self, name: str | None) -> str:
        """The text of prompt ``name`` (the model's default for None), or ApiError 422."""
        if name is None:
            return self.prompts.get(self.default_prompt, "") if self.default_prompt else ""
        if name not in self.prompts:
            available = ", ".join(sorted(self.prompts)) or "none"
            raise ApiError(
                422,
                f"unknown prompt_name {name!r}; this model's prompts are: {available}",
                param="prompt_name",
                code="unknown_prompt",
            )
        return self.prompts[name]

    def check_dimensions(self, dimensions: int | None) -> None:
        if dimensions is not None and dimensions > self.dim:
            raise ApiError(
                422,
                f"dimensions={dimensions} is more than the model's {self.dim}; ask for "
                f"{self.dim} or fewer",
                param="dimensions",
                code="invalid_dimensions",
            )

    # -------------------------------------------------------------------- work
    async def count_tokens(self, texts: list[str], prompt: str) -> list[int]:
        """Tokens of each text with ``prompt`` before it, untruncated."""
        loop = asyncio.get_running_loop()
        counts: list[int] = []
        for start in range(0, len(texts), _COUNT_SLICE):
            part = texts[start : start + _COUNT_SLICE]
            counts += await loop.run_in_executor(self._token_pool, self._count, part, prompt)
        return counts

    def read_tokens(self, counts: list[int]) -> list[int]:
        """What the model reads of each text: at most ``max_seq_length`` tokens."""
        return [min(n, self.max_len) for n in counts] if self.max_len else counts

    async def embed(self, texts: list[str], prompt_name: str | None, counts: list[int]) -> Embedded:
        """Embed ``texts`` (already checked) in shared batches."""
        read = self.read_tokens(counts)
        vectors = await self.batcher.encode(texts, prompt_name, costs=read)
        return Embedded(vectors, sum(read))

    @staticmethod
    def finish(vectors: np.ndarray, dimensions: int | None, normalize: bool) -> np.ndarray:
        """Keep the first ``dimensions`` and scale to unit length when ``normalize``."""
        if dimensions is not None and dimensions < vectors.shape[1]:
            vectors = vectors[:, :dimensions]
        if normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def info(self) -> dict[str, Any]:
        """What is served and with which limits: no paths, nothing secret."""
        s = self.settings
        return {
            "model_id": self.model_name,
            "dimension": self.dim,
            "max_seq_length": self.max_len,
            "max_input_length": self.max_len,
            "prompts": self.prompts,
            "default_prompt_name": self.default_prompt,
            "backend": self.backend,
            "max_batch_size": s.max_batch_size,
            "max_batch_tokens": s.max_batch_tokens,
            "max_wait_ms": s.max_wait_ms,
            "max_inputs": s.max_inputs,
            "max_client_batch_size": s.max_inputs,
            "max_chars": s.max_chars,
            "max_queue_seconds": s.max_queue_seconds,
            "max_concurrent_requests": s.max_concurrent_requests,
            "max_body_bytes": s.max_body_bytes,
            "auth": self.auth,
            "version": version(),
        }

    # ------------------------------------------------------------------ threads
    def _encode(self, texts: list[str], prompt_name: str | None) -> np.ndarray:
        return self.model.encode(
            texts,
            prompt_name=prompt_name,
            batch_size=self.settings.max_batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    def _count(self, texts: list[str], prompt: str) -> list[int]:
        enc = self._tokenizer(
            [prompt + t for t in texts] if prompt else texts,
            add_special_tokens=True,
            truncation=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )
        return [len(ids) for ids in enc["input_ids"]]


def _model_info(model: Encoder) -> tuple[int, int | None, dict[str, str]]:
    dim = model.get_embedding_dimension()
    if dim is None:
        dim = int(model.encode(["probe"], convert_to_numpy=True).shape[1])
    max_len = model.max_seq_length
    prompts = {k: v or "" for k, v in (model.prompts or {}).items()}
    return int(dim), (int(max_len) if max_len else None), prompts


def version() -> str:
    """embedtune's installed version."""
    try:
        return metadata.version("embedtune")
    except metadata.PackageNotFoundError:
        return "0+unknown"
