"""Seed spread of one training recipe: test-split figures of several `spladekit eval` outputs, side by side.

    python bench/train_seeds.py BASE_EVAL RUN_EVAL [RUN_EVAL ...] [--data ../shared/data/scifact]

Each argument is a folder written by `spladekit eval` (metrics.json + run.splade.trec); BASE_EVAL is the start
model. It prints nDCG@10, MRR@10, MAP@100 and active dims of every run, their mean and sample standard deviation
(the seed-to-seed spread, which is what decides whether the recipe, not one lucky run, clears a target), and for
each run the paired per-query nDCG@10 gain over the base model with its standard error (the query-sampling noise).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from spladekit.data import read_qrels
from spladekit.eval import per_query_metrics, read_run


def per_query_ndcg(eval_dir: Path, qrels: dict) -> dict[str, float]:
    """nDCG@10 of every evaluated query, computed as `spladekit eval` does (unretrieved queries count 0)."""
    return per_query_metrics(read_run(eval_dir / "run.splade.trec"), qrels)["ndcg@10"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", type=Path)
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--data", default="../shared/data/scifact")
    ap.add_argument("--split", default="test")
    args = ap.parse_args()
    qrels = read_qrels(Path(args.data) / "qrels" / f"{args.split}.tsv")
    base_pq = per_query_ndcg(args.base, qrels)
    header = "| run | nDCG@10 | MRR@10 | MAP@100 | doc / query dims | paired gain over base ± SE |"
    print(header)
    print("|" + "---|" * 6)
    rows = []
    for d in [args.base, *args.runs]:
        m = json.loads((d / "metrics.json").read_text())
        met, sp = m["systems"]["splade"]["metrics"], m["sparsity"]
        pq = per_query_ndcg(d, qrels)
        diffs = [pq[q] - base_pq[q] for q in base_pq]
        gain = statistics.fmean(diffs)
        se = statistics.stdev(diffs) / len(diffs) ** 0.5
        row = (
            met["ndcg@10"],
            met["mrr@10"],
            met["map@100"],
            sp["corpus_active_dims"],
            sp["query_active_dims"],
        )
        if d is not args.base:
            rows.append(row)
        print(
            f"| {d} | {row[0]:.4f} | {row[1]:.4f} | {row[2]:.4f} | {row[3]:.1f} / {row[4]:.1f} | "
            + ("–" if d is args.base else f"{gain:+.4f} ± {se:.4f}")
            + " |"
        )
    if len(rows) > 1:
        cols = list(zip(*rows))
        mean = [statistics.fmean(c) for c in cols]
        sd = [statistics.stdev(c) for c in cols]
        print(
            f"| mean ± sd of {len(rows)} runs | {mean[0]:.4f} ± {sd[0]:.4f} | {mean[1]:.4f} ± {sd[1]:.4f} | "
            f"{mean[2]:.4f} ± {sd[2]:.4f} | {mean[3]:.1f} / {mean[4]:.1f} | – |"
        )
        print(f"| min / max nDCG@10 | {min(cols[0]):.4f} / {max(cols[0]):.4f} | | | | |")


if __name__ == "__main__":
    main()
