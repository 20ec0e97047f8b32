"""Sample a synthetic corpus from real splade-tiny document vectors (see ``bench/search.py`` for the method)."""

from __future__ import annotations

import json

import numba as nb
import numpy as np
from _search_data import CACHE, CORPORA, REAL_DOCS, encoded

from spladekit.sparse import SparseVectors


@nb.njit(cache=True)
def _sample(n, lengths, cdf, w_ptr, w_data, dim, seed):
    np.random.seed(seed)
    want = np.empty(n, np.int64)
    for d in range(n):
        want[d] = lengths[np.random.randint(0, len(lengths))]
    cap = np.zeros(n + 1, np.int64)
    for d in range(n):
        cap[d + 1] = cap[d] + want[d]
    indices = np.empty(cap[n], np.int32)
    data = np.empty(cap[n], np.float32)
    got = np.zeros(n, np.int64)
    mark = np.full(dim, -1, np.int64)
    for d in range(n):
        s = cap[d]
        c = 0
        tries = 0
        while c < want[d] and tries < 4 * want[d]:
            tries += 1
            t = np.searchsorted(cdf, np.random.random(), side="right")
            if t >= dim or mark[t] == d:
                continue
            mark[t] = d
            indices[s + c] = t
            c += 1
        row = np.sort(indices[s : s + c])
        for j in range(c):
            t = row[j]
            indices[s + j] = t
            data[s + j] = w_data[w_ptr[t] + np.random.randint(0, w_ptr[t + 1] - w_ptr[t])]
        got[d] = c
    indptr = np.zeros(n + 1, np.int64)
    for d in range(n):
        indptr[d + 1] = indptr[d] + got[d]
    out_i = np.empty(indptr[n], np.int32)
    out_w = np.empty(indptr[n], np.float32)
    for d in range(n):
        out_i[indptr[d] : indptr[d + 1]] = indices[cap[d] : cap[d] + got[d]]
        out_w[indptr[d] : indptr[d + 1]] = data[cap[d] : cap[d] + got[d]]
    return indptr, out_i, out_w


def _real_documents():
    """The real encoded documents and each term's document frequency: what synthetic vectors are sampled from."""
    real = SparseVectors.concat([encoded(c, "corpus") for c in CORPORA])
    return real, np.bincount(real.indices, minlength=real.dim).astype(np.float64)


def _sample_like(real, df, lengths, n: int, seed: int):
    """``n`` vectors with lengths drawn from ``lengths``, terms by document frequency ``df``, weights bootstrapped
    from each term's weights in ``real`` (``_sample``); returns (indptr, indices, data)."""
    csc = real.to_scipy().tocsc()
    cdf = np.cumsum(df / df.sum())
    return _sample(
        n,
        np.asarray(lengths, np.int64),
        cdf,
        csc.indptr.astype(np.int64),
        csc.data.astype(np.float32),
        real.dim,
        seed,
    )


def corpus_path(n: int):
    return CACHE / (f"synth-{n}" if not REAL_DOCS else f"synth-{n}-r{REAL_DOCS}")


def make_corpus(n: int, seed: int = 0) -> dict:
    """Sample (or reuse) the synthetic corpus of ``n`` documents; returns its statistics."""
    folder = corpus_path(n)
    stats_file = folder / "stats.json"
    if stats_file.exists():
        return json.loads(stats_file.read_text())
    real, df = _real_documents()
    dim = real.dim
    lengths = np.diff(real.indptr)
    indptr, indices, data = _sample_like(real, df, lengths, n, seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in (("indptr", indptr), ("indices", indices), ("data", data)):
        np.save(folder / f"{name}.npy", arr)
    syn_df = np.bincount(indices, minlength=dim) / n
    real_df = df / len(real)
    top = np.argsort(-real_df)[:1000]
    stats = {
        "docs": n,
        "dim": dim,
        "postings": int(indptr[-1]),
        "real_docs": len(real),
        "real_mean_nnz": float(lengths.mean()),
        "df_corr_top1000": float(np.corrcoef(real_df[top], syn_df[top])[0, 1]),
        "seed": seed,
    }
    stats_file.write_text(json.dumps(stats))
    return stats


def load_corpus(n: int) -> SparseVectors:
    """The cached synthetic corpus, memory-mapped."""
    folder = corpus_path(n)
    dim = json.loads((folder / "stats.json").read_text())["dim"]
    arrs = [np.load(folder / f"{k}.npy", mmap_mode="r") for k in ("indptr", "indices", "data")]
    return SparseVectors(*arrs, dim)


def adversarial_queries(n: int, seed: int = 1) -> SparseVectors:
    """``n`` queries drawn as the documents are (issue 15's adversarial case): each query's length from the real
    *queries'* active dims, its terms with probability proportional to their real document frequency (so the
    corpus's most frequent terms, with the longest posting lists, dominate), each weight bootstrapped from that
    term's real document weights. Nothing about them favours pruning: no query term is rare."""
    real, df = _real_documents()
    real_q = SparseVectors.concat([encoded(c, "queries") for c in CORPORA])
    indptr, indices, data = _sample_like(real, df, np.diff(real_q.indptr), n, seed)
    return SparseVectors(indptr, indices, data, real.dim)
