"""Approximate search in an evaluation: the index's own ``Index.search(vector, k, approx=target)`` (the call a user
makes), run next to exact search on the same index, with its recall against exact and its latency."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ..index.approx import TUNE_K, check_approx
from ..sparse import SparseVectors
from .retrieval import Ranking, rank_order


def ensure_tuned(idx, target: float, say: Callable[[str], None]) -> dict:
    """The index's tuning record; an index never tuned is tuned first, on its own documents as queries (never on
    the evaluated queries), as ``spladekit tune -i INDEX`` does."""
    tuning = (idx.info().get("approx") or {}).get("tuning")
    if tuning is None:
        say(f"index not tuned: tuning it on its own documents for recall@{TUNE_K} >= {target}")
        idx.tune(recall=target)
        tuning = idx.info()["approx"]["tuning"]
    return tuning


def approx_run(idx, queries: SparseVectors, k: int, target: float) -> tuple[list[Ranking], list[float]]:
    """Per query its approximate top-``k`` (ties by id, as the exact run) and the seconds each search took."""
    check_approx(target)
    out, seconds = [], []
    for i in range(len(queries)):
        v = queries[i]
        t0 = time.perf_counter()
        hits = idx.search(v, k=k, approx=target) if v.nnz else []
        seconds.append(time.perf_counter() - t0)
        ids = [h.id for h in hits]
        scores = np.asarray([h.score for h in hits], np.float64)
        out.append([(ids[j], float(scores[j])) for j in rank_order(ids, scores)])
    return out, seconds


def recall_against(approx: list[Ranking], exact: list[Ranking], k: int) -> float:
    """Mean over queries with an exact hit of |approx top-k ∩ exact top-k| / |exact top-k|."""
    rec = [
        len({d for d, _ in a[:k]} & {d for d, _ in e[:k]}) / len(e[:k]) for a, e in zip(approx, exact) if e
    ]
    return float(np.mean(rec)) if rec else 1.0


def approx_report(
    idx, queries: SparseVectors, target: float, tuning: dict, runs: tuple, seconds: list[float], k: int
) -> dict:
    """What metrics.json records of the approximate system: the call, the knobs, the tuning it came from, recall
    against exact (of the run at depth ``k``, and of searches at the tuned k = 10 through ``measure_approx``),
    latency."""
    approx_run_, exact_run = runs
    m = idx.measure_approx(queries, k=TUNE_K, approx=target, sample=len(queries))
    return {
        "target": target,
        "call": f"Index.search(vector, k={k}, approx={target})",
        "plan": m["plan"],  # None: searched exactly (no tuned setting reaches the target, or exact is faster)
        "tuning": {x: tuning.get(x) for x in ("k", "queries", "sample", "documents", "table")},
        "recall_vs_exact": {
            f"top{TUNE_K}_of_run": recall_against(approx_run_, exact_run, TUNE_K),
            f"top{k}_of_run": recall_against(approx_run_, exact_run, k),
            f"searching_k{TUNE_K}": m["recall"],
        },
        "search_p50_ms": 1000 * float(np.median(seconds)),
        "search_p95_ms": 1000 * float(np.percentile(seconds, 95)),
    }
