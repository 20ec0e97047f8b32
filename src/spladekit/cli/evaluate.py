"""``spladekit eval``: SPLADE, BM25 and their fusion on a BEIR folder, with the model card's metrics."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import InputError
from .options import (
    approx_option,
    batch_size_option,
    hybrid_from_args,
    hybrid_option,
    hybrid_weight_option,
    index_option,
    json_option,
    k_option,
    long_docs_option,
    model_option,
    output_option,
    rrf_k_option,
    stride_option,
    window_option,
)


def register(app: typer.Typer) -> None:
    """Add ``eval`` to ``app``."""
    app.command("eval")(eval_command)


def eval_command(
    data_dir: Path = typer.Argument(..., help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv"),
    split: str = typer.Option("test", "--split", help="qrels split to evaluate"),
    model: str | None = model_option(),
    index: Path | None = index_option(
        "Index folder: reused if it holds this corpus, built there otherwise (default: temporary).",
        required=False,
    ),
    output: Path | None = output_option(
        "Folder for run files, metrics.json, report.md, plots (default: eval-DATASET-SPLIT).", required=False
    ),
    relevance_threshold: int = typer.Option(
        1,
        "--relevance-threshold",
        help="binary metrics count rel >= this (TREC DL convention: 2); nDCG always uses the graded values",
    ),
    k: int = k_option(1000, "Results per query (retrieval depth)."),
    bm25: bool = typer.Option(True, "--bm25/--no-bm25", help="add the BM25 baseline and the RRF fusion rows"),
    exact: bool = typer.Option(
        False, "--exact", help="brute-force exact search instead of the index (reference)"
    ),
    batch_size: int = batch_size_option(),
    long_docs: str = long_docs_option(),
    window: int | None = window_option(),
    stride: int | None = stride_option(),
    hybrid: str = hybrid_option(),
    hybrid_weight: float = hybrid_weight_option(),
    rrf_k: int = rrf_k_option(),
    approx: float | None = approx_option(),
    as_json: bool = json_option("Print metrics.json to stdout instead of the summary."),
) -> None:
    """Evaluate a SPLADE model on a BEIR collection next to BM25 and RRF: metrics, sparsity, latency, report.
    --hybrid adds the index's own hybrid search (the Index.search call a user makes) as one more system, --approx
    its approximate search (an index never tuned is tuned on its own documents first)."""
    from ..encode.windows import check_long_docs
    from ..eval import evaluate
    from ..eval.report import LABELS, metrics_json
    from ..index.approx import check_approx

    settings = check_long_docs(long_docs, window, stride)
    fusion = hybrid_from_args(hybrid, hybrid_weight, rrf_k)
    target = check_approx(approx)
    if (fusion is not None or target is not None) and exact:
        raise InputError("--hybrid and --approx evaluate the index's own search: leave --exact out")

    out = output or Path(f"eval-{Path(data_dir).resolve().name}-{split}")

    def log(msg: str) -> None:
        if not as_json:
            typer.echo(msg, err=True)

    res = evaluate(
        data_dir,
        split,
        model,
        index_dir=index,
        output_dir=out,
        relevance_threshold=relevance_threshold,
        k=k,
        bm25=bm25,
        retriever="exact" if exact else "index",
        batch_size=batch_size,
        long_docs=settings,
        hybrid=fusion,
        approx=target,
        show_progress=not as_json,
        log=log,
    )
    if as_json:
        typer.echo(metrics_json(res), nl=False)
        return
    shown = ["ndcg@10", "mrr@10", "map@100", "recall@10", "recall@100", "recall@1000", "accuracy@10"]
    width = max(len(LABELS.get(s, s)) for s in res.metrics)
    typer.echo(f"{'system':<{width}}  " + "  ".join(f"{m:>11}" for m in shown))
    for name, m in res.metrics.items():
        typer.echo(f"{LABELS.get(name, name):<{width}}  " + "  ".join(f"{m[x]:>11.4f}" for x in shown))
    sp, tm = res.report["sparsity"], res.report["timing"]
    typer.echo(
        f"active dims: query {sp['query_active_dims']:.1f}, corpus {sp['corpus_active_dims']:.1f}; "
        f"FLOPS {sp['avg_flops']:.2f}; query latency p50 {tm['query_latency_p50_ms']:.1f} ms"
        + (f" (hybrid {tm['hybrid_latency_p50_ms']:.1f} ms)" if "hybrid_latency_p50_ms" in tm else "")
        + "; "
        f"total {tm['total_s']:.0f} s"
    )
    if res.report.get("approx"):
        from ..eval.report import approx_line

        typer.echo(approx_line(res.report["approx"], tm["search_p50_ms"])[2:])
    ld = res.report["long_docs"]
    if "documents_windowed" in ld:
        typer.echo(
            f"long documents: {ld['strategy']}, {ld['documents_windowed']:,} of {res.report['dataset']['documents']:,} "
            f"longer than one window of {ld['window']} tokens ({ld['windows']:,} windows encoded)"
        )
    typer.echo(f"report: {out / 'report.md'}")
