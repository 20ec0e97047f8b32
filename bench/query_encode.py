"""Single-query encoding latency: the masked-LM query encoders against an inference-free table, same run.

    python bench/query_encode.py                       # scifact test queries, IDF table over scifact's corpus
    python bench/query_encode.py --queries 500 --data ../shared/data/msmarco-trecdl2019-pool

One query per call (what a search request pays), p50 / p95 over the queries, three passes after a warm-up. The
table is built on the spot with ``build_idf_table`` over the collection's documents (as ``spladekit idf`` does).
Also prints query active dims of each side, and sentence-transformers' own inference-free encoder
(``SparseEncoder`` on the same Router folder, its ``encode_query``) as the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def timings(fn, queries: list[str], passes: int = 3) -> list[float]:
    for q in queries[:20]:
        fn(q)
    out = []
    for _ in range(passes):
        for q in queries:
            t0 = time.perf_counter()
            fn(q)
            out.append(time.perf_counter() - t0)
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "scifact"))
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the MLM encoder (default 1)")
    args = ap.parse_args()

    import torch

    from spladekit import SpladeEncoder
    from spladekit.data import load_beir
    from spladekit.encode.idf import build_idf_table
    from spladekit.encode.lite import load_lite
    from spladekit.encode.st_folder import save_inference_free

    torch.set_num_threads(args.threads)
    col = load_beir(args.data, split="test")
    queries = [col.queries[q].text for q in list(col.queries)[: args.queries]]
    mlm = SpladeEncoder.load(threads=args.threads)
    lite = load_lite()
    t0 = time.perf_counter()
    table, summary = build_idf_table(lite, texts=(d.full_text for d in col.corpus.values()))
    build_s = time.perf_counter() - t0
    folder = Path(tempfile.mkdtemp()) / "idf-model"
    save_inference_free(lite, table, folder)
    lite_if = load_lite(folder)

    rows = {
        "MLM, torch SpladeEncoder (exact)": (lambda q: mlm.encode_queries(q), mlm),
        "MLM, numpy LiteEncoder": (lambda q: lite.encode_queries(q), lite),
        "table (inference-free), spladekit": (lambda q: lite_if.encode_queries(q), lite_if),
    }
    try:
        from sentence_transformers import SparseEncoder

        st = SparseEncoder(str(folder), device="cpu")
        rows["table, sentence-transformers SparseEncoder"] = (
            lambda q: st.encode_query([q], convert_to_sparse_tensor=True),
            None,
        )
    except ImportError:
        pass
    print(
        f"{args.data}: {len(queries)} queries, one per call, 3 passes; torch threads {args.threads}; "
        f"load average {os.getloadavg()[0]:.1f}; IDF table over {summary['documents']:,} documents in {build_s:.1f} s"
    )
    print(f"{'encoder':45s} {'p50 ms':>9s} {'p95 ms':>9s} {'query dims':>11s}")
    p50 = {}
    for name, (fn, enc) in rows.items():
        ts = timings(fn, queries)
        p50[name] = statistics.median(ts) * 1e3
        dims = (
            f"{statistics.mean(int(enc.encode_queries(q).nnz) for q in queries):11.1f}"
            if enc is not None
            else ""
        )
        print(f"{name:45s} {p50[name]:9.3f} {pct(ts, 0.95):9.3f} {dims}")
    t = p50["table (inference-free), spladekit"]
    print(
        json.dumps(
            {
                "table_p50_ms": round(t, 4),
                "mlm_torch_over_table": round(p50["MLM, torch SpladeEncoder (exact)"] / t, 1),
                "mlm_numpy_over_table": round(p50["MLM, numpy LiteEncoder"] / t, 1),
                "target_table_le_0.1ms": t <= 0.1,
            }
        )
    )


if __name__ == "__main__":
    main()
