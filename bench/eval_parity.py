"""Evaluation parity and speed: sentence-transformers' SparseInformationRetrievalEvaluator (ST encodes queries and
corpus itself) against `spladekit eval`, same model (bundled splade-tiny), same data, in one run.

Run from the repository root:  python bench/eval_parity.py [--data ../shared/data/scifact] [--split test]

Prints both metric sets with their differences, query/corpus active dims, and the wall time of each system
(spladekit as the real command line, `spladekit eval DATA --json`, in a subprocess: model load included).
Each system runs once: the ST side alone takes ~10 minutes on 2 cores, so there is no median over repetitions.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METRICS = [
    "ndcg@10",
    "mrr@10",
    "map@100",
    "recall@1",
    "recall@10",
    "precision@1",
    "precision@10",
    "accuracy@1",
    "accuracy@3",
    "accuracy@5",
    "accuracy@10",
]


def run_st(data: Path, split: str) -> tuple[dict, float]:
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.evaluation import SparseInformationRetrievalEvaluator
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling

    from spladekit.data import load_beir
    from spladekit.encode import bundled_model_path

    t0 = time.perf_counter()
    col = load_beir(data, split)
    model = SparseEncoder(
        modules=[MLMTransformer(str(bundled_model_path())), SpladePooling(pooling_strategy="max")],
        device="cpu",
    )
    ev = SparseInformationRetrievalEvaluator(
        queries={q: col.queries[q].full_text for q in col.qrels},
        corpus={d: r.full_text for d, r in col.corpus.items()},
        relevant_docs={q: {d for d, r in docs.items() if r > 0} for q, docs in col.qrels.items()},
        batch_size=32,
        write_csv=False,
        show_progress_bar=True,
    )
    res = ev(model)
    wall = time.perf_counter() - t0
    prefix = next(k for k in res if k.endswith("ndcg@10"))[: -len("ndcg@10")]
    out = {m: float(res[prefix + m]) for m in METRICS}
    for k in ("query_active_dims", "corpus_active_dims", "avg_flops"):  # ST does not prefix these
        out[k] = float(res.get(prefix + k, res[k]))
    return out, wall


def run_spladekit(data: Path, split: str) -> tuple[dict, float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                "from spladekit.cli import main; main()",
                "eval",
                str(data),
                "--split",
                split,
                "--output",
                tmp,
                "--json",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"spladekit eval failed: {proc.stderr.strip()}")
    rep = json.loads(proc.stdout)
    m = rep["systems"]["splade"]["metrics"]
    out = {k: m[k] for k in METRICS}
    out |= {k: rep["sparsity"][k] for k in ("query_active_dims", "corpus_active_dims", "avg_flops")}
    return out, wall, rep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "scifact"))
    ap.add_argument("--split", default="test")
    args = ap.parse_args()
    data = Path(args.data)
    ours, our_wall, rep = run_spladekit(data, args.split)
    print(f"spladekit eval: {our_wall:.1f} s wall (timing block: {json.dumps(rep['timing'])})", flush=True)
    ref, st_wall = run_st(data, args.split)
    print(f"sentence-transformers evaluator: {st_wall:.1f} s wall", flush=True)
    print(f"\n{'metric':<20}{'ST':>10}{'spladekit':>12}{'|diff|':>10}")
    worst = 0.0
    for k in METRICS + ["query_active_dims", "corpus_active_dims", "avg_flops"]:
        d = abs(ours[k] - ref[k])
        if k in METRICS:
            worst = max(worst, d)
        print(f"{k:<20}{ref[k]:>10.4f}{ours[k]:>12.4f}{d:>10.5f}")
    print(f"\nlargest metric difference: {worst:.5f} ({'within' if worst <= 1e-3 else 'OUTSIDE'} 0.001)")
    print(
        f"wall time: ST {st_wall:.1f} s (SPLADE only), spladekit {our_wall:.1f} s (SPLADE + BM25 + RRF + report); "
        f"ratio ST/spladekit {st_wall / our_wall:.2f}x"
    )
    bm = rep["systems"].get("bm25", {}).get("metrics")
    if bm:
        print(
            f"BM25 nDCG@10 {bm['ndcg@10']:.4f}, RRF nDCG@10 {rep['systems']['rrf']['metrics']['ndcg@10']:.4f}"
        )


if __name__ == "__main__":
    main()
