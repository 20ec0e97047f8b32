"""Where exact search's time goes at 1M documents: the MaxScore kernel with and without pruning, and the cost of
one posting in a term scan (cold and cache-resident; float32 weights as stored, 16- and 8-bit as a bound on what
narrower weights could give).

    python bench/exact_profile.py [--index bench/.cache/keep/spladekit-exact-1000000]

The index is the one `python bench/search.py --methods spladekit --keep` leaves (1M synthetic documents); the
queries are the bench's 500 real ones. The segment's arrays are copied into memory first, so the times are the
kernel's, not the page cache's. The scan micro-benchmark replays the kernel's inner loop (byte gaps, one weight a
posting, scatter-add into a 65,536-document window accumulator) over 800 containers of density 0.1 (5.2M
postings, more than the caches hold) and over the first 40 of them repeated (cache-resident).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba as nb
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from search import queries  # noqa: E402

from spladekit.index.local import kernels  # noqa: E402
from spladekit.index.local.segment import Segment  # noqa: E402


def kernel_profile(index: Path, n_queries: int, rounds: int = 3) -> None:
    seg = Segment.load(next(index.glob("seg_*")))
    arrays = {a: np.ascontiguousarray(getattr(seg, a)) for a in ("term_ptr", "win_ptr", "win_max", "win_min")}
    arrays.update({a: np.ascontiguousarray(getattr(seg, a)) for a in ("docs", "weights", "scales")})
    n_docs = int(seg.meta["n_docs"])
    qv = queries(n_queries)
    mask = np.zeros(1, np.uint8)

    def run(prune: bool):
        ts, rd, pr = [], [], []
        for i in range(n_queries):
            s, e = qv.indptr[i], qv.indptr[i + 1]
            qt = qv.indices[s:e].astype(np.int32)
            qw = qv.data[s:e].astype(np.float32)
            hs, hd = np.zeros(10, np.float32), np.zeros(10, np.int64)
            t0 = time.perf_counter()
            _, r, p = kernels.search_segment(
                qt, qw, arrays["term_ptr"], arrays["win_ptr"], arrays["win_max"], arrays["win_min"],
                arrays["docs"], arrays["weights"], arrays["scales"], n_docs, mask, False, 0, hs, hd, 0, 10, prune,
            )  # fmt: skip
            ts.append(time.perf_counter() - t0)
            rd.append(r)
            pr.append(p)
        return float(np.median(ts)) * 1e3, float(np.mean(rd)), float(np.mean(pr))

    run(True)
    print(f"{n_docs:,} documents, {n_queries} real queries, top-10, one thread (medians of {rounds} rounds)")
    counts = np.diff(arrays["win_ptr"], axis=1)  # documents of each (term, window) container
    edges = [0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0001]
    share = np.zeros(len(edges) - 1)
    for i in range(n_queries):
        c = counts[qv.indices[qv.indptr[i] : qv.indptr[i + 1]]].ravel()
        share += np.histogram(c / 65536, bins=edges, weights=c)[0]
    print(
        "  the query terms' postings by the density of their (term, window) container: "
        + ", ".join(f"{a:g}-{b:g}: {x:.1%}" for a, b, x in zip(edges, edges[1:], share / share.sum()))
    )
    for prune in (True, False):
        res = [run(prune) for _ in range(rounds)]
        p50 = float(np.median([r[0] for r in res]))
        read, probes = res[0][1], res[0][2]
        print(
            f"  prune={prune!s:5}  p50 {p50:6.2f} ms  postings read {read / 1e6:5.2f}M a query "
            f"({p50 * 1e6 / read:.2f} ns each)  candidates probed {probes:,.0f}"
        )


@nb.njit(cache=False)
def _scan(by, wv, ptr, qw, acc):
    one = np.uint64(1)
    for t in range(len(ptr) - 1):
        d = np.uint64(0)
        b = by[ptr[t] : ptr[t + 1]]
        w = wv[ptr[t] : ptr[t + 1]]
        for j in range(len(b)):
            d += b[j]
            acc[d - one] += qw * w[j]


def scan_profile() -> None:
    rng = np.random.default_rng(0)
    window = 65536
    bys = []
    for _ in range(800):
        docs = np.sort(rng.choice(window, window // 10, replace=False)).astype(np.int64)
        bys.append(np.minimum(np.diff(np.concatenate([[-1], docs])), 255).astype(np.uint8))
    ptr = np.concatenate([[0], np.cumsum([len(b) for b in bys])])
    by = np.concatenate(bys)
    acc = np.zeros(window, np.float32)
    print(f"term scan, {len(by) / 1e6:.1f}M postings of density 0.1 (ns a posting, median of 5)")
    for dt in (np.float32, np.uint16, np.uint8):
        wv = (rng.random(len(by)) * 200).astype(dt)
        _scan(by[:100], wv[:100], ptr[:2], np.float32(0.5), acc)
        cold = []
        for _ in range(5):
            t0 = time.perf_counter()
            _scan(by, wv, ptr, np.float32(0.5), acc)
            cold.append(time.perf_counter() - t0)
        small = ptr[:41]
        hot = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(20):
                _scan(by, wv, small, np.float32(0.5), acc)
            hot.append(time.perf_counter() - t0)
        print(
            f"  {np.dtype(dt).name:8} weights: cold {np.median(cold) / len(by) * 1e9:.2f}  "
            f"cache-resident {np.median(hot) / (20 * small[-1]) * 1e9:.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", default="bench/.cache/keep/spladekit-exact-1000000")
    ap.add_argument("--queries", type=int, default=500)
    args = ap.parse_args()
    index = Path(args.index)
    if not any(index.glob("seg_*")):
        sys.exit(f"{index}: no kept index; run `python bench/search.py --methods spladekit --keep` first")
    kernel_profile(index, args.queries)
    scan_profile()


if __name__ == "__main__":
    main()
