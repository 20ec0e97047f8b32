"""Approximate search by query-term pruning: keep the heaviest query terms that carry most of its weight."""

from __future__ import annotations

import time

import numpy as np

from ..errors import InputError
from ..sparse import SparseVectors

# approx=True keeps this share of the query weight.
DEFAULT_MASS = 0.8


def approximate_query(
    q_terms: np.ndarray, q_weights: np.ndarray, mass: float
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the heaviest query terms that together hold ``mass`` of the query's total weight."""
    if not 0 < mass <= 1:
        raise InputError(f"approx must be a share of the query weight in (0, 1], got {mass}")
    if len(q_terms) == 0:
        return q_terms, q_weights
    order = np.argsort(-q_weights, kind="stable")
    cum = np.cumsum(q_weights[order])
    n = int(np.searchsorted(cum, mass * cum[-1] * (1 - 1e-7))) + 1
    keep = np.sort(order[: min(n, len(order))])
    return q_terms[keep], q_weights[keep]


def prune_queries(
    qs: list[tuple[np.ndarray, np.ndarray]], approx: bool | float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every query pruned to ``approx`` of its weight (True: DEFAULT_MASS); unchanged when ``approx`` is falsy."""
    if not approx:
        return qs
    mass = DEFAULT_MASS if approx is True else float(approx)
    return [approximate_query(np.asarray(t), np.asarray(w), mass) for t, w in qs]


def measure_recall(index, queries, k: int, approx: bool | float, sample: int) -> dict:
    """Recall@k of ``index``'s approximate search against its exact search on (a sample of) ``queries``, and the
    time per query of both (one thread)."""
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
    rec = [len({h.id for h in a} & {h.id for h in e}) / len(e) for a, e in zip(appr, exact) if e]
    return {
        "queries": len(pick),
        "k": k,
        "approx": approx,
        "recall": float(np.mean(rec)) if rec else 1.0,
        "exact_ms": 1000 * (t1 - t0) / max(1, len(pick)),
        "approx_ms": 1000 * (t2 - t1) / max(1, len(pick)),
    }
