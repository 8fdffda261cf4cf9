"""Fine-tuning: training rows from QADataset, the recipe on sentence-transformers' trainer,
validation, the model card, and the train stage of a run."""

from __future__ import annotations

from embedtune.train.stage import run_train, train_on_files
from embedtune.train.summary import TrainSummary
from embedtune.train.trainer import FineTuning, check_train_settings, finetune

__all__ = [
    "FineTuning",
    "TrainSummary",
    "check_train_settings",
    "finetune",
    "run_train",
    "train_on_files",
]
