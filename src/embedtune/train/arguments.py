"""How a fine-tuning run is batched and scheduled, and sentence-transformers' arguments for it.

``train.batch_size`` is the batch per device. In-batch-negative training sees ``batch - 1``
negatives per pair, so a batch larger than the data is lowered to what the data holds, with a
warning; validation and checkpoints come once per epoch unless ``eval_steps``/``save_steps``
say otherwise::

    >>> from embedtune.config import TrainConfig
    >>> s = schedule(TrainConfig(batch_size=32), [6], world=1)
    >>> s.batch_size, s.steps_per_epoch, s.eval_steps, s.warning
    (6, 1, 1, 'batch size 32 is larger than the 6 training pairs; using batch size 6')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from sentence_transformers import SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.training_args import (
    BatchSamplers,
    MultiDatasetBatchSamplers,
)

from embedtune.config import TrainConfig
from embedtune.errors import ConfigError, TrainingError
from embedtune.models import default_device
from embedtune.progress import bars_shown
from embedtune.train.passages import PassageBatchSampler

__all__ = ["Schedule", "schedule", "training_arguments"]


@dataclass(frozen=True)
class Schedule:
    """The batch per device, steps per epoch, and when to validate and save."""

    batch_size: int
    world_size: int
    steps_per_epoch: int
    eval_steps: int
    save_steps: int
    warning: str | None = None  # set when the batch was lowered to fit the data
    passages: bool = False  # batch_size counts distinct chunks (embedtune.train.passages)


def schedule(cfg: TrainConfig, sizes: list[int], world: int, *, passages: bool = False) -> Schedule:
    """The schedule of ``sizes`` rows per dataset (the pairs first; datasets are batched apart)
    over ``world`` processes; with ``passages``, ``sizes`` and the batch count distinct chunks."""
    batch, warning = _fit_batch(cfg.batch_size, sizes[0], world, "chunks" if passages else "pairs")
    per_epoch = max(1, sum(math.ceil(n / (batch * world)) for n in sizes))
    eval_steps, save_steps = cfg.eval_steps, cfg.save_steps
    if eval_steps is None and save_steps is None:
        eval_steps = save_steps = per_epoch
    elif save_steps is None:
        save_steps = eval_steps
    elif eval_steps is None:
        eval_steps = save_steps
    assert eval_steps is not None and save_steps is not None
    if save_steps % eval_steps:
        raise ConfigError(
            f"train.save_steps ({save_steps}) must be a multiple of train.eval_steps "
            f"({eval_steps}) so that every saved checkpoint has a validation score"
        )
    return Schedule(batch, world, per_epoch, eval_steps, save_steps, warning, passages)


def _fit_batch(batch: int, n_pairs: int, world: int, unit: str) -> tuple[int, str | None]:
    if batch * world <= n_pairs:
        return batch, None
    new = max(2, n_pairs // world) if n_pairs >= 2 * world else n_pairs
    if new < 2:
        raise TrainingError(
            f"the training data has {n_pairs} (query, chunk) pair(s); in-batch-negative "
            "training needs at least 2 per device — generate more questions"
        )
    return new, (
        f"batch size {batch} is larger than the {n_pairs} training {unit}"
        + (f" over {world} processes" if world > 1 else "")
        + f"; using batch size {new}"
    )


def training_arguments(
    cfg: TrainConfig,
    plan: Schedule,
    checkpoints: Path,
    *,
    prompts: dict[str, str],
    best_metric: str | None,
    progress_bars: bool,
) -> SentenceTransformerTrainingArguments:
    """sentence-transformers' arguments for ``cfg`` on ``plan``; ``best_metric`` is the
    validation metric that picks the best checkpoint (None: no validation data)."""
    device = default_device()
    cuda = device.startswith("cuda")
    validated = best_metric is not None
    return SentenceTransformerTrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=plan.batch_size,
        per_device_eval_batch_size=plan.batch_size,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=cfg.bf16 == "on",
        use_cpu=device == "cpu",  # else the GPU torch picks (cuda: the first visible)
        ddp_backend=("gloo" if not cuda else None) if plan.world_size > 1 else None,
        # by chunk, each encoded once for all its questions; else no batch holds the same
        # chunk twice (it would be scored as a negative of itself)
        batch_sampler=PassageBatchSampler if plan.passages else BatchSamplers.NO_DUPLICATES,
        multi_dataset_batch_sampler=MultiDatasetBatchSamplers.PROPORTIONAL,
        prompts=prompts or None,
        eval_strategy="steps" if validated else "no",
        eval_steps=plan.eval_steps if validated else None,
        save_strategy="steps",
        save_steps=plan.save_steps,
        save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=validated and cfg.keep == "best",
        metric_for_best_model=best_metric,
        greater_is_better=True,
        logging_steps=max(1, min(50, plan.steps_per_epoch // 4 or 1)),
        # The loss and validation curves always go to RUN/train/metrics.json and the report;
        # TensorBoard gets them too where it is installed (under the checkpoints' runs/).
        report_to="tensorboard" if find_spec("tensorboard") else "none",
        # the step bar where a person watches; in a log, one line of loss per logging step
        disable_tqdm=not (progress_bars and bars_shown()),
        dataloader_drop_last=False,
    )
