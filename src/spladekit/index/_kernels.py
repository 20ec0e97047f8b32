"""Numba kernels of the index: segment building and exact, pruned top-k search.

Postings of a segment are term-major; within a term they are sorted by document number and split into windows
of ``WINDOW`` (65,536) documents, so a document number is stored as a ``uint16`` offset inside its window
(6 bytes per posting with float32 weights). Search walks the windows one by one with a window-local accumulator
that stays in cache. Inside a window the query terms are taken in decreasing order of their upper bound (query
weight x the term's largest weight in that window) and scanned term-at-a-time. Once the bounds of the terms left
sum to at most ``SWITCH`` x theta (the current k-th score), only documents whose partial score is within that sum
of theta can still enter the top k: the remaining terms are merged against that candidate list (galloping search
in the postings, or a plain scan when candidates are many) and candidates are dropped as soon as their score plus
the bounds left cannot beat theta. A window whose total bound cannot beat theta is skipped. Every test compares
bounds with a small slack, so pruning never loses a document of the exact top k (MaxScore-style safe pruning).
"""

from __future__ import annotations

import numba as nb
import numpy as np

WINDOW_BITS = 16
WINDOW = 1 << WINDOW_BITS
SWITCH = 0.5  # see search_segment: where scanning hands over to candidate probing


@nb.njit(cache=True, nogil=True)
def csr_to_postings(indptr, indices, data, dim):
    """Transpose a CSR batch into term-major postings; documents stay in ascending order within each term."""
    n = len(indptr) - 1
    nnz = len(indices)
    counts = np.zeros(dim + 1, np.int64)
    for p in range(nnz):
        counts[indices[p] + 1] += 1
    term_ptr = np.cumsum(counts)
    fill = term_ptr[:-1].copy()
    docs = np.empty(nnz, np.int32)
    weights = np.empty(nnz, np.float32)
    for d in range(n):
        for p in range(indptr[d], indptr[d + 1]):
            t = indices[p]
            q = fill[t]
            docs[q] = d
            weights[q] = data[p]
            fill[t] = q + 1
    return term_ptr, docs, weights


@nb.njit(cache=True, nogil=True)
def window_tables(term_ptr, docs, weights, n_windows):
    """Per (term, window): start of its postings relative to the term start, and largest / smallest weight."""
    dim = len(term_ptr) - 1
    win_ptr = np.zeros((dim, n_windows + 1), np.int32)
    win_max = np.zeros((dim, n_windows), np.float32)
    win_min = np.zeros((dim, n_windows), np.float32)
    for t in range(dim):
        s = term_ptr[t]
        e = term_ptr[t + 1]
        w = 0
        for p in range(s, e):
            dw = docs[p] >> WINDOW_BITS
            while w < dw:
                w += 1
                win_ptr[t, w] = p - s
            x = weights[p]
            if x > win_max[t, dw]:
                win_max[t, dw] = x
            if x < win_min[t, dw]:
                win_min[t, dw] = x
        while w < n_windows:
            w += 1
            win_ptr[t, w] = e - s
    return win_ptr, win_max, win_min


@nb.njit(cache=True, nogil=True)
def postings_to_csr(term_ptr, docs16, win_ptr, weights, scales, n_docs, keep):
    """Rebuild the document vectors of a segment (for merges), keeping rows where ``keep`` is set."""
    dim = len(term_ptr) - 1
    n_windows = win_ptr.shape[1] - 1
    counts = np.zeros(n_docs, np.int64)
    for t in range(dim):
        s = term_ptr[t]
        for w in range(n_windows):
            base = w << WINDOW_BITS
            for p in range(s + win_ptr[t, w], s + win_ptr[t, w + 1]):
                counts[base + np.int64(docs16[p])] += 1
    new_row = np.full(n_docs, -1, np.int64)
    n_keep = 0
    for d in range(n_docs):
        if keep[d]:
            new_row[d] = n_keep
            n_keep += 1
    indptr = np.zeros(n_keep + 1, np.int64)
    for d in range(n_docs):
        if new_row[d] >= 0:
            indptr[new_row[d] + 1] = counts[d]
    for i in range(n_keep):
        indptr[i + 1] += indptr[i]
    fill = indptr[:-1].copy()
    indices = np.empty(indptr[-1], np.int32)
    data = np.empty(indptr[-1], np.float32)
    for t in range(dim):
        s = term_ptr[t]
        sc = scales[t]
        for w in range(n_windows):
            base = w << WINDOW_BITS
            for p in range(s + win_ptr[t, w], s + win_ptr[t, w + 1]):
                r = new_row[base + np.int64(docs16[p])]
                if r >= 0:
                    q = fill[r]
                    indices[q] = t
                    data[q] = np.float32(weights[p] * sc)
                    fill[r] = q + 1
    return indptr, indices, data


@nb.njit(cache=True, nogil=True, inline="always")
def _sift_down(hs, hd, size, i):
    while True:
        lc = 2 * i + 1
        if lc >= size:
            return
        m = lc
        r = lc + 1
        if r < size and (hs[r] < hs[lc] or (hs[r] == hs[lc] and hd[r] > hd[lc])):
            m = r
        if hs[m] < hs[i] or (hs[m] == hs[i] and hd[m] > hd[i]):
            hs[i], hs[m] = hs[m], hs[i]
            hd[i], hd[m] = hd[m], hd[i]
            i = m
        else:
            return


@nb.njit(cache=True, nogil=True)
def _push(hs, hd, size, k, score, doc):
    """Insert into a size-k min-heap (ties: the smaller doc key ranks higher); returns the new size."""
    if size < k:
        i = size
        hs[i] = score
        hd[i] = doc
        while i > 0:
            p = (i - 1) >> 1
            if hs[i] < hs[p] or (hs[i] == hs[p] and hd[i] > hd[p]):
                hs[i], hs[p] = hs[p], hs[i]
                hd[i], hd[p] = hd[p], hd[i]
                i = p
            else:
                break
        return size + 1
    hs[0] = score
    hd[0] = doc
    _sift_down(hs, hd, size, 0)
    return size


@nb.njit(cache=True, nogil=True)
def _find(docs16, s, e, target):
    """Binary search of a uint16 offset in docs16[s:e]; returns the position or -1."""
    lo = s
    hi = e
    while lo < hi:
        mid = (lo + hi) >> 1
        if docs16[mid] < target:
            lo = mid + 1
        else:
            hi = mid
    if lo < e and docs16[lo] == target:
        return lo
    return -1


@nb.njit(cache=True, nogil=True)
def search_segment(
    q_terms,
    q_weights,
    term_ptr,
    win_ptr,
    win_max,
    win_min,
    docs16,
    weights,
    scales,
    n_docs,
    allowed,
    use_allowed,
    key_base,
    hs,
    hd,
    size,
    k,
    prune,
):
    """Score one segment into the shared top-k heap (hs, hd, size); returns (new size, postings read, candidates).

    ``allowed`` (uint8 per document) masks tombstones and filters when ``use_allowed``; a document is kept only
    if its score is positive. With ``prune`` False every posting of every query term is read (the reference).
    """
    nq = len(q_terms)
    n_windows = win_ptr.shape[1] - 1
    acc = np.zeros(WINDOW, np.float32)
    ub = np.empty(nq, np.float32)
    rem = np.empty(nq + 1, np.float32)
    cand = np.empty(WINDOW, np.int64)
    probes = 0
    read = 0
    for w in range(n_windows):
        base = w << WINDOW_BITS
        wsize = min(WINDOW, n_docs - base)
        if wsize <= 0:
            break
        for i in range(nq):
            t = q_terms[i]
            qw = q_weights[i]
            a = qw * win_max[t, w]
            b = qw * win_min[t, w]
            u = a if a > b else b
            ub[i] = u if u > 0 else np.float32(0.0)
        order = np.argsort(-ub)
        rem[nq] = 0
        for j in range(nq - 1, -1, -1):
            rem[j] = rem[j + 1] + ub[order[j]]
        theta = hs[0] if size == k else np.float32(0.0)
        # Slack so float rounding in the bounds can never prune a true top-k document.
        slack = np.float32(1.0 + 1e-5)
        if prune and size == k and rem[0] * slack <= theta:
            continue
        acc[:wsize] = 0
        j = 0
        while j < nq and (not prune or size < k or rem[j] * slack > theta):
            i = order[j]
            t = q_terms[i]
            qw = q_weights[i] * scales[t]
            s = term_ptr[t]
            for p in range(s + win_ptr[t, w], s + win_ptr[t, w + 1]):
                acc[docs16[p]] += qw * weights[p]
            read += win_ptr[t, w + 1] - win_ptr[t, w]
            j += 1
        # Unseen documents can no longer reach theta. Keep scanning until the bound of the terms left is at most
        # SWITCH x theta, so that only documents already close to theta remain candidates.
        while j < nq and rem[j] * slack > theta * SWITCH:
            i = order[j]
            t = q_terms[i]
            qw = q_weights[i] * scales[t]
            s = term_ptr[t]
            for p in range(s + win_ptr[t, w], s + win_ptr[t, w + 1]):
                acc[docs16[p]] += qw * weights[p]
            read += win_ptr[t, w + 1] - win_ptr[t, w]
            j += 1
        # Only documents already seen can still make the top k. Each remaining term either probes its postings
        # for those candidates (galloping merge, when they are few) or is scanned (when they are many); candidates
        # whose score plus the bounds left cannot beat theta are dropped along the way.
        nc = 0
        lim = theta - rem[j] * slack
        if lim < 0:
            lim = np.float32(0.0)
        if use_allowed:  # branch-free compaction: most documents of the window fail the test
            for d in range(wsize):
                cand[nc] = d
                nc += (acc[d] > lim) & (allowed[base + d] != 0)
        else:
            for d in range(wsize):
                cand[nc] = d
                nc += acc[d] > lim
        probes += nc
        since = 0
        for jj in range(j, nq):
            if nc == 0:
                break
            i = order[jj]
            t = q_terms[i]
            qw = q_weights[i] * scales[t]
            s = term_ptr[t]
            p = s + win_ptr[t, w]
            pe = s + win_ptr[t, w + 1]
            if since >= nc or nc * 8 < pe - p:
                # drop candidates that cannot make it any more (amortised: at most as often as postings scanned)
                bound = rem[jj] * slack
                m = 0
                for c in range(nc):
                    if acc[cand[c]] + bound > theta:
                        cand[m] = cand[c]
                        m += 1
                nc = m
                since = 0
            if nc * 8 >= pe - p:  # many candidates: scanning the term is cheaper than probing it
                for q in range(p, pe):
                    acc[docs16[q]] += qw * weights[q]
                read += pe - p
                since += pe - p
                continue
            for c in range(nc):
                d = cand[c]
                if p < pe and docs16[p] < d:
                    step = 1
                    while p + step < pe and docs16[p + step] < d:
                        step <<= 1
                    lo = p + (step >> 1) + 1
                    hi = min(p + step, pe)
                    while lo < hi:
                        mid = (lo + hi) >> 1
                        if docs16[mid] < d:
                            lo = mid + 1
                        else:
                            hi = mid
                    p = lo
                if p < pe and docs16[p] == d:
                    acc[d] += qw * weights[p]
        for c in range(nc):
            x = acc[cand[c]]
            if x > 0 and (size < k or x > theta):
                size = _push(hs, hd, size, k, x, key_base + base + cand[c])
                if size == k:
                    theta = hs[0]
    return size, read, probes


@nb.njit(cache=True, nogil=True)
def doc_weights(q_terms, term_ptr, win_ptr, docs16, weights, scales, doc):
    """Weights of one document for the given terms (0 where absent), for explanations."""
    w = doc >> WINDOW_BITS
    off = doc & (WINDOW - 1)
    out = np.zeros(len(q_terms), np.float32)
    for i in range(len(q_terms)):
        t = q_terms[i]
        s = term_ptr[t]
        pos = _find(docs16, s + win_ptr[t, w], s + win_ptr[t, w + 1], off)
        if pos >= 0:
            out[i] = weights[pos] * scales[t]
    return out
