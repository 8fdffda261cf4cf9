"""Reports of an evaluation: report.md, a self-contained report.html, and a terminal table.

They read like sentence-transformers' training template: the base model's score first, then each
model, its difference from the base, the 95% interval of that difference, and a verdict. The HTML
page has no external assets (styles and SVG charts are inline), so it can be mailed or attached
to a ticket as one file.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from embedtune.evaluate.results import (
    HEADLINE_METRICS,
    DatasetResult,
    EvaluationResult,
    TrainingCurves,
    best_model,
)
from embedtune.records import write_json_atomic, write_jsonl
from embedtune.retrieval import MRR_K, PRIMARY_METRIC

__all__ = [
    "render_markdown",
    "render_html",
    "print_table",
    "print_rows",
    "headline_metrics",
    "movers",
    "write_outputs",
]

_LABELS = {
    "ndcg@10": "NDCG@10",
    "mrr@10": "MRR@10",
    "map@100": "MAP@100",
}
_COLOURS = ["#6b7280", "#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2"]
_VERDICT_COLOUR = {"better": "#059669", "worse": "#dc2626", "no clear difference": "#6b7280"}
_CORPUS_NOTE = {
    "full": "validation queries search training + validation passages, as a deployed retriever",
    "split": "validation queries search validation passages only (as llama-index evaluates)",
    "dataset": "the dataset's own corpus",
}


def _label(metric: str) -> str:
    if metric in _LABELS:
        return _LABELS[metric]
    name, k = metric.split("@")
    return {"accuracy": "Hit@", "precision": "P@", "recall": "R@"}[name] + k


def headline_metrics(ds: DatasetResult) -> list[str]:
    """The headline metrics this evaluation has (depends on the configured k values)."""
    return [m for m in HEADLINE_METRICS if m in ds.base.metrics]


def _signed(x: float) -> str:
    return f"{x:+.4f}"


def _verdict_sentence(ds: DatasetResult, label: str) -> str:
    c = ds.comparisons[label][PRIMARY_METRIC]
    return (
        f"{label} vs {ds.base.label}: {c.verdict}. NDCG@10 {c.base:.4f} -> {c.model:.4f} "
        f"({_signed(c.diff)}, 95% CI {_signed(c.ci_low)} to {_signed(c.ci_high)})"
    )


def movers(
    ds: DatasetResult, label: str, n: int = 5
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``n`` queries whose NDCG@10 rose most and fell most for ``label`` against the base,
    each with the passage both models ranked first and whether it was relevant."""
    other = next(s for s in ds.scores if s.label == label)
    base = ds.base
    diff = other.per_query[PRIMARY_METRIC] - base.per_query[PRIMARY_METRIC]
    order = np.argsort(-diff, kind="stable")

    def row(i: int) -> dict[str, Any]:
        rel = set(ds.relevant[i])
        b_top = base.ranked[i][0] if base.ranked[i] else None
        m_top = other.ranked[i][0] if other.ranked[i] else None
        return {
            "query_id": ds.query_ids[i],
            "query": ds.queries[i],
            "diff": float(diff[i]),
            "base_score": float(base.per_query[PRIMARY_METRIC][i]),
            "model_score": float(other.per_query[PRIMARY_METRIC][i]),
            "base_top": b_top,
            "base_top_text": ds.corpus.get(b_top, "") if b_top else "",
            "base_top_relevant": b_top in rel,
            "model_top": m_top,
            "model_top_text": ds.corpus.get(m_top, "") if m_top else "",
            "model_top_relevant": m_top in rel,
        }

    gained = [row(int(i)) for i in order[:n] if diff[i] > 0]
    lost = [row(int(i)) for i in order[::-1][:n] if diff[i] < 0]
    return gained, lost


def _truncate(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


# --------------------------------------------------------------------------- markdown
def render_markdown(result: EvaluationResult) -> str:
    cfg = result.config
    lines = [
        "# Retrieval evaluation",
        "",
        f"Base model: **{result.base}** (`{result.sources[result.base]}`). "
        f"Primary metric: NDCG@10. Differences are paired (same queries) with 95% percentile "
        f"bootstrap intervals over queries ({cfg.bootstrap_samples} resamples, seed {cfg.seed}); "
        "a model is *better* when the whole interval is above zero, *worse* when below.",
        "",
    ]
    for lb in result.labels[1:]:
        lines.append(f"- **{lb}**: `{result.sources[lb]}`")
    if len(result.labels) > 1:
        lines.append("")
    for name, ds in result.datasets.items():
        metrics = headline_metrics(ds)
        lines += [
            f"## {name}: {len(ds.query_ids)} queries, {len(ds.corpus)} passages",
            "",
            f"Corpus: {ds.corpus_mode} ({_CORPUS_NOTE.get(ds.corpus_mode, '')}).",
            "",
        ]
        for label in ds.comparisons:
            lines.append(f"**Verdict: {_verdict_sentence(ds, label)}**")
            lines.append("")
        if len(ds.scores) > 2 and (best := best_model(ds)) is not None:
            lines += [f"Best on {name}: **{best}** (clearly better than {ds.base.label}).", ""]
        lines.append("| model | " + " | ".join(_label(m) for m in metrics) + " |")
        lines.append("|---|" + "---:|" * len(metrics))
        for s in ds.scores:
            cells = " | ".join(f"{s.metrics[m]:.4f}" for m in metrics)
            lines.append(f"| {s.label} | {cells} |")
        lines.append("")
        if ds.comparisons:
            lines += [
                f"Differences against {ds.base.label}:",
                "",
                "| model | metric | base | model | diff | 95% CI | verdict |",
                "|---|---|---:|---:|---:|---|---|",
            ]
            for label, comps in ds.comparisons.items():
                for m in metrics:
                    c = comps[m]
                    lines.append(
                        f"| {label} | {_label(m)} | {c.base:.4f} | {c.model:.4f} | "
                        f"{_signed(c.diff)} | [{_signed(c.ci_low)}, {_signed(c.ci_high)}] | "
                        f"{c.verdict} |"
                    )
            lines.append("")
            for label in ds.comparisons:
                gained, lost = movers(ds, label)
                for title, rows in (("gained", gained), ("lost", lost)):
                    if not rows:
                        continue
                    lines += [
                        f"Queries where {label} {title} most (NDCG@10):",
                        "",
                        "| query | diff | base first hit | model first hit |",
                        "|---|---:|---|---|",
                    ]
                    for r in rows:
                        b = ("✓ " if r["base_top_relevant"] else "✗ ") + _truncate(
                            r["base_top_text"], 80
                        )
                        m = ("✓ " if r["model_top_relevant"] else "✗ ") + _truncate(
                            r["model_top_text"], 80
                        )
                        cells = [_truncate(r["query"], 100), _signed(r["diff"]), b, m]
                        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
                    lines.append("")
        timing = ", ".join(
            f"{s.label} {s.seconds:.1f} s ({s.encoded} encoded, {s.cached} from cache)"
            for s in ds.scores
        )
        lines += [f"Time: {timing}.", ""]
    if result.training is not None:
        lines += _training_markdown(result.training)
    return "\n".join(lines)


def _training_markdown(curves: TrainingCurves) -> list[str]:
    lines = [
        "## Training of the fine-tuned model",
        "",
        "The training loss as logged, and NDCG@10 on the generated validation questions at each "
        "evaluation during training"
        + (f" (the base model scored {curves.base:.4f})" if curves.base is not None else "")
        + f". From `{curves.source}`.",
        "",
        "| step | epoch | training loss | validation NDCG@10 |",
        "|---:|---:|---:|---:|",
    ]
    for row in curves.rows():
        loss = f"{row['loss']:.4f}" if "loss" in row else ""
        ndcg = f"{row[PRIMARY_METRIC]:.4f}" if PRIMARY_METRIC in row else ""
        kept = " (kept)" if ndcg and row["step"] == curves.kept_step else ""
        epoch = f"{row['epoch']:.2f}" if row.get("epoch") is not None else ""
        lines.append(f"| {row['step']} | {epoch} | {loss} | {ndcg}{kept} |")
    return [*lines, ""]


# --------------------------------------------------------------------------- SVG charts
def _svg_open(width: int, height: int, title: str) -> list[str]:
    return [
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}">',
        f"<title>{html.escape(title)}</title>",
    ]


def _diff_chart(ds: DatasetResult) -> str:
    """Horizontal bars of each model's difference from the base, with 95% interval whiskers."""
    metrics = headline_metrics(ds)
    rows = [(label, m, comps[m]) for label, comps in ds.comparisons.items() for m in metrics]
    if not rows:
        return ""
    bound = max(max(abs(c.ci_low), abs(c.ci_high), abs(c.diff)) for _, _, c in rows)
    bound = max(bound * 1.1, 0.01)
    left, plot_w, row_h, top = 190, 420, 22, 28
    width, height = left + plot_w + 90, top + row_h * len(rows) + 30

    def x(v: float) -> float:
        return left + (v + bound) / (2 * bound) * plot_w

    out = _svg_open(width, height, f"{ds.name}: difference from {ds.base.label}")
    out.append(
        f'<text x="{left + plot_w / 2}" y="16" text-anchor="middle" class="axis">'
        f"difference from {html.escape(ds.base.label)} (bar) with 95% CI (whisker)</text>"
    )
    for i, (label, m, c) in enumerate(rows):
        y = top + i * row_h
        colour = _VERDICT_COLOUR[c.verdict]
        x0, x1 = sorted((x(0), x(c.diff)))
        out.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" class="lbl">'
            f"{html.escape(label)} · {_label(m)}</text>"
        )
        out.append(
            f'<rect x="{x0:.1f}" y="{y + 5}" width="{max(x1 - x0, 1):.1f}" height="12" '
            f'fill="{colour}" opacity="0.75"><title>{_signed(c.diff)} '
            f"[{_signed(c.ci_low)}, {_signed(c.ci_high)}] {c.verdict}</title></rect>"
        )
        lo, hi = x(c.ci_low), x(c.ci_high)
        out.append(
            f'<line x1="{lo:.1f}" x2="{hi:.1f}" y1="{y + 11}" y2="{y + 11}" stroke="#111" '
            'stroke-width="1.5"/>'
        )
        for xx in (lo, hi):
            out.append(
                f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{y + 6}" y2="{y + 16}" stroke="#111"/>'
            )
        out.append(
            f'<text x="{left + plot_w + 6}" y="{y + 15}" class="lbl">{_signed(c.diff)}</text>'
        )
    y_end = top + row_h * len(rows)
    out.append(
        f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{top}" y2="{y_end}" stroke="#111" '
        'stroke-dasharray="3,3"/>'
    )
    for v in (-bound, 0.0, bound):
        out.append(
            f'<text x="{x(v):.1f}" y="{y_end + 16}" text-anchor="middle" class="axis">'
            f"{v:+.3f}</text>"
        )
    out.append("</svg>")
    return "\n".join(out)


def _bars_chart(ds: DatasetResult) -> str:
    """Grouped bars: each headline metric, one bar per model, base first."""
    metrics = headline_metrics(ds)
    n_models = len(ds.scores)
    group_w = max(60, 18 * n_models + 20)
    left, top, plot_h = 40, 20, 180
    width = left + group_w * len(metrics) + 20
    height = 0  # set once the legend is laid out
    out = _svg_open(width, height, f"{ds.name}: metrics per model")
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        y = top + plot_h * (1 - t)
        out.append(f'<line x1="{left}" x2="{width - 10}" y1="{y}" y2="{y}" stroke="#e5e7eb"/>')
        out.append(f'<text x="{left - 4}" y="{y + 4}" text-anchor="end" class="axis">{t}</text>')
    bar_w = (group_w - 20) / n_models
    for g, m in enumerate(metrics):
        gx = left + g * group_w + 10
        for j, s in enumerate(ds.scores):
            v = s.metrics[m]
            h = plot_h * v
            out.append(
                f'<rect x="{gx + j * bar_w:.1f}" y="{top + plot_h - h:.1f}" '
                f'width="{bar_w - 2:.1f}" height="{h:.1f}" fill="{_COLOURS[j % len(_COLOURS)]}">'
                f"<title>{html.escape(s.label)} {_label(m)} {v:.4f}</title></rect>"
            )
        out.append(
            f'<text x="{gx + (group_w - 20) / 2:.1f}" y="{top + plot_h + 16}" '
            f'text-anchor="middle" class="lbl">{_label(m)}</text>'
        )
    legend, last_y = _legend(ds, top + plot_h + 34, left, width)
    out += legend
    out[:2] = _svg_open(width, int(last_y) + 8, f"{ds.name}: metrics per model")
    out.append("</svg>")
    return "\n".join(out)


def _legend(ds: DatasetResult, y: float, left: float, width: float) -> tuple[list[str], float]:
    """Colour keys laid out left to right, wrapping before the chart's right edge; returns the
    elements and the y of the last row."""
    out = []
    lx, ly = left, y
    for j, s in enumerate(ds.scores):
        w = 30 + 7 * len(s.label)
        if lx > left and lx + w > width:
            lx, ly = left, ly + 18
        out.append(
            f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" '
            f'fill="{_COLOURS[j % len(_COLOURS)]}"/>'
        )
        out.append(f'<text x="{lx + 16}" y="{ly}" class="lbl">{html.escape(s.label)}</text>')
        lx += w
    return out, ly


def _hit_rate_chart(ds: DatasetResult) -> str:
    """Hit rate against k, one line per model."""
    max_k = len(ds.base.hit_rate)
    left, top, plot_w, plot_h = 44, 20, 420, 200
    width = left + plot_w + 30
    height = 0  # set once the legend is laid out
    lo = min(min(s.hit_rate) for s in ds.scores)
    lo = max(0.0, math.floor(lo * 10) / 10 - 0.1)

    def x(k: int) -> float:
        return left + (k - 1) / max(max_k - 1, 1) * plot_w

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - lo) / max(1 - lo, 1e-9))

    out = _svg_open(width, height, f"{ds.name}: hit rate at k")
    for t in np.linspace(lo, 1.0, 5):
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
            'stroke="#e5e7eb"/>'
        )
        out.append(
            f'<text x="{left - 4}" y="{y(t) + 4:.1f}" text-anchor="end" class="axis">{t:.2f}</text>'
        )
    for k in range(1, max_k + 1):
        if max_k <= 20 or k % 5 == 0 or k == 1:
            out.append(
                f'<text x="{x(k):.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
                f'class="axis">{k}</text>'
            )
    out.append(
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + 32}" text-anchor="middle" '
        'class="axis">k (hit rate = share of queries with a relevant passage in the top k)</text>'
    )
    for j, s in enumerate(ds.scores):
        colour = _COLOURS[j % len(_COLOURS)]
        pts = " ".join(f"{x(k):.1f},{y(v):.1f}" for k, v in enumerate(s.hit_rate, 1))
        dash = ' stroke-dasharray="6,3"' if j == 0 else ""  # the base stays visible under ties
        out.append(
            f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
        )
        for k, v in enumerate(s.hit_rate, 1):
            out.append(
                f'<circle cx="{x(k):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}">'
                f"<title>{html.escape(s.label)} hit@{k} {v:.4f}</title></circle>"
            )
    legend, last_y = _legend(ds, top + plot_h + 52, left, width)
    out += legend
    out[:2] = _svg_open(width, int(last_y) + 8, f"{ds.name}: hit rate at k")
    out.append("</svg>")
    return "\n".join(out)


def _training_chart(curves: TrainingCurves) -> str:
    """The training loss (line, left axis) and the validation NDCG@10 (points, right axis) by
    step, with the base model's NDCG@10 dashed."""
    left, top, plot_w, plot_h = 50, 24, 460, 200
    width, height = left + plot_w + 60, top + plot_h + 64
    steps = [e["step"] for e in curves.loss] + [e["step"] for e in curves.validation]
    x_max = max(max(steps), 1)
    losses = [e["loss"] for e in curves.loss] or [0.0]
    l_lo, l_hi = min(0.0, min(losses)), max(max(losses), 1e-9)
    scores = [e[PRIMARY_METRIC] for e in curves.validation]
    scores += [curves.base] if curves.base is not None else []
    s_lo = max(0.0, math.floor(min(scores or [0.0]) * 10) / 10 - 0.1)
    s_hi = min(1.0, math.ceil(max(scores or [1.0]) * 10) / 10 + 0.05)

    def x(step: float) -> float:
        return left + step / x_max * plot_w

    def y_loss(v: float) -> float:
        return top + plot_h * (1 - (v - l_lo) / (l_hi - l_lo))

    def y_score(v: float) -> float:
        return top + plot_h * (1 - (v - s_lo) / max(s_hi - s_lo, 1e-9))

    out = _svg_open(width, height, "training loss and validation NDCG@10 by step")
    out.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#e5e7eb"/>'
    )
    for t in np.linspace(l_lo, l_hi, 5):
        out.append(
            f'<text x="{left - 4}" y="{y_loss(t) + 4:.1f}" text-anchor="end" class="axis">'
            f"{t:.2f}</text>"
        )
    if scores:
        for t in np.linspace(s_lo, s_hi, 5):
            out.append(
                f'<text x="{left + plot_w + 4}" y="{y_score(t) + 4:.1f}" class="axis">'
                f"{t:.2f}</text>"
            )
    for t in np.linspace(0, x_max, 5):
        out.append(
            f'<text x="{x(t):.1f}" y="{top + plot_h + 16}" text-anchor="middle" class="axis">'
            f"{t:.0f}</text>"
        )
    out.append(
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + 32}" text-anchor="middle" '
        'class="axis">step</text>'
    )
    if curves.loss:
        pts = " ".join(f"{x(e['step']):.1f},{y_loss(e['loss']):.1f}" for e in curves.loss)
        out.append(
            f'<polyline points="{pts}" fill="none" stroke="{_COLOURS[0]}" stroke-width="2"/>'
        )
    if curves.base is not None and curves.validation:
        yb = y_score(curves.base)
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{yb:.1f}" y2="{yb:.1f}" '
            f'stroke="{_COLOURS[2]}" stroke-dasharray="6,3"><title>base NDCG@10 '
            f"{curves.base:.4f}</title></line>"
        )
    if len(curves.validation) > 1:
        pts = " ".join(
            f"{x(e['step']):.1f},{y_score(e[PRIMARY_METRIC]):.1f}" for e in curves.validation
        )
        out.append(
            f'<polyline points="{pts}" fill="none" stroke="{_COLOURS[1]}" stroke-width="1.5"/>'
        )
    for e in curves.validation:
        out.append(
            f'<circle cx="{x(e["step"]):.1f}" cy="{y_score(e[PRIMARY_METRIC]):.1f}" r="4" '
            f'fill="{_COLOURS[1]}"><title>step {e["step"]}: NDCG@10 '
            f"{e[PRIMARY_METRIC]:.4f}</title></circle>"
        )
    ly = top + plot_h + 52
    keys = [(_COLOURS[0], "training loss (left)"), (_COLOURS[1], "validation NDCG@10 (right)")]
    if curves.base is not None and curves.validation:
        keys.append((_COLOURS[2], "base NDCG@10"))
    lx = left
    for colour, text in keys:
        out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{lx + 16}" y="{ly}" class="lbl">{text}</text>')
        lx += 30 + 7 * len(text)
    out.append("</svg>")
    return "\n".join(out)


def _training_html(curves: TrainingCurves) -> list[str]:
    body = [
        "<h2>Training of the fine-tuned model</h2>",
        '<p class="muted">The training loss as logged, and NDCG@10 on the generated validation '
        "questions at each evaluation during training"
        + (f" (the base model: {curves.base:.4f})" if curves.base is not None else "")
        + f". From <code>{_e(curves.source)}</code>.</p>",
        f'<div class="charts">{_training_chart(curves)}',
        "<table><tr><th>step</th><th>epoch</th><th>training loss</th>"
        "<th>validation NDCG@10</th></tr>",
    ]
    for row in curves.rows():
        loss = f"{row['loss']:.4f}" if "loss" in row else ""
        ndcg = f"{row[PRIMARY_METRIC]:.4f}" if PRIMARY_METRIC in row else ""
        kept = " (kept)" if ndcg and row["step"] == curves.kept_step else ""
        epoch = f"{row['epoch']:.2f}" if row.get("epoch") is not None else ""
        body.append(
            f'<tr><td class="num">{row["step"]}</td><td class="num">{epoch}</td>'
            f'<td class="num">{loss}</td><td class="num">{ndcg}{kept}</td></tr>'
        )
    body.append("</table></div>")
    return body


# --------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#111;padding:0 1rem;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.3rem;margin-top:2.5rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.8rem 0;font-size:.92rem}
th,td{border:1px solid #ddd;padding:.3rem .55rem;vertical-align:top}
th{background:#f3f4f6;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{font-size:1.05rem;padding:.5rem .8rem;border-left:4px solid;margin:.8rem 0;
background:#f9fafb}.better{border-color:#059669}.worse{border-color:#dc2626}
.no{border-color:#6b7280}.ok{color:#059669}.bad{color:#dc2626}
.lbl{font-size:12px}.axis{font-size:11px;fill:#444}.muted{color:#6b7280;font-size:.9rem}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem;align-items:flex-start}
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def _first_hit_cell(relevant: bool, text: str, cid: str | None) -> str:
    mark = '<span class="ok">✓ relevant</span>' if relevant else '<span class="bad">✗</span>'
    return f'<td>{mark} <span class="muted">{_e(cid)}</span><br>{_e(_truncate(text))}</td>'


def _movers_table(ds: DatasetResult, label: str) -> str:
    gained, lost = movers(ds, label)
    parts = []
    for title, rows in (("gained most", gained), ("lost most", lost)):
        parts.append(f"<h4>Queries where {_e(label)} {title} (NDCG@10 against the base)</h4>")
        if not rows:
            parts.append('<p class="muted">none</p>')
            continue
        parts.append(
            "<table><tr><th>query</th><th>NDCG@10 base → model</th>"
            f"<th>{_e(ds.base.label)} ranked first</th><th>{_e(label)} ranked first</th></tr>"
        )
        for r in rows:
            parts.append(
                f"<tr><td>{_e(_truncate(r['query'], 200))}</td>"
                f'<td class="num">{r["base_score"]:.3f} → {r["model_score"]:.3f}</td>'
                + _first_hit_cell(r["base_top_relevant"], r["base_top_text"], r["base_top"])
                + _first_hit_cell(r["model_top_relevant"], r["model_top_text"], r["model_top"])
                + "</tr>"
            )
        parts.append("</table>")
    return "\n".join(parts)


def render_html(result: EvaluationResult) -> str:
    cfg = result.config
    body = [
        "<h1>Retrieval evaluation</h1>",
        f"<p>Base model: <b>{_e(result.base)}</b> <code>{_e(result.sources[result.base])}</code>."
        " Primary metric: NDCG@10. Differences are paired over the same queries, with 95% "
        f"percentile bootstrap intervals ({cfg.bootstrap_samples} resamples, seed {cfg.seed}). "
        "A model is <i>better</i> when the whole interval is above zero, <i>worse</i> when it "
        "is below, otherwise there is no clear difference.</p>",
    ]
    if len(result.labels) > 1:
        body.append("<ul>")
        for lb in result.labels[1:]:
            body.append(f"<li><b>{_e(lb)}</b> <code>{_e(result.sources[lb])}</code></li>")
        body.append("</ul>")
    for name, ds in result.datasets.items():
        metrics = headline_metrics(ds)
        body.append(
            f"<h2>{_e(name)}: {len(ds.query_ids)} queries, {len(ds.corpus)} passages</h2>"
            f'<p class="muted">Corpus: {_e(ds.corpus_mode)} '
            f"({_e(_CORPUS_NOTE.get(ds.corpus_mode, ''))}).</p>"
        )
        for label in ds.comparisons:
            v = ds.verdict(label)
            cls = {"better": "better", "worse": "worse"}.get(v, "no")
            body.append(f'<div class="verdict {cls}">{_e(_verdict_sentence(ds, label))}</div>')
        body.append(
            "<table><tr><th>model</th>"
            + "".join(f"<th>{_label(m)}</th>" for m in metrics)
            + "</tr>"
        )
        for s in ds.scores:
            body.append(
                f"<tr><td>{_e(s.label)}</td>"
                + "".join(f'<td class="num">{s.metrics[m]:.4f}</td>' for m in metrics)
                + "</tr>"
            )
        body.append("</table>")
        if ds.comparisons:
            body.append(
                "<table><tr><th>model</th><th>metric</th><th>base</th><th>model</th>"
                "<th>diff</th><th>95% CI</th><th>verdict</th></tr>"
            )
            for label, comps in ds.comparisons.items():
                for m in metrics:
                    c = comps[m]
                    body.append(
                        f"<tr><td>{_e(label)}</td><td>{_label(m)}</td>"
                        f'<td class="num">{c.base:.4f}</td><td class="num">{c.model:.4f}</td>'
                        f'<td class="num">{_signed(c.diff)}</td>'
                        f'<td class="num">[{_signed(c.ci_low)}, {_signed(c.ci_high)}]</td>'
                        f'<td style="color:{_VERDICT_COLOUR[c.verdict]}">{c.verdict}</td></tr>'
                    )
            body.append("</table>")
        body.append('<div class="charts">')
        if ds.comparisons:
            body.append(_diff_chart(ds))
        body.append(_bars_chart(ds))
        body.append(_hit_rate_chart(ds))
        body.append("</div>")
        for label in ds.comparisons:
            body.append(_movers_table(ds, label))
        timing = ", ".join(
            f"{_e(s.label)} {s.seconds:.1f} s ({s.encoded} encoded, {s.cached} from cache)"
            for s in ds.scores
        )
        body.append(f'<p class="muted">Time: {timing}.</p>')
    if result.training is not None:
        body += _training_html(result.training)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>embedtune evaluation</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


# --------------------------------------------------------------------------- terminal
def print_table(result: EvaluationResult, console: Console | None = None) -> None:
    """A short table per dataset and model (NDCG@10, difference, interval), then the verdicts."""
    rows: list[tuple[str, str, float, Any]] = []
    for name, ds in result.datasets.items():
        for s in ds.scores:
            comp = ds.comparisons.get(s.label, {}).get(PRIMARY_METRIC)
            rows.append((name, s.label, s.metrics[PRIMARY_METRIC], comp))
    print_rows(rows, result.base, console)


def print_rows(
    rows: list[tuple[str, str, float, Any]],
    base: str,
    console: Console | None = None,
    *,
    base_source: str | None = None,
) -> None:
    """Rows of (dataset, model, NDCG@10, comparison with the base or None for the base)."""
    console = console or Console()
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("data", overflow="fold")
    table.add_column("model", overflow="fold")
    for col in ("NDCG@10", "diff", "95% CI"):
        table.add_column(col, no_wrap=True, justify="right")
    style = {"better": "green", "worse": "red", "no clear difference": "yellow"}
    verdicts = []
    for name, label, value, comp in rows:
        if comp is None:
            table.add_row(name, label, f"{value:.4f}", "base", "")
            continue
        table.add_row(
            name,
            label,
            f"{value:.4f}",
            _signed(comp.diff),
            f"[{_signed(comp.ci_low)}, {_signed(comp.ci_high)}]",
        )
        v = comp.verdict
        verdicts.append(f"{name}: {label} vs {base}: [bold {style[v]}]{v}[/]")
    console.print(f"[bold]Retrieval evaluation, NDCG@10[/] (base: {base_source or base})")
    console.print(table)
    for line in verdicts:
        console.print(line)


def write_outputs(result: EvaluationResult, output_dir: Path) -> None:
    """metrics.json, per_query.jsonl, report.md and report.html in ``output_dir``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output_dir / "metrics.json", result.to_json())
    rows = []
    for name, ds in result.datasets.items():
        for i, qid in enumerate(ds.query_ids):
            rows.append(
                {
                    "dataset": name,
                    "query_id": qid,
                    "query": ds.queries[i],
                    "relevant": ds.relevant[i],
                    "models": {
                        s.label: {
                            PRIMARY_METRIC: float(s.per_query[PRIMARY_METRIC][i]),
                            f"mrr@{MRR_K}": float(s.per_query[f"mrr@{MRR_K}"][i]),
                            "top10": s.ranked[i][:10],
                        }
                        for s in ds.scores
                    },
                }
            )
    write_jsonl(output_dir / "per_query.jsonl", rows)
    for fname, text in (
        ("report.md", render_markdown(result)),
        ("report.html", render_html(result)),
    ):
        tmp = output_dir / f".{fname}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, output_dir / fname)
