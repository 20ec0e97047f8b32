"""``spladekit teacher``: score training rows with one scorer or an ensemble, optionally fit the ensemble's weights
and report every scorer's figures on held-out training queries, then write the rows with ``scores``.

Held-out queries are drawn as the trainer draws them (``holdout.split_holdout``: ``holdout_queries`` queries with
``seed``; the trainer's ``split_seed`` defaults to 42 too), so a report on N queries with seed S covers exactly the
queries a config with ``holdout_queries = N`` and ``split_seed = S`` keeps out of training. Weights are fitted on
``fit_queries`` further queries drawn from the rest, never on the reported ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .ensemble import ScoreTable, check_normalise, check_weights, combine, score_rows
from .ensemble_fit import check_fit_metric, fit_weights
from .holdout import query_key, split_holdout
from .rows import TrainRow, read_rows, write_rows
from .scorers import load_scorer, parse_scorers
from .teacher_report import build_report, candidate_gains


@dataclass
class EnsembleResult:
    rows_written: int
    scorers: list[str]
    weights: list[float]
    normalise: str
    report: dict | None


def held_out_queries(rows: list[TrainRow], n_report: int, n_fit: int, seed: int) -> tuple[set[str], set[str]]:
    """The report's query keys and, drawn from the other queries, the fitting set's."""
    rest, report = (rows, []) if not n_report else split_holdout(rows, n_report, seed)
    fit: list[str] = []
    if n_fit:
        left = len({query_key(r) for r in rest})
        if n_fit >= left:
            raise InputError(
                f"fit_queries={n_fit}: only {left} queries remain besides the {n_report} held out for the report"
            )
        _, fit = split_holdout(rest, n_fit, seed)
    return set(report), set(fit)


def bm25_collection(corpus: str | Path | None, rows: Sequence[TrainRow]) -> list[str]:
    """BM25's collection: the corpus' texts (``(title + " " + text).strip()``) or the rows' passages."""
    if corpus is None:
        return [p for r in rows for p in (r.positive, *r.negatives)]
    from ..sources import iter_source_records

    return [rec.full_text for rec in iter_source_records(corpus)]


def score_table(specs, rows, collection, model, similarity, batch_size, show_progress, log) -> ScoreTable:
    """A ``ScoreTable`` of ``rows`` by each of ``specs`` (``scorers.ScorerSpec``), each scorer loaded, run and let
    go in turn (one model in memory at a time); ``collection``: BM25's texts."""
    tables = []
    for spec in specs:
        scorer = load_scorer(
            spec, collection=collection, splade_model=model, similarity=similarity, batch_size=batch_size
        )
        tables.append(score_rows(rows, {spec.name: scorer}, show_progress=show_progress, log=log))
        del scorer
    return ScoreTable(
        [s.name for s in specs], {t.names[0]: t.scores[t.names[0]] for t in tables}, tables[0].mask
    )


def score_with_ensemble(
    data: str | Path,
    output: str | Path | None = None,
    scorers: Sequence[str] = ("minilm",),
    *,
    weights: Sequence[float] | None = None,
    fit: bool = False,
    normalise: str | None = None,
    report: bool = False,
    holdout_queries: int = 100,
    fit_queries: int = 100,
    seed: int = 42,
    fit_metric: str = "ndcg@10",
    corpus: str | Path | None = None,
    qrels: str | Path | None = None,
    model: str | Path | None = None,
    similarity: str = "cosine",
    batch_size: int = 64,
    show_progress: bool = False,
    log=print,
) -> EnsembleResult:
    """Score ``data``'s rows with ``scorers`` (see ``scorers.parse_scorers``) and write them to ``output`` with
    ``scores``: the ensemble's Σ w_k · normalised_k per candidate (one scorer: its score, normalised only when
    ``normalise`` says so), and each scorer's own scores under ``teacher_scores`` when there are several.

    ``normalise``: zscore | minmax | none (default: zscore for several scorers, none for one). ``weights``: one
    per scorer (default 1 each), or ``fit`` them on held-out queries. ``report``: every scorer's and the
    ensemble's nDCG@10 and pairwise accuracy on ``holdout_queries`` held-out queries (judged by ``qrels`` when
    given). Without ``output`` only the held-out rows are scored (a report alone). ``corpus``: BM25's collection
    (BEIR folder or JSONL; default the rows' passages); ``model``: the ``splade`` scorer's model.
    """
    specs = parse_scorers(scorers)
    names = [s.name for s in specs]
    method = check_normalise(normalise) if normalise else ("zscore" if len(specs) > 1 else "none")
    if fit and weights is not None:
        raise InputError("give weights or fit them, not both")
    if fit and len(specs) < 2:
        raise InputError("fitting weights needs two or more scorers")
    w = check_weights(weights, names)
    if fit:
        fit_metric = check_fit_metric(fit_metric)
    if output is None and not report:
        raise InputError("nothing to do: give an output file (-o) or ask for a report")
    if (report or fit) and holdout_queries < (1 if report else 0):
        raise InputError("a report needs at least one held-out query (holdout_queries ≥ 1)")
    if fit and fit_queries < 1:
        raise InputError("fitting weights needs at least one query to fit on (fit_queries ≥ 1)")
    rows = read_rows(data)
    judged = None
    if qrels is not None:
        from ..data import read_qrels

        judged = read_qrels(qrels)
    report_keys, fit_keys = (
        held_out_queries(rows, holdout_queries, fit_queries if fit else 0, seed)
        if (report or fit)
        else (set(), set())
    )
    keys = [query_key(r) for r in rows]
    wanted = (
        list(range(len(rows)))
        if output is not None
        else [i for i, k in enumerate(keys) if k in report_keys or k in fit_keys]
    )
    scored_rows = [rows[i] for i in wanted]
    collection = bm25_collection(corpus, rows) if any(s.kind == "bm25" for s in specs) else []
    table = score_table(specs, scored_rows, collection, model, similarity, batch_size, show_progress, log)
    gains = candidate_gains(scored_rows, table.mask.shape[1], judged) if (report or fit) else None
    fitted = None
    if fit:
        at = [j for j, i in enumerate(wanted) if keys[i] in fit_keys]
        best, m = fit_weights(table.subset(at), gains[at], method, metric=fit_metric)
        w = np.asarray(best)
        fitted = {"queries": len(fit_keys), "rows": len(at), "metric": fit_metric, "value": m[fit_metric]}
        fitted["figures"] = m
        log(
            f"fitted weights {dict(zip(names, best))} on {len(fit_keys)} queries: {fit_metric} {m[fit_metric]:.4f}"
        )
    result = None
    if report:
        at = [j for j, i in enumerate(wanted) if keys[i] in report_keys]
        result = build_report(table.subset(at), gains[at], w, method, queries=len(report_keys), fitted=fitted)
    written = 0
    if output is not None:
        written = _write(output, scored_rows, table, w, method)
    return EnsembleResult(written, names, [float(x) for x in w], method, result)


def _figure(x: float) -> float:
    """A score as written: 7 significant digits (a small model's scores may differ only in the 5th decimal)."""
    return float(f"{float(x):.7g}")


def _write(output, rows: list[TrainRow], table: ScoreTable, w: np.ndarray, method: str) -> int:
    final = table.row_lists(combine(table, w, method))
    each = {n: table.row_lists(table.scores[n]) for n in table.names} if len(table.names) > 1 else {}
    for i, r in enumerate(rows):
        r.scores = [_figure(s) for s in final[i]]
        r.margins = None
        if each:
            r.extra["teacher_scores"] = {n: [_figure(s) for s in v[i]] for n, v in each.items()}
    return write_rows(output, rows)
