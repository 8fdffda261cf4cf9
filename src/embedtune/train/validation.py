"""Validation during fine-tuning: held-out queries searched against the validation corpus.

The base model is scored first, the weights are scored as training goes
(sentence-transformers' ``InformationRetrievalEvaluator``), and the verdict compares the weights
saved with the base. Where the base model is unchanged (no prompts, its own sequence length) it is
scored through :func:`embedtune.retrieval.score_retrieval` with embeddings from the shared cache,
which question generation has filled already; both give the same numbers (tested to 1e-4).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

from embedtune.dataset import QADataset
from embedtune.embeddings import EmbeddingCache, model_fingerprint
from embedtune.progress import bars_shown
from embedtune.retrieval import score_retrieval

__all__ = ["PRIMARY", "Validation", "metric_names", "holds_checkpoint", "verdict"]

PRIMARY = "ndcg@10"
_NAME = "val"
_HIT_K = [1, 3, 5, 10]


def metric_names(st_metrics: Mapping[str, float]) -> dict[str, float]:
    """``{"val_cosine_ndcg@10": x, "val_cosine_accuracy@5": y}`` -> ``{"ndcg@10": x, "hit@5": y}``::

    >>> metric_names({"val_cosine_ndcg@10": 0.5, "val_cosine_accuracy@5": 0.75, "epoch": 1})
    {'ndcg@10': 0.5, 'hit@5': 0.75}
    """
    out = {}
    for key, value in st_metrics.items():
        if "@" in key:
            out[key.split("_")[-1].replace("accuracy@", "hit@")] = round(float(value), 6)
    return out


class Validation:
    """``val``'s queries against ``corpus``, scored by NDCG@10 (the primary metric) and more."""

    def __init__(
        self,
        val: QADataset,
        corpus: dict[str, str],
        *,
        batch_size: int,
        prompt_names: tuple[str | None, str | None] = (None, None),
    ) -> None:
        self.val = val
        self.corpus = corpus
        self.batch_size = batch_size
        self.prompt_names = prompt_names
        self.evaluator = InformationRetrievalEvaluator(
            queries=val.queries,
            corpus=corpus,
            relevant_docs={q: set(c) for q, c in val.relevant_docs.items()},
            name=_NAME,
            mrr_at_k=[10],
            ndcg_at_k=[10],
            accuracy_at_k=_HIT_K,
            precision_recall_at_k=[1, 5, 10],
            map_at_k=[100],
            batch_size=batch_size,
            write_csv=False,
            # sentence-transformers' own bars ("Corpus Chunks", batches) where ours show: the
            # validation during training would otherwise pause the step bar in silence
            show_progress_bar=bars_shown(),
            query_prompt_name=prompt_names[0],
            corpus_prompt_name=prompt_names[1],
        )

    @property
    def primary_metric(self) -> str:
        """The trainer's name of NDCG@10 (``val_cosine_ndcg@10``), which picks the best model."""
        return self.evaluator.primary_metric

    def score(self, model: SentenceTransformer) -> dict[str, float]:
        return metric_names(self.evaluator(model))

    def score_base(self, model: SentenceTransformer, name: str, *, own_settings: bool) -> dict:
        """The base model's scores; through the shared embedding cache when ``own_settings``
        (no prompts, the model's own sequence length), so what generation encoded is read back."""
        if not own_settings:
            return self.score(model)
        similarity = model.similarity_fn_name or "cosine"
        self.evaluator.primary_metric = f"{_NAME}_{similarity}_{PRIMARY}"
        cache = EmbeddingCache(model_fingerprint(name))
        qids, cids = list(self.val.queries), list(self.corpus)
        queries = [self.val.queries[q] for q in qids]
        docs = [self.corpus[c] for c in cids]
        retrieval = score_retrieval(
            cache.encode_with(
                model, queries, "query", batch_size=self.batch_size, progress="base: queries"
            ),
            cache.encode_with(
                model, docs, "document", batch_size=self.batch_size, progress="base: passages"
            ),
            cids,
            [self.val.relevant_docs[q] for q in qids],
            _HIT_K,
            similarity,
        )
        return {k.replace("accuracy@", "hit@"): round(v, 6) for k, v in retrieval.metrics.items()}

    def during_training(self, log_history: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Every validation the trainer logged: its step, epoch and scores."""
        key = f"eval_{self.primary_metric}"
        return [
            {
                "step": e["step"],
                "epoch": round(e.get("epoch", 0.0), 4),
                **metric_names({k: v for k, v in e.items() if k.startswith("eval_")}),
            }
            for e in log_history
            if key in e
        ]


def holds_checkpoint(model: SentenceTransformer, checkpoint: str | None) -> bool:
    """Whether ``model`` carries ``checkpoint``'s weights (sentence-transformers only logs a
    failure to load the best checkpoint)."""
    path = Path(checkpoint or "", "model.safetensors")
    if not checkpoint or not path.is_file():
        return False
    saved = load_file(str(path))
    current = model.transformers_model.state_dict()
    return all(k in current and torch.equal(current[k].cpu(), v) for k, v in saved.items())


def verdict(
    base: float,
    final: float,
    output_dir: Path,
    best_step: int | None = None,
    *,
    own_chunks: bool = True,
) -> str:
    """The sentence a user reads: NDCG@10 of the base and the weights saved, and what next
    (``own_chunks``: the questions searched the validation set's own chunks alone)::

    >>> verdict(0.70, 0.75, Path("runs/first/model"))
    'NDCG@10 on the generated validation questions: base 0.700 -> fine-tuned 0.750 (+0.050)'
    """
    change = (
        f"NDCG@10 on the generated validation questions: base {base:.3f} "
        f"-> fine-tuned {final:.3f} ({final - base:+.3f})"
    )
    if best_step is not None:
        change += f", best at step {best_step}"
    if final > base:
        return change
    # Said plainly, since `embedtune run` goes on to a verdict of its own that may differ:
    # evaluate searches every chunk and asks the validation documents' headings too.
    where = ", where each question searches the validation chunks alone" if own_chunks else ""
    return (
        f"{change}: not above the base here{where}. The weights are saved at {output_dir}; "
        "`embedtune evaluate` judges them against every chunk and on every validation set, and "
        "its verdict decides which model a run gives (beats_base: false)"
    )
