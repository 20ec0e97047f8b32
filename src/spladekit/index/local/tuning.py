"""Tuning the approximate search of a local index: recall@10 against exact search for a grid of query-time knobs,
and per recall target the cheapest setting that reaches it, stored in the manifest (``"approx"``).

Queries are the given ones, or ``sample`` documents of the index itself: a document used as a query is left out
of both result lists (it would be found trivially). Cost is the entries a search reads (summaries and forward
postings), counted by the kernel: deterministic, unlike timings on a shared machine; only the comparison with
exact search is timed (a target whose cheapest setting is slower than exact search is searched exactly).

A setting qualifies for a target when the lower bound of its recall on the sample reaches it (``lower_bound``):
the mean less the larger of ``MARGIN`` and a one-sided 95% confidence margin (``Z`` standard errors of the
per-query recalls), so that held-out queries of the same kind keep the target.
"""

from __future__ import annotations

import time

import numpy as np

from ...errors import InputError
from ...sparse import SparseVectors
from ..approx import TARGETS, TUNE_K, Plan, recall_at

QUERY_TERMS = (4, 8, 16, 32, 64)
# a block is visited while its summary score x heap_factor beats the k-th best score: 1.0 trusts the summaries as
# bounds, below prunes harder, above visits more (Seismic's heap_factor h is about 1 / h here)
HEAP_FACTORS = (0.8, 0.9, 1.0, 1.1, 1.2, 1.4, 1.7, 2.0, 3.0)
MARGIN = 0.01
Z = 1.645  # one-sided 95%


def lower_bound(recalls) -> float:
    """The recall a setting is credited with: the sample mean less max(MARGIN, Z x its standard error)."""
    r = np.asarray(recalls, np.float64)
    se = float(r.std(ddof=1) / np.sqrt(len(r))) if len(r) > 1 else 1.0
    return float(r.mean()) - max(MARGIN, Z * se)


def reaches(row: dict, target: float) -> bool:
    """Whether a grid row qualifies for ``target``: its lower bound reaches it, or its recall on the sample is
    perfect (no sample can show more)."""
    return row["lower"] >= target or row["recall"] >= 1.0


def _sample_queries(index, queries, sample: int, seed: int = 0):
    """(term ids, weights) per query, and per query the id to leave out (its own document) or None."""
    if queries is not None:
        qs = index._queries(queries)
        if not qs:
            raise InputError("tune needs at least one query")
        rng = np.random.default_rng(seed)
        pick = sorted(rng.choice(len(qs), size=min(sample, len(qs)), replace=False).tolist())
        return [qs[i] for i in pick], [None] * len(pick)
    ids = index.ids()
    if len(ids) < 2 * TUNE_K:
        raise InputError(f"tune needs at least {2 * TUNE_K} documents in the index, it has {len(ids)}")
    rng = np.random.default_rng(seed)
    pick = [ids[i] for i in sorted(rng.choice(len(ids), size=min(sample, len(ids)), replace=False).tolist())]
    v: SparseVectors = index.vectors(pick)
    return [v.row(i) for i in range(len(v))], pick


def measure_grid(index, qs, drops, k: int = TUNE_K) -> list[dict]:
    """Recall, mean cost and time of every grid point (one thread, the committed snapshot); the first row is exact
    search (its time, for ``choose``)."""
    segs, allowed = index._prepare_filter(None)

    def ids(raw):
        return [segs[si].doc_id(d) for _, si, d in raw]

    t0 = time.perf_counter()
    exact = [ids(index._top_k(segs, allowed, t, w, k + 1)) for t, w in qs]
    rows = [{"query_terms": None, "heap_factor": None, "recall": 1.0, "work": None}]
    rows[0]["ms"] = 1000 * (time.perf_counter() - t0) / len(qs)
    for qt in QUERY_TERMS:
        for hf in HEAP_FACTORS:
            plan = Plan(qt, hf)
            rec, work = [], 0
            t0 = time.perf_counter()
            for (t, w), e, drop in zip(qs, exact, drops):
                raw, got = index._approx_top_k(segs, allowed, t, w, k + 1, plan)
                work += got
                a = [x for x in ids(raw) if x != drop][:k]
                rec.append(recall_at(a, [x for x in e if x != drop][:k]))
            ms = 1000 * (time.perf_counter() - t0) / len(qs)
            rows.append(
                {
                    "query_terms": qt,
                    "heap_factor": hf,
                    "recall": float(np.mean(rec)),
                    "lower": lower_bound(rec),
                    "work": work / len(qs),
                    "ms": ms,
                }
            )
    return rows


def choose(grid: list[dict], targets, exact_if_faster: bool = True) -> list[dict]:
    """Per target the cheapest grid point whose recall's lower bound reaches it; none (the target is searched
    exactly) when no point does, or when the cheapest is slower than exact search itself (grid[0], timed on the
    same queries)."""
    table = []
    exact_ms = grid[0]["ms"]
    for target in sorted(set(targets)):
        ok = [r for r in grid[1:] if reaches(r, target)]
        if ok:
            best = min(ok, key=lambda r: (r["work"], -r["recall"]))
            if exact_if_faster and best["ms"] >= exact_ms:
                continue
            table.append(
                {
                    "recall": target,
                    "query_terms": best["query_terms"],
                    "heap_factor": best["heap_factor"],
                    "measured": best["recall"],
                    "lower": best["lower"],
                    "work": best["work"],
                }
            )
    return table


def tune(index, recall: float, queries, sample: int, exact_if_faster: bool = True) -> dict:
    """Measure the grid on the committed index and store the table in a new commit; the report."""
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
        raise InputError(f"sample must be a positive integer, got {sample!r}")
    if isinstance(recall, bool) or not isinstance(recall, (int, float)) or not 0 < recall < 1:
        raise InputError(f"recall must be a target in (0, 1) such as 0.95, got {recall!r}")
    index.commit(merge=False)
    if not any(s.ax is not None for s in index._segments):
        raise InputError(
            f"{index.path}: no segment has an approximate structure (created with approx=False?)"
        )
    qs, drops = _sample_queries(index, queries, sample)
    grid = measure_grid(index, qs, drops)
    table = choose(grid, (*TARGETS, float(recall)), exact_if_faster)
    rec = {
        "k": TUNE_K,
        "queries": "given" if queries is not None else "documents",
        "sample": len(qs),
        "documents": len(index),
        "tuned": time.time(),
        "table": table,
    }
    index._store_approx(rec)
    return {**rec, "grid": grid}
