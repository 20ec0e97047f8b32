"""Approximate top-k over one segment's Seismic-style structure (numba; see ``approx_build``).

The query's heaviest ``q_cut`` terms are taken in decreasing weight. For each, the dot product of the whole query
with every summary of the term's blocks is computed (from the component-major summaries: only the entries of the
query's terms are read, ``approx_summaries.score_summaries``); blocks are visited by decreasing summary score and the walk
stops at the first block whose score x ``heap_factor`` cannot beat the current k-th score. Each document of a
visited block is scored exactly from the forward index against the whole query, once per query (a visited mask),
and pushed into the top-k heap shared with the other segments. Tombstoned (or filtered) documents are skipped.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .approx_summaries import score_summaries
from .kernels import _push


@nb.njit(cache=True, nogil=True)
def search_approx(
    q_terms,
    q_weights,
    q_cut,
    heap_factor,
    qd,
    tblk,
    bptr,
    bdocs,
    sscale,
    tcomp,
    ccomp,
    tent,
    cptr,
    cblk,
    cq,
    fptr,
    fterms,
    fw,
    scales,
    allowed,
    use_allowed,
    key_base,
    hs,
    hd,
    size,
    k,
):
    """Score one segment into the shared heap (hs, hd, size); returns (new size, entries read).

    ``qd``: a dense float32 array of the vocabulary's size, all zero (the query times ``scales`` is written into it
    for the forward scoring and cleared on return).
    """
    nq = len(q_terms)
    n_docs = len(fptr) - 1
    for i in range(nq):  # scaled once here, not per forward posting (the exact kernel's association too)
        qd[q_terms[i]] = q_weights[i] * scales[q_terms[i]]
    order = np.argsort(-q_weights)
    by_term = np.argsort(q_terms)
    st = q_terms[by_term]
    sw = q_weights[by_term]
    visited = np.zeros(n_docs, np.uint8)
    work = 0
    touch = 0
    theta = hs[0] if size == k else np.float32(0.0)
    for r in range(min(q_cut, nq)):
        t = q_terms[order[r]]
        b0 = tblk[t]
        b1 = tblk[t + 1]
        nb_ = b1 - b0
        if nb_ == 0:
            continue
        sc = np.zeros(nb_, np.float32)
        work += score_summaries(t, st, sw, tcomp, ccomp, tent, cptr, cblk, cq, sc)
        for b in range(nb_):
            sc[b] *= sscale[b0 + b]
        bo = np.argsort(-sc)
        for j in range(nb_):
            b = bo[j]
            if size == k and sc[b] * heap_factor <= theta:
                break
            for p in range(bptr[b0 + b], bptr[b0 + b + 1]):  # touch each new document first (a prefetch:
                d = bdocs[p]  # the block's cache misses overlap instead of coming one document at a time)
                if not visited[d] and fptr[d + 1] > fptr[d]:
                    touch += fterms[fptr[d]] + fterms[fptr[d + 1] - 1]
            for p in range(bptr[b0 + b], bptr[b0 + b + 1]):
                d = bdocs[p]
                if visited[d]:
                    continue
                visited[d] = 1
                if use_allowed and allowed[d] == 0:
                    continue
                s = np.float32(0.0)
                for x in range(fptr[d], fptr[d + 1]):
                    s += qd[fterms[x]] * fw[x]
                work += fptr[d + 1] - fptr[d]
                if s > 0 and (size < k or s > theta):
                    size = _push(hs, hd, size, k, s, key_base + d)
                    if size == k:
                        theta = hs[0]
    for i in range(nq):
        qd[q_terms[i]] = 0
    if touch < 0:  # never: keeps the touches from being optimised away
        work = -1
    return size, work
