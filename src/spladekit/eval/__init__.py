"""Evaluation: IR metrics (ir-measures), a BM25 baseline (bm25s), reciprocal-rank fusion and reports."""

from ..index.fusion import reciprocal_rank_fusion
from .core import SYSTEMS, EvalResult, evaluate
from .metrics import compute_metrics, measure_definitions, metric_names, per_query_metrics, read_run
from .retrieval import BM25Baseline, exact_search

__all__ = [
    "evaluate",
    "EvalResult",
    "SYSTEMS",
    "compute_metrics",
    "per_query_metrics",
    "read_run",
    "measure_definitions",
    "metric_names",
    "BM25Baseline",
    "exact_search",
    "reciprocal_rank_fusion",
]
