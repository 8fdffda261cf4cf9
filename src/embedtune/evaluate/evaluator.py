"""Score any set of embedding models on any set of retrieval datasets, base model first.

Each model embeds every dataset's queries (``encode_query``) and corpus (``encode_document``, so
saved prompts apply), through the on-disk embeddings cache; the corpus is ranked per query by the
model's own similarity function, and the metrics of :mod:`embedtune.retrieval` are taken
per query. Every later model is compared with the first by a paired bootstrap over queries::

    >>> from embedtune.config import EvaluateConfig
    >>> result = evaluate_models(
    ...     ["all-MiniLM-L6-v2", "runs/first/model"],
    ...     {"val": QADataset.from_json("runs/first/data/val.json")},
    ...     EvaluateConfig(),
    ...     Path("runs/first/eval"),
    ... )                                                     # doctest: +SKIP
    >>> result.datasets["val"].comparisons["runs/first/model"]["ndcg@10"]   # doctest: +SKIP
    Comparison(metric='ndcg@10', base=0.712, model=0.801, diff=0.089, ci_low=0.05,
               ci_high=0.127, verdict='better')

The primary metric is NDCG@10; the verdict per model is "better" when the 95% interval of its
NDCG@10 difference lies above zero, "worse" when below, else "no clear difference".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embedtune.artifacts import is_current, read_manifest, stage_key, write_manifest
from embedtune.config import EvaluateConfig, PipelineConfig
from embedtune.dataset import MIN_HELD_OUT_QUERIES, QADataset, leaked_questions, load_dataset_path
from embedtune.embeddings import (
    EmbeddingCache,
    Role,
    loaded_model_fingerprint,
    model_fingerprint,
)
from embedtune.errors import InputError
from embedtune.evaluate.metrics import paired_bootstrap
from embedtune.evaluate.report import write_outputs
from embedtune.evaluate.results import (
    DatasetResult,
    DatasetSummary,
    EvaluateSummary,
    EvaluationResult,
    ModelScores,
    TrainingCurves,
    Versus,
    best_model,
)
from embedtune.evaluate.sentences import VERSION as SENTENCES_VERSION
from embedtune.evaluate.sentences import validation_sentences
from embedtune.layout import RunLayout
from embedtune.models import load_model, model_max_seq_length, resolve_model
from embedtune.ownership import check_replaceable, mark
from embedtune.records import read_chunks, read_json
from embedtune.retrieval import PRIMARY_METRIC, hit_rate_curve, metric_names, score_retrieval
from embedtune.runlock import holds_run

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "ModelSpec",
    "EvaluateSummary",
    "evaluate_models",
    "run_evaluate",
    "recommend_base",
    "run_verdict",
    "windows_differ",
]

logger = logging.getLogger(__name__)

_SIMILARITIES = {"cosine", "dot", "euclidean", "manhattan"}


@dataclass
class ModelSpec:
    """A model to evaluate and the label reports give it.

    ``model`` is an alias, hub id or local path (loaded with :func:`embedtune.models.load_model`
    only when some text is not in the embeddings cache), or an already loaded model.
    """

    label: str
    model: str | SentenceTransformer


# --------------------------------------------------------------------------- models
class _Model:
    """A model that is loaded only when some text misses the cache."""

    def __init__(
        self,
        spec: ModelSpec,
        batch_size: int,
        use_cache: bool,
        say: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        self.label = spec.label
        self.say = say
        self.batch_size = batch_size
        self.use_cache = use_cache
        self._model: SentenceTransformer | None = None
        if isinstance(spec.model, str):
            self.name: str = spec.model
            self.path = resolve_model(spec.model)
            fingerprint = model_fingerprint(spec.model) if use_cache else None
        else:
            self._model = spec.model
            self.name = _describe(spec.model)
            self.path = self.name
            fingerprint = loaded_model_fingerprint(spec.model) if use_cache else None
        self.fingerprint = fingerprint
        self.cache = EmbeddingCache(fingerprint)

    @property
    def model(self) -> SentenceTransformer:
        if self._model is None:
            self._model = _load(self.name)
            if self.fingerprint is None and self.use_cache:
                # a hub model fetched just now has a snapshot to fingerprint
                self.fingerprint = model_fingerprint(self.name)
                if self.fingerprint is not None:
                    self.cache = EmbeddingCache(self.fingerprint)
        return self._model

    def similarity(self) -> str:
        if self._model is not None:
            fn = str(self._model.similarity_fn_name or "cosine")
        else:
            fn = "cosine"
            cfg = Path(self.path) / "config_sentence_transformers.json"
            if cfg.is_file():
                try:
                    fn = json.loads(cfg.read_text(encoding="utf-8")).get("similarity_fn_name")
                    fn = fn or "cosine"
                except (OSError, json.JSONDecodeError):
                    fn = "cosine"
            elif not os.path.isdir(self.path):
                fn = str(self.model.similarity_fn_name or "cosine")
        if fn not in _SIMILARITIES:
            raise InputError(
                f"model {self.name!r} uses similarity {fn!r}; embedtune evaluates cosine, dot, "
                "euclidean and manhattan"
            )
        return fn

    def embed(self, texts: Sequence[str], role: Role, progress: str | None = None) -> np.ndarray:
        if self._model is None and self.cache.missing(texts, role):
            self.say(f"loading {self.name}")
            _ = self.model  # loaded before encoding starts, so the rate measured is encoding's

        def encode(missing: list[str]) -> np.ndarray:
            fn = self.model.encode_query if role == "query" else self.model.encode_document
            return fn(
                missing,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                show_progress_bar=False,
            )

        return self.cache.get_or_encode(
            texts, role, encode, progress=progress, block=self.batch_size
        )

    def release(self) -> None:
        self._model = None  # free the weights before the next model loads


def _describe(model: SentenceTransformer) -> str:
    card = getattr(model, "model_card_data", None)
    base = getattr(card, "base_model", None) if card is not None else None
    return str(base or type(model).__name__)


def _load(name: str) -> SentenceTransformer:
    try:
        return load_model(name)
    except InputError:
        raise
    except Exception as exc:  # transformers raises many types for a broken folder
        raise InputError(
            f"could not load model {name!r}: {type(exc).__name__}: {exc}. Check that it is a "
            "sentence-transformers model folder or hub id"
        ) from None


def _short_label(name: str) -> str:
    """A long path shortened to its last two parts (reports give the full source too)."""
    if len(name) <= 40 or os.sep not in name:
        return name
    return "/".join(Path(name).parts[-2:])


def _specs(models: Sequence[str | ModelSpec | SentenceTransformer]) -> list[ModelSpec]:
    specs: list[ModelSpec] = []
    seen: dict[str, int] = {}
    for m in models:
        if isinstance(m, ModelSpec):
            spec = m
        elif isinstance(m, str):
            spec = ModelSpec(label=_short_label(m), model=m)
        else:
            spec = ModelSpec(label=_describe(m), model=m)
        n = seen.get(spec.label, 0) + 1
        seen[spec.label] = n
        if n > 1:  # the same model twice still gets two columns
            spec = ModelSpec(label=f"{spec.label} ({n})", model=spec.model)
        specs.append(spec)
    return specs


# --------------------------------------------------------------------------- datasets
def _with_extra(ds: QADataset, extra: Mapping[str, str] | None) -> dict[str, str]:
    corpus = dict(ds.corpus)
    for cid, text in (extra or {}).items():
        if cid in corpus:
            if corpus[cid] == text:
                continue
            cid = f"extra:{cid}"  # same id, different text: keep both
        corpus[cid] = text
    return corpus


def _score(
    model: _Model,
    name: str,
    ds: QADataset,
    corpus: dict[str, str],
    k_values: Sequence[int],
) -> tuple[ModelScores, list[str], list[list[str]]]:
    t0 = time.perf_counter()
    encoded0, hits0 = model.cache.encoded, model.cache.hits
    qids = list(ds.queries)
    cids = list(corpus)
    relevant = [list(dict.fromkeys(ds.relevant_docs[q])) for q in qids]
    where = f"{model.label} on {name}"
    retrieval = score_retrieval(
        model.embed([ds.queries[q] for q in qids], "query", f"{where}: queries"),
        model.embed([corpus[c] for c in cids], "document", f"{where}: passages"),
        cids,
        relevant,
        k_values,
        model.similarity(),
    )
    scores = ModelScores(
        label=model.label,
        source=model.path,
        fingerprint=model.fingerprint,
        similarity=model.similarity(),
        metrics=retrieval.metrics,
        per_query=retrieval.per_query,
        ranked=retrieval.ranked,
        hit_rate=hit_rate_curve(retrieval.hits, max(10, max(k_values))),
        encoded=model.cache.encoded - encoded0,
        cached=model.cache.hits - hits0,
        seconds=time.perf_counter() - t0,
    )
    return scores, qids, relevant


def evaluate_models(
    models: Sequence[str | ModelSpec | SentenceTransformer],
    datasets: Mapping[str, QADataset],
    cfg: EvaluateConfig,
    output_dir: Path | None,
    *,
    extra_corpus: Mapping[str, Mapping[str, str]] | None = None,
    use_cache: bool = True,
    progress: Callable[[str], None] | None = None,
    training: TrainingCurves | None = None,
) -> EvaluationResult:
    """Evaluate ``models`` (the first is the base) on every dataset and write the reports.

    - ``datasets``: name -> dataset; every query needs a relevant document in its corpus.
    - ``extra_corpus``: name -> more passages searched with that dataset when
      ``cfg.corpus == "full"`` (a run's training chunks, so validation queries compete with
      everything a deployed retriever would index); ignored under ``"split"``.
    - ``output_dir``: where ``metrics.json``, ``per_query.jsonl``, ``report.md`` and
      ``report.html`` go; ``None`` writes nothing.
    - ``use_cache``: read and fill the embeddings cache under ``models.cache_dir()``.
    - ``training``: the fine-tuned model's training curves, drawn in the reports.

    Raises :class:`InputError` for an empty model list, an invalid dataset, a model that
    cannot load, or an ``output_dir`` holding files embedtune did not write.
    """
    say = progress or (lambda _msg: None)
    if not models:
        raise InputError("no model to evaluate: give at least one (the first is the base)")
    if not datasets:
        raise InputError("no evaluation data: give a dataset (BEIR folder or llama-index JSON)")
    k_values = sorted(set(cfg.k_values))
    if not k_values or k_values[0] < 1:
        raise InputError(f"evaluate.k_values must be positive integers, got {cfg.k_values}")
    for name, ds in datasets.items():
        ds.validate_references(f"dataset {name!r}")
    if output_dir is not None:  # reports replace metrics.json, report.md...: only in our folder
        check_replaceable(output_dir, "the report folder")  # claimed once there is a report

    corpora = {
        name: _with_extra(ds, (extra_corpus or {}).get(name) if cfg.corpus == "full" else None)
        for name, ds in datasets.items()
    }
    specs = _specs(models)
    per_dataset: dict[str, list[ModelScores]] = {name: [] for name in datasets}
    meta: dict[str, tuple[list[str], list[list[str]]]] = {}
    sources: dict[str, str] = {}
    for spec in specs:
        handle = _Model(spec, cfg.batch_size, use_cache, say)
        sources[spec.label] = handle.path
        for name, ds in datasets.items():
            say(f"{spec.label}: {name} ({len(ds.queries)} queries, {len(corpora[name])} passages)")
            scores, qids, relevant = _score(handle, name, ds, corpora[name], k_values)
            per_dataset[name].append(scores)
            meta[name] = (qids, relevant)
        handle.release()

    results: dict[str, DatasetResult] = {}
    for name, ds in datasets.items():
        qids, relevant = meta[name]
        scores = per_dataset[name]
        extra = (extra_corpus or {}).get(name)
        result = DatasetResult(
            name=name,
            corpus_mode=cfg.corpus if extra else "dataset",
            query_ids=qids,
            queries=[ds.queries[q] for q in qids],
            relevant=relevant,
            corpus=corpora[name],
            scores=scores,
        )
        for other in scores[1:]:
            result.comparisons[other.label] = paired_bootstrap(
                scores[0].per_query,
                other.per_query,
                samples=cfg.bootstrap_samples,
                seed=cfg.seed,
                metrics=metric_names(k_values),
            )
        results[name] = result

    evaluation = EvaluationResult(
        labels=[s.label for s in specs],
        sources=sources,
        datasets=results,
        config=cfg,
        output_dir=output_dir,
        training=training,
    )
    if output_dir is not None:
        mark(output_dir, "eval")
        write_outputs(evaluation, output_dir)
    return evaluation


# --------------------------------------------------------------------------- run dir
def _path_hash(path: Path) -> str:
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:24]


def _dataset_name(path: str, taken: Mapping[str, Any]) -> str:
    p = Path(path)
    base = p.stem if p.is_file() else p.name or str(p)
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def _has_model(folder: Path) -> bool:
    return (folder / "modules.json").is_file() or (folder / "config.json").is_file()


def recommend_base(ds: DatasetResult, fine_tuned: str = "fine-tuned") -> dict[str, Any] | None:
    """A baseline to fine-tune instead of the base, when the validation split says so.

    Choosing the base model was the biggest lever measured (all-mpnet-base-v2 zero-shot beat
    all-MiniLM-L6-v2 on the R FAQ's human questions by more than any fine-tuning of MiniLM
    gained; see BENCHMARKS.md). So when a baseline, zero-shot, is clearly better than the base
    on the run's own validation split and scores above the fine-tuned model too, say so.

    Only as good as the data it is given: questions from a 135M generator ranked
    all-mpnet-base-v2 below MiniLM on the R manuals' validation split, while people's questions
    ranked it above (benchmarks/journal/quality-levers.md); so the run gives a recommendation per
    evaluation set, and a set of real users' questions (``--eval-data``) is the better judge.
    The validation documents' headings and sentences favour the fine-tuned model too: they
    ranked fine-tuned MiniLM level with or above all-mpnet-base-v2 zero-shot on manuals where
    people's questions ranked mpnet 0.03-0.07 NDCG@10 above it (session 40, BENCHMARKS.md).
    """
    best = best_model(ds)
    if best is None or best == fine_tuned:
        return None
    score = next(s for s in ds.scores if s.label == best).metrics[PRIMARY_METRIC]
    c = ds.comparisons[best][PRIMARY_METRIC]
    tuned = next((s for s in ds.scores if s.label == fine_tuned), None)
    over_tuned = None if tuned is None else score - tuned.metrics[PRIMARY_METRIC]
    message = (
        f"{best} zero-shot scores {c.diff:+.4f} NDCG@10 over the base on {ds.name} "
        f"(95% CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}])"
        + ("" if over_tuned is None else f" and {over_tuned:+.4f} over the fine-tuned model")
        + f"; consider fine-tuning it instead (--model {best})"
    )
    return {
        "model": best,
        PRIMARY_METRIC: score,
        "diff": c.diff,
        "ci_low": c.ci_low,
        "ci_high": c.ci_high,
        "over_fine_tuned": over_tuned,
        "message": message,
    }


#: The sets that judge a run (:func:`run_verdict`): people's words from its own validation
#: documents, the headings against their sections and the chunks' own sentences against the
#: chunks without them. Never the evaluation sets a user adds (those are for reporting).
VALIDATION_SETS = ("val-headings", "val-sentences")

#: What judges a run whose validation documents gave neither (a few short files): the
#: writer's validation questions.
FALLBACK_SETS = ("val",)

#: The run's own sets, held out by document, in the order they are reported.
OWN_SETS = ("val", "val-headings", "val-sentences")


def run_verdict(
    verdicts: Mapping[str, str],
    sets: Sequence[str] = VALIDATION_SETS,
    fallback: Sequence[str] = FALLBACK_SETS,
) -> tuple[str, list[str]]:
    """The fine-tuned model's verdict over the run's validation sets (``verdicts``: each
    dataset's verdict; ``sets``: which of them judge, by default :data:`VALIDATION_SETS`;
    ``fallback``: which judge when none of ``sets`` has a verdict), and the sets it used.

    The validation documents' headings (``val-headings``) and their chunks' own sentences
    (``val-sentences``) are people's words about documents no training saw. The writer's
    validation questions (``val``) are reported but judge only when neither exists: a small
    writer's questions reward what people's do not. Over 18 models trained for the choice
    (session 39, BENCHMARKS.md) the headings and sentences shipped the models that kept more of
    people's gain than the writer's questions and headings did, with no more shipped losses.
    "better": better on at least one and worse on none; "worse": worse on at least one and
    better on none; "mixed": both; otherwise "no clear difference" (or "missing" when nothing
    was fine-tuned)::

        >>> run_verdict({"val": "worse", "val-sentences": "better"})
        ('better', ['val-sentences'])
        >>> run_verdict({"val": "better"})
        ('better', ['val'])
    """
    used = [n for n in sets if n in verdicts and verdicts[n] != "missing"]
    if not used:
        used = [n for n in fallback if n in verdicts and verdicts[n] != "missing"]
    found = {verdicts[n] for n in used}
    if not used:
        return "missing", []
    if {"better", "worse"} <= found:
        return "mixed", used
    for v in ("better", "worse"):
        if v in found:
            return v, used
    return "no clear difference", used


def _dataset_summary(ds: DatasetResult) -> DatasetSummary:
    entry = DatasetSummary(
        n_queries=len(ds.query_ids),
        n_corpus=len(ds.corpus),
        corpus=ds.corpus_mode,
        base=ds.base.metrics[PRIMARY_METRIC],
        recommendation=recommend_base(ds),
    )
    for label, comps in ds.comparisons.items():
        c = comps[PRIMARY_METRIC]
        row = {"diff": c.diff, "ci_low": c.ci_low, "ci_high": c.ci_high, "verdict": c.verdict}
        if label == "fine-tuned":
            entry = entry.model_copy(update={"fine_tuned": c.model, **row})
        else:
            entry.baselines[label] = Versus(score=c.model, **row)
    return entry


def _judged(datasets: Mapping[str, DatasetSummary]) -> tuple[str, list[str]]:
    """:func:`run_verdict` over each dataset's verdict."""
    return run_verdict({name: d.verdict for name, d in datasets.items()})


def _run_summary(result: EvaluationResult, base_model: str) -> EvaluateSummary:
    datasets = {name: _dataset_summary(ds) for name, ds in result.datasets.items()}
    verdict, judged_on = _judged(datasets)
    return EvaluateSummary(
        models={label: result.sources[label] for label in result.labels},
        datasets=datasets,
        validation=datasets["val"],
        verdict=verdict,
        judged_on=judged_on,
        output=str(result.output_dir),
        base_model=base_model,
    )


@holds_run("evaluate")
def run_evaluate(
    cfg: PipelineConfig,
    run_dir: Path,
    *,
    fresh: bool = False,
    progress: Callable[[str], None] | None = None,
) -> EvaluateSummary:
    """Evaluate a run: base model, fine-tuned ``RUN/model`` (when trained) and the configured
    baselines, on the run's validation split and on every ``evaluate.data`` set; write RUN/eval/.

    The validation split is named ``val``; under ``evaluate.corpus == "full"`` its queries search
    the training chunks too. ``val-headings`` (with ``evaluate.headings``, when prepare found
    enough headings) asks the validation documents' headings against their sections, and
    ``val-sentences`` (with ``evaluate.sentences``) the validation chunks' own sentences against
    the chunks without them (:mod:`~embedtune.evaluate.sentences`). The summary's ``verdict`` is
    :func:`run_verdict` over the last two (``val`` where neither exists). Skipped (``skipped``,
    the saved summary) when models, data and settings are unchanged.
    """
    run = RunLayout(run_dir)
    val_path, train_path = run.data_file("val"), run.data_file("train")
    if not val_path.is_file():
        raise InputError(
            f"{val_path} not found: generate questions first with "
            f"'embedtune generate --run {run.root}'"
        )
    specs = _run_models(cfg, run)
    data_paths = _run_datasets(cfg.evaluate, run)
    fingerprints = [model_fingerprint(str(s.model)) or str(s.model) for s in specs]
    hashed = {name: _path_hash(p) for name, p in data_paths.items()}
    sentences = _sentences_source(cfg.evaluate, run)
    if sentences is not None:
        hashed["val-sentences"] = f"{_path_hash(sentences)}:{SENTENCES_VERSION}"
    if train_path.is_file():  # generated from the training chunks: changes when they do
        hashed["train-corpus"] = _path_hash(train_path)
    key = stage_key("evaluate", models=fingerprints, data=hashed, config=cfg.evaluate)
    if not fresh and is_current(run.eval_dir, key):
        saved = EvaluateSummary.read_back(
            (read_manifest(run.eval_dir) or {}).get("summary"),
            run.eval_dir / "manifest.json",
            redo="evaluating again",
        )
        if saved is not None:
            # judged again by this version's rule: one that changed the judge (session 39) gives
            # an evaluated run its verdict without scoring anything again
            verdict, judged_on = _judged(saved.datasets)
            return saved.model_copy(update={"verdict": verdict, "judged_on": judged_on})

    datasets = {name: load_dataset_path(p) for name, p in data_paths.items()}
    if sentences is not None:
        datasets = _with_sentences(datasets, validation_sentences(read_chunks(sentences)))
    train = QADataset.from_json(train_path) if train_path.is_file() else None
    corpus = _training_corpus(run, train)
    extra = {"val": corpus} if corpus is not None else {}
    warnings = _trained_questions(train, datasets, data_paths)
    windows = windows_differ(specs)
    if windows:
        warnings.append(windows)
    for warning in warnings:
        (progress or logger.warning)(f"warning: {warning}")
    result = evaluate_models(
        specs,
        datasets,
        cfg.evaluate,
        run.eval_dir,
        extra_corpus=extra,
        progress=progress,
        training=_training_curves(run)
        if len(specs) > 1 and specs[1].label == "fine-tuned"
        else None,
    )
    summary = _run_summary(result, cfg.model)
    summary.warnings = warnings
    write_manifest(run.eval_dir, key, {"summary": summary.to_json()})
    return summary


def _sentences_source(ecfg: EvaluateConfig, run: RunLayout) -> Path | None:
    """The validation chunk file ``val-sentences`` is drawn from, with ``evaluate.sentences``."""
    path = run.chunks_file("val")
    return path if ecfg.sentences and path.is_file() else None


def _with_sentences(datasets: dict[str, QADataset], sentences: QADataset) -> dict[str, QADataset]:
    """``datasets`` with ``val-sentences`` after the run's own sets and before the user's, when
    the validation chunks gave enough sentences to be worth a verdict."""
    if len(sentences.queries) < MIN_HELD_OUT_QUERIES:
        return datasets
    own = {n: d for n, d in datasets.items() if n in OWN_SETS}
    return {
        **own,
        "val-sentences": sentences,
        **{n: d for n, d in datasets.items() if n not in own},
    }


def _training_corpus(run: RunLayout, train: QADataset | None) -> dict[str, str] | None:
    """The training chunks that validation queries also search: the chunk file prepare wrote,
    else (data given without one) the training set's corpus. Not always the latter: with
    ``generate.train_queries: sentences`` it holds the chunks without a sentence each, which no
    deployed index holds."""
    chunks = run.chunks_file("train")
    if chunks.is_file():
        return {c.id: c.text for c in read_chunks(chunks)}
    return train.corpus if train is not None else None


def windows_differ(models: Sequence[str | ModelSpec | SentenceTransformer]) -> str | None:
    """A note where a model reads more or fewer tokens of each text than the base (the first):
    a base fine-tuned with ``--max-seq-length 512`` against the base reading its own 256 owes
    part of its difference to reading more of each text, not to training."""
    windows = []
    for m in _specs(models):
        if isinstance(m.model, str):
            try:
                length = model_max_seq_length(resolve_model(m.model))
            except InputError:
                return None  # not there: scoring it says so
        else:
            length = getattr(m.model, "max_seq_length", None)
        windows.append((m.label, length))
    base_label, base_length = windows[0]
    other = [(label, n) for label, n in windows[1:] if n != base_length and n is not None]
    if base_length is None or not other:
        return None
    reads = ", ".join(f"{label} {n}" for label, n in other)
    return (
        f"the models read different lengths of each text (tokens: {base_label} {base_length}, "
        f"{reads}): part of a difference from the base is how much of each text a model reads, "
        "not its training"
    )


def _trained_questions(
    train: QADataset | None, datasets: dict[str, QADataset], paths: dict[str, Path]
) -> list[str]:
    """A warning for each of the user's evaluation sets whose questions the run trained on."""
    if train is None:
        return []
    warnings = []
    for name, ds in datasets.items():
        if name in OWN_SETS:  # the run's own, held out by document
            continue
        ds.metadata.setdefault("source", str(paths[name]))
        leak = leaked_questions(train, ds, role="evaluation")
        if leak:
            warnings.append(leak)
    return warnings


def _training_curves(run: RunLayout) -> TrainingCurves | None:
    """The fine-tuned model's training curves from RUN/train/metrics.json, when it has them."""
    saved = read_json(run.train.metrics)
    if not isinstance(saved, dict):
        return None
    return TrainingCurves.from_summary(saved, str(run.train.metrics))


def _run_models(cfg: PipelineConfig, run: RunLayout) -> list[ModelSpec]:
    """The base first, the fine-tuned model when there is one, then the baselines."""
    specs = [ModelSpec("base", cfg.model)]
    if _has_model(run.model_dir):
        specs.append(ModelSpec("fine-tuned", str(run.model_dir)))
    specs += [ModelSpec(name, name) for name in cfg.evaluate.baselines]
    return specs


def _run_datasets(ecfg: EvaluateConfig, run: RunLayout) -> dict[str, Path]:
    """The run's validation sets, then every evaluation set the user adds."""
    data_paths: dict[str, Path] = {"val": run.data_file("val")}
    if ecfg.headings and run.val_headings.is_file():
        data_paths["val-headings"] = run.val_headings
    for p in ecfg.data:
        path = Path(p).expanduser()
        if not path.exists():
            raise InputError(
                f"evaluate.data: {path} not found; give a BEIR folder or a llama-index JSON file"
            )
        data_paths[_dataset_name(p, data_paths)] = path
    return data_paths
