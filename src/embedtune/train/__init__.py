"""Fine-tuning: training rows from QADataset, the recipe on sentence-transformers' trainer,
validation, the model card, and the train stage of a run."""

from __future__ import annotations

from embedtune.train.stage import run_train, train_on_files
from embedtune.train.summary import TrainSummary
from embedtune.train.trainer import FineTuning, finetune

__all__ = ["FineTuning", "TrainSummary", "finetune", "run_train", "train_on_files"]
