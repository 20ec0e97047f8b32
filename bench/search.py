"""Search benchmark: spladekit's index against scipy, splade-index, qdrant-edge and pyseismic on a 1M-document corpus.

Run from the repository root: ``python bench/search.py`` (``--docs 100000`` for a quicker run). The reference
engines live in ``bench/_search_engines.py``, latency / memory / throughput measurement in ``bench/_search_measure.py``.

Data. Every document and query of the shared collections (scifact, cranfield, cisi, msmarco-trecdl2019-pool:
22,624 documents, 1,489 queries) is encoded once with the bundled splade-tiny and cached in ``bench/.cache/``
(``bench/_search_data.py``). The synthetic corpus is then sampled from those real document vectors
(``bench/_search_synth.py``):

- each document's number of active terms is drawn from the real documents' active-dims distribution;
- its terms are drawn without repetition with probability proportional to their real document frequency;
- each term's weight is drawn from that term's own real weights (a bootstrap of the per-term weight distribution).

So term frequencies, per-term weight distributions and document lengths follow real splade-tiny vectors, while
co-occurrence between terms is not modelled. The 500 queries are real encoded queries, sampled uniformly (seed 0)
from the 1,489 queries of the four collections.

Methods, each measured in its own child process, one after another on the same cached corpus and queries, one
thread each (``NUMBA_NUM_THREADS=1``, ``OMP_NUM_THREADS=1``, qdrant ``max_search_threads=1``), one query per call:

- ``spladekit``: ``Index.add_vectors`` + ``commit`` (build), ``Index.search(vector, k=10)``: exact, pruned;
- ``spladekit-approx``: the same index (its segment carries the Seismic-style approximate structure, built with
  it), tuned on 200 of its own documents (``--tune-sample``; ``Index.tune``, timed apart), then searched at
  ``approx=0.9``, ``0.95`` and ``0.99`` (recall targets): one row each;
- ``spladekit-compact``: an index with 8-bit per-term quantised weights (``compact=True``), exact search on it;
- ``scipy-csc``: the corpus as a scipy CSC matrix; score = ``X[:, q_terms] @ q_weights``, then argpartition;
- ``splade-index``: splade-index's numba retriever (``_retrieve_internal_jitted_parallel``, numba threads = 1) on
  the same CSC arrays (its ``SPLADE.index`` only takes a sentence-transformers model and raw texts);
- ``qdrant-edge``: an embedded qdrant-edge-py shard with a sparse vector field, default (exact) sparse search;
- ``pyseismic``: Seismic's own package (pyseismic-lsr) built on the same vectors (term ids as components, given as
  one CSR batch: ``SeismicDataset(dim).add_documents_by_id``; build seconds include it) with its
  default build settings (n_postings 3500, centroid_fraction 0.1, summary_energy 0.4, doc_cut 15; one thread),
  searched at (query_cut, heap_factor) settings from its recommended ones up to the whole query and a low heap
  factor (``--seismic-grid``; a 1M corpus needs larger query_cut than 100k for the same recall): one row each.
  ``--seismic-threads`` sets its build threads (search stays one thread); ``--seismic-index FILE`` saves the build
  there, or loads it from there when it exists (more settings searched without a second build).

Reported per method: p50 / p95 latency of top-10 (ms), build seconds, bytes on disk (bytes per posting), peak RSS
of the child process (VmHWM; it includes the memory-mapped input corpus), and recall@10 against the exact top 10
(scipy, float32). Ratios are against scipy-csc.

``--threads 1,2`` adds batch scaling for the spladekit rows: queries/s of ``Index.search_batch(all queries,
threads=t)`` per thread count, the median of ``--rounds`` rounds that alternate between the counts (so a change of
load on a shared machine hits every count alike), with the share of the machine's CPU that other processes used
during the rounds (``/proc/stat`` less this process; 0 means the cores were ours).

``--json PATH`` also saves the results: per row p50 / p95 / recall / build / bytes / RSS / note and the latencies,
with the run's settings and the load average before and after (``bench/search_curve.py`` plots them).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _search_data import CACHE, CORPORA, encoded  # noqa: E402
from _search_engines import SEISMIC, run_qdrant, run_scipy, run_seismic, run_splade_index  # noqa: E402
from _search_measure import K, batch_qps, peak_rss, rss_now, timed  # noqa: E402
from _search_synth import adversarial_queries, load_corpus, make_corpus  # noqa: E402

METHODS = (
    "scipy-csc",
    "spladekit",
    "spladekit-approx",
    "spladekit-compact",
    "splade-index",
    "qdrant-edge",
    "pyseismic",
)
APPROX = (0.9, 0.95, 0.99)


def queries(n: int, seed: int = 0, kind: str = "real"):
    """The benchmark's queries: ``n`` real encoded queries, or (``kind="adversarial"``) ``n`` queries drawn as the
    documents are (``_search_synth.adversarial_queries``: the corpus's most frequent terms dominate)."""
    if kind == "adversarial":
        return adversarial_queries(n)
    from spladekit.sparse import SparseVectors

    qs = SparseVectors.concat([encoded(c, "queries") for c in CORPORA])
    pick = np.sort(np.random.default_rng(seed).choice(len(qs), size=min(n, len(qs)), replace=False))
    return qs[pick]


def tuning_queries(n: int, bench_n: int, seed: int = 0):
    """``n`` real queries that are not among the benchmark's ``bench_n`` (``queries(bench_n)``): held out, for
    ``tune(queries=...)``."""
    from spladekit.sparse import SparseVectors

    qs = SparseVectors.concat([encoded(c, "queries") for c in CORPORA])
    taken = np.random.default_rng(seed).choice(len(qs), size=min(bench_n, len(qs)), replace=False)
    rest = np.setdiff1d(np.arange(len(qs)), taken)
    if n > len(rest):
        raise SystemExit(f"--tune-queries {n}: only {len(rest)} real queries are left out of the benchmark's")
    return qs[np.sort(np.random.default_rng(seed + 1).choice(rest, size=n, replace=False))]


# ---------------------------------------------------------------------------------------------- methods (children)
def run_spladekit(
    ndocs: int, qv, work: Path, variant: str, threads=(), rounds: int = 5, keep=False, opts=None
) -> dict:
    opts = opts or {}
    tune_sample = opts.get("tune_sample", 200)
    tune_q = opts.get("tune_queries", 0)
    from spladekit.index import Index, Plan

    path = CACHE / "keep" / f"spladekit-{variant}-{ndocs}" if keep else work / "spladekit"
    reuse = keep and (path / "manifest.json").exists()  # --keep: built (and tuned) once, then reused
    build = float("nan")
    if not reuse:
        X = load_corpus(ndocs)
        ids = [str(i) for i in range(len(X))]
        shutil.rmtree(path, ignore_errors=True)
        compact = variant == "compact"
        # the exact methods are built without the approximate structure, as before it existed
        idx = Index.create(
            path, compact=compact, approx=variant == "approx"
        )  # loads the bundled model: not timed
        idx.flush_postings = 1 << 40  # one segment
        t0 = time.perf_counter()
        idx.add_vectors(ids, X)
        idx.commit()
        build = time.perf_counter() - t0
        del X, ids
        gc.collect()
        idx.close()
    idx = Index.open(path)  # search a freshly opened (memory-mapped) index, as a user would
    info = idx.info()
    compact = info["compact"]
    rows = [qv[i] for i in range(len(qv))]
    base = {
        "build_s": build,
        "bytes": info["bytes_on_disk"],
        "postings": info["postings"],
        "peak_rss": 0,
        "search_rss": rss_now(),
    }
    if variant == "approx":
        t0 = time.perf_counter()
        rep = info["approx"]["tuning"]
        if rep is None:  # approximate rows even where exact search is faster (by default: searched exactly)
            tq = tuning_queries(tune_q, len(qv)) if tune_q else None
            rep = idx.tune(queries=tq, sample=tune_q or tune_sample, exact_if_faster=False)
        tune_s = time.perf_counter() - t0
        ax = sum(f.stat().st_size for f in path.rglob("ax_*.npy"))
        out = {}
        for a in APPROX:
            lat, top = timed(lambda q, a=a: [int(h.id) for h in idx.search(q, k=K, approx=a)], rows)
            plan = idx._approx_plan(a)
            knobs = f"q{plan.query_terms} hf{plan.heap_factor}" if plan else "exact"
            out[f"spladekit-{a}"] = {
                **base,
                "lat": lat.tolist(),
                "top": top.tolist(),
                "peak_rss": peak_rss(),
                "note": f"approx={a}: {knobs}; tune {tune_s:.0f} s ({rep['sample']} {rep['queries']}); "
                f"approx files {ax / info['postings']:.2f} B/post",
                "tune_s": tune_s,
            }
            if threads:
                out[f"spladekit-{a}"]["batch"] = batch_qps(
                    lambda q, t, a=a: idx.search_batch(q, k=K, threads=t, approx=a), qv, threads, rounds
                )
        segs, allowed = idx._prepare_filter(None)
        for qt, hf in opts.get("approx_grid", ()):  # explicit knobs, for the recall/latency curve

            def one(q, plan=Plan(qt, hf)):
                t, w = q.row(0)
                return [
                    int(segs[si].doc_id(d)) for _, si, d in idx._approx_top_k(segs, allowed, t, w, K, plan)[0]
                ]

            lat, top = timed(one, rows)
            out[f"spladekit-q{qt}-hf{hf}"] = {
                **base,
                "lat": lat.tolist(),
                "top": top.tolist(),
                "peak_rss": peak_rss(),
                "note": f"query_terms {qt}, heap_factor {hf}; approx files {ax / info['postings']:.2f} B/post",
            }
        table = [
            (r["recall"], r["query_terms"], r["heap_factor"], round(r["measured"], 3)) for r in rep["table"]
        ]
        exact_ms = f"{rep['grid'][0]['ms']:.2f} ms/query" if "grid" in rep else "n/a (reused)"
        out["tune"] = {"skipped": f"table {table}; exact search in tune {exact_ms}"}
        return {"rows": out}
    lat, top = timed(lambda q: [int(h.id) for h in idx.search(q, k=K)], rows)
    res = {
        **base,
        "lat": lat.tolist(),
        "top": top.tolist(),
        "peak_rss": peak_rss(),
        "note": "8-bit weights" if compact else "exact",
    }
    if threads:
        res["batch"] = batch_qps(lambda q, t: idx.search_batch(q, k=K, threads=t), qv, threads, rounds)
    return res


def child(
    method: str, ndocs: int, nq: int, out: Path, threads=(), rounds: int = 5, keep=False, opts=None
) -> None:
    opts = opts or {}
    qv = queries(nq, kind=opts.get("query_set", "real"))
    # this run's own folder (its parent's pid): runs at the same time leave each other's files be
    work = CACHE / "work" / str(os.getppid())
    work.mkdir(parents=True, exist_ok=True)
    if method.startswith("spladekit"):
        variant = method.partition("-")[2] or "exact"
        res = run_spladekit(ndocs, qv, work, variant, threads, rounds, keep, opts)
    elif method == "scipy-csc":
        res = run_scipy(ndocs, qv, work)
    elif method == "splade-index":
        res = run_splade_index(ndocs, qv, work)
    elif method == "pyseismic":
        try:
            import seismic  # noqa: F401
        except ImportError as e:
            res = {"skipped": f"pyseismic-lsr not importable ({e})"}
        else:
            res = run_seismic(
                ndocs,
                qv,
                work,
                opts.get("seismic_grid", SEISMIC),
                opts.get("seismic_threads", 1),
                opts.get("seismic_index", ""),
            )
    elif method == "qdrant-edge":
        try:
            import qdrant_edge  # noqa: F401
        except ImportError as e:
            res = {"skipped": f"qdrant-edge-py not importable ({e})"}
        else:
            res = run_qdrant(ndocs, qv, work)
    else:
        raise SystemExit(f"unknown method {method}")
    out.write_text(json.dumps(res))


# ---------------------------------------------------------------------------------------------- parent
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--threads", default="", help="e.g. 1,2: search_batch queries/s per thread count")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds of --threads")
    ap.add_argument(
        "--keep", action="store_true", help="keep the spladekit indexes in bench/.cache/keep and reuse them"
    )
    ap.add_argument("--tune-sample", type=int, default=200, help="documents spladekit-approx is tuned on")
    ap.add_argument(
        "--tune-queries",
        type=int,
        default=0,
        help="tune spladekit-approx on this many real queries left out of the benchmark's (0: on documents)",
    )
    ap.add_argument(
        "--approx-grid",
        default="",
        help="spladekit-approx rows at explicit knobs too, query_terms:heap_factor,... (the curve)",
    )
    ap.add_argument("--seismic-threads", type=int, default=1, help="pyseismic build threads (search: one)")
    ap.add_argument(
        "--seismic-grid",
        default=",".join(f"{q}:{h}" for q, h in SEISMIC),
        help="pyseismic search settings, query_cut:heap_factor,...",
    )
    ap.add_argument(
        "--seismic-index",
        default="",
        help="a .index.seismic file: loaded when it exists (no build), else the build is saved there",
    )
    ap.add_argument(
        "--query-set",
        default="real",
        choices=("real", "adversarial"),
        help="real encoded queries, or queries drawn from the documents' term distribution (adversarial)",
    )
    ap.add_argument("--json", help="also save the results (rows, settings, load average) to this JSON file")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",") if t]
    grid = tuple((int(q), float(h)) for q, h in (g.split(":") for g in args.seismic_grid.split(",") if g))
    opts = {
        "tune_sample": args.tune_sample,
        "tune_queries": args.tune_queries,
        "approx_grid": tuple(
            (int(q), float(h)) for q, h in (g.split(":") for g in args.approx_grid.split(",") if g)
        ),
        "seismic_threads": args.seismic_threads,
        "seismic_grid": grid,
        "seismic_index": args.seismic_index,
        "query_set": args.query_set,
    }
    if args.child:
        child(args.child, args.docs, args.queries, Path(args.out), threads, args.rounds, args.keep, opts)
        return
    started = time.time()
    load_before = os.getloadavg()

    t0 = time.perf_counter()
    stats = make_corpus(args.docs)
    print(
        f"corpus: {args.docs:,} synthetic documents, {stats['postings']:,} postings "
        f"({stats['postings'] / args.docs:.1f} per document; real: {stats['real_mean_nnz']:.1f}), "
        f"from {stats['real_docs']:,} real splade-tiny documents; sampled in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    qv = queries(args.queries, kind=args.query_set)
    what = (
        "real encoded queries"
        if args.query_set == "real"
        else "adversarial queries (document term distribution)"
    )
    print(f"queries: {len(qv)} {what}, {qv.nnz / len(qv):.1f} terms on average", flush=True)
    env = {**os.environ, "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    results = {}
    walls: dict[str, float] = {}
    for method in args.methods.split(","):
        out = CACHE / f"result-{method}-{args.docs}.json"
        out.unlink(missing_ok=True)
        print(f"running {method} ...", flush=True)
        # the child gets the parent's own options (it reads the ones it needs) plus its method
        cmd = [sys.executable, __file__, *sys.argv[1:], "--child", method]
        t1 = time.perf_counter()
        r = subprocess.run([*cmd, "--out", str(out)], env=env)
        walls[method] = time.perf_counter() - t1
        print(f"  {method}: {walls[method]:.0f} s, load average {os.getloadavg()[0]:.2f}", flush=True)
        if r.returncode != 0 or not out.exists():
            results[method] = {"skipped": f"failed (exit {r.returncode})"}
        else:
            res = json.loads(out.read_text())
            results.update(res["rows"] if "rows" in res else {method: res})
    shutil.rmtree(CACHE / "work" / str(os.getpid()), ignore_errors=True)
    rows = report(results, args.docs)
    load_after = os.getloadavg()
    print(
        f"\nload average (1/5/15 min): before {'/'.join(f'{x:.2f}' for x in load_before)}, "
        f"after {'/'.join(f'{x:.2f}' for x in load_after)}; cores {os.cpu_count()}"
    )
    if args.json:
        saved = {
            "docs": args.docs,
            "postings": stats["postings"],
            "queries": len(qv),
            "query_terms": qv.nnz / len(qv),
            "k": K,
            "methods": args.methods.split(","),
            "argv": sys.argv[1:],
            "tune_sample": args.tune_sample,
            "tune_queries": args.tune_queries,
            "approx_grid": args.approx_grid,
            "seismic_threads": args.seismic_threads,
            "seismic_grid": [list(g) for g in grid],
            "seismic_index": args.seismic_index,
            "started": started,
            "finished": time.time(),
            "method_wall_s": walls,
            "cores": os.cpu_count(),
            "load_before": list(load_before),
            "load_after": list(load_after),
            "rows": rows,
        }
        Path(args.json).write_text(json.dumps(saved, indent=1))
        print(f"wrote {args.json}")


def report(results: dict, ndocs: int) -> dict:
    """Print the table (and batch / speed-up sections); the rows as dicts (latencies and recall included)."""
    ref = results.get("scipy-csc") or results.get("spladekit", {})
    exact_top = np.asarray(ref["top"]) if "top" in ref else None
    head = f"{'method':<18} {'p50 ms':>8} {'p95 ms':>8} {'build s':>8} {'disk MB':>9} {'B/post':>7} {'peak RSS GB':>11} {'R@10':>6}"
    print(f"\n{ndocs:,} documents, top-{K}, one thread\n" + head + "\n" + "-" * len(head))
    postings = ref.get("postings")
    rows = {}
    saved: dict[str, dict] = {}
    for m, r in results.items():
        if "skipped" in r:
            print(f"{m:<18} skipped: {r['skipped']}")
            saved[m] = {"skipped": r["skipped"]}
            continue
        lat = np.asarray(r["lat"])
        p50, p95 = np.percentile(lat, 50), np.percentile(lat, 95)
        rec = float("nan")
        if exact_top is not None:
            top = np.asarray(r["top"])
            hits = [
                len(set(a[a >= 0]) & set(b[b >= 0])) / max(1, (b >= 0).sum()) for a, b in zip(top, exact_top)
            ]
            rec = float(np.mean(hits))
        bpp = (
            r["bytes"] / (r.get("postings") or postings) if (r.get("postings") or postings) else float("nan")
        )
        rows[m] = (p50, p95)
        saved[m] = {k: v for k, v in r.items() if k != "top"} | {
            "p50": float(p50),
            "p95": float(p95),
            "recall": rec,
            "bytes_per_posting": bpp,
        }
        print(
            f"{m:<18} {p50:8.2f} {p95:8.2f} {r['build_s']:8.1f} {r['bytes'] / 1e6:9.1f} {bpp:7.2f} "
            f"{r['peak_rss'] / 2**30:11.2f} {rec:6.4f}  {r.get('note', '')}"
        )
    batch = {m: r["batch"] for m, r in results.items() if "batch" in r}
    if batch:
        counts = list(next(iter(batch.values()))["qps"])
        print(
            f"\nsearch_batch of all queries: queries/s per thread count (median of alternating rounds); "
            f"cores {os.cpu_count()}\n{'method':<18} "
            + " ".join(f"{c + ' thr':>9}" for c in counts)
            + f" {'ratio':>6}  CPU share of other processes per count"
        )
        for m, b in batch.items():
            q = b["qps"]
            print(
                f"{m:<18} "
                + " ".join(f"{q[c]:9.0f}" for c in counts)
                + f" {q[counts[-1]] / q[counts[0]]:6.2f}  "
                + " / ".join(f"{b['others'][c]:.2f}" for c in counts)
            )
    for name in ("scipy-csc", "spladekit"):
        if name not in rows:
            continue
        b50, b95 = rows[name]
        print(f"\nspeed-up over {name} (p50 / p95):")
        for m, (p50, p95) in rows.items():
            print(f"  {m:<18} {b50 / p50:6.2f}x / {b95 / p95:6.2f}x")
    (CACHE / f"report-{ndocs}.json").write_text(
        json.dumps(
            {
                m: {k: v for k, v in r.items() if k not in ("top", "lat")}
                | ({"p50": rows[m][0], "p95": rows[m][1]} if m in rows else {})
                for m, r in results.items()
            },
            indent=1,
        )
    )
    return saved


if __name__ == "__main__":
    main()
