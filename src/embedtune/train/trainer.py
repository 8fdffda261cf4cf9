"""The fine-tuning recipe on sentence-transformers' trainer.

The recipe (each piece switchable in :class:`~embedtune.config.TrainConfig`):

- ``MultipleNegativesRankingLoss`` over (query, chunk) pairs with the ``NO_DUPLICATES`` batch
  sampler, so no batch holds the same chunk twice (a duplicate would be scored as a negative of
  itself), or with ``passage_batches`` batches of ``batch_size`` distinct chunks with all of
  their questions, each chunk encoded once (:mod:`~embedtune.train.passages`); ``CachedMultipleNegativesRankingLoss`` (GradCache) with ``loss="cached_mnrl"`` for
  batches larger than memory allows; negatives gathered across devices under DDP
  (:mod:`~embedtune.train.losses`, :mod:`~embedtune.train.arguments`);
- optional hard negatives mined from the base model (:mod:`~embedtune.train.negatives`);
- query/document prompts applied in training and saved into the model, so
  ``model.encode_query`` applies them;
- optional ``MatryoshkaLoss`` and LoRA adapters, merged before the final save
  (:mod:`~embedtune.train.lora`), and an optional share of the base's weights averaged back in
  (WiSE-FT, :mod:`~embedtune.train.merge`);
- with a teacher (``train.teacher``, "auto" = all-mpnet-base-v2 for the default MiniLM; see
  :mod:`embedtune.recipe`), a KL term towards its in-batch ranking
  (:mod:`~embedtune.train.distill`), and the questions the round trip rejected trained in
  batches of their own on that KL term alone (:mod:`~embedtune.train.rows`);
- validation of held-out queries against the full corpus; the base model is scored first; the
  weights saved are the last (``keep="last"``) or the checkpoint with the best NDCG@10
  (``keep="best"``) (:mod:`~embedtune.train.validation`).

:class:`FineTuning` runs these steps, one method each, in the order a reader expects (as
sentence-transformers' own trainer is a class of small methods); :func:`finetune` is the library
call. Library use::

    summary = finetune("all-MiniLM-L6-v2", train, val, TrainConfig(epochs=1), Path("out/model"))
    summary.base["ndcg@10"], summary.final["ndcg@10"], summary.beats_base
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from transformers import set_seed

from embedtune.config import TrainConfig
from embedtune.dataset import QADataset, leaked_questions
from embedtune.errors import ConfigError, InputError, TrainingError
from embedtune.layout import TrainDir
from embedtune.models import check_available, is_cross_encoder, position_limit
from embedtune.ownership import check_replaceable, mark
from embedtune.recipe import describe, resolve_train
from embedtune.records import read_json, write_json_atomic
from embedtune.train.arguments import Schedule, schedule, training_arguments
from embedtune.train.card import write_model_card
from embedtune.train.data import check_dataset, chunks_past_window
from embedtune.train.lora import add_lora, lora_trainer_class, merge_lora, require_peft
from embedtune.train.losses import build_loss
from embedtune.train.merge import base_snapshot, merge_base
from embedtune.train.passages import uses_passage_batches
from embedtune.train.rows import TrainingRows, load_for_training, training_rows
from embedtune.train.summary import Recipe, TrainData, TrainSummary
from embedtune.train.validation import PRIMARY, Validation, holds_checkpoint, verdict

__all__ = ["FineTuning", "check_train_settings", "finetune", "world"]

logger = logging.getLogger(__name__)


def check_train_settings(cfg: TrainConfig) -> None:
    """Fail before any work when training cannot start on ``cfg``, naming the setting: a teacher
    that cannot load or ranks pairs (a reranker), LoRA without peft. Training calls it before it
    scores the base; ``run`` calls it before it prepares, so that a run does not write questions
    for an hour to stop at training."""
    for setting in ("teacher", "margin_teacher"):
        name = getattr(cfg, setting)
        if name:
            try:
                check_available(name)
            except InputError as exc:
                raise ConfigError(f"train.{setting}: {exc}") from None
    if cfg.teacher and is_cross_encoder(cfg.teacher):
        raise ConfigError(
            f"train.teacher: {cfg.teacher} is a cross-encoder (a reranker), which "
            "scores pairs rather than embedding texts; name it in train.margin_teacher "
            "(--margin-teacher, with --hard-negatives 1) and keep an embedding model or "
            "none as the teacher"
        )
    if cfg.lora:
        require_peft()


def world() -> tuple[int, int]:
    """(processes, this one's rank) under torchrun; (1, 0) otherwise."""
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))


def finetune(
    model: str,
    train: QADataset,
    val: QADataset | None,
    cfg: TrainConfig,
    output_dir: Path,
    *,
    resume: bool = False,
    full_corpus: dict[str, str] | None = None,
    work_dir: Path | None = None,
    callbacks: list[Any] | None = None,
    echo: Callable[[str], None] | None = None,
    rejects: QADataset | None = None,
    val_batch_size: int = 64,
    notes: list[str] | None = None,
    started_key: str | None = None,
) -> TrainSummary:
    """Fine-tune ``model`` on ``train``'s (query, chunk) pairs and save the model.

    ``val``'s queries are searched against ``full_corpus`` (default: ``val``'s own corpus), in
    batches of ``val_batch_size``, after every ``eval_steps`` (default: once per epoch); the last
    weights (``cfg.keep="last"``) or the checkpoint with the best NDCG@10 (``"best"``) are
    written to ``output_dir``, which loads with ``SentenceTransformer(output_dir)`` and carries a
    model card. With a teacher, ``rejects`` (questions the round trip dropped) train on the
    teacher's KL term only. Checkpoints and ``metrics.json`` go to ``work_dir`` (default:
    ``<output_dir>.train``). ``cfg`` is settled already (``notes`` say how) or its "auto"
    settings are resolved here. ``started_key`` (the inputs' and settings' key) is written to
    the work folder's ``started.json`` once it is claimed, so a rerun can tell this training's
    checkpoints from another's.
    """
    say = echo or logger.info
    if notes is None:  # a TrainConfig from a library caller, maybe with "auto" left in it
        cfg, resolved = resolve_train(model, cfg)
        notes = describe(resolved)
    for note in notes:
        say(note)
    output_dir = Path(output_dir)
    run = FineTuning(
        model,
        cfg,
        output_dir,
        work=TrainDir(
            Path(work_dir) if work_dir else output_dir.with_name(output_dir.name + ".train")
        ),
        val_batch_size=val_batch_size,
        notes=notes,
        say=say,
        progress_bars=echo is not None,
        started_key=started_key,
    )
    return run(
        train, val, rejects=rejects, full_corpus=full_corpus, resume=resume, callbacks=callbacks
    )


@dataclass
class _Trained:
    trainer: Any  # SentenceTransformerTrainer
    model: SentenceTransformer  # the weights to save (LoRA merged)
    seconds: float
    samples_per_second: float
    resumed_from: str | None


def last_saved_checkpoint(folder: Path) -> tuple[str | None, list[str]]:
    """The newest checkpoint the trainer finished saving, and the newer ones it did not.

    The trainer writes a checkpoint's ``trainer_state.json`` last, after the weights, optimizer
    and random states, and keeps no staging folder: a run killed (or out of disk) while saving
    leaves a ``checkpoint-N`` without it, which transformers' ``get_last_checkpoint`` would pick
    and fail to resume from."""
    steps = {
        int(p.name.removeprefix("checkpoint-")): p
        for p in (folder.glob("checkpoint-*") if folder.is_dir() else [])
        if p.is_dir() and p.name.removeprefix("checkpoint-").isdigit()
    }
    torn = []
    for step in sorted(steps, reverse=True):
        try:
            json.loads((steps[step] / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            torn.append(steps[step].name)
            continue
        return str(steps[step]), torn
    return None, torn


class FineTuning:
    """One fine-tuning run of a settled ``cfg``: each step a method of a screen or less."""

    def __init__(
        self,
        model: str,
        cfg: TrainConfig,
        output_dir: Path,
        *,
        work: TrainDir,
        val_batch_size: int = 64,
        notes: list[str] | None = None,
        say: Callable[[str], None] = logger.info,
        progress_bars: bool = False,
        started_key: str | None = None,
    ) -> None:
        self.model_name = model
        self.cfg = cfg
        self.output_dir = Path(output_dir)
        self.work = work
        self.val_batch_size = val_batch_size
        self.notes = list(notes or [])
        self.say = say
        self.progress_bars = progress_bars
        self.started_key = started_key
        self.world, self.rank = world()
        self.warnings: list[str] = []
        self.mask_share: float | None = None  # share of negatives the teacher masked

    def __call__(
        self,
        train: QADataset,
        val: QADataset | None,
        *,
        rejects: QADataset | None = None,
        full_corpus: dict[str, str] | None = None,
        resume: bool = False,
        callbacks: list[Any] | None = None,
    ) -> TrainSummary:
        check_train_settings(self.cfg)
        corpus = self.check_data(train, val, full_corpus)  # bad data leaves no folder behind
        self.claim_folders()
        model = self.load_base()
        self.check_window(model, train)
        rows = training_rows(
            model,
            self.model_name,
            train,
            self.cfg,
            self.say,
            rejects=rejects,
            prompt_names=self.prompt_names(model),
        )
        plan = self.schedule(rows)
        validation, base = self.validate_base(model, val, corpus, resume) if val else (None, None)
        trained = self.train(model, rows, plan, validation, resume, callbacks)
        summary = self.summary(train, val, corpus, rows, plan, trained, validation, base)
        self.save(trained, summary)
        self.say(summary.verdict)
        return summary

    def warn(self, text: str) -> None:
        """Say ``text`` now, and keep it for the summary and the model card."""
        self.warnings.append(text)
        self.say("warning: " + text)

    # --- before training ------------------------------------------------------------------

    def claim_folders(self) -> None:
        """Refuse, before any work, to replace a folder that embedtune did not write."""
        check_replaceable(self.output_dir, "the output folder")
        check_replaceable(self.work.root, "the training work folder")
        if self.rank == 0:
            mark(self.work.root, "train")
            if self.started_key is not None:
                write_json_atomic(self.work.started, {"key": self.started_key})

    def check_data(
        self, train: QADataset, val: QADataset | None, full_corpus: dict[str, str] | None
    ) -> dict[str, str]:
        """The corpus the validation queries search, once both datasets are checked."""
        check_dataset(train, str(train.metadata.get("source", "training data")))
        if val is not None:
            check_dataset(val, str(val.metadata.get("source", "validation data")))
            leak = leaked_questions(train, val)
            if leak:
                self.warn(leak)
        # Validation during training searches the validation set's own corpus by default: it
        # follows training cheaply (the R manuals' 292 validation chunks, not all 2,093), and
        # `embedtune evaluate` judges the saved model against the full corpus afterwards.
        corpus = full_corpus if full_corpus is not None else (val.corpus if val else {})
        if val is not None:
            missing = [c for cids in val.relevant_docs.values() for c in cids if c not in corpus]
            if missing:
                raise InputError(
                    f"validation query relevant chunk {missing[0]!r} is not in the evaluation "
                    "corpus; pass a full_corpus holding every validation chunk"
                )
        return corpus

    def load_base(self) -> SentenceTransformer:
        """The base model with the configured sequence length and prompts."""
        model = load_for_training(self.model_name, attention_dropout=self.cfg.attention_dropout)
        # sentence-transformers' card (in checkpoints and the saved model, with embedtune's
        # sections: train/card.py) must never ask the Hub, which stalls or fails offline.
        model.model_card_data.local_files_only = True
        if self.cfg.max_seq_length is not None:
            model.max_seq_length = self.cfg.max_seq_length
        prompts = dict(model.prompts or {})
        if self.cfg.query_prompt is not None:
            prompts["query"] = self.cfg.query_prompt
        if self.cfg.document_prompt is not None:
            prompts["document"] = self.cfg.document_prompt
        model.prompts = prompts
        return model

    def check_window(self, model: SentenceTransformer, train: QADataset) -> None:
        """Warn where many training chunks run past the window the model reads."""
        if not model.max_seq_length:
            return
        try:
            limit = position_limit(self.model_name)
        except InputError:
            limit = None
        warning = chunks_past_window(
            train,
            model.tokenizer,
            model.max_seq_length,
            limit,
            self.model_name,
            str(train.metadata.get("source", "training data")),
            given=self.cfg.max_seq_length is not None,
        )
        if warning:
            self.warn(warning)

    @staticmethod
    def prompt_names(model: SentenceTransformer) -> tuple[str | None, str | None]:
        """The names of the query and document prompts the model has (None: no prompt)."""
        prompts = model.prompts or {}
        return ("query" if prompts.get("query") else None), (
            "document" if prompts.get("document") else None
        )

    def schedule(self, rows: TrainingRows) -> Schedule:
        if uses_passage_batches(self.cfg, self.world):
            plan = schedule(self.cfg, rows.passage_sizes, self.world, passages=True)
        else:
            plan = schedule(self.cfg, rows.sizes, self.world)
        if plan.warning:
            self.warn(plan.warning)
        return plan

    def validate_base(
        self, model: SentenceTransformer, val: QADataset, corpus: dict[str, str], resume: bool
    ) -> tuple[Validation, dict[str, float]]:
        """The validation, and the base model's scores on it (kept for ``--resume``)."""
        validation = Validation(
            val, corpus, batch_size=self.val_batch_size, prompt_names=self.prompt_names(model)
        )
        saved = read_json(self.work.base_metrics) if resume else None
        if saved and saved.get("model") == self.model_name:
            validation.evaluator.primary_metric = saved["primary"]
            base = saved["metrics"]
        else:
            self.say(f"scoring the base model on {len(val.queries)} validation queries")
            own = self.prompt_names(model) == (None, None) and self.cfg.max_seq_length is None
            base = validation.score_base(model, self.model_name, own_settings=own)
            if self.rank == 0:
                write_json_atomic(
                    self.work.base_metrics,
                    {
                        "model": self.model_name,
                        "metrics": base,
                        "primary": validation.primary_metric,
                    },
                )
        self.say(f"base model: NDCG@10 {base[PRIMARY]:.3f}")
        return validation, base

    def checkpoint_to_resume(self, resume: bool) -> str | None:
        """The last checkpoint with ``--resume``; else the old checkpoints are discarded."""
        checkpoints = self.work.checkpoints
        if not resume:
            if checkpoints.exists() and self.rank == 0:
                shutil.rmtree(checkpoints)
            return None
        last, torn = last_saved_checkpoint(checkpoints)
        if torn:
            # Nothing resumes from them, and after a full disk their files hold the space the
            # resumed training needs for its next checkpoint.
            if self.rank == 0:
                for name in torn:
                    shutil.rmtree(checkpoints / name, ignore_errors=True)
            self.warn(
                f"--resume: {', '.join(torn)} in {checkpoints} stopped while being saved (a kill "
                f"or a full disk) and was removed; resumed from "
                f"{Path(last).name if last else 'the start'}"
            )
        if last is None:
            self.warn(f"--resume: no checkpoint in {checkpoints}; trained from the start")
        else:
            self.say(f"resuming from {last}")
        return last

    # --- training -------------------------------------------------------------------------

    def loss(self, model: SentenceTransformer, rows: TrainingRows) -> Any:
        loss = build_loss(model, self.cfg, self.world)
        if rows.rejects is None:
            return loss
        return {"pairs": loss, "rejects": build_loss(model, self.cfg, self.world, kl_only=True)}

    def train(
        self,
        model: SentenceTransformer,
        rows: TrainingRows,
        plan: Schedule,
        validation: Validation | None,
        resume: bool,
        callbacks: list[Any] | None,
    ) -> _Trained:
        base_weights = base_snapshot(model) if self.cfg.merge_base else None
        if self.cfg.lora:
            # The adapters' first weights are drawn here, before the trainer seeds itself: seed
            # now, or train.seed does not decide them and the same run trains another model.
            set_seed(self.cfg.seed)
            add_lora(model, self.cfg.lora_r)
        loss = self.loss(model, rows)
        resume_from = self.checkpoint_to_resume(resume)
        args = training_arguments(
            self.cfg,
            plan,
            self.work.checkpoints,
            prompts=rows.prompts(model),
            best_metric=validation.primary_metric if validation else None,
            progress_bars=self.progress_bars,
        )
        trainer_class = (
            lora_trainer_class(SentenceTransformerTrainer)
            if self.cfg.lora
            else SentenceTransformerTrainer
        )
        trainer = trainer_class(
            model=model,
            args=args,
            train_dataset=rows.dataset(),
            loss=loss,
            evaluator=validation.evaluator if validation else None,
            callbacks=callbacks,
        )
        self.say(self.describe_training(rows, plan))
        t0 = time.perf_counter()
        try:
            result = trainer.train(resume_from_checkpoint=resume_from)
        except torch.OutOfMemoryError:
            raise TrainingError(
                f"out of memory at batch size {plan.batch_size}; lower train.batch_size or use "
                "loss=cached_mnrl with a smaller train.mini_batch_size"
            ) from None
        except Exception as exc:  # a checkpoint torch or safetensors could not write
            hidden = hidden_write_error(exc, self.work.checkpoints)
            if hidden is None:
                raise
            raise hidden from None
        seconds = time.perf_counter() - t0
        self.tell_mask(loss)
        if self.cfg.lora:
            merge_lora(trainer.model)
        if base_weights is not None:
            merged = merge_base(trainer.model, base_weights, self.cfg.merge_base)
            self.say(
                f"averaged {self.cfg.merge_base:g} of the base's weights back in ({merged} tensors)"
            )
        per_second = result.metrics.get("train_samples_per_second", 0.0) or 0.0
        return _Trained(trainer, trainer.model, seconds, per_second, resume_from)

    def tell_mask(self, loss: Any) -> None:
        """How many in-batch negatives the teacher kept out (train.false_negative_margin)."""
        pairs = loss["pairs"] if isinstance(loss, dict) else loss
        pairs = getattr(pairs, "loss", pairs)  # inside MatryoshkaLoss
        seen = getattr(pairs, "negatives_seen", 0)
        if seen:
            masked = pairs.negatives_masked
            self.mask_share = masked / seen
            self.say(
                f"the teacher kept {masked:,} of {seen:,} in-batch negatives out of the pairs' "
                f"loss ({self.mask_share:.1%}) as false negatives"
            )

    def describe_training(self, rows: TrainingRows, plan: Schedule) -> str:
        cfg = self.cfg
        return (
            f"training on {rows.n_pairs} pairs"
            + (
                f" + {rows.n_rejects} rejected questions (teacher's KL only)"
                if rows.n_rejects
                else ""
            )
            + f": {cfg.epochs:g} epoch(s), lr {cfg.learning_rate:g}, batch {plan.batch_size}"
            + (" chunks with all their questions" if plan.passages else "")
            + (f" x {self.world} processes" if self.world > 1 else "")
            + f", {cfg.loss}"
            + (f", teacher {cfg.teacher}" if cfg.teacher else "")
            + (f", margins of {cfg.margin_teacher}" if cfg.margin_teacher else "")
            + (f", {cfg.hard_negatives} hard negative(s)" if cfg.hard_negatives else "")
            + (", bf16" if cfg.bf16 == "on" else "")
            + (
                f", attention dropout {cfg.attention_dropout:g}"
                if cfg.attention_dropout is not None
                else ""
            )
        )

    # --- after training -------------------------------------------------------------------

    def summary(
        self,
        train: QADataset,
        val: QADataset | None,
        corpus: dict[str, str],
        rows: TrainingRows,
        plan: Schedule,
        trained: _Trained,
        validation: Validation | None,
        base: dict[str, float] | None,
    ) -> TrainSummary:
        summary = TrainSummary(
            base_model=self.model_name,
            output=str(self.output_dir),
            data=TrainData(
                train_queries=len(train.queries),
                train_chunks=len(train.corpus),
                train_pairs=rows.n_pairs,
                reject_rows=rows.n_rejects,
                roundtrip_doubted=rows.roundtrip_doubted,
                roundtrip_share=rows.roundtrip_share,
                val_queries=len(val.queries) if val is not None else 0,
                eval_corpus=len(corpus) if val is not None else 0,
            ),
            recipe=self.recipe(trained.model, rows, plan),
            negatives=rows.negatives or None,
            steps=trained.trainer.state.global_step,
            train_seconds=round(trained.seconds, 2),
            pairs_per_second=round(trained.samples_per_second, 2),
            resumed_from=trained.resumed_from,
            warnings=self.warnings,
            verdict="no validation data: trained without model selection",
            loss_curve=loss_curve(trained.trainer.state.log_history),
        )
        if validation is not None and base is not None:
            self.judge(summary, trained, validation, base)
        return summary

    def recipe(self, model: SentenceTransformer, rows: TrainingRows, plan: Schedule) -> Recipe:
        cfg = self.cfg
        return Recipe(
            loss=cfg.loss,
            mini_batch_size=cfg.mini_batch_size if cfg.loss == "cached_mnrl" else None,
            batch_sampler="passages" if plan.passages else "no_duplicates",
            batch_size=plan.batch_size,
            world_size=self.world,
            epochs=cfg.epochs,
            learning_rate=cfg.learning_rate,
            warmup_ratio=cfg.warmup_ratio,
            weight_decay=cfg.weight_decay,
            max_seq_length=model.max_seq_length,
            seed=cfg.seed,
            hard_negatives=cfg.hard_negatives,
            hard_negative_margin=cfg.hard_negative_margin if cfg.hard_negatives else None,
            query_prompt=model.prompts.get("query") or None,
            document_prompt=model.prompts.get("document") or None,
            matryoshka_dims=cfg.matryoshka_dims,
            lora={"r": cfg.lora_r, "alpha": 2 * cfg.lora_r} if cfg.lora else None,
            bf16=cfg.bf16 == "on",
            attention_dropout=cfg.attention_dropout,
            teacher=rows.teacher or None,
            margin_teacher=rows.margin_teacher or None,
            distill_weight=cfg.distill_weight if cfg.teacher or cfg.margin_teacher else None,
            distill_over=cfg.distill_over if cfg.teacher and cfg.distill_over != "batch" else None,
            loss_directions=cfg.loss_directions if cfg.loss_directions != "query_to_doc" else None,
            hardness_strength=cfg.hardness_strength or None,
            false_negative_margin=cfg.false_negative_margin if cfg.teacher else None,
            false_negatives_masked=round(self.mask_share, 4)
            if self.mask_share is not None
            else None,
            rejects_kl_only=rows.n_rejects > 0,
            keep=cfg.keep,
            merge_base=cfg.merge_base or None,
            notes=self.notes,
        )

    def judge(
        self,
        summary: TrainSummary,
        trained: _Trained,
        validation: Validation,
        base: dict[str, float],
    ) -> None:
        """The saved weights' scores beside the base's, and the verdict."""
        keep_best = self.cfg.keep == "best"
        state = trained.trainer.state
        evaluations = validation.during_training(state.log_history)
        best = max(evaluations, key=lambda e: e[PRIMARY]) if evaluations else None
        # The weights saved: the best checkpoint, which load_best_model_at_end restored, or the
        # end of training. When an evaluation during training scored exactly those weights, its
        # scores are the model's; merged LoRA weights and weights averaged with the base are
        # scored afresh.
        kept = best if keep_best else (evaluations[-1] if evaluations else None)
        scored = (
            kept is not None
            and not self.cfg.lora
            and not self.cfg.merge_base
            and (
                holds_checkpoint(trained.model, state.best_model_checkpoint)
                if keep_best
                else kept["step"] == state.global_step
            )
        )
        if scored:
            final = {k: v for k, v in kept.items() if k not in ("step", "epoch")}
        else:
            final = validation.score(trained.model)
        summary.base, summary.final, summary.evaluations = base, final, evaluations
        summary.best_step = best["step"] if best else None
        summary.best_checkpoint = state.best_model_checkpoint
        summary.beats_base = final[PRIMARY] > base[PRIMARY]
        if keep_best and best and abs(best[PRIMARY] - final[PRIMARY]) > 1e-3:
            summary.warnings.append(
                f"the saved model scores NDCG@10 {final[PRIMARY]:.4f}, the best evaluation "
                f"during training {best[PRIMARY]:.4f} (step {best['step']})"
            )
        summary.verdict = verdict(
            base[PRIMARY],
            final[PRIMARY],
            self.output_dir,
            summary.best_step if keep_best else None,
            own_chunks=len(validation.corpus) == len(validation.val.corpus),
        )

    def save(self, trained: _Trained, summary: TrainSummary) -> None:
        """The model, its card and the summary, written by the first process only."""
        if trained.trainer.is_world_process_zero():
            summary.saved_by_rank = self.rank
            save_model(trained.model, self.output_dir)
            write_model_card(self.output_dir, summary, trained.model)
            write_json_atomic(self.work.metrics, summary.to_json())
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()


def loss_curve(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """The training loss the trainer logged (every ``logging_steps``): step, epoch, loss and
    learning rate, for the curves in RUN/train/metrics.json and the evaluation report."""
    return [
        {
            "step": e["step"],
            "epoch": round(e.get("epoch", 0.0), 4),
            "loss": round(float(e["loss"]), 6),
            **({"learning_rate": float(e["learning_rate"])} if "learning_rate" in e else {}),
        }
        for e in log_history
        if "loss" in e and "step" in e
    ]


#: What torch's zip writer says when writing a checkpoint fails; it keeps the OS's error to
#: itself ("[enforce fail at inline_container.cc:672] . unexpected pos 177956416 vs 177956304").
_TORCH_WRITE_FAILED = ("PytorchStreamWriter failed", "inline_container.cc")
#: Less free space than this where such a write failed: the disk filled up.
LOW_SPACE = 512 * 2**20


def free_bytes(folder: Path) -> int | None:
    """Free space on the disk holding ``folder`` (or its nearest existing parent)."""
    for path in (folder, *folder.parents):
        if path.exists():
            try:
                return shutil.disk_usage(path).free
            except OSError:
                return None
    return None


def hidden_write_error(exc: BaseException, folder: Path) -> OSError | None:
    """The OS's error behind ``exc``, where torch or safetensors failed to write into
    ``folder`` and reported it in their own words, which would end a run in a traceback: a
    full disk while saving a checkpoint or the model. None for any other error."""
    text = str(exc)
    found = re.search(r"Os \{ code: (\d+)", text)  # safetensors: IoError(Os { code: 28, ... })
    if found:
        number = int(found.group(1))
    elif any(words in text for words in _TORCH_WRITE_FAILED):
        free = free_bytes(folder)
        if free is None or free >= LOW_SPACE:
            return None
        number = errno.ENOSPC
    else:
        return None
    return OSError(number, os.strerror(number), str(folder))


def save_model(model: SentenceTransformer, output_dir: Path) -> None:
    """Write the model next to ``output_dir`` and move it into place, so a crash leaves either
    the previous model or the new one, never half of one."""
    output_dir = output_dir.resolve()
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_dir.with_name(f".{output_dir.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        model.save(str(tmp), create_model_card=False)
    except Exception as exc:
        hidden = hidden_write_error(exc, output_dir.parent)
        if hidden is None:
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # its half a model holds the space
        raise hidden from None
    mark(tmp, "model")
    old = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
    if output_dir.exists():
        os.replace(output_dir, old)
    os.replace(tmp, output_dir)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
