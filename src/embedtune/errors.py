"""The few error types embedtune raises.

Library code raises these with a message that names the file or field at fault and says what to
do; the CLI turns them into one clean line (never a traceback).
"""

from __future__ import annotations

__all__ = [
    "EmbedtuneError",
    "ConfigError",
    "InputError",
    "GenerationError",
    "TrainingError",
    "HubError",
]


class EmbedtuneError(Exception):
    """Base class: anything a user can fix by changing their input, config or environment."""


class ConfigError(EmbedtuneError):
    """A config file, flag or environment variable is wrong."""


class InputError(EmbedtuneError):
    """Documents, datasets or model paths that cannot be used as given."""


class GenerationError(EmbedtuneError):
    """The question generator failed in a way retrying will not fix."""


class TrainingError(EmbedtuneError):
    """Training cannot start or continue with the given data and settings."""


class HubError(EmbedtuneError):
    """The Hugging Face Hub refused a push, or could not be reached."""
