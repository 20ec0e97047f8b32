"""Fitting an ensemble's weights on held-out training rows: a grid search over each scorer's weight in {0, 1/s,
…, 1} (s = ``steps``), keeping the weights whose combined ranking scores best on ``metric`` (the other metric breaks
ties, then the earlier grid point: equal weights come first). Every single scorer is a grid point, so the fitted
ensemble is never worse than the best single scorer on the rows it was fitted on."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np

from ..errors import InputError
from .ensemble import ScoreTable, check_normalise, normalise
from .teacher_report import ranking_metrics

FIT_METRICS = ("ndcg@10", "pairwise_accuracy")
MAX_GRID = 20_000


def check_fit_metric(metric: str) -> str:
    m = {"ndcg": "ndcg@10", "pairwise": "pairwise_accuracy"}.get(metric, metric)
    if m not in FIT_METRICS:
        raise InputError(f"unknown fit metric {metric!r}: use ndcg@10 or pairwise_accuracy")
    return m


def weight_grid(n: int, steps: int = 4) -> list[tuple[float, ...]]:
    """Distinct weight vectors (up to scale) with each weight in {0, 1/steps, …, 1}, all-ones first."""
    if n < 1 or steps < 1:
        raise InputError("a weight grid needs at least one scorer and one step")
    if (steps + 1) ** n > MAX_GRID:
        raise InputError(
            f"a grid of {(steps + 1) ** n} weight vectors is too large: use fewer steps or scorers"
        )
    seen, out = set(), []
    levels = [Fraction(i, steps) for i in range(steps + 1)]
    for combo in itertools.chain([tuple([Fraction(1)] * n)], itertools.product(levels, repeat=n)):
        top = max(combo)
        if top == 0:
            continue
        key = tuple(c / top for c in combo)  # one vector per direction: (1, 1) and (0.5, 0.5) rank alike
        if key not in seen:
            seen.add(key)
            out.append(tuple(float(c) for c in key))
    return out


def fit_weights(
    table: ScoreTable,
    gains: np.ndarray,
    method: str,
    *,
    metric: str = "ndcg@10",
    steps: int = 4,
) -> tuple[tuple[float, ...], dict]:
    """The grid's best weights for ``table``'s rows (``gains`` as ``teacher_report.candidate_gains``), largest
    weight 1, and their figures there."""
    method = check_normalise(method)
    metric = check_fit_metric(metric)
    other = FIT_METRICS[1 - FIT_METRICS.index(metric)]
    normed = np.stack([np.nan_to_num(normalise(table.scores[n], method)) for n in table.names])
    best_key, best = None, None
    for w in weight_grid(len(table.names), steps):
        combined = np.tensordot(np.asarray(w), normed, axes=1)
        m = ranking_metrics(combined, gains, table.mask)
        key = (round(m[metric], 12), round(m[other], 12))
        if best_key is None or key > best_key:
            best_key, best = key, (w, m)
    assert best is not None
    return best[0], best[1]
