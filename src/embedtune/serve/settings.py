"""The server's settings: ``serve:`` from the config, plus how much work it admits at once.

:class:`ServeSettings` adds the admission limits to :class:`embedtune.config.ServeConfig`. The
defaults follow text-embeddings-inference (``--max-concurrent-requests 512``, refused with 429)
and infinity (a queue bounded in texts, refused with 429), with a body limit that keeps the
largest request the other limits allow at typical text lengths::

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
        4096,
        ge=1,
        description="Most padded tokens per model call (texts x the longest): bounds how long "
        "one batch runs, and so how long a small request waits behind a big one.",
    )
    max_queued_texts: int = Field(
        4096,
        ge=1,
        description="Texts waiting for the model; a request that would pass it gets 429 with "
        "Retry-After (a request alone in an empty queue is always taken).",
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
