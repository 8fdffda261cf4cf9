"""embedtune: fine-tune sentence-embedding models on your own documents for better retrieval."""

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
