"""The fine-tuning recipe on sentence-transformers' trainer, and the train stage of a run.

The recipe (each piece switchable in :class:`~embedtune.config.TrainConfig`):

- ``MultipleNegativesRankingLoss`` over (query, chunk) pairs with the ``NO_DUPLICATES`` batch
  sampler, so no batch holds the same chunk twice (a duplicate would be scored as a negative of
  itself); ``CachedMultipleNegativesRankingLoss`` (GradCache) with ``loss="cached_mnrl"`` for
  batches larger than memory allows; negatives gathered across devices under DDP.
- optional hard negatives mined from the base model (:mod:`embedtune.train.negatives`);
- query/document prompts applied in training and saved into the model, so
  ``model.encode_query`` applies them;
- optional ``MatryoshkaLoss`` and LoRA adapters (merged before the final save);
- with a teacher (``train.teacher``, "auto" = all-mpnet-base-v2 for the default MiniLM; see
  :mod:`embedtune.recipe`), a KL term towards its in-batch ranking
  (:mod:`embedtune.train.distill`), and the questions the round trip rejected trained in batches
  of their own on that KL term alone;
- validation of held-out queries against the full corpus with
  ``InformationRetrievalEvaluator``; the base model is scored first; the weights saved are the
  last (``keep="last"``) or the checkpoint with the best NDCG@10 (``keep="best"``).

Library use::

    summary = finetune("all-MiniLM-L6-v2", train, val, TrainConfig(epochs=1), Path("out/model"))
    summary["base"]["ndcg@10"], summary["best"]["ndcg@10"], summary["beats_base"]
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedtune.artifacts import is_current, read_manifest, stage_key, write_manifest
from embedtune.config import PipelineConfig, TrainConfig
from embedtune.dataset import QADataset
from embedtune.errors import ConfigError, InputError, TrainingError
from embedtune.ownership import check_replaceable, mark
from embedtune.recipe import describe, resolve_train, settle
from embedtune.records import content_hash, write_json_atomic
from embedtune.train.data import (
    check_dataset,
    load_sets,
    merged_corpus,
    pair_rows,
    pairs_dataset,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["finetune", "run_train", "metric_names"]

logger = logging.getLogger(__name__)

PRIMARY = "ndcg@10"
_EVAL_NAME = "val"


def metric_names(st_metrics: dict[str, float]) -> dict[str, float]:
    """``{"val_cosine_ndcg@10": x, "val_cosine_accuracy@5": y}`` -> ``{"ndcg@10": x, "hit@5": y}``."""
    out = {}
    for key, value in st_metrics.items():
        name = key.split("_")[-1] if "@" in key else None
        if name is None:
            continue
        name = name.replace("accuracy@", "hit@")
        out[name] = round(float(value), 6)
    return out


def _world() -> tuple[int, int]:
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))


def _check_prompts(model: SentenceTransformer, cfg: TrainConfig) -> tuple[str | None, str | None]:
    """Put the configured prompts into ``model.prompts``; return the effective prompt names."""
    prompts = dict(model.prompts or {})
    if cfg.query_prompt is not None:
        prompts["query"] = cfg.query_prompt
    if cfg.document_prompt is not None:
        prompts["document"] = cfg.document_prompt
    model.prompts = prompts
    q = "query" if prompts.get("query") else None
    d = "document" if prompts.get("document") else None
    return q, d


def _add_lora(model: SentenceTransformer, cfg: TrainConfig) -> None:
    """Inject LoRA layers into the transformer and train only them.

    peft's ``inject_adapter_in_model`` rather than ``model.add_adapter``: transformers 5.24's
    adapter integration demands peft >= 0.22, newer than PyPI offers (0.21.2).
    """
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ConfigError(
            "train.lora needs peft, which is not installed; run `pip install embedtune[lora]`"
        ) from None
    hf = model.transformers_model
    if hf is None:
        raise TrainingError("LoRA needs a model whose first module is a transformers model")
    targets = sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, mod in hf.named_modules()
            if isinstance(mod, torch_nn_linear())
            and name.rsplit(".", 1)[-1]
            in {
                "query",
                "key",
                "value",
                "q_proj",
                "k_proj",
                "v_proj",
                "q",
                "k",
                "v",
                "q_lin",
                "k_lin",
                "v_lin",
            }
        }
    )
    if not targets:
        raise TrainingError("found no attention projections to put LoRA adapters on")
    try:
        inject_adapter_in_model(
            LoraConfig(
                r=cfg.lora_r, lora_alpha=2 * cfg.lora_r, lora_dropout=0.1, target_modules=targets
            ),
            hf,
        )
    except ValueError as exc:
        raise TrainingError(f"cannot add LoRA adapters to this model: {exc}") from None
    for name, param in hf.named_parameters():
        param.requires_grad = "lora_" in name


def torch_nn_linear() -> type:
    import torch

    return torch.nn.Linear


def _merge_lora(model: SentenceTransformer) -> None:
    """Fold the LoRA weights into the base layers so the saved model needs no peft to load."""
    from peft.tuners.lora import LoraLayer

    hf = model.transformers_model
    for name, module in list(hf.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = hf.get_submodule(parent_name) if parent_name else hf
            setattr(parent, child, module.get_base_layer())
    for param in hf.parameters():
        param.requires_grad = True


def _load_base(model: str) -> SentenceTransformer:
    import torch

    from embedtune.errors import EmbedtuneError
    from embedtune.models import load_model

    try:
        return load_model(model, device=None if torch.cuda.is_available() else "cpu")
    except EmbedtuneError:
        raise
    except Exception as exc:  # transformers raises many types for a folder that is no model
        raise InputError(
            f"could not load {model!r} as a sentence-transformers model "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); give a "
            "model folder with modules.json or config.json, or a hub id"
        ) from None


def _build_loss(
    model: SentenceTransformer, cfg: TrainConfig, world_size: int, *, kl_only: bool = False
):
    """The loss of the pairs; with ``kl_only`` the rejects' loss (the teacher's KL term alone)."""
    from sentence_transformers.sentence_transformer import losses

    gather = world_size > 1
    if kl_only:
        from embedtune.train.distill import TeacherDistillLoss

        loss = TeacherDistillLoss(
            model, distill_weight=1.0, contrastive_weight=0.0, gather_across_devices=gather
        )
    elif cfg.teacher:
        from embedtune.train.distill import TeacherDistillLoss

        if cfg.loss == "cached_mnrl":
            raise ConfigError(
                "train.teacher works with loss 'mnrl' only; set train.loss to 'mnrl' or "
                "train.teacher to null"
            )
        loss = TeacherDistillLoss(
            model, distill_weight=cfg.distill_weight, gather_across_devices=gather
        )
    elif cfg.loss == "cached_mnrl":
        loss = losses.CachedMultipleNegativesRankingLoss(
            model, mini_batch_size=cfg.mini_batch_size, gather_across_devices=gather
        )
    else:
        loss = losses.MultipleNegativesRankingLoss(model, gather_across_devices=gather)
    if cfg.matryoshka_dims:
        dim = model.get_embedding_dimension()
        bad = [d for d in cfg.matryoshka_dims if d > dim or d < 1]
        if bad:
            raise ConfigError(
                f"train.matryoshka_dims {bad} exceed the model's embedding size {dim}; use "
                f"dimensions between 1 and {dim}"
            )
        dims = sorted(set(cfg.matryoshka_dims) | {dim}, reverse=True)
        loss = losses.MatryoshkaLoss(model, loss, matryoshka_dims=dims)
    return loss


def _score_base_cached(
    st_model: SentenceTransformer,
    model: str,
    val: QADataset,
    corpus: dict[str, str],
    batch_size: int,
) -> dict[str, float]:
    """The base model's validation metrics (same definitions as InformationRetrievalEvaluator,
    tested to 1e-4), with embeddings from the shared cache."""
    from embedtune.embeddings import EmbeddingCache, model_fingerprint
    from embedtune.retrieval import score_retrieval

    cache = EmbeddingCache(model_fingerprint(model))
    qids, cids = list(val.queries), list(corpus)
    retrieval = score_retrieval(
        cache.encode_with(st_model, [val.queries[q] for q in qids], "query", batch_size=batch_size),
        cache.encode_with(st_model, [corpus[c] for c in cids], "document", batch_size=batch_size),
        cids,
        [val.relevant_docs[q] for q in qids],
        [1, 3, 5, 10],
        st_model.similarity_fn_name or "cosine",
    )
    return {k.replace("accuracy@", "hit@"): round(v, 6) for k, v in retrieval.metrics.items()}


def _add_teacher_labels(
    datasets: list[Any], cfg: TrainConfig, say: Callable[[str], None], info: dict
) -> list[Any]:
    """Encode every text column once with the teacher and attach it as each row's label."""
    from embedtune.embeddings import EmbeddingCache, model_fingerprint
    from embedtune.train.distill import teacher_labels

    assert cfg.teacher is not None
    t0 = time.perf_counter()
    teacher = _load_base(cfg.teacher)
    if cfg.max_seq_length is not None:
        teacher.max_seq_length = cfg.max_seq_length
    say(
        f"encoding {sum(len(rows) for rows in datasets)} training rows with the teacher "
        f"{cfg.teacher}"
    )
    # Through the teacher's embedding cache: a re-run, the round trip it judged, or the teacher
    # scored as an evaluation baseline, encodes nothing twice. A shortened max_seq_length
    # changes the embeddings, so then the cache is not used.
    fingerprint = model_fingerprint(cfg.teacher) if cfg.max_seq_length is None else None
    cache = EmbeddingCache(fingerprint) if fingerprint else None
    out = []
    for rows in datasets:
        columns = {name: rows[name] for name in rows.column_names}
        labels = teacher_labels(teacher, columns, bf16=cfg.bf16 == "on", cache=cache)
        out.append(rows.add_column("label", labels))
    info.update({"model": cfg.teacher, "seconds": round(time.perf_counter() - t0, 1)})
    del teacher
    return out


def _trainer_class(base: type, *, lora: bool) -> type:
    if not lora:
        return base

    class _LoraTrainer(base):
        """Loads checkpoints (best model, resume) of a model with injected LoRA layers.

        sentence-transformers rebuilds a fresh model from the checkpoint and copies its state,
        which drops the LoRA weights; their names in the checkpoint match the in-memory model
        exactly, so load them directly.
        """

        def _load_from_checkpoint(self, checkpoint_path: str, *args: Any, **kwargs: Any) -> None:
            from safetensors.torch import load_file

            state = load_file(str(Path(checkpoint_path) / "model.safetensors"))
            hf = self.model.transformers_model
            missing, unexpected = hf.load_state_dict(state, strict=False)
            lost = [k for k in missing if "lora_" in k] + list(unexpected)
            if lost:
                raise TrainingError(
                    f"{checkpoint_path} does not match the LoRA model being trained (e.g. "
                    f"{lost[0]!r}); run again with --fresh"
                )

    return _LoraTrainer


def _steps(
    cfg: TrainConfig, n_rows: int | list[int], batch: int, world: int
) -> tuple[int, int, int]:
    """(steps per epoch, eval_steps, save_steps); ``n_rows`` per dataset, batched apart."""
    sizes = [n_rows] if isinstance(n_rows, int) else n_rows
    per_epoch = max(1, sum(math.ceil(n / (batch * world)) for n in sizes))
    eval_steps, save_steps = cfg.eval_steps, cfg.save_steps
    if eval_steps is None and save_steps is None:
        eval_steps = save_steps = per_epoch
    elif save_steps is None:
        save_steps = eval_steps
    elif eval_steps is None:
        eval_steps = save_steps
    if save_steps % eval_steps:
        raise ConfigError(
            f"train.save_steps ({save_steps}) must be a multiple of train.eval_steps "
            f"({eval_steps}) so that every saved checkpoint has a validation score"
        )
    return per_epoch, eval_steps, save_steps


def _save_final(model: SentenceTransformer, output_dir: Path) -> None:
    """Write the model next to ``output_dir`` and move it into place, so a crash leaves either
    the previous model or the new one, never half of one."""
    output_dir = output_dir.resolve()
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_dir.with_name(f".{output_dir.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save(str(tmp), create_model_card=False)
    mark(tmp, "model")
    old = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
    if output_dir.exists():
        os.replace(output_dir, old)
    os.replace(tmp, output_dir)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


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
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model`` on ``train``'s (query, chunk) pairs and save the model.

    ``val``'s queries are searched against ``full_corpus`` (default: train + val chunks) after
    every ``eval_steps`` (default: once per epoch); the last weights (``cfg.keep="last"``) or the
    checkpoint with the best NDCG@10 (``"best"``) are written to ``output_dir``, which loads
    with ``SentenceTransformer(output_dir)`` and carries a model card. With a teacher,
    ``rejects`` (questions the round trip dropped) train on the teacher's KL term only.
    Checkpoints and ``metrics.json`` go to ``work_dir`` (default: ``<output_dir>.train``). Returns the summary also written to ``work_dir/metrics.json``.
    """
    import torch
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        MultiDatasetBatchSamplers,
    )
    from transformers.trainer_utils import get_last_checkpoint

    from embedtune.train.card import write_model_card

    say = echo or (lambda msg: logger.info(msg))
    if notes is None:  # a TrainConfig from a library caller, maybe with "auto" left in it
        cfg, resolved = resolve_train(model, cfg)
        notes = describe(resolved)
    for note in notes:
        say(note)
    if cfg.teacher:
        # Fail before the base is scored and the rows encoded, naming the setting.
        from embedtune.models import resolve_model

        try:
            resolve_model(cfg.teacher)
        except InputError as exc:
            raise ConfigError(f"train.teacher: {exc}") from None
    output_dir = Path(output_dir)
    work_dir = Path(work_dir) if work_dir else output_dir.with_name(output_dir.name + ".train")
    ckpt_dir = work_dir / "checkpoints"
    world, rank = _world()
    warnings: list[str] = []
    # Refuse, before any work, to replace a folder that embedtune did not write.
    check_replaceable(output_dir, "the output folder")
    check_replaceable(work_dir, "the training work folder")
    if rank == 0:
        mark(work_dir, "train")

    check_dataset(train, str(train.metadata.get("source", "training data")))
    if val is not None:
        check_dataset(val, str(val.metadata.get("source", "validation data")))
    corpus = full_corpus if full_corpus is not None else merged_corpus(train, val)
    if val is not None:
        missing = [c for cids in val.relevant_docs.values() for c in cids if c not in corpus]
        if missing:
            raise InputError(
                f"validation query relevant chunk {missing[0]!r} is not in the evaluation corpus; "
                "pass a full_corpus holding every validation chunk"
            )

    st_model = _load_base(model)
    # sentence-transformers' card (written into checkpoints) must never reach the hub offline;
    # the card in the saved model is our own (train/card.py).
    st_model.model_card_data.local_files_only = True
    if cfg.max_seq_length is not None:
        st_model.max_seq_length = cfg.max_seq_length
    q_prompt, d_prompt = _check_prompts(st_model, cfg)
    prompts = {
        "anchor": st_model.prompts.get("query", ""),
        "positive": st_model.prompts.get("document", ""),
    }

    train_rows = pairs_dataset(train)
    negatives_info: dict[str, Any] = {}
    if cfg.hard_negatives:
        from embedtune.embeddings import EmbeddingCache, model_fingerprint
        from embedtune.train.negatives import mine_hard_negatives

        say(f"mining {cfg.hard_negatives} hard negative(s) per pair with the base model")
        # The round trip encoded the training chunks and questions with the base through its
        # embedding cache; read them back unless the sequence length differs from the model's.
        fingerprint = model_fingerprint(model) if cfg.max_seq_length is None else None
        train_rows = mine_hard_negatives(
            st_model,
            train,
            cfg.hard_negatives,
            cfg.hard_negative_margin,
            query_prompt_name=q_prompt,
            document_prompt_name=d_prompt,
            stats=negatives_info,
            cache=EmbeddingCache(fingerprint) if fingerprint else None,
        )
        for k in range(1, cfg.hard_negatives + 1):
            prompts[f"negative_{k}"] = prompts["positive"]
    prompts = {k: v for k, v in prompts.items() if v}
    n_rows = len(train_rows)
    reject_rows = None
    if rejects is not None and cfg.teacher and cfg.rejects:
        check_dataset(rejects, str(rejects.metadata.get("source", "rejected questions")))
        known = set(train_rows["anchor"])
        # One row per question, none already trained on as a pair.
        pairs = []
        for query, passage in pair_rows(rejects):
            if query not in known:
                known.add(query)
                pairs.append((query, passage))
        if len(pairs) >= 2:
            from datasets import Dataset

            reject_rows = Dataset.from_dict(
                {"anchor": [q for q, _ in pairs], "positive": [p for _, p in pairs]}
            )
    teacher_info: dict[str, Any] = {}
    if cfg.teacher:
        labelled = _add_teacher_labels(
            [train_rows] + ([reject_rows] if reject_rows is not None else []),
            cfg,
            say,
            teacher_info,
        )
        train_rows = labelled[0]
        reject_rows = labelled[1] if reject_rows is not None else None
    n_rejects = len(reject_rows) if reject_rows is not None else 0

    batch = cfg.batch_size
    if batch * world > n_rows:
        new = max(2, n_rows // world) if n_rows >= 2 * world else n_rows
        if new < 2:
            raise TrainingError(
                f"the training data has {n_rows} (query, chunk) pair(s); in-batch-negative "
                "training needs at least 2 per device — generate more questions"
            )
        msg = (
            f"batch size {batch} is larger than the {n_rows} training pairs"
            + (f" over {world} processes" if world > 1 else "")
            + f"; using batch size {new}"
        )
        warnings.append(msg)
        say("warning: " + msg)
        batch = new
    per_epoch, eval_steps, save_steps = _steps(
        cfg, [n_rows, n_rejects] if n_rejects else n_rows, batch, world
    )

    evaluator = None
    base_metrics: dict[str, float] = {}
    base_file = work_dir / "base_metrics.json"
    if val is not None:
        evaluator = InformationRetrievalEvaluator(
            queries=val.queries,
            corpus=corpus,
            relevant_docs={q: set(c) for q, c in val.relevant_docs.items()},
            name=_EVAL_NAME,
            mrr_at_k=[10],
            ndcg_at_k=[10],
            accuracy_at_k=[1, 3, 5, 10],
            precision_recall_at_k=[1, 5, 10],
            map_at_k=[100],
            batch_size=64,
            write_csv=False,
            query_prompt_name=q_prompt,
            corpus_prompt_name=d_prompt,
        )
        cached = _read_json(base_file) if resume else None
        if cached and cached.get("model") == model:
            base_metrics = cached["metrics"]
            evaluator.primary_metric = cached["primary"]
        else:
            say(f"scoring the base model on {len(val.queries)} validation queries")
            if q_prompt is None and d_prompt is None and cfg.max_seq_length is None:
                # Unchanged base model: score it through the evaluation stage's embedding cache,
                # which question generation already filled with these chunks' embeddings.
                base_metrics = _score_base_cached(st_model, model, val, corpus, 64)
                sim = st_model.similarity_fn_name or "cosine"
                evaluator.primary_metric = f"{_EVAL_NAME}_{sim}_ndcg@10"
            else:
                base_metrics = metric_names(evaluator(st_model))
            if rank == 0:
                write_json_atomic(
                    base_file,
                    {"model": model, "metrics": base_metrics, "primary": evaluator.primary_metric},
                )
        say(f"base model: NDCG@10 {base_metrics[PRIMARY]:.3f}")

    if cfg.lora:
        _add_lora(st_model, cfg)
    loss = _build_loss(st_model, cfg, world)
    train_dataset: Any = train_rows
    if reject_rows is not None:
        # Batches of their own (the multi-dataset sampler never mixes datasets in a batch), so
        # a rejected question's doubted chunk is never any pair's in-batch negative either.
        train_dataset = {"pairs": train_rows, "rejects": reject_rows}
        loss = {"pairs": loss, "rejects": _build_loss(st_model, cfg, world, kl_only=True)}
    bf16 = cfg.bf16 == "on"

    resume_from = None
    if resume:
        resume_from = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
        if resume_from is None:
            warnings.append(f"--resume: no checkpoint in {ckpt_dir}; trained from the start")
            say("warning: " + warnings[-1])
        else:
            say(f"resuming from {resume_from}")
    elif ckpt_dir.exists() and rank == 0:
        shutil.rmtree(ckpt_dir)

    args = SentenceTransformerTrainingArguments(
        output_dir=str(ckpt_dir),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=batch,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),
        ddp_backend=("gloo" if not torch.cuda.is_available() else None) if world > 1 else None,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        multi_dataset_batch_sampler=MultiDatasetBatchSamplers.PROPORTIONAL,
        prompts=prompts or None,
        eval_strategy="steps" if evaluator is not None else "no",
        eval_steps=eval_steps if evaluator is not None else None,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=evaluator is not None and cfg.keep == "best",
        metric_for_best_model=evaluator.primary_metric if evaluator is not None else None,
        greater_is_better=True,
        logging_steps=max(1, min(50, per_epoch // 4 or 1)),
        report_to="none",
        disable_tqdm=echo is None,
        dataloader_drop_last=False,
    )
    trainer = _trainer_class(SentenceTransformerTrainer, lora=cfg.lora)(
        model=st_model,
        args=args,
        train_dataset=train_dataset,
        loss=loss,
        evaluator=evaluator,
        callbacks=callbacks,
    )
    say(
        f"training on {n_rows} pairs"
        + (f" + {n_rejects} rejected questions (teacher's KL only)" if n_rejects else "")
        + f": {cfg.epochs:g} epoch(s), lr {cfg.learning_rate:g}, batch {batch}"
        + (f" x {world} processes" if world > 1 else "")
        + f", {cfg.loss}"
        + (f", teacher {cfg.teacher}" if cfg.teacher else "")
        + (f", {cfg.hard_negatives} hard negative(s)" if cfg.hard_negatives else "")
        + (", bf16" if bf16 else "")
    )
    t0 = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=resume_from)
    except torch.OutOfMemoryError:
        raise TrainingError(
            f"out of memory at batch size {batch}; lower train.batch_size or use "
            "loss=cached_mnrl with a smaller train.mini_batch_size"
        ) from None
    train_seconds = time.perf_counter() - t0

    evaluations = [
        {
            "step": e["step"],
            "epoch": round(e.get("epoch", 0.0), 4),
            **metric_names({k: v for k, v in e.items() if k.startswith("eval_")}),
        }
        for e in trainer.state.log_history
        if evaluator is not None and f"eval_{evaluator.primary_metric}" in e
    ]
    final_model = trainer.model
    if cfg.lora:
        _merge_lora(final_model)

    summary: dict[str, Any] = {
        "base_model": model,
        "output": str(output_dir),
        "data": {
            "train_queries": len(train.queries),
            "train_chunks": len(train.corpus),
            "train_pairs": n_rows,
            "reject_rows": n_rejects,
            "val_queries": len(val.queries) if val is not None else 0,
            "eval_corpus": len(corpus) if val is not None else 0,
        },
        "recipe": {
            "loss": cfg.loss,
            "mini_batch_size": cfg.mini_batch_size if cfg.loss == "cached_mnrl" else None,
            "batch_sampler": "no_duplicates",
            "batch_size": batch,
            "world_size": world,
            "epochs": cfg.epochs,
            "learning_rate": cfg.learning_rate,
            "warmup_ratio": cfg.warmup_ratio,
            "weight_decay": cfg.weight_decay,
            "max_seq_length": st_model.max_seq_length,
            "seed": cfg.seed,
            "hard_negatives": cfg.hard_negatives,
            "hard_negative_margin": cfg.hard_negative_margin if cfg.hard_negatives else None,
            "query_prompt": st_model.prompts.get("query") or None,
            "document_prompt": st_model.prompts.get("document") or None,
            "matryoshka_dims": cfg.matryoshka_dims,
            "lora": {"r": cfg.lora_r, "alpha": 2 * cfg.lora_r} if cfg.lora else None,
            "bf16": bf16,
            "teacher": teacher_info or None,
            "distill_weight": cfg.distill_weight if cfg.teacher else None,
            "rejects_kl_only": n_rejects > 0,
            "keep": cfg.keep,
            "notes": notes,
        },
        "negatives": negatives_info or None,
        "steps": trainer.state.global_step,
        "train_seconds": round(train_seconds, 2),
        "pairs_per_second": round(result.metrics.get("train_samples_per_second", 0.0) or 0.0, 2),
        "resumed_from": resume_from,
        "warnings": warnings,
    }
    if evaluator is not None:
        best = max(evaluations, key=lambda e: e[PRIMARY]) if evaluations else None
        # The weights saved: the best checkpoint, which load_best_model_at_end restored, or the
        # end of training. When an evaluation during training scored exactly those weights, its
        # scores are the model's.
        kept = best if cfg.keep == "best" else (evaluations[-1] if evaluations else None)
        if (
            kept is not None
            and not cfg.lora
            and (
                _holds_checkpoint(final_model, trainer)
                if cfg.keep == "best"
                else kept["step"] == trainer.state.global_step
            )
        ):
            final = {k: v for k, v in kept.items() if k not in ("step", "epoch")}
        else:
            # Merged LoRA weights (or no evaluation during training): score what gets saved.
            final = metric_names(evaluator(final_model))
        beats = final[PRIMARY] > base_metrics[PRIMARY]
        summary.update(
            {
                "base": base_metrics,
                "final": final,
                "best_step": best["step"] if best else None,
                "best_checkpoint": trainer.state.best_model_checkpoint,
                "evaluations": evaluations,
                "beats_base": beats,
            }
        )
        if cfg.keep == "best" and best and abs(best[PRIMARY] - final[PRIMARY]) > 1e-3:
            warnings.append(
                f"the saved model scores NDCG@10 {final[PRIMARY]:.4f}, the best evaluation "
                f"during training {best[PRIMARY]:.4f} (step {best['step']})"
            )
        change = (
            f"NDCG@10 on the generated validation questions: base {base_metrics[PRIMARY]:.3f} "
            f"-> fine-tuned {final[PRIMARY]:.3f} ({final[PRIMARY] - base_metrics[PRIMARY]:+.3f})"
        )
        if cfg.keep == "best":
            change += f", best at step {summary['best_step']}"
        if beats:
            summary["verdict"] = change
        else:
            summary["verdict"] = (
                f"{change}: not above the base. The weights are saved at {output_dir}; "
                "`embedtune evaluate` judges them on every validation set (beats_base: false)"
            )
    else:
        summary.update({"base": None, "final": None, "beats_base": None})
        summary["verdict"] = "no validation data: trained without model selection"

    if trainer.is_world_process_zero():
        summary["saved_by_rank"] = rank
        _save_final(final_model, output_dir)
        write_model_card(output_dir, summary)
        write_json_atomic(work_dir / "metrics.json", summary)
    if world > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()
    say(summary["verdict"])
    return summary


def _holds_checkpoint(model: SentenceTransformer, trainer: Any) -> bool:
    """Whether ``model`` carries the best checkpoint's weights (sentence-transformers only logs
    a failure to load them)."""
    import torch
    from safetensors.torch import load_file

    ckpt = trainer.state.best_model_checkpoint
    path = Path(ckpt or "", "model.safetensors")
    if not ckpt or not path.is_file():
        return False
    saved = load_file(str(path))
    current = model.transformers_model.state_dict()
    return all(k in current and torch.equal(current[k].cpu(), v) for k, v in saved.items())


def _read_json(path: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _file_hash(path: Path) -> str:
    return content_hash(path.read_bytes())


def run_train(
    cfg: PipelineConfig,
    run_dir: Path,
    *,
    fresh: bool = False,
    resume: bool = False,
    echo: Callable[[str], None] | None = None,
    callbacks: list[Any] | None = None,
) -> dict[str, Any]:
    """The train stage: RUN/data/{train,val,train_rejects}.json -> RUN/model,
    RUN/train/metrics.json.

    Skips when RUN/train/manifest.json holds the same inputs and settings. ``resume`` continues
    from the last checkpoint in RUN/train/checkpoints; ``fresh`` discards earlier outputs.
    """
    run_dir = Path(run_dir)
    train_path, val_path = run_dir / "data" / "train.json", run_dir / "data" / "val.json"
    if not train_path.is_file():
        raise InputError(f"{train_path} not found; run `embedtune generate --run {run_dir}` first")
    work, model_dir = run_dir / "train", run_dir / "model"
    cfg = settle(cfg)
    recipe = cfg.train
    rejects_path = run_dir / "data" / "train_rejects.json"
    rejects = None
    if recipe.teacher and recipe.rejects and rejects_path.is_file():
        saved = _read_json(rejects_path)
        if not isinstance(saved, dict):
            raise InputError(
                f"{rejects_path} is not a llama-index JSON file; run `embedtune generate --run "
                f"{run_dir}` again to rewrite it (no LLM call is repeated), or train with "
                "--no-rejects"
            )
        if saved.get("queries"):  # empty when the round trip kept every question
            from embedtune.dataset import load_dataset_path

            rejects = load_dataset_path(rejects_path)
            rejects.metadata["source"] = str(rejects_path)
    key = stage_key(
        "train",
        model=cfg.model,
        config=recipe,
        train=_file_hash(train_path),
        val=_file_hash(val_path) if val_path.is_file() else None,
        rejects=_file_hash(rejects_path) if rejects is not None else None,
    )
    # --fresh deletes nothing up front: finetune discards the old checkpoints once it starts,
    # and the new model replaces RUN/model only when it is saved, so a run that fails on the
    # way (a misspelt --model, a crash) leaves the previous model in place.
    if not fresh and is_current(work, key) and (model_dir / "modules.json").is_file():
        summary = _read_json(work / "metrics.json") or {}
        return {**summary, "skipped": True}
    started = _read_json(work / "started.json")
    if resume and started and started.get("key") != key:
        raise TrainingError(
            f"the checkpoints in {work / 'checkpoints'} were made with other data or settings; "
            "run again with --fresh to start over"
        )
    manifest = read_manifest(work)
    if manifest and manifest.get("key") != key:
        (work / "manifest.json").unlink(missing_ok=True)
    if _world()[1] == 0:
        write_json_atomic(work / "started.json", {"key": key})

    train, val = load_sets(train_path, val_path if val_path.is_file() else None)
    summary = finetune(
        cfg.model,
        train,
        val,
        cfg.train,
        model_dir,
        resume=resume,
        full_corpus=merged_corpus(train, val),
        work_dir=work,
        callbacks=callbacks,
        echo=echo,
        rejects=rejects,
        notes=describe(cfg.resolved, "train."),
    )
    if _world()[1] == 0:
        write_manifest(work, key, {"beats_base": summary.get("beats_base")})
    return summary
