"""The teacher report's variants on one scoring of the held-out rows: every scorer alone, and the ensemble with
equal or fitted weights under each normalisation, overall and per negative set.

    python bench/teacher_report.py ROWS --corpus ../shared/data/scifact [--sets 919,919,919] \
        [--scorer minilm --scorer bm25 --scorer splade] [--holdout-queries 100] [--fit-queries 100] [--seed 42] \
        [--cache runs/scifact/teacher-table.npz] [--json out.json]

It draws the held-out queries exactly as `spladekit teacher --report --fit-weights` does (the reported queries with
``--seed``, as a training config with ``holdout_queries`` and ``split_seed`` draws them; the fitting queries from
the rest), scores only those rows, once per scorer (timed; ``--cache`` keeps the scores), then computes every
variant from that one table. ``--sets``: ROWS is several mined files concatenated, of these row counts (e.g. the
README's three negative sets, ranks 1-4, 5-8 and 11-14): figures are also given per set.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from spladekit.train.ensemble import ScoreTable, combine
from spladekit.train.ensemble_fit import fit_weights
from spladekit.train.ensemble_run import bm25_collection, held_out_queries, score_table
from spladekit.train.holdout import query_key
from spladekit.train.rows import read_rows
from spladekit.train.scorers import parse_scorers
from spladekit.train.teacher_report import build_report, candidate_gains, format_report, ndcg_per_row


def _table(args, rows, wanted) -> tuple[ScoreTable, dict]:
    specs = parse_scorers(args.scorer)
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.is_file():
        z = np.load(cache, allow_pickle=False)
        names = [s.name for s in specs]
        if list(z["names"]) == names and z["wanted"].tolist() == wanted:
            return ScoreTable(names, {n: z[f"s_{n}"] for n in names}, z["mask"]), json.loads(
                str(z["seconds"])
            )
    collection = bm25_collection(args.corpus, rows)
    sub = [rows[i] for i in wanted]
    tables, seconds = [], {}
    for spec in specs:
        t0 = time.perf_counter()
        tables.append(score_table([spec], sub, collection, None, "cosine", 64, False, print))
        seconds[spec.name] = round(time.perf_counter() - t0, 1)
        print(f"{spec.name}: {seconds[spec.name]} s")
    table = ScoreTable(
        [s.name for s in specs], {t.names[0]: t.scores[t.names[0]] for t in tables}, tables[0].mask
    )
    if cache is not None:
        np.savez(
            cache,
            names=np.array(table.names),
            wanted=np.array(wanted),
            mask=table.mask,
            seconds=json.dumps(seconds),
            **{f"s_{n}": table.scores[n] for n in table.names},
        )
    return table, seconds


def paired(table, gains, at, qkeys, w, method, against: str) -> dict:
    """Per-query nDCG@10 of the ensemble minus ``against``'s (rows of a query averaged): mean, its standard error
    (queries as the unit) and how many queries gain / lose."""
    sub, g = table.subset(at), gains[at]
    ens = ndcg_per_row(combine(sub, w, method), g, sub.mask)
    one = ndcg_per_row(sub.scores[against], g, sub.mask)
    by: dict[str, list[float]] = {}
    for k, d in zip(qkeys, ens - one):
        by.setdefault(k, []).append(float(d))
    diffs = np.array([np.mean(v) for v in by.values()])
    se = float(diffs.std(ddof=1) / np.sqrt(len(diffs)))
    return {
        "against": against,
        "mean": float(diffs.mean()),
        "se": se,
        "better": int((diffs > 0).sum()),
        "worse": int((diffs < 0).sum()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows")
    ap.add_argument("--corpus")
    ap.add_argument("--scorer", action="append")
    ap.add_argument("--sets", help="row counts of the concatenated files, e.g. 919,919,919")
    ap.add_argument("--holdout-queries", type=int, default=100)
    ap.add_argument("--fit-queries", type=int, default=100)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--cache")
    ap.add_argument("--json")
    args = ap.parse_args()
    args.scorer = args.scorer or ["minilm", "bm25", "splade"]
    rows = read_rows(args.rows)
    report_keys, fit_keys = held_out_queries(rows, args.holdout_queries, args.fit_queries, args.seed)
    keys = [query_key(r) for r in rows]
    wanted = [i for i, k in enumerate(keys) if k in report_keys or k in fit_keys]
    table, seconds = _table(args, rows, wanted)
    gains = candidate_gains([rows[i] for i in wanted], table.mask.shape[1])
    rep_at = [j for j, i in enumerate(wanted) if keys[i] in report_keys]
    fit_at = [j for j, i in enumerate(wanted) if keys[i] in fit_keys]
    set_of = np.zeros(len(rows), dtype=int)
    if args.sets:
        bounds = np.cumsum([int(x) for x in args.sets.split(",")])
        if bounds[-1] != len(rows):
            raise SystemExit(f"--sets add up to {bounds[-1]} rows, the file has {len(rows)}")
        set_of = np.searchsorted(bounds, np.arange(len(rows)), side="right")
    out: dict = {
        "rows": args.rows,
        "report_queries": len(report_keys),
        "fit_queries": len(fit_keys),
        "seconds": seconds,
        "variants": {},
    }
    n = len(table.names)
    for method in ("zscore", "minmax", "none"):
        variants = {"equal": ([1.0] * n, None)}
        for metric in ("ndcg@10", "pairwise_accuracy"):
            w, m = fit_weights(table.subset(fit_at), gains[fit_at], method, metric=metric)
            fitted = {"queries": len(fit_keys), "rows": len(fit_at), "metric": metric, "value": m[metric]}
            variants[f"fit-{metric}"] = (list(w), fitted)
        for label, (w, fitted) in variants.items():
            rep = build_report(
                table.subset(rep_at), gains[rep_at], w, method, queries=len(report_keys), fitted=fitted
            )
            per_set = {}
            for s in sorted(set(set_of[wanted[j]] for j in rep_at)):
                at = [j for j in rep_at if set_of[wanted[j]] == s]
                per_set[int(s)] = build_report(
                    table.subset(at), gains[at], w, method, queries=len(report_keys)
                )
            best = max(table.names, key=lambda n: rep["systems"][n]["ndcg@10"])
            pq = paired(table, gains, rep_at, [keys[wanted[j]] for j in rep_at], w, method, best)
            out["variants"][f"{method}/{label}"] = {"report": rep, "per_set": per_set, "paired": pq}
            print(f"\n## {method}, {label} weights\n{format_report(rep)}")
            print(
                f"  ensemble - {best} nDCG@10 per query: {pq['mean']:+.4f} ± {pq['se']:.4f} (se); "
                f"{pq['better']} queries better, {pq['worse']} worse"
            )
            for s, r in per_set.items():
                line = ", ".join(
                    f"{k} {v['ndcg@10']:.4f} / {v['pairwise_accuracy']:.4f}" for k, v in r["systems"].items()
                )
                print(f"  set {s} ({r['held_out_rows']} rows): {line}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
