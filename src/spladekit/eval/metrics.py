"""IR metrics through ir-measures (pytrec_eval / trec_eval definitions), never hand-written formulas.

Definitions (trec_eval, as computed by pytrec_eval behind ir-measures), with ``t`` the relevance threshold:

- ``accuracy@k`` = ``Success(rel=t)@k``: 1 if a document with rel ≥ t is in the top k.
- ``precision@k`` = ``P(rel=t)@k``: relevant in the top k / k (a short ranking still divides by k).
- ``recall@k`` = ``R(rel=t)@k``: relevant in the top k / all relevant of the query.
- ``ndcg@10`` = ``nDCG@10``: graded, gain = the qrels relevance value (linear, trec_eval ``ndcg_cut``), ideal from all judged documents.
- ``mrr@10`` = ``RR(rel=t)@10``: 1 / rank of the first relevant document in the top 10.
- ``map@100`` = ``AP(rel=t)@100``: trec_eval ``map_cut_100``, normalised by the number of relevant documents.
  sentence-transformers normalises by min(100, #relevant): the two agree unless a query has more than 100 relevant documents.

Every query with at least one document at rel ≥ t is evaluated; a query the system returned nothing for scores 0
(pytrec_eval alone would silently drop it and inflate the mean).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

ACCURACY_K = (1, 3, 5, 10)
PRECISION_K = (1, 3, 5, 10)
RECALL_K = (1, 3, 5, 10, 100, 1000)

Run = Mapping[str, Sequence[tuple[str, float]]]
"""A ranking per query: ``{query id: [(doc id, score), ...]}`` best first."""


def metric_names() -> list[str]:
    """Metric keys in report order."""
    return (
        [f"accuracy@{k}" for k in ACCURACY_K]
        + [f"precision@{k}" for k in PRECISION_K]
        + [f"recall@{k}" for k in RECALL_K]
        + ["ndcg@10", "mrr@10", "map@100"]
    )


def _measures(threshold: int) -> dict[str, object]:
    import ir_measures as im

    rel = {"rel": threshold}
    out: dict[str, object] = {}
    for k in ACCURACY_K:
        out[f"accuracy@{k}"] = im.Success(**rel) @ k
    for k in PRECISION_K:
        out[f"precision@{k}"] = im.P(**rel) @ k
    for k in RECALL_K:
        out[f"recall@{k}"] = im.R(**rel) @ k
    out["ndcg@10"] = im.nDCG @ 10
    out["mrr@10"] = im.RR(**rel) @ 10
    out["map@100"] = im.AP(**rel) @ 100
    return out


def measure_definitions(threshold: int) -> dict[str, str]:
    """The ir-measures name behind each reported metric (recorded in metrics.json)."""
    return {name: str(m) for name, m in _measures(threshold).items()}


def evaluated_queries(qrels: Mapping[str, Mapping[str, int]], threshold: int) -> list[str]:
    """Queries with at least one document judged at rel ≥ ``threshold``, in qrels order."""
    return [q for q, docs in qrels.items() if any(r >= threshold for r in docs.values())]


def per_query_metrics(
    run: Run, qrels: Mapping[str, Mapping[str, int]], threshold: int = 1
) -> dict[str, dict[str, float]]:
    """``{metric: {query id: value}}`` over the evaluated queries (missing from the run: 0).

    The ranking given to trec_eval is the order of ``run`` itself (scores are replaced by descending ranks), so ties
    are broken as the caller ranked them, not by trec_eval's reverse-docno rule.
    """
    import ir_measures as im

    queries = evaluated_queries(qrels, threshold)
    keep = set(queries)
    measures = _measures(threshold)
    qrel_list = [im.Qrel(q, d, int(r)) for q in queries for d, r in qrels[q].items()]
    run_list = []
    for q, hits in run.items():
        if q in keep:
            n = len(hits)
            run_list.extend(im.ScoredDoc(q, str(d), float(n - i)) for i, (d, _) in enumerate(hits))
    by_measure = {m: name for name, m in measures.items()}
    out: dict[str, dict[str, float]] = {name: dict.fromkeys(queries, 0.0) for name in measures}
    if run_list:
        for metric in im.iter_calc(list(measures.values()), qrel_list, run_list):
            out[by_measure[metric.measure]][metric.query_id] = float(metric.value)
    return out


def aggregate(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean over the evaluated queries of every metric."""
    return {name: float(np.mean(list(v.values()))) if v else 0.0 for name, v in per_query.items()}


def compute_metrics(run: Run, qrels: Mapping[str, Mapping[str, int]], threshold: int = 1) -> dict[str, float]:
    """Mean metrics of ``run`` against ``qrels`` (see the module docstring for the definitions)."""
    return aggregate(per_query_metrics(run, qrels, threshold))


def read_run(path) -> dict[str, list[tuple[str, float]]]:
    """Read a TREC run file (``qid Q0 docid rank score tag``) into a Run, best first (score, then file rank)."""
    from pathlib import Path

    from ..errors import DataFormatError, InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    rows: dict[str, list[tuple[float, int, str]]] = {}
    with path.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise DataFormatError(
                    str(path), lineno, f"expected 6 fields (qid Q0 docid rank score tag), got {len(parts)}"
                )
            try:
                rank, score = int(parts[3]), float(parts[4])
            except ValueError:
                raise DataFormatError(
                    str(path), lineno, "rank must be an integer and score a number"
                ) from None
            rows.setdefault(parts[0], []).append((-score, rank, parts[2]))
    return {q: [(d, -s) for s, _, d in sorted(v)] for q, v in rows.items()}
