"""The train stage of a run: RUN/data/{train,val,train_rejects}.json in, RUN/model out.

Skipped when ``RUN/train/manifest.json`` holds the same inputs and settings; a training that
stopped on the way (a kill, a crash, a full disk) continues from its last checkpoint in
``RUN/train/checkpoints`` when it is run again with the same inputs and settings (``resume``
insists on it); ``fresh`` trains again. :func:`train_on_files` does the same for one's own
files (``embedtune train --train-data``), with its checkpoints in ``<output>.train``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embedtune.artifacts import (
    UnreadableSummary,
    is_current,
    key_matches,
    read_manifest,
    stage_key,
    write_manifest,
)
from embedtune.config import PipelineConfig, Resolved
from embedtune.dataset import QADataset, load_dataset_path
from embedtune.errors import InputError, TrainingError
from embedtune.layout import RunLayout, TrainDir
from embedtune.ownership import check_replaceable
from embedtune.recipe import describe, settle
from embedtune.records import content_hash, read_json
from embedtune.runlock import holds_run
from embedtune.train.data import load_sets
from embedtune.train.summary import TrainSummary
from embedtune.train.trainer import finetune, last_saved_checkpoint, world

__all__ = ["run_train", "train_on_files"]

logger = logging.getLogger(__name__)


@holds_run("train")
def run_train(
    cfg: PipelineConfig,
    run_dir: Path,
    *,
    fresh: bool = False,
    resume: bool = False,
    echo: Callable[[str], None] | None = None,
    callbacks: list[Any] | None = None,
) -> TrainSummary:
    """Train ``cfg.model`` on the run's generated questions; skipped when current.

    --fresh deletes nothing up front: training discards the old checkpoints once it starts, and
    the new model replaces RUN/model only when it is saved, so a run that fails on the way (a
    misspelt --model, a crash) leaves the previous model in place.
    """
    run = RunLayout(run_dir)
    cfg = _checked_once(settle(cfg))
    train_path, val_path = run.data_file("train"), run.data_file("val")
    if not train_path.is_file():
        raise InputError(f"{train_path} not found; run `embedtune generate --run {run.root}` first")
    rejects = _rejects(run, cfg)
    key = stage_key(
        "train",
        **_key_parts(
            cfg,
            train_path,
            val_path if val_path.is_file() else None,
            run.rejects_file if rejects is not None else None,
        ),
    )
    if not fresh:
        done = _done(run, key)
        if done is not None:
            return done
        # The same training stopped on the way (embedtune run again after a crash): go on from
        # its last checkpoint rather than discard it, as generate goes on from its cache.
        resume = resume or _interrupted(run.train, key)
    _check_start(run.train, key, resume)

    train, val = load_sets(train_path, val_path if val_path.is_file() else None)
    summary = finetune(
        cfg.model,
        train,
        val,
        cfg.train,
        run.model_dir,
        resume=resume,
        started_key=key,  # written once the folders are claimed and the teachers found
        work_dir=run.train.root,
        callbacks=callbacks,
        echo=echo,
        rejects=rejects,
        val_batch_size=cfg.evaluate.batch_size,
        notes=describe(cfg.resolved, "train."),
    )
    if world()[1] == 0:
        write_manifest(run.train.root, key, {"beats_base": summary.beats_base})
    return summary


def _key_parts(
    cfg: PipelineConfig, train: Path, val: Path | None, rejects: Path | None
) -> dict[str, Any]:
    """What a training depends on: the model, the settings and its data files' contents."""
    return {
        "model": cfg.model,
        "config": cfg.train,
        "train": _file_hash(train),
        "val": _file_hash(val) if val is not None else None,
        "rejects": _file_hash(rejects) if rejects is not None else None,
    }


def _checked_once(cfg: PipelineConfig) -> PipelineConfig:
    """``train.roundtrip_top_k: auto`` for the run's own pairs: generate's round trip checked
    them already (``generate.roundtrip_top_k``), so training does not check them again."""
    k = cfg.generate.roundtrip_top_k
    if cfg.train.roundtrip_top_k != "auto" or k is None:
        return cfg
    why = f"the run's pairs passed generate's round trip (top {k}); not checked again"
    return cfg.model_copy(
        update={
            "train": cfg.train.model_copy(update={"roundtrip_top_k": None}),
            "resolved": {
                **(cfg.resolved or {}),
                "train.roundtrip_top_k": Resolved(given="auto", value=None, why=why),
            },
        }
    )


def _rejects(run: RunLayout, cfg: PipelineConfig) -> QADataset | None:
    """The round trip's rejects, when training has a teacher to learn their ranking from."""
    path = run.rejects_file
    if not (cfg.train.teacher and cfg.train.rejects and path.is_file()):
        return None
    saved = read_json(path)
    if not isinstance(saved, dict):
        raise InputError(
            f"{path} is not a llama-index JSON file; run `embedtune generate --run {run.root}` "
            "again to rewrite it (no LLM call is repeated), or train with --no-rejects"
        )
    if not saved.get("queries"):  # empty when the round trip kept every question
        return None
    rejects = load_dataset_path(path)
    rejects.metadata["source"] = str(path)
    return rejects


def _done(run: RunLayout, key: str) -> TrainSummary | None:
    """The saved summary when the model is current; None when training must run."""
    if not (is_current(run.train.root, key) and (run.model_dir / "modules.json").is_file()):
        return None
    try:
        # None where the summary is torn: train again rather than report nothing.
        return TrainSummary.read_back(read_json(run.train.metrics), run.train.metrics)
    except UnreadableSummary as exc:
        # Training again would repeat the slowest stage for a report: say what to do instead.
        raise InputError(
            f"{exc}; the model in {run.model_dir} is complete: evaluate or serve it as it is, "
            "or train it again with --fresh"
        ) from None


def _interrupted(work: TrainDir, key: str) -> bool:
    """A training with this key started and saved a checkpoint, and never finished."""
    return (
        key_matches(work.started, key)
        and not is_current(work.root, key)
        and last_saved_checkpoint(work.checkpoints)[0] is not None
    )


def _check_start(work: TrainDir, key: str, resume: bool) -> None:
    """Refuse ``--resume`` of another training; forget a finished one of other inputs."""
    started = read_json(work.started)
    if resume and isinstance(started, dict) and not key_matches(work.started, key):
        raise TrainingError(
            f"the checkpoints in {work.checkpoints} were made with other data or settings; "
            "run again with --fresh to start over"
        )
    if read_manifest(work.root) and not key_matches(work.manifest, key):
        work.manifest.unlink(missing_ok=True)


def train_on_files(
    cfg: PipelineConfig,
    train_path: Path,
    val_path: Path | None,
    output: Path,
    *,
    rejects_path: Path | None = None,
    work_dir: Path | None = None,
    fresh: bool = False,
    resume: bool = False,
    echo: Callable[[str], None] | None = None,
    callbacks: list[Any] | None = None,
) -> TrainSummary:
    """``embedtune train --train-data``: train ``cfg.model`` on one's own files into ``output``.

    A training that stopped on the way continues from its last checkpoint in ``work_dir``
    (default ``<output>.train``) when it is run again with the same files and settings, as a
    run's train stage does (``fresh``: from the start); a finished one trains again from the
    start."""
    work = TrainDir(Path(work_dir) if work_dir else output.with_name(output.name + ".train"))
    train, val = load_sets(train_path, val_path)  # each file named where it does not read
    rejects = None
    if rejects_path is not None:
        rejects = load_dataset_path(rejects_path)
        rejects.metadata["source"] = str(rejects_path)
    key = stage_key("train-files", **_key_parts(cfg, train_path, val_path, rejects_path))
    check_replaceable(work.root, "the training work folder")  # before reading what it holds
    if not (resume or fresh) and _interrupted(work, key):
        resume = True
        (echo or logger.info)(
            f"a training of these files stopped on the way: resuming from {work.checkpoints}"
        )
    _check_start(work, key, resume)
    summary = finetune(
        cfg.model,
        train,
        val,
        cfg.train,
        output,
        resume=resume,
        started_key=key,  # written once the folders are claimed and the teachers found
        work_dir=work.root,
        callbacks=callbacks,
        echo=echo,
        rejects=rejects,
        val_batch_size=cfg.evaluate.batch_size,
    )
    if world()[1] == 0:
        write_manifest(work.root, key, {"beats_base": summary.beats_base})
    return summary


def _file_hash(path: Path) -> str:
    return content_hash(path.read_bytes())
