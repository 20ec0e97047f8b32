"""``evaluate``: SPLADE, BM25 and their fusion on a BEIR collection, with the numbers a model card reports."""

from __future__ import annotations

import contextlib
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import BeirCollection, load_beir, sha256_file
from ..errors import InputError
from ..index.approx import check_approx
from ..index.fusion import RRF_K, check_hybrid, reciprocal_rank_fusion
from ..sparse import SparseVectors
from .approx import approx_report, approx_run, ensure_tuned
from .metrics import aggregate, evaluated_queries, measure_definitions, metric_names, per_query_metrics
from .retrieval import BM25Baseline, Ranking, exact_search, hybrid_run, rank_order

SYSTEMS = ("splade", "approx", "bm25", "rrf", "hybrid")
RRF_C = RRF_K
LATENCY_SAMPLE = 32  # queries timed one by one, end to end (encode + search)


@dataclass
class EvalResult:
    """Everything one evaluation produced: ``report`` is the content of metrics.json; ``runs`` and ``per_query``
    are keyed by system (``splade``, ``bm25``, ``rrf``, ``hybrid``); query vectors are in the order of
    ``runs["splade"]``."""

    report: dict
    runs: dict[str, dict[str, Ranking]]
    per_query: dict[str, dict[str, dict[str, float]]]
    doc_vectors: SparseVectors
    query_vectors: SparseVectors
    output_dir: Path | None = None
    files: dict[str, str] = field(default_factory=dict)

    @property
    def doc_active_dims(self) -> np.ndarray:
        return self.doc_vectors.active_dims()

    @property
    def query_active_dims(self) -> np.ndarray:
        return self.query_vectors.active_dims()

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        """``{system: {metric: mean}}``."""
        return {s: v["metrics"] for s, v in self.report["systems"].items()}


def evaluate(
    data_dir: str | Path,
    split: str = "test",
    model: str | Path | None = None,
    *,
    index_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    relevance_threshold: int = 1,
    k: int = 1000,
    bm25: bool = True,
    retriever: str = "index",
    batch_size: int = 32,
    encoder=None,
    corpus_vectors: SparseVectors | None = None,
    long_docs=None,
    hybrid=None,
    approx: float | bool | None = None,
    show_progress: bool = False,
    log=None,
) -> EvalResult:
    """Evaluate a SPLADE model on a BEIR folder: retrieve top-``k`` for every judged query, score with ir-measures.

    ``retriever``: ``"index"`` (the embedded ``spladekit.index.Index``; reused from ``index_dir`` when it holds an
    index built from this corpus with this model) or ``"exact"`` (brute-force scipy dot products, the reference).
    ``encoder`` / ``corpus_vectors`` let callers reuse a loaded model or already encoded documents (in corpus order).
    ``long_docs``: ``"max"`` (the encoder's default), ``"passages"`` (documents ranked by their best window) or
    ``"truncate"`` (what sentence-transformers does), or a ``LongDocs``; recorded in the report with how many
    documents were longer than one window.
    ``hybrid`` (any form ``index.fusion.check_hybrid`` reads, e.g. ``"rrf"``): adds the system ``hybrid``, the
    index's own hybrid search (``Index.search(text, hybrid=...)`` per query, the call a user makes; the index keeps
    a BM25 view of the corpus texts); needs the index retriever.
    Binary metrics count rel ≥ ``relevance_threshold``; nDCG uses the graded values. Writes run files, metrics.json,
    report.md and plots to ``output_dir`` when given.
    """
    say = log or (lambda _msg: None)
    if retriever not in ("index", "exact"):
        raise InputError(f"unknown retriever {retriever!r}: use 'index' or 'exact'")
    fusion = check_hybrid(hybrid)
    target = check_approx(approx)
    if (fusion is not None or target is not None) and retriever != "index":
        what = "hybrid" if fusion is not None else "approx"
        raise InputError(f"{what} evaluates the index's own search: it needs the index retriever, not exact")
    if not isinstance(k, int) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    if not isinstance(relevance_threshold, int) or relevance_threshold < 1:
        raise InputError(f"relevance threshold must be an integer ≥ 1, got {relevance_threshold!r}")
    if output_dir is not None and Path(output_dir).exists() and not Path(output_dir).is_dir():
        raise InputError(f"{output_dir}: exists and is not a folder (--output needs a folder)")
    t_start = time.perf_counter()
    col = load_beir(data_dir, split)
    qids = _check_collection(col, relevance_threshold)
    doc_ids = list(col.corpus)
    doc_texts = [col.corpus[d].full_text for d in doc_ids]
    q_texts = [col.queries[q].full_text for q in qids]
    say(f"{col.root}: {len(doc_ids):,} documents, {len(qids):,} judged queries (split {split})")

    if encoder is None:
        from ..encode import SpladeEncoder

        encoder = SpladeEncoder.load(model)
    if corpus_vectors is not None and len(corpus_vectors) != len(doc_ids):
        raise InputError(f"corpus_vectors has {len(corpus_vectors)} rows for {len(doc_ids)} documents")
    ld = encoder.document_settings(long_docs)
    if ld.strategy == "passages" and corpus_vectors is not None:
        raise InputError("corpus_vectors are document vectors: they cannot be evaluated as passages")
    windows: dict = {"strategy": ld.strategy, "window": ld.window or encoder.max_length, "stride": ld.stride}
    passages = None

    timing: dict[str, float | None] = {"corpus_encode_s": None, "index_build_s": None}
    index_info: dict | None = None
    with contextlib.ExitStack() as stack:
        idx = None
        reused = False
        if retriever == "index":
            idx, reused = _open_or_create_index(stack, index_dir, encoder, doc_ids, ld, fusion is not None)
        if reused:
            say(f"reusing index {idx.path}")
            docs = idx.vectors(doc_ids)
        else:
            if corpus_vectors is not None:
                docs = corpus_vectors
            else:
                say(f"encoding {len(doc_ids):,} documents ({ld.describe(encoder.max_length)})")
                t0 = time.perf_counter()
                if ld.strategy == "passages":
                    passages = encoder.encode_passages(
                        doc_texts, long_docs=ld, batch_size=batch_size, show_progress=show_progress
                    )
                    docs = passages.document_vectors()
                else:
                    docs = encoder.encode_documents(
                        doc_texts, batch_size=batch_size, show_progress=show_progress, long_docs=ld
                    )
                timing["corpus_encode_s"] = time.perf_counter() - t0
                rep = encoder.last_report
                windows.update(documents_windowed=rep.windowed, windows=rep.windows, truncated=rep.truncated)
            if idx is not None:
                t0 = time.perf_counter()
                texts = doc_texts if fusion is not None else None  # the BM25 view reads the stored texts
                if passages is not None:
                    idx.write_passages(
                        doc_ids, passages.vectors, passages.owner, passages.spans, passages.counts, texts
                    )
                else:
                    idx.add_vectors(doc_ids, docs, texts)
                idx.commit()
                timing["index_build_s"] = time.perf_counter() - t0
        if idx is not None:
            tuning = ensure_tuned(idx, target, say) if target is not None else None
            index_info = {k_: v for k_, v in idx.info().items() if k_ != "model"}
            if index_dir is None:
                index_info["path"] = None  # a temporary index, removed after the run

        say(f"retrieving top-{k} for {len(qids):,} queries")
        splade_rankings, queries, lat = _search_queries(
            encoder, idx, docs, doc_ids, q_texts, k, batch_size, passages
        )
        runs: dict[str, dict[str, Ranking]] = {"splade": dict(zip(qids, splade_rankings))}
        if fusion is not None:
            say(f"hybrid search ({fusion.method}) of {len(qids):,} queries")
            rankings, seconds = hybrid_run(idx, q_texts, k, fusion)
            runs["hybrid"] = dict(zip(qids, rankings))
            lat["hybrid_latency_p50_ms"] = 1000 * float(np.median(seconds))
        if target is not None:
            say(f"approximate search (recall@10 target {target}) of {len(qids):,} queries")
            rankings, seconds = approx_run(idx, queries, k, target)
            runs["approx"] = dict(zip(qids, rankings))
            approx_info = approx_report(idx, queries, target, tuning, (rankings, splade_rankings), seconds, k)
            lat["approx_search_p50_ms"] = approx_info["search_p50_ms"]
    timing.update(lat)

    bm25_settings = None
    if bm25:
        say("BM25 baseline")
        base = BM25Baseline()
        t0 = time.perf_counter()
        base.index(doc_ids, doc_texts)
        timing["bm25_index_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        runs["bm25"] = dict(zip(qids, base.search(q_texts, k=k)))
        timing["bm25_search_s"] = time.perf_counter() - t0
        bm25_settings = base.settings()
        runs["rrf"] = reciprocal_rank_fusion([runs["splade"], runs["bm25"]], k=k, c=RRF_C)
    runs = {name: runs[name] for name in SYSTEMS if name in runs}  # hybrid last, next to rrf

    per_query = {name: per_query_metrics(run, col.qrels, relevance_threshold) for name, run in runs.items()}
    q_stats, d_stats = queries.stats(), docs.stats()
    timing["total_s"] = time.perf_counter() - t_start
    report = {
        "dataset": {
            "path": str(col.root),
            "split": split,
            "documents": len(doc_ids),
            "queries_evaluated": len(qids),
            "queries_in_qrels": len(col.qrels),
            "corpus_sha256": sha256_file(col.corpus_path),
            "queries_sha256": sha256_file(col.queries_path),
            "qrels_sha256": sha256_file(col.qrels_path),
            "qrels_graded": _graded(col),
        },
        "relevance": {
            "binary_threshold": relevance_threshold,
            "note": _relevance_note(col, relevance_threshold),
        },
        "measures": measure_definitions(relevance_threshold),
        "depth": k,
        "model": {**encoder.info(), "long_docs": ld.record()},
        "long_docs": windows,
        "retriever": retriever,
        "index": index_info,
        "systems": {name: {"metrics": aggregate(pq)} for name, pq in per_query.items()},
        "sparsity": {
            "query_active_dims": q_stats["mean_active_dims"],
            "query_sparsity_ratio": q_stats["sparsity"],
            "corpus_active_dims": d_stats["mean_active_dims"],
            "corpus_sparsity_ratio": d_stats["sparsity"],
            "avg_flops": queries.flops(docs),
        },
        "timing": timing,
        "bm25": bm25_settings,
        "rrf": {"c": RRF_C, "inputs": ["splade", "bm25"]} if bm25 else None,
        "hybrid": {**fusion.record(), "call": "Index.search(text, hybrid=...)"} if fusion else None,
        "approx": approx_info if target is not None else None,
        "environment": _environment(),
    }
    result = EvalResult(report, runs, per_query, docs, queries)
    if output_dir is not None:
        from .report import write_outputs

        write_outputs(result, Path(output_dir))
    return result


def _check_collection(col: BeirCollection, threshold: int) -> list[str]:
    if not col.corpus:
        raise InputError(f"{col.corpus_path}: the corpus has no document")
    qids = evaluated_queries(col.qrels, threshold)
    if not qids:
        top = max((r for docs in col.qrels.values() for r in docs.values()), default=0)
        raise InputError(
            f"{col.qrels_path}: no query has a document judged at relevance >= {threshold} "
            f"(highest relevance in the file: {top})"
        )
    return qids


def _relevance_note(col: BeirCollection, threshold: int) -> str:
    note = (
        f"binary metrics (accuracy, precision, recall, MRR, MAP) count rel >= {threshold}; "
        "nDCG@10 uses the graded qrels values as gains"
    )
    if _graded(col) and threshold == 1:
        note += (
            " (these qrels are graded: TREC DL reports binary metrics at rel >= 2, --relevance-threshold 2)"
        )
    return note


def _graded(col: BeirCollection) -> bool:
    return len({r for docs in col.qrels.values() for r in docs.values() if r > 0}) > 1


def _open_or_create_index(
    stack: contextlib.ExitStack, index_dir, encoder, doc_ids: list[str], long_docs, bm25
):
    """(index, reused): reuse ``index_dir`` when it holds an index of this corpus and model, else build one
    (keeping a BM25 view when ``bm25``: hybrid search reads it)."""
    from ..encode.loading import check_same_model
    from ..index import Index, is_index_folder

    if index_dir is not None:
        path = Path(index_dir)
        if is_index_folder(path):
            idx = stack.enter_context(Index.open(path))
            if len(idx) == 0:  # created by an interrupted run: fill it
                return idx, False
            check_same_model(idx.model, encoder.info(), str(path), "; use another --index folder")
            if idx.long_docs.record() != long_docs.record():
                raise InputError(
                    f"{path}: index encodes long documents by {idx.long_docs.strategy!r} "
                    f"({idx.long_docs.record()}), not {long_docs.record()}; use another --index folder"
                )
            if bm25 and (not idx.has_bm25 or idx.info()["bm25"]["documents"] < len(idx)):
                raise InputError(
                    f"{path}: index keeps no BM25 view of every document for --hybrid (documents stored "
                    "without text have none); use another --index folder"
                )
            idx.bind_encoder(encoder)  # searches (hybrid included) run this model's query side
            missing = next((d for d in doc_ids if d not in idx), None)
            if len(idx) != len(doc_ids) or missing is not None:
                raise InputError(
                    f"{path}: index holds {len(idx):,} documents, not the {len(doc_ids):,} of this corpus"
                    + (f" (document {missing!r} is missing)" if missing is not None else "")
                    + "; use another --index folder"
                )
            return idx, True
        return stack.enter_context(Index.create(path, encoder, long_docs=long_docs, bm25=bm25)), False
    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="spladekit-eval-"))
    return stack.enter_context(
        Index.create(Path(tmp) / "index", encoder, long_docs=long_docs, bm25=bm25)
    ), False


def _search_queries(
    encoder,
    idx,
    docs: SparseVectors,
    doc_ids: list[str],
    texts: list[str],
    k: int,
    batch_size: int,
    passages=None,
):
    """Encode the queries in batches, search each one alone (search latency of a single request), then time
    single-query encode + search on a fixed sample (the latency a user of one query sees)."""
    t0 = time.perf_counter()
    queries = encoder.encode_queries(texts, batch_size=batch_size)
    encode_s = time.perf_counter() - t0

    def search(v: SparseVectors) -> Ranking:
        if idx is None:
            if passages is not None:  # a document scores as its best passage
                return exact_search(v, passages.vectors, doc_ids, k=k, owner=passages.owner)[0]
            return exact_search(v, docs, doc_ids, k=k)[0]
        hits = idx.search(v, k=k) if v.nnz else []
        ids = [h.id for h in hits]
        scores = np.asarray([h.score for h in hits], np.float64)
        return [(ids[i], float(scores[i])) for i in rank_order(ids, scores)]

    search_t, rankings = [], []
    for i in range(len(texts)):
        t0 = time.perf_counter()
        rankings.append(search(queries[i]))
        search_t.append(time.perf_counter() - t0)
    single = []
    for text in texts[:LATENCY_SAMPLE]:
        t0 = time.perf_counter()
        search(encoder.encode_queries([text]))
        single.append(time.perf_counter() - t0)
    lat = {
        "query_encode_s": encode_s,
        "query_encode_ms_per_query": 1000 * encode_s / max(1, len(texts)),
        "search_p50_ms": 1000 * float(np.median(search_t)),
        "search_p95_ms": 1000 * float(np.percentile(search_t, 95)),
        "query_latency_p50_ms": 1000 * float(np.median(single)),
        "query_latency_sample": len(single),
    }
    return rankings, queries, lat


def _environment() -> dict:
    import importlib.metadata as md

    from .. import __version__

    env = {"spladekit": __version__, "python": platform.python_version()}
    for pkg in (
        "torch",
        "transformers",
        "ir-measures",
        "pytrec-eval-terrier",
        "bm25s",
        "PyStemmer",
        "numpy",
        "scipy",
    ):
        try:
            env[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            env[pkg] = None
    env["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return env


__all__ = ["evaluate", "EvalResult", "SYSTEMS", "metric_names"]
