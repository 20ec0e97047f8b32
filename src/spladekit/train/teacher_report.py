"""How good a teacher is before training on it: nDCG@10 and pairwise accuracy of each scorer and of the ensemble
over held-out rows' candidate lists.

Each row is one ranking of its own candidates (its positive and its negatives). A candidate's gain is 1 for the
positive and 0 for a negative, or, with qrels, its judged relevance (rows from ``spladekit mine`` carry
``query_id``, ``positive_id`` and ``negative_ids``). nDCG@10 uses linear gains (as trec_eval and ``spladekit eval``
do) and averages over rows with a relevant candidate; tied scores get the mean discount of the places they share
(the expected value over every order of the tie). Pairwise accuracy is the share of (more relevant, less relevant)
candidate pairs of a row that the scorer orders that way, a tie counting one half, over all pairs of all rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import InputError
from .ensemble import ScoreTable, combine, normalise
from .rows import TrainRow

CUTOFF = 10
ENSEMBLE = "ensemble"


def candidate_gains(
    rows: Sequence[TrainRow], width: int | None = None, qrels: Mapping[str, Mapping[str, int]] | None = None
) -> np.ndarray:
    """Rows × candidates gains (0 past a row's candidates): positive 1, negatives 0, or the qrels' judgements."""
    width = width if width is not None else max(1 + len(r.negatives) for r in rows)
    g = np.zeros((len(rows), width))
    for i, r in enumerate(rows):
        if qrels is None:
            g[i, 0] = 1.0
            continue
        qid, pid, nids = r.extra.get("query_id"), r.extra.get("positive_id"), r.extra.get("negative_ids")
        if qid is None or pid is None or not isinstance(nids, list) or len(nids) != len(r.negatives):
            raise InputError(
                f"row {i + 1}: judging by qrels needs query_id, positive_id and negative_ids (one per negative) "
                "in every row, as `spladekit mine` writes them"
            )
        judged = qrels.get(str(qid))
        if judged is None:
            raise InputError(f"row {i + 1}: query {qid!r} has no judgements in the qrels")
        for j, d in enumerate([pid, *nids]):
            g[i, j] = max(0, judged.get(str(d), 0))
    return g


def _discounts(width: int) -> np.ndarray:
    """Cumulative discount: D[p] = Σ_{i<p} 1/log2(i+2) over ranks within the cutoff."""
    per = np.where(np.arange(width) < CUTOFF, 1.0 / np.log2(np.arange(width) + 2.0), 0.0)
    return np.concatenate([[0.0], np.cumsum(per)])


def ndcg_per_row(scores: np.ndarray, gains: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """nDCG@10 of each row (NaN for a row without a relevant candidate); ties share their places' discounts."""
    width = scores.shape[1]
    d = _discounts(width)
    s = np.where(mask, scores, -np.inf)
    si, sj = s[:, :, None], s[:, None, :]
    both = mask[:, :, None] & mask[:, None, :]
    above = ((sj > si) & both).sum(axis=2)  # candidates ranked strictly above each one
    tied = ((sj == si) & both).sum(axis=2)  # itself included
    tied = np.maximum(tied, 1)
    disc = (d[np.minimum(above + tied, width)] - d[above]) / tied
    dcg = (np.where(mask, gains, 0.0) * disc).sum(axis=1)
    ideal = -np.sort(-np.where(mask, gains, 0.0), axis=1)
    idcg = (ideal * np.diff(d)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(idcg > 0, dcg / idcg, np.nan)


def pairwise_counts(scores: np.ndarray, gains: np.ndarray, mask: np.ndarray) -> tuple[float, int]:
    """(pairs ordered right, ties counting 1/2; number of pairs) over every (more, less relevant) pair of a row."""
    g = np.where(mask, gains, np.nan)
    s = np.where(mask, scores, np.nan)
    with np.errstate(invalid="ignore"):
        pairs = g[:, :, None] > g[:, None, :]
        right = (s[:, :, None] > s[:, None, :]) & pairs
        ties = (s[:, :, None] == s[:, None, :]) & pairs
    return float(right.sum() + 0.5 * ties.sum()), int(pairs.sum())


def ranking_metrics(scores: np.ndarray, gains: np.ndarray, mask: np.ndarray) -> dict:
    """nDCG@10 (mean over rows with a relevant candidate) and pairwise accuracy of one scorer's scores."""
    nd = ndcg_per_row(scores, gains, mask)
    right, pairs = pairwise_counts(scores, gains, mask)
    judged = nd[~np.isnan(nd)]
    if not len(judged) or not pairs:
        raise InputError("no held-out row has a relevant candidate ranked against a less relevant one")
    return {
        "ndcg@10": float(judged.mean()),
        "pairwise_accuracy": right / pairs,
        "rows": int(len(judged)),
        "pairs": pairs,
    }


def build_report(
    table: ScoreTable,
    gains: np.ndarray,
    weights: Sequence[float],
    method: str,
    *,
    queries: int,
    fitted: dict | None = None,
) -> dict:
    """Figures of every scorer alone and of the ensemble (``weights``, ``method`` normalisation) on ``table``'s
    rows (the held-out rows, ``queries`` queries). A single scorer's ranking does not depend on per-row
    normalisation, so its figures are those of its raw scores."""
    systems = {name: ranking_metrics(table.scores[name], gains, table.mask) for name in table.names}
    agreement = {}
    if len(table.names) > 1:
        systems[ENSEMBLE] = ranking_metrics(combine(table, weights, method), gains, table.mask)
        agreement = scorer_agreement(table, method)
    return {
        "held_out_queries": queries,
        "held_out_rows": len(table),
        "normalise": method,
        "weights": {n: float(w) for n, w in zip(table.names, weights)},
        "fitted": fitted,
        "systems": systems,
        "agreement": agreement,
    }


def format_report(report: dict) -> str:
    """The report as a Markdown table (one line per scorer, then the ensemble) with its settings below."""
    lines = [
        "| scorer | nDCG@10 | pairwise accuracy | weight |",
        "|---|---:|---:|---:|",
    ]
    for name, m in report["systems"].items():
        w = report["weights"].get(name)
        wt = "" if w is None or len(report["weights"]) == 1 else f"{w:g}"
        lines.append(f"| {name} | {m['ndcg@10']:.4f} | {m['pairwise_accuracy']:.4f} | {wt} |")
    first = next(iter(report["systems"].values()))
    lines.append("")
    lines.append(
        f"{report['held_out_queries']} held-out queries, {report['held_out_rows']} rows, {first['pairs']} "
        f"(relevant, non-relevant) pairs; ensemble normalisation: {report['normalise']}"
    )
    fit = report.get("fitted")
    if fit:
        lines.append(
            f"weights fitted on {fit['queries']} other held-out queries ({fit['rows']} rows) by {fit['metric']}: "
            f"{fit['value']:.4f} there"
        )
    return "\n".join(lines)


def scorer_agreement(table: ScoreTable, method: str) -> dict:
    """Pearson correlation of each pair of scorers' per-row normalised scores (how much they say the same; with
    ``none``, of the raw scores)."""
    flat = {n: normalise(table.scores[n], method)[table.mask] for n in table.names}
    out = {}
    for i, a in enumerate(table.names):
        for b in table.names[i + 1 :]:
            x, y = flat[a], flat[b]
            ok = np.std(x) > 0 and np.std(y) > 0
            out[f"{a}~{b}"] = float(np.corrcoef(x, y)[0, 1]) if ok else None
    return out
