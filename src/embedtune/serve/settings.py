"""The server's settings: ``serve:`` from the config, plus how much work it admits at once.

:class:`ServeSettings` adds the admission limits to :class:`embedtune.config.ServeConfig`. The
concurrency limit follows text-embeddings-inference (``--max-concurrent-requests 512``, refused
with 429); the queue is bounded in seconds of waiting rather than in texts, because how many
texts a CPU gets through varies tenfold with their length and the machine's other load::

    >>> ServeSettings.from_config(ServeConfig(max_inputs=256)).max_concurrent_requests
    512
"""

from __future__ import annotations

from pydantic import Field

from embedtune.config import ServeConfig

__all__ = ["ServeSettings"]


class ServeSettings(ServeConfig):
    """``serve:`` plus the limits that keep one caller, or too many, from stalling the rest."""

    max_batch_tokens: int = Field(
        2048,
        ge=1,
        description="Most padded tokens per model call (texts x the longest): bounds how long "
        "one batch runs, and so how long a short request waits behind long ones. 2048 is 8 "
        "texts of 256 tokens, about 0.3 s with MiniLM on 2 free cores; on a CPU, larger batches "
        "of long texts are hardly faster per text.",
    )
    max_queue_seconds: float = Field(
        10.0,
        gt=0,
        description="New requests get 429 with Retry-After once the requests in progress would "
        "keep them waiting about this long for their turn (in progress / recent texts per s).",
    )
    max_concurrent_requests: int = Field(
        512,
        ge=1,
        description="Embedding requests in progress at once; more get 429 before their body "
        "is read.",
    )
    max_body_bytes: int = Field(
        16 * 2**20,
        ge=1,
        description="Largest request body; a larger one gets 413 before it is parsed.",
    )

    @classmethod
    def from_config(cls, settings: ServeConfig | None) -> ServeSettings:
        """``settings`` with the limits' defaults added (itself when it already has them)."""
        if isinstance(settings, ServeSettings):
            return settings
        return cls(**(settings or ServeConfig()).model_dump())
