"""Where a run keeps its files: one typed map of the run directory, which every stage uses.

::

    RUN/config.yaml                   the settled configuration (prepare)
    RUN/chunks/{train,val}.jsonl      chunks, and val_headings.json (prepare)
    RUN/generate/cache/{split}.jsonl  every LLM reply (broken rows moved to .set-aside beside
                                      it), and report.json (generate)
    RUN/data/{train,val}.json         question/chunk datasets, train_rejects.json, beir/ (generate)
    RUN/model/                        the fine-tuned model (train)
    RUN/train/                        checkpoints, metrics.json, base_metrics.json (train)
    RUN/eval/                         reports (evaluate)
    RUN/result.json                   the model the run recommends (pipeline)
    RUN/.embedtune.lock               held by the stage writing the run (embedtune.runlock)

Each stage keeps a ``manifest.json`` in its own folder (see :mod:`embedtune.artifacts`)::

    >>> run = RunLayout("runs/first")
    >>> run.data_file("val").as_posix()
    'runs/first/data/val.json'
    >>> run.train.checkpoints.as_posix()
    'runs/first/train/checkpoints'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["SPLITS", "Split", "BEIR_SPLIT", "RunLayout", "TrainDir"]

Split = Literal["train", "val"]
SPLITS: tuple[Split, ...] = ("train", "val")
#: BEIR qrels file name per split: validation is written as "test", BEIR's evaluation split.
BEIR_SPLIT: dict[str, str] = {"train": "train", "val": "test"}


@dataclass(frozen=True)
class TrainDir:
    """The training work folder: ``RUN/train``, or ``<output>.train`` beside a model trained
    from one's own data."""

    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def metrics(self) -> Path:
        """The training summary (:class:`~embedtune.train.summary.TrainSummary` as JSON)."""
        return self.root / "metrics.json"

    @property
    def base_metrics(self) -> Path:
        """The base model's validation scores, kept for ``--resume``."""
        return self.root / "base_metrics.json"

    @property
    def started(self) -> Path:
        """The key of the training that wrote the checkpoints, for ``--resume``."""
        return self.root / "started.json"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"


@dataclass(frozen=True, init=False)
class RunLayout:
    """The paths of one run directory; nothing is created until a stage writes."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def result(self) -> Path:
        return self.root / "result.json"

    @property
    def lock(self) -> Path:
        """Held (an OS file lock) by the process writing the run; see :mod:`embedtune.runlock`."""
        return self.root / ".embedtune.lock"

    @property
    def lock_info(self) -> Path:
        """Which process holds :attr:`lock` (pid, stage), for the message of the next one."""
        return self.root / ".embedtune.lock.json"

    # prepare
    @property
    def chunks_dir(self) -> Path:
        return self.root / "chunks"

    def chunks_file(self, split: str) -> Path:
        return self.chunks_dir / f"{split}.jsonl"

    @property
    def val_headings(self) -> Path:
        return self.chunks_dir / "val_headings.json"

    # generate
    @property
    def generate_dir(self) -> Path:
        return self.root / "generate"

    @property
    def reply_cache_dir(self) -> Path:
        """Every LLM reply, kept as it arrives: never deleted, moved aside by ``--fresh``."""
        return self.generate_dir / "cache"

    def reply_cache(self, split: str) -> Path:
        return self.reply_cache_dir / f"{split}.jsonl"

    @property
    def generate_report(self) -> Path:
        return self.generate_dir / "report.json"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def data_file(self, split: str) -> Path:
        return self.data_dir / f"{split}.json"

    @property
    def rejects_file(self) -> Path:
        """The training questions the round trip dropped (learned through the teacher only)."""
        return self.data_dir / "train_rejects.json"

    @property
    def beir_dir(self) -> Path:
        return self.data_dir / "beir"

    # train
    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def train(self) -> TrainDir:
        return TrainDir(self.root / "train")

    # evaluate
    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"
