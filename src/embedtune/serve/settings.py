"""The server's settings: ``serve:`` from the config, limits included.

The admission limits (``max_batch_tokens``, ``max_queue_seconds``, ``max_concurrent_requests``,
``max_body_bytes``) live in :class:`embedtune.config.ServeConfig`, so the YAML file and
``EMBEDTUNE_SERVE__...`` variables set them like every other setting; :class:`ServeSettings` is
kept for code that names it::

    >>> ServeSettings.from_config(ServeConfig(max_inputs=256)).max_concurrent_requests
    512
"""

from __future__ import annotations

from embedtune.config import ServeConfig

__all__ = ["ServeSettings"]


class ServeSettings(ServeConfig):
    """``serve:`` of the config, with the limits that keep one caller, or too many, from
    stalling the rest (all of them :class:`~embedtune.config.ServeConfig` fields)."""

    @classmethod
    def from_config(cls, settings: ServeConfig | None) -> ServeSettings:
        """``settings`` as ServeSettings (itself when it is one already)."""
        if isinstance(settings, ServeSettings):
            return settings
        return cls(**(settings or ServeConfig()).model_dump())
