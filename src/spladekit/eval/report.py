"""Evaluation outputs: TREC run files, metrics.json, a Markdown report and PNG plots, each written atomically."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..io import atomic_write
from .metrics import metric_names

if TYPE_CHECKING:
    from .core import EvalResult

LABELS = {
    "splade": "SPLADE",
    "approx": "SPLADE approx",
    "bm25": "BM25",
    "rrf": "RRF(SPLADE, BM25)",
    "hybrid": "Hybrid (index search)",
}


def trec_run(run: dict[str, list[tuple[str, float]]], tag: str) -> str:
    """TREC run format: ``qid Q0 docid rank score tag``, ranks from 1 in the given order."""
    out = io.StringIO()
    for q, hits in run.items():
        for rank, (d, score) in enumerate(hits, start=1):
            out.write(f"{q} Q0 {d} {rank} {score:.6f} {tag}\n")
    return out.getvalue()


def metrics_json(result: EvalResult) -> str:
    return json.dumps(result.report, indent=2, sort_keys=False) + "\n"


def markdown_report(result: EvalResult) -> str:
    """The human-readable report: metric table, sparsity and timing, and what it takes to reproduce the run."""
    r = result.report
    ds, model, sp, tm = r["dataset"], r["model"], r["sparsity"], r["timing"]
    systems = list(r["systems"])
    lines = [
        f"# spladekit evaluation: {Path(ds['path']).name} ({ds['split']})",
        "",
        f"{ds['documents']:,} documents, {ds['queries_evaluated']:,} evaluated queries "
        f"({ds['queries_in_qrels']:,} in the qrels), top-{r['depth']} retrieved per query.",
        f"Relevance: {r['relevance']['note']}.",
        "",
        "| metric | " + " | ".join(LABELS.get(s, s) for s in systems) + " |",
        "| --- | " + " | ".join("---:" for _ in systems) + " |",
    ]
    for m in metric_names():
        vals = [r["systems"][s]["metrics"][m] for s in systems]
        best = max(vals)
        cells = [f"**{v:.4f}**" if len(vals) > 1 and v == best else f"{v:.4f}" for v in vals]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    idx = r.get("index") or {}

    def fmt_s(v):
        return "reused index" if v is None else f"{v:.1f} s"

    lines += [
        "",
        "## SPLADE sparsity and cost",
        "",
        "| | value |",
        "| --- | ---: |",
        f"| query active dims (mean) | {sp['query_active_dims']:.1f} |",
        f"| query sparsity ratio | {sp['query_sparsity_ratio']:.4f} |",
        f"| corpus active dims (mean) | {sp['corpus_active_dims']:.1f} |",
        f"| corpus sparsity ratio | {sp['corpus_sparsity_ratio']:.4f} |",
        f"| average FLOPS (Σ p_q·p_d) | {sp['avg_flops']:.2f} |",
        f"| index size | {_size(idx.get('bytes_on_disk'))} |",
        f"| corpus encoding time | {fmt_s(tm.get('corpus_encode_s'))} |",
        f"| query latency p50, one query: encode + top-{r['depth']} search ({tm['query_latency_sample']} timed) "
        f"| {tm['query_latency_p50_ms']:.1f} ms |",
        f"| search latency p50 / p95 (top-{r['depth']}, all queries) "
        f"| {tm['search_p50_ms']:.2f} ms / {tm['search_p95_ms']:.2f} ms |",
        f"| query encoding, batched | {tm['query_encode_ms_per_query']:.1f} ms per query |",
        f"| total evaluation time | {tm['total_s']:.1f} s |",
        "",
        "## Reproducibility",
        "",
        f"- model: `{model['name']}`, weights sha256 `{model['weights_sha256']}`, max length {model['max_length']}, "
        f"mode {model.get('mode')}",
        f"- corpus sha256 `{ds['corpus_sha256']}`",
        f"- queries sha256 `{ds['queries_sha256']}`",
        f"- qrels ({ds['split']}) sha256 `{ds['qrels_sha256']}`",
        f"- metrics: ir-measures / trec_eval ({', '.join(f'{k} = {v}' for k, v in r['measures'].items())}); "
        "MAP@100 is trec_eval map_cut_100 (divides by all relevant documents; sentence-transformers divides by "
        "min(100, relevant): equal unless a query has over 100 relevant documents); every query with a relevant "
        "document counts, a query with no hit scores 0",
        f"- retriever: {r['retriever']}",
    ]
    if r.get("bm25"):
        b = r["bm25"]
        lines.append(
            f"- BM25: {b['library']}, {b['method']}, k1={b['k1']}, b={b['b']}, stopwords {b['stopwords']}, "
            f"stemmer {b['stemmer']}; RRF c={r['rrf']['c']}"
        )
    if r.get("hybrid"):
        h = r["hybrid"]
        how = ", ".join(f"{k} {v}" for k, v in h.items() if k not in ("method", "call"))
        lines.append(
            f"- hybrid: `{h['call']}` with {h['method']} ({how}; depth None = max(k, 100)), over the index's "
            f"BM25 view; one query encoded and searched end to end, p50 {tm['hybrid_latency_p50_ms']:.1f} ms"
        )
    if r.get("approx"):
        lines.append(approx_line(r["approx"], tm["search_p50_ms"]))
    env = r["environment"]
    lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in env.items() if k != "created" and v))
    lines.append(f"- created {env['created']}")
    if result.files:
        lines += ["", "## Files", ""] + [f"- `{name}`: {what}" for name, what in result.files.items()]
    return "\n".join(lines) + "\n"


def approx_line(a: dict, exact_p50_ms: float | None = None) -> str:
    """One line on the approximate system: call, knobs, tuning, recall against exact, latency."""
    plan = a["plan"]
    knobs = f"query_terms {plan['query_terms']}, heap_factor {plan['heap_factor']}" if plan else "exact"
    t = a["tuning"]
    recall = ", ".join(f"{name} {v:.4f}" for name, v in a["recall_vs_exact"].items())
    exact = "" if exact_p50_ms is None else f" (exact {exact_p50_ms:.2f} ms)"
    return (
        f"- approx: `{a['call']}` ({knobs}; tuned on {t['sample']} {t['queries']}); recall@10 against exact: "
        f"{recall}; search p50 {a['search_p50_ms']:.2f} ms{exact}"
    )


def _size(n: int | None) -> str:
    if n is None:
        return "n/a (exact retriever)"
    return f"{n / 2**20:.1f} MiB ({n:,} bytes)"


def plot_ndcg(result: EvalResult) -> bytes | None:
    """Per-query nDCG@10 of SPLADE (y) against BM25 (x); points above the diagonal are SPLADE wins."""
    if "bm25" not in result.per_query:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, b = result.per_query["splade"]["ndcg@10"], result.per_query["bm25"]["ndcg@10"]
    qs = list(s)
    x, y = np.array([b[q] for q in qs]), np.array([s[q] for q in qs])
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=110)
    ax.scatter(x, y, s=14, alpha=0.6, edgecolors="none")
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("BM25 nDCG@10")
    ax.set_ylabel("SPLADE nDCG@10")
    ax.set_title(
        f"Per-query nDCG@10 ({len(qs)} queries): SPLADE better {int((y > x).sum())}, "
        f"BM25 better {int((y < x).sum())}, equal {int((y == x).sum())}",
        fontsize=9,
    )
    return _png(fig)


def plot_doc_dims(result: EvalResult) -> bytes:
    """Histogram of active dimensions per document."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = result.doc_active_dims
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    ax.hist(d, bins=min(60, max(5, len(np.unique(d)))), color="#4477aa")
    ax.axvline(
        float(np.mean(d)) if len(d) else 0.0, color="black", ls="--", lw=1, label=f"mean {np.mean(d):.1f}"
    )
    ax.set_xlabel("active dimensions per document")
    ax.set_ylabel("documents")
    ax.legend()
    ax.set_title(f"Document active dims ({len(d):,} documents)", fontsize=9)
    return _png(fig)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_outputs(result: EvalResult, out: Path) -> None:
    """Run files, metrics.json, report.md and the PNGs; the report is written last so it lists all files."""
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    for name, run in result.runs.items():
        atomic_write(out / f"run.{name}.trec", trec_run(run, f"spladekit-{name}"))
        files[f"run.{name}.trec"] = f"TREC run of {LABELS.get(name, name)}"
    atomic_write(out / "metrics.json", metrics_json(result))
    files["metrics.json"] = "all numbers of this report, machine-readable"
    png = plot_ndcg(result)
    if png is not None:
        atomic_write(out / "ndcg_per_query.png", png)
        files["ndcg_per_query.png"] = "per-query nDCG@10, SPLADE against BM25"
    atomic_write(out / "doc_active_dims.png", plot_doc_dims(result))
    files["doc_active_dims.png"] = "histogram of document active dims"
    files["report.md"] = "this report"
    result.files = files
    result.output_dir = out
    atomic_write(out / "report.md", markdown_report(result))
