"""Hybrid search: p50 of ``Index.search(text, hybrid=...)`` against SPLADE-only ``Index.search(text)``, and what
the BM25 view costs to keep (bytes, build time).

Run from the repository root (``bench/hybrid_results.md`` holds a run's output)::

    python bench/hybrid.py                                           # msmarco-trecdl2019-pool (14,581 passages)
    python bench/hybrid.py --data ../shared/data/scifact --split test

The corpus is encoded once with the bundled splade-tiny (torch, mode exact) and kept in ``--work`` (reused by
later runs). Two indexes are written from the same vectors and texts, one with the BM25 view (``bm25=True``, the
default) and one without, timing ``add_vectors`` + ``commit`` of each (texts stored in both: the difference is the
view's analysis and files; after a warm-up build of each, 3 builds each, alternating; medians); then the view is
built for the second one afterwards (``enable_bm25``, from its stored texts). Latency: every query text of the
collection, ``--rounds`` times, the systems interleaved query by query on the index with the view, one thread,
k=10: SPLADE only (query encoded by the index's numpy query encoder, then searched), hybrid RRF and hybrid convex
(the same encoding, SPLADE and BM25 top 100 each, fused), and the parts: query encoding alone, SPLADE top 100 of
the encoded vector, BM25 top 100 (``search_bm25``). nDCG@10 of the four rankings (ir-measures, the collection's
qrels) shows what the fusion buys on these queries.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np


def build(path: Path, ids, vecs, texts, enc, bm25: bool) -> tuple[object, float]:
    from spladekit.index import Index

    idx = Index.create(path, enc, bm25=bm25)
    t0 = time.perf_counter()
    idx.add_vectors(ids, vecs, texts)
    idx.commit()
    return idx, time.perf_counter() - t0


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/msmarco-trecdl2019-pool"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--work", type=Path, default=Path("/tmp/spladekit-bench-hybrid"))
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    a = ap.parse_args()

    import shutil

    from spladekit import SpladeEncoder
    from spladekit.data import load_beir
    from spladekit.encode.lite import load_lite
    from spladekit.eval.metrics import compute_metrics
    from spladekit.index import Index

    col = load_beir(a.data, a.split)
    ids = list(col.corpus)
    texts = [col.corpus[d].full_text for d in ids]
    queries = [(q, col.queries[q].full_text) for q in col.queries]
    work = a.work / a.data.resolve().name
    work.mkdir(parents=True, exist_ok=True)
    print(f"{a.data.resolve().name}: {len(ids):,} documents, {len(queries)} queries; work folder {work}")

    cache = work / "vectors.npz"
    if cache.exists():
        z = np.load(cache)
        from spladekit.sparse import SparseVectors

        vecs = SparseVectors(z["indptr"], z["indices"], z["data"], int(z["dim"]))
        encode_s = float(z["seconds"])
        print(f"corpus vectors from {cache} (encoded in {encode_s:.0f} s)")
    else:
        enc = SpladeEncoder.load()
        t0 = time.perf_counter()
        vecs = enc.encode_documents(texts, batch_size=a.batch_size, show_progress=True)
        encode_s = time.perf_counter() - t0
        np.savez(
            cache, indptr=vecs.indptr, indices=vecs.indices, data=vecs.data, dim=vecs.dim, seconds=encode_s
        )
        print(f"encoded the corpus in {encode_s:.0f} s")

    light = load_lite()
    # build cost: a warm-up of both (imports, first-use costs), then 3 builds each, alternating; medians
    for name, bm25 in (("warm_a", True), ("warm_b", False)):
        shutil.rmtree(work / name, ignore_errors=True)
        build(work / name, ids[:200], vecs[np.arange(200)], texts[:200], light, bm25)[0].close()
        shutil.rmtree(work / name)
    seconds: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(3):
        for bm25 in (False, True):
            name = "with_bm25" if bm25 else "without_bm25"
            shutil.rmtree(work / name, ignore_errors=True)
            ix, s = build(work / name, ids, vecs, texts, light, bm25)
            seconds[bm25].append(s)
            ix.close()
    with_s, without_s = statistics.median(seconds[True]), statistics.median(seconds[False])
    idx = Index.open(work / "with_bm25")
    plain = Index.open(work / "without_bm25")
    bytes_with, bytes_without = folder_bytes(work / "with_bm25"), folder_bytes(work / "without_bm25")
    view = idx.info()["bm25"]
    t0 = time.perf_counter()
    plain.enable_bm25()
    enable_s = time.perf_counter() - t0
    plain.close()

    print("\n## The BM25 view's cost\n")
    print("| | with view | without | view |")
    print("| --- | ---: | ---: | ---: |")
    print(
        f"| bytes on disk | {bytes_with:,} | {bytes_without:,} | {view['bytes']:,} "
        f"({100 * view['bytes'] / bytes_without:.1f}% of the index without it) |"
    )
    print(
        f"| add_vectors + commit (median of 3) | {with_s:.2f} s | {without_s:.2f} s | +{with_s - without_s:.2f} s "
        f"(+{100 * (with_s - without_s) / (encode_s + without_s):.1f}% of encoding + indexing, "
        f"encoding {encode_s:.0f} s) |"
    )
    print(f"| enable_bm25 on the index without it (from stored texts, rewrites it) | | | {enable_s:.2f} s |")
    print(
        f"\nview: {view['documents']:,} documents; per document {view['bytes'] / max(1, view['documents']):.0f} B"
    )

    # ---------------------------------------------------------------- latency
    k, depth = 10, 100
    qenc = idx.query_encoder
    systems = {
        "splade": lambda t: idx.search(t, k=k),
        "hybrid rrf": lambda t: idx.search(t, k=k, hybrid="rrf"),
        "hybrid convex": lambda t: idx.search(t, k=k, hybrid="convex"),
        "  query encoding": lambda t: qenc.encode_queries([t]),
        "  splade top-100 (vector)": None,
        "  bm25 top-100": lambda t: idx.search_bm25(t, k=depth),
    }
    vectors = {t: qenc.encode_queries([t]) for _, t in queries}
    systems["  splade top-100 (vector)"] = lambda t: idx.search(vectors[t], k=depth)
    for _, t in queries[:5]:  # warm up (numba kernels, caches)
        for fn in systems.values():
            fn(t)
    times: dict[str, list[float]] = {s: [] for s in systems}
    for _ in range(a.rounds):
        for _, t in queries:
            for name, fn in systems.items():
                t0 = time.perf_counter()
                fn(t)
                times[name].append(time.perf_counter() - t0)
    p50 = {s: 1000 * statistics.median(v) for s, v in times.items()}
    print(f"\n## Latency, k={k}, one thread ({len(queries)} queries x {a.rounds} rounds, p50)\n")
    print("| search | p50 ms | p95 ms | x SPLADE-only p50 |")
    print("| --- | ---: | ---: | ---: |")
    for s, v in times.items():
        p95 = 1000 * float(np.percentile(v, 95))
        print(f"| {s} | {p50[s]:.2f} | {p95:.2f} | {p50[s] / p50['splade']:.2f} |")
    print(
        f"\nhybrid rrf p50 {p50['hybrid rrf']:.2f} ms / SPLADE-only p50 {p50['splade']:.2f} ms = "
        f"{p50['hybrid rrf'] / p50['splade']:.2f}x; convex {p50['hybrid convex'] / p50['splade']:.2f}x"
    )

    # ---------------------------------------------------------------- quality on these queries
    judged = [(q, t) for q, t in queries if q in col.qrels]
    runs = {
        "splade": {q: [(h.id, h.score) for h in idx.search(t, k=k)] for q, t in judged},
        "bm25": {q: [(h.id, h.score) for h in idx.search_bm25(t, k=k)] for q, t in judged},
        "hybrid rrf": {q: [(h.id, h.score) for h in idx.search(t, k=k, hybrid="rrf")] for q, t in judged},
        "hybrid convex": {
            q: [(h.id, h.score) for h in idx.search(t, k=k, hybrid="convex")] for q, t in judged
        },
    }
    print(f"\n## nDCG@10 on the {len(judged)} judged queries (qrels {a.split})\n")
    print("| system | nDCG@10 |")
    print("| --- | ---: |")
    for name, run in runs.items():
        print(f"| {name} | {compute_metrics(run, col.qrels)['ndcg@10']:.4f} |")
    idx.close()
    with Index.open(work / "with_bm25") as again:  # the view persisted
        assert again.has_bm25


if __name__ == "__main__":
    main()
