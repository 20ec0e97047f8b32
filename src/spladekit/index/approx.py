"""Approximate search as a recall target: ``approx=0.95`` asks for at least 95% recall@k against exact search.

A backend with an approximate structure (local: Seismic-style blocks per segment, see ``local/approx_build``)
maps the target to its query-time knobs (``Plan``) through a tuning table: one row per target, the cheapest
setting measured to reach it (``Index.tune``), stored in the index; ``DEFAULT_TABLE`` (measured on the benchmark
corpus) until the index is tuned. A target above every row of the table, or a backend without such a structure,
searches exactly (recall 1). ``measure_approx`` reports the recall actually obtained.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..sparse import SparseVectors

DEFAULT_RECALL = 0.95  # approx=True
TARGETS = (0.9, 0.95, 0.99)  # what ``tune`` always stores
TUNE_K = 10


@dataclass(frozen=True)
class Plan:
    """Query-time knobs: the heaviest ``query_terms`` of a query walk their lists; a block is visited while its
    summary score x ``heap_factor`` beats the current k-th score (larger: more blocks, higher recall)."""

    query_terms: int
    heap_factor: float


# Recall target -> knobs of an untuned index: what ``tune`` picks with 200 documents as queries on an index of the
# 22,624 real splade-tiny vectors of the benchmark (whole-document summaries; held-out real queries then get 0.926,
# 0.969 and 0.9999: bench/search_results.md, 2026-12-03 evening). At that size exact search is faster still;
# ``tune`` stores, per index, whichever is cheaper.
DEFAULT_TABLE = (
    {"recall": 0.9, "query_terms": 8, "heap_factor": 0.9},
    {"recall": 0.95, "query_terms": 16, "heap_factor": 0.9},
    {"recall": 0.99, "query_terms": 32, "heap_factor": 1.4},
)


def check_approx(approx) -> float | None:
    """The recall target of ``approx`` (False/None: exact, True: DEFAULT_RECALL, a float in (0, 1]), or a
    one-line error."""
    if approx is None or approx is False:
        return None
    if approx is True:
        return DEFAULT_RECALL
    if isinstance(approx, (int, float)) and not isinstance(approx, bool) and 0 < approx <= 1:
        return None if approx == 1 else float(approx)
    raise InputError(
        f"approx must be a recall target in (0, 1] such as 0.95 (or True / False), got {approx!r}"
    )


def plan_for(target: float | None, table) -> Plan | None:
    """The cheapest row of ``table`` whose recall reaches ``target``; None (exact) when no row does."""
    if target is None:
        return None
    rows = [r for r in (table or DEFAULT_TABLE) if r["recall"] >= target - 1e-9]
    if not rows:
        return None
    r = min(rows, key=lambda r: r["recall"])
    return Plan(int(r["query_terms"]), float(r["heap_factor"]))


def recall_at(approx_ids, exact_ids, drop=None) -> float:
    """|approx ∩ exact| / |exact| for one query (``drop``: an id left out of both, e.g. the query's own document)."""
    e = [x for x in exact_ids if x != drop]
    if not e:
        return 1.0
    return len(set(approx_ids) & set(e)) / len(e)


def measure_recall(index, queries, k: int, approx, sample: int) -> dict:
    """Recall@k of ``index``'s approximate search against its exact search on (a sample of) ``queries``, the
    knobs used, and the time per query of both (one thread)."""
    target = check_approx(approx)
    n = len(queries)
    if n == 0:
        raise InputError("measure_approx needs at least one query")
    rng = np.random.default_rng(0)
    pick = sorted(rng.choice(n, size=min(sample, n), replace=False).tolist())
    qs = queries[np.asarray(pick)] if isinstance(queries, SparseVectors) else [queries[i] for i in pick]
    if not isinstance(qs, SparseVectors) and any(isinstance(q, str) for q in qs):
        qs = index.query_encoder.encode_queries(list(qs))
    t0 = time.perf_counter()
    exact = index.search_batch(qs, k=k, threads=1)
    t1 = time.perf_counter()
    appr = index.search_batch(qs, k=k, threads=1, approx=approx)
    t2 = time.perf_counter()
    rec = [recall_at([h.id for h in a], [h.id for h in e]) for a, e in zip(appr, exact) if e]
    plan = index._approx_plan(target)
    return {
        "queries": len(pick),
        "k": k,
        "approx": approx,
        "target": target,
        "plan": None if plan is None else {"query_terms": plan.query_terms, "heap_factor": plan.heap_factor},
        "recall": float(np.mean(rec)) if rec else 1.0,
        "exact_ms": 1000 * (t1 - t0) / max(1, len(pick)),
        "approx_ms": 1000 * (t2 - t1) / max(1, len(pick)),
    }
