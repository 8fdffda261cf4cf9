"""embedtune: fine-tune sentence-embedding models on your own documents for better retrieval."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embedtune.config import PipelineConfig, load_config
    from embedtune.dataset import QADataset, load_dataset_path
    from embedtune.errors import EmbedtuneError
    from embedtune.models import load_model, resolve_model

__version__ = "0.1.0"
__all__ = [
    "PipelineConfig",
    "load_config",
    "QADataset",
    "load_dataset_path",
    "EmbedtuneError",
    "load_model",
    "resolve_model",
    "__version__",
]

# Imported when first used: `embedtune --help` imports the package but needs none of them
# (pydantic and pydantic-settings alone took most of its start-up).
_HOME = {
    "PipelineConfig": "embedtune.config",
    "load_config": "embedtune.config",
    "QADataset": "embedtune.dataset",
    "load_dataset_path": "embedtune.dataset",
    "EmbedtuneError": "embedtune.errors",
    "load_model": "embedtune.models",
    "resolve_model": "embedtune.models",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(import_module(_HOME[name]), name)
    raise AttributeError(f"module 'embedtune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
