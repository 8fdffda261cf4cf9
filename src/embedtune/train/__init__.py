"""Fine-tuning: datasets from QADataset, hard-negative mining, the recipe, the model card."""

from __future__ import annotations

from embedtune.train.trainer import finetune, run_train

__all__ = ["finetune", "run_train"]
