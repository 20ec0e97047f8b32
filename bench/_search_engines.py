"""The reference engines of ``bench/search.py`` (scipy CSC, splade-index, qdrant-edge, pyseismic-lsr), each built on
the cached synthetic corpus and timed one query at a time in its own child process."""

from __future__ import annotations

import gc
import shutil
import time
from pathlib import Path

import numpy as np
from _search_measure import K, dir_bytes, measured, timed
from _search_synth import load_corpus

# (query_cut, heap_factor); 1,000 = the whole query (queries have 60 terms on average)
SEISMIC = (
    (5, 0.9),
    (10, 0.9),
    (10, 0.8),
    (20, 0.9),
    (20, 0.8),
    (40, 0.9),
    (40, 0.7),
    (60, 0.7),
    (1000, 0.7),
    (1000, 0.5),
)


def _csc(ndocs: int):
    import scipy.sparse as sp

    X = load_corpus(ndocs)
    t0 = time.perf_counter()
    m = sp.csr_matrix((X.data, X.indices, X.indptr), shape=(len(X), X.dim)).tocsc()
    build = time.perf_counter() - t0
    del X
    gc.collect()
    return m, build


def run_scipy(ndocs: int, qv, work: Path) -> dict:
    m, build = _csc(ndocs)

    def one(q):
        t, w = q.row(0)
        s = m[:, t] @ w
        top = np.argpartition(-s, K)[:K]
        top = top[np.argsort(-s[top], kind="stable")]
        return top[s[top] > 0].tolist()

    lat, top = timed(one, [qv[i] for i in range(len(qv))])
    nbytes = m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
    return measured(
        lat,
        top,
        build_s=build,
        bytes=nbytes,
        postings=int(m.nnz),
        note="in memory (bytes = array sizes)",
    )


def run_splade_index(ndocs: int, qv, work: Path) -> dict:
    import numba

    numba.set_num_threads(1)
    from splade_index.numba.retrieve_utils import _retrieve_internal_jitted_parallel

    m, build = _csc(ndocs)
    data = m.data.astype(np.float32)
    indices = m.indices.astype(np.int32)
    indptr = m.indptr.astype(np.int32)
    n = m.shape[0]

    def one(q):
        t, w = q.row(0)
        ptr = np.array([0, len(t)], np.int32)
        s, ix = _retrieve_internal_jitted_parallel(
            t.astype(np.int32), w, ptr, K, True, np.float32, np.int32, data, indptr, indices, n
        )
        return ix[0][s[0] > 0].tolist()

    lat, top = timed(one, [qv[i] for i in range(len(qv))])
    return measured(
        lat,
        top,
        build_s=build,
        bytes=data.nbytes + indices.nbytes + indptr.nbytes,
        postings=int(m.nnz),
        note="in memory (bytes = array sizes)",
    )


def run_qdrant(ndocs: int, qv, work: Path) -> dict:
    import qdrant_edge as qe

    X = load_corpus(ndocs)
    path = work / "qdrant"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    cfg = qe.EdgeConfig(
        sparse_vectors={"s": qe.EdgeSparseVectorParams()}, max_search_threads=1, wal_enabled=False
    )
    t0 = time.perf_counter()
    shard = qe.EdgeShard.create(str(path), cfg)
    step = 5000
    for s in range(0, len(X), step):
        pts = []
        for i in range(s, min(s + step, len(X))):
            a, b = X.indptr[i], X.indptr[i + 1]
            # term ids are already unique and sorted (qdrant-edge would silently keep duplicates)
            pts.append(qe.Point(i, {"s": qe.SparseVector(X.indices[a:b].tolist(), X.data[a:b].tolist())}))
        shard.update(qe.UpdateOperation.upsert_points(pts))
    shard.optimize()
    shard.flush()
    build = time.perf_counter() - t0
    del X
    gc.collect()

    def one(q):
        t, w = q.row(0)
        req = qe.SearchRequest(
            query=qe.Query.Nearest(qe.SparseVector(t.tolist(), w.tolist()), using="s"), limit=K
        )
        return [int(p.id) for p in shard.search(req)]

    lat, top = timed(one, [qv[i] for i in range(len(qv))])
    return measured(
        lat,
        top,
        build_s=build,
        bytes=dir_bytes(path),
        postings=None,
        note="embedded Rust engine",
    )


def run_seismic(ndocs: int, qv, work: Path, grid=SEISMIC, build_threads: int = 1, saved: str = "") -> dict:
    """Build (default settings) and save, or with ``saved`` naming an existing ``.index.seismic`` file load that
    build (build seconds: nan); then one row per (query_cut, heap_factor) of ``grid``."""
    import seismic

    X = load_corpus(ndocs)
    st = seismic.get_seismic_string()
    names = np.array([str(t) for t in range(X.dim)], dtype=st)  # component t is addressed as "t"
    postings = int(X.indptr[-1])
    path = Path(saved) if saved else work / "seismic.index.index.seismic"
    if saved and path.exists():
        index = seismic.SeismicIndex.load(str(path))
        build = float("nan")
        built = f"pyseismic-lsr default build, loaded from {path.name}"
    else:
        t0 = time.perf_counter()
        # its CSR batch entry (one add_document() call per row grows superlinearly: 27 s for 20k documents)
        ds = seismic.SeismicDataset(dim=X.dim)
        ds.add_documents_by_id(
            [str(i) for i in range(len(X))],
            np.asarray(X.indices, np.int64),
            np.asarray(X.data, np.float32),
            np.asarray(X.indptr, np.int64),
        )
        index = seismic.SeismicIndex.build_from_dataset(ds, num_threads=build_threads)
        build = time.perf_counter() - t0
        index.save(str(path).removesuffix(".index.seismic"))  # save() appends the suffix
        del ds
        built = f"pyseismic-lsr default build ({build_threads} thread{'s' if build_threads > 1 else ''})"
    nbytes = path.stat().st_size
    del X
    gc.collect()
    rows = [qv[i].row(0) for i in range(len(qv))]
    out = {}
    for qc, hf in grid:

        def one(q, qc=qc, hf=hf):
            t, w = q
            res = index.search("q", names[t], np.asarray(w, np.float32), K, qc, hf)
            return [int(r[2]) for r in res]

        lat, top = timed(one, rows)
        out[f"seismic-q{qc}-hf{hf}"] = measured(
            lat,
            top,
            build_s=build,
            bytes=nbytes,
            postings=postings,
            note=f"{built}, query_cut {qc}, heap_factor {hf}",
        )
    return {"rows": out}
