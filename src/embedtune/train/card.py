"""The model card (README.md) written next to a fine-tuned model.

It says what a reader needs to trust or reproduce the model: the base model, the data sizes, the
recipe, and the base model's validation scores next to the fine-tuned ones, with a verdict.
Written by embedtune rather than sentence-transformers' generator, which looks up the base model
and datasets on the Hugging Face Hub and so stalls or fails offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embedtune.train.summary import TrainSummary

__all__ = ["model_card", "write_model_card"]

_METRICS = ["ndcg@10", "mrr@10", "hit@1", "hit@5", "hit@10", "recall@10", "map@100"]


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if v < 10 else f"{v:.1f}"
    return str(v)


def model_card(summary: TrainSummary) -> str:
    """Markdown for a :func:`~embedtune.train.trainer.finetune` summary."""
    r = summary.recipe
    d = summary.data
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
        "## Result",
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
        "## Data",
        "",
        f"- training: {d.train_queries} queries, {d.train_chunks} chunks, "
        f"{d.train_pairs} (query, chunk) pairs"
        + (
            f", and {d.reject_rows} questions the round trip rejected, trained on the "
            "teacher's ranking only"
            if d.reject_rows
            else ""
        ),
        f"- validation: {d.val_queries} queries",
        "",
        "## Recipe",
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
        "distill_weight",
        "keep",
    ):
        value = getattr(r, key)
        if value is not None:
            lines.append(f"| {key} | {_fmt(value)} |")
        if key == "loss" and r.teacher:
            lines.append(f"| teacher | {_fmt(r.teacher['model'])} |")
    lines += [
        "",
        f"Training: {summary.steps} steps in {summary.train_seconds:.1f} s "
        f"({summary.pairs_per_second:.1f} pairs/s).",
        "",
    ]
    if summary.warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in summary.warnings] + [""]
    return "\n".join(lines)


def write_model_card(folder: str | Path, summary: TrainSummary) -> Path:
    path = Path(folder) / "README.md"
    path.write_text(model_card(summary), encoding="utf-8")
    return path
