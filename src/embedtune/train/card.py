"""The model card (README.md) written next to a fine-tuned model.

sentence-transformers' own card, the one the Hugging Face Hub renders (model details, usage,
the evaluator's metrics, training logs, hyperparameters, framework versions), generated offline
(``local_files_only``: it never looks the base model or datasets up on the Hub), with
embedtune's sections added: the base model's validation scores next to the fine-tuned ones with
the verdict, the data sizes and the recipe, teacher included. Where sentence-transformers
cannot generate its card, embedtune's sections make the card alone.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedtune.models import is_alias_of
from embedtune.train.summary import TrainSummary

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["model_card", "write_model_card", "embedtune_sections", "hub_id"]

logger = logging.getLogger(__name__)

_METRICS = ["ndcg@10", "mrr@10", "hit@1", "hit@5", "hit@10", "recall@10", "map@100"]


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if v < 10 else f"{v:.1f}"
    return str(v)


def model_card(summary: TrainSummary) -> str:
    """embedtune's card alone, for a :func:`~embedtune.train.trainer.finetune` summary."""
    r = summary.recipe
    lines = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: sentence-similarity",
        "tags: [sentence-transformers, feature-extraction, embedtune]",
        "---",
        "",
        "# Fine-tuned embedding model",
        "",
        f"Fine-tuned from `{summary.base_model}` with embedtune on question/passage pairs.",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "model = SentenceTransformer('path/to/this/folder')",
        "q = model.encode_query(['how do I ...?'])"
        + ("  # applies the saved query prompt" if r.query_prompt else ""),
        "d = model.encode_document(['passage text'])",
        "print(model.similarity(q, d))",
        "```",
        "",
    ]
    return "\n".join(lines + embedtune_sections(summary, level=2))


def embedtune_sections(summary: TrainSummary, level: int = 2) -> list[str]:
    """embedtune's sections of the card: the result, the data and the recipe."""
    r = summary.recipe
    d = summary.data
    h = "#" * level
    lines = [
        f"{h} Result",
        "",
        f"Fine-tuned from `{summary.base_model}` by embedtune, on questions generated from the "
        "documents it is meant to search.",
        "",
        summary.verdict,
        "",
    ]
    if summary.base and summary.final:
        base, final = summary.base, summary.final
        lines += [
            f"Validation: {d.val_queries} held-out queries searched against {d.eval_corpus}"
            " chunks (training and validation chunks together).",
            "",
            "| metric | base | fine-tuned | change |",
            "|---|---|---|---|",
        ]
        for m in _METRICS:
            if m in base and m in final:
                lines.append(
                    f"| {m} | {base[m]:.4f} | {final[m]:.4f} | {final[m] - base[m]:+.4f} |"
                )
        lines += ["", f"beats_base: {str(summary.beats_base).lower()}", ""]
        if summary.evaluations:
            lines += ["Evaluations during training (NDCG@10 by step): "]
            lines.append(", ".join(f"{e['step']}: {e['ndcg@10']:.4f}" for e in summary.evaluations))
            lines.append(f"Kept: step {summary.best_step}.")
            lines.append("")
    lines += [
        f"{h} Data",
        "",
        f"- training: {d.train_queries} queries, {d.train_chunks} chunks, "
        f"{d.train_pairs} (query, chunk) pairs"
        + (
            f", and {d.reject_rows} questions the round trip rejected, trained on the "
            "teacher's ranking only"
            if d.reject_rows
            else ""
        ),
        *(
            [
                f"- of the training pairs, {d.roundtrip_doubted} whose chunk the teacher ranked "
                "outside its top k (train.roundtrip_top_k) left the pairs"
                + (", to train on its ranking only" if d.reject_rows else "")
            ]
            if d.roundtrip_doubted
            else []
        ),
        *(
            [
                f"- the teacher ranked the chunk of {d.roundtrip_share:.0%} of the training "
                "pairs outside its top k; a third or less, so every pair trained as given "
                "(train.roundtrip_top_k: auto)"
            ]
            if d.roundtrip_share and not d.roundtrip_doubted
            else []
        ),
        f"- validation: {d.val_queries} queries",
        "",
        f"{h} Recipe",
        "",
        "| setting | value |",
        "|---|---|",
    ]
    for key in (
        "loss",
        "mini_batch_size",
        "batch_sampler",
        "batch_size",
        "world_size",
        "epochs",
        "learning_rate",
        "warmup_ratio",
        "weight_decay",
        "max_seq_length",
        "seed",
        "hard_negatives",
        "hard_negative_margin",
        "query_prompt",
        "document_prompt",
        "matryoshka_dims",
        "lora",
        "bf16",
        "attention_dropout",
        "distill_weight",
        "distill_over",
        "loss_directions",
        "hardness_strength",
        "false_negative_margin",
        "false_negatives_masked",
        "keep",
        "merge_base",
    ):
        value = getattr(r, key)
        if value is not None:
            lines.append(f"| {key} | {_fmt(value)} |")
        if key == "loss" and r.teacher:
            reads = r.teacher.get("max_seq_length")
            window = f" (reads {reads} tokens)" if reads else ""
            lines.append(f"| teacher | {_fmt(r.teacher['model'])}{window} |")
        if key == "loss" and r.margin_teacher:
            m = r.margin_teacher
            lines.append(f"| margin teacher | {_fmt(m['model'])} ({m['kind']}, MarginMSE) |")
    lines += [
        "",
        f"Training: {summary.steps} steps in {summary.train_seconds:.1f} s "
        f"({summary.pairs_per_second:.1f} pairs/s).",
        "",
    ]
    if summary.warnings:
        lines += [f"{h} Warnings", ""] + [f"- {w}" for w in summary.warnings] + [""]
    return lines


def hub_id(name: str) -> str | None:
    """The Hub id of a base model given by hub id or packaged alias; None for a local folder."""
    for which, hub in (
        ("minilm", "sentence-transformers/all-MiniLM-L6-v2"),
        ("mpnet", "sentence-transformers/all-mpnet-base-v2"),
    ):
        if is_alias_of(name, which):
            return hub
    if not os.path.exists(name) and name.count("/") == 1:
        return name
    return None


def _sentence_transformers_card(model: SentenceTransformer, summary: TrainSummary) -> str | None:
    """sentence-transformers' card for ``model`` with embedtune's sections before its training
    details; None where it cannot be generated (the reason is logged)."""
    from sentence_transformers.base.model_card import generate_model_card

    data = model.model_card_data
    data.local_files_only = True  # never ask the Hub: offline, and nothing to leak
    base = hub_id(summary.base_model)
    if base:
        data.base_model = base  # set directly: looking it up would need the Hub
    data.model_name = f"{base or summary.base_model} fine-tuned with embedtune"
    data.add_tags(["embedtune"])
    try:
        card = generate_model_card(model)
    except Exception as exc:  # a card must never cost the model
        logger.warning("sentence-transformers' model card failed (%s); writing embedtune's", exc)
        return None
    ours = "\n".join(["## embedtune", "", *embedtune_sections(summary, level=3)])
    marker = "\n## Training Details"
    at = card.find(marker)
    if at < 0:
        return card.rstrip() + "\n\n" + ours
    return card[:at] + "\n" + ours + card[at:]


def write_model_card(
    folder: str | Path, summary: TrainSummary, model: SentenceTransformer | None = None
) -> Path:
    """README.md in ``folder``: sentence-transformers' card of ``model`` with embedtune's
    sections, or embedtune's card alone (no model given, or the generation failed)."""
    path = Path(folder) / "README.md"
    text = _sentence_transformers_card(model, summary) if model is not None else None
    path.write_text(text or model_card(summary), encoding="utf-8")
    return path
