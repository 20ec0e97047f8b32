"""The issue-18 quality table: MLM queries, untrained IDF queries, a trained inference-free model, BM25 and the
hybrid of each with BM25, side by side, read from ``spladekit eval`` output folders (their ``metrics.json``).

    python bench/inference_free_table.py ROOT            # ROOT holds evalh-{rrf,convex}-{MODEL}-{COLLECTION}/

Each folder is one ``spladekit eval DATA --index IDX -m MODEL --hybrid {rrf|convex}`` run (commands in
``bench/inference_free_results.md``). The figures are deterministic: nothing here is timed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLLECTIONS = ("scifact", "msmarco-trecdl2019-pool", "cranfield", "cisi")
SHORT = {
    "scifact": "scifact",
    "msmarco-trecdl2019-pool": "DL19 pool",
    "cranfield": "cranfield",
    "cisi": "cisi",
}
MODELS = {
    "base": "splade-tiny (MLM queries)",
    "idftok": "splade-tiny docs + IDF queries (untrained)",
    "trained": "inference-free, trained on scifact train",
}


def read(root: Path, fusion: str, model: str, col: str) -> dict | None:
    f = root / f"evalh-{fusion}-{model}-{col}" / "metrics.json"
    return json.loads(f.read_text()) if f.is_file() else None


def ndcg(m: dict, system: str) -> float:
    return m["systems"][system]["metrics"]["ndcg@10"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path)
    args = ap.parse_args()
    cols = [c for c in COLLECTIONS if any(read(args.root, "rrf", m, c) for m in MODELS)]
    print("nDCG@10 (`spladekit eval`, test split; DL19 with --relevance-threshold 2)\n")
    print("| system | " + " | ".join(SHORT[c] for c in cols) + " |")
    print("| --- |" + " ---: |" * len(cols))
    bm25_done = False
    wins: dict[str, dict[str, int]] = {}
    for model, label in MODELS.items():
        runs = {c: (read(args.root, "rrf", model, c), read(args.root, "convex", model, c)) for c in cols}
        if not any(r for r, _ in runs.values()):
            continue
        if not bm25_done:
            print(
                "| BM25 (bm25s) | "
                + " | ".join(f"{ndcg(r, 'bm25'):.4f}" if r else "" for r, _ in runs.values())
                + " |"
            )
            bm25_done = True
        print(
            f"| {label} | "
            + " | ".join(f"{ndcg(r, 'splade'):.4f}" if r else "" for r, _ in runs.values())
            + " |"
        )
        for fusion, i in (("rrf", 0), ("convex", 1)):
            cells, won = [], 0
            for r in runs.values():
                m = r[i]
                if m is None:
                    cells.append("")
                    continue
                h, best = ndcg(m, "hybrid"), max(ndcg(m, "splade"), ndcg(m, "bm25"))
                won += h >= best
                cells.append(f"{h:.4f}{' ✓' if h >= best else ''}")
            wins.setdefault(label, {})[fusion] = won
            name = "RRF k 60" if fusion == "rrf" else "convex 0.5, min-max"
            print(f"| … hybrid with BM25, {name} | " + " | ".join(cells) + " |")
    print("\n✓ = the hybrid is at least the better of its two parts on that collection.\n")
    print("| system | query dims | document dims | FLOPS |")
    print("| --- | ---: | ---: | ---: |")
    for model, label in MODELS.items():
        for c in cols:
            m = read(args.root, "rrf", model, c)
            if m:
                s = m["sparsity"]
                print(
                    f"| {label}, {SHORT[c]} | {s['query_active_dims']:.1f} | {s['corpus_active_dims']:.1f} | "
                    f"{s['avg_flops']:.2f} |"
                )
    print("\n" + json.dumps({"hybrid_at_least_best_part": wins}))


if __name__ == "__main__":
    main()
