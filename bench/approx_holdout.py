"""Does the recall target of approximate search hold on held-out queries? Tuning rules compared on real queries.

Run from the repository root, on an index of a BEIR corpus (e.g. the one ``spladekit eval DATA -i IDX`` builds):

    python bench/approx_holdout.py -i IDX --queries ../shared/data/scifact/queries.jsonl --seeds 20

Recall@10 against exact search (and the entries read) is measured once per query for every grid point of
``index/local/tuning.py``, on every query and on ``--docs`` documents of the index used as queries (what ``tune``
does without ``--queries``; a document is left out of its own results). For each seed the queries are split at
random into halves A (tuning; ``--tune-sample`` of them, default all) and B (held out). Each rule picks, per
target, the cheapest grid point it accepts on its tuning set, as ``tuning.choose`` does, and the row reports that
point's recall on B:

- ``mean+0.01``: mean recall on the tuning set >= target + 0.01 (the rule before the lower bound);
- ``lower``: ``tuning.reaches``: mean less max(0.01, 1.645 standard errors) >= target (today's rule);
- tuned on A (``A``) or on documents as queries (``docs``).

The index is only read (no tuning table is written). One thread.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from spladekit.data import read_records
from spladekit.index import Index
from spladekit.index.approx import TARGETS, TUNE_K, Plan, recall_at
from spladekit.index.local.tuning import HEAP_FACTORS, QUERY_TERMS, _sample_queries, lower_bound, reaches

POINTS = [(qt, hf) for qt in QUERY_TERMS for hf in HEAP_FACTORS]
RULES = ("mean+0.01", "lower")


def per_query(idx, qs, drops) -> tuple[np.ndarray, np.ndarray]:
    """(recall, entries read) per query (rows) and grid point (columns)."""
    segs, allowed = idx._prepare_filter(None)
    rec = np.zeros((len(qs), len(POINTS)))
    work = np.zeros((len(qs), len(POINTS)))
    for i, ((t, w), drop) in enumerate(zip(qs, drops)):
        exact = [segs[si].doc_id(d) for _, si, d in idx._top_k(segs, allowed, t, w, TUNE_K + 1)]
        exact = [x for x in exact if x != drop][:TUNE_K]
        for j, (qt, hf) in enumerate(POINTS):
            raw, got = idx._approx_top_k(segs, allowed, t, w, TUNE_K + 1, Plan(qt, hf))
            got_ids = [x for x in (segs[si].doc_id(d) for _, si, d in raw) if x != drop][:TUNE_K]
            rec[i, j] = recall_at(got_ids, exact)
            work[i, j] = got
    return rec, work


def pick(rec: np.ndarray, work: np.ndarray, target: float, rule: str) -> int | None:
    """The grid column a rule picks on a tuning set (None: exact)."""
    ok = []
    for j in range(len(POINTS)):
        row = {"recall": float(rec[:, j].mean()), "lower": lower_bound(rec[:, j])}
        accept = reaches(row, target) if rule == "lower" else row["recall"] >= min(1.0, target + 0.01)
        if accept:
            ok.append((float(work[:, j].mean()), -row["recall"], j))
    return min(ok)[2] if ok else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-i", "--index", required=True)
    ap.add_argument("--queries", required=True, help="BEIR queries.jsonl")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--tune-sample", type=int, default=0, help="queries of A tuned on (0: all of A)")
    ap.add_argument("--docs", type=int, default=200, help="documents used as queries (tune's default sample)")
    ap.add_argument("--json", help="write every row here")
    args = ap.parse_args()

    idx = Index.open(args.index)
    texts = [r.full_text for r in read_records(args.queries, kind="query")]
    qs = idx._queries(idx.query_encoder.encode_queries(texts))
    t0 = time.perf_counter()
    rec, work = per_query(idx, qs, [None] * len(qs))
    dq, drops = _sample_queries(idx, None, args.docs)
    drec, dwork = per_query(idx, dq, drops)
    print(
        f"{args.index}: {len(idx):,} documents; {len(qs)} queries and {len(dq)} documents as queries, "
        f"{len(POINTS)} grid points, measured in {time.perf_counter() - t0:.0f} s"
    )
    half = len(qs) // 2
    n_tune = args.tune_sample or half
    rows = []
    for seed in range(args.seeds):
        perm = np.random.default_rng(seed).permutation(len(qs))
        a, b = perm[:half][:n_tune], perm[half:]
        for target in TARGETS:
            for src in ("A", "docs"):
                r_, w_ = (rec[a], work[a]) if src == "A" else (drec, dwork)
                for rule in RULES:
                    j = pick(r_, w_, target, rule)
                    rows.append(
                        {
                            "seed": seed,
                            "target": target,
                            "tuned_on": src,
                            "rule": rule,
                            "knobs": None if j is None else POINTS[j],
                            "tuned_recall": None if j is None else float(r_[:, j].mean()),
                            "held_out_recall": 1.0 if j is None else float(rec[b, j].mean()),
                        }
                    )
    print(
        f"halves: A tunes on {n_tune} queries, B holds out {len(qs) - half}; {args.seeds} seeds\n"
        f"{'target':>6} {'tuned on':<9} {'rule':<10} {'knobs picked (count)':<34} "
        f"{'held-out recall: mean':>21} {'min':>7} {'< target':>9} {'< target-0.01':>14}"
    )
    for target in TARGETS:
        for src in ("A", "docs"):
            for rule in RULES:
                sel = [
                    r for r in rows if r["target"] == target and r["tuned_on"] == src and r["rule"] == rule
                ]
                held = np.asarray([r["held_out_recall"] for r in sel])
                names = ["exact" if r["knobs"] is None else f"{r['knobs'][0]}/{r['knobs'][1]}" for r in sel]
                knobs = " ".join(f"{k}x{names.count(k)}" for k in sorted(set(names)))
                print(
                    f"{target:>6} {src:<9} {rule:<10} {knobs:<34} {held.mean():>21.4f} {held.min():>7.4f} "
                    f"{int((held < target).sum()):>6}/{len(sel)} {int((held < target - 0.01).sum()):>11}/{len(sel)}"
                )
    print("\nrecall on all queries per grid point (query_terms/heap_factor: recall; heap_factor >= 2):")
    print(
        "  " + ", ".join(f"{qt}/{hf}: {rec[:, j].mean():.4f}" for j, (qt, hf) in enumerate(POINTS) if hf >= 2)
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f)
    idx.close()


if __name__ == "__main__":
    main()
