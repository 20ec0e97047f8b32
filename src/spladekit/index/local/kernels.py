"""Exact, pruned top-k search over one segment (numba), and the per-document weights behind an explanation.

Search walks the windows one by one with a window-local accumulator that stays in cache. Inside a window the
query terms are taken in decreasing order of their upper bound (query weight x the term's largest weight in that
window) and scanned term-at-a-time. Once the bounds of the terms left sum to at most ``SWITCH`` x theta (the
current k-th score), only documents whose partial score is within that sum of theta can still enter the top k:
the remaining terms are merged against that candidate list (galloping search in an array, skip table then a short
walk in a byte-gap list, or a plain scan when candidates are many) and candidates are dropped as soon as their
score plus the bounds left cannot beat theta. A window whose total bound cannot beat theta is skipped. Every
test compares bounds with a small slack, so pruning never loses a document of the exact top k (MaxScore-style
safe pruning). The containers are read with ``codec``.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .codec import GAP_MIN, SKIP, WINDOW, WINDOW_BITS, _container, _gap_bytes, _gap_find, _n_skips, _size

SWITCH = 0.5  # see search_segment: where scanning hands over to candidate probing


@nb.njit(cache=True, nogil=True, inline="always")
def _scan(docs16, a, cnt, weights, p, qw, acc):
    """acc[doc] += qw * weight for every posting of a container (its weights at weights[p:p + cnt])."""
    # Unsigned or range-based indices throughout: numba then skips its negative-index wraparound in the hot loops.
    wv = weights[p : p + cnt]
    if cnt >= GAP_MIN:
        by, nb_ = _gap_bytes(docs16, a, cnt)
        d = np.uint64(0)  # 1 + offset of the current posting
        one = np.uint64(1)
        if nb_ == cnt:  # no escapes: one byte a posting
            for j in range(cnt):
                d += by[j]
                acc[d - one] += qw * wv[j]
        else:
            j = 0
            for b in range(nb_):
                g = by[b]
                if g == 0:
                    d += np.uint64(255)
                else:
                    d += g
                    acc[d - one] += qw * wv[j]
                    j += 1
    else:
        dv = docs16[a : a + cnt]
        for j in range(cnt):
            acc[dv[j]] += qw * wv[j]


@nb.njit(cache=True, nogil=True)
def _probe_gaps(docs16, a, cnt, wv, qw, acc, cand, nc):
    """acc[x] += qw * weight for each candidate x (ascending) found in the byte-gap list at ``a`` (weights wv)."""
    by, _ = _gap_bytes(docs16, a, cnt)
    n_sk = np.uint64(_n_skips(cnt))
    sk = docs16[a + 1 : a + 1 + 2 * _n_skips(cnt)]
    one = np.uint64(1)
    two = np.uint64(2)
    step = np.uint64(SKIP)
    n = np.uint64(cnt)
    s = np.uint64(0)  # skip entries passed (their offset is at most the candidate)
    j = np.uint64(0)  # 1 + number of the current posting (0: before the first)
    d = np.uint64(0)  # 1 + its offset
    b = np.uint64(0)  # where the next posting's bytes start
    for c in range(nc):
        x = np.uint64(cand[c]) + one
        while s < n_sk and np.uint64(sk[two * s]) < x:
            s += one
        if s > 0 and (s - one) * step + one > j:
            j = (s - one) * step + one
            d = np.uint64(sk[two * (s - one)]) + one
            b = j + np.uint64(sk[two * (s - one) + one])
        while d < x and j < n:
            g = by[b]
            b += one
            while g == 0:
                d += np.uint64(255)
                g = by[b]
                b += one
            d += g
            j += one
        if d == x:
            acc[d - one] += qw * wv[j - one]


@nb.njit(cache=True, nogil=True)
def _probe_array(dv, wv, qw, acc, cand, nc):
    """acc[x] += qw * weight for each candidate x (ascending) found in the sorted offsets dv (galloping merge)."""
    n = np.uint64(len(dv))
    one = np.uint64(1)
    p = np.uint64(0)
    for c in range(nc):
        x = cand[c]
        if p < n and dv[p] < x:
            step = one
            while p + step < n and dv[p + step] < x:
                step <<= one
            lo = p + (step >> one) + one
            hi = min(p + step, n)
            while lo < hi:
                mid = (lo + hi) >> one
                if dv[mid] < x:
                    lo = mid + one
                else:
                    hi = mid
            p = lo
        if p < n and dv[p] == x:
            acc[np.uint64(x)] += qw * wv[p]


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


@nb.njit(cache=True, nogil=True, inline="always")
def lower_bound(a, lo, hi, x):
    """The first position in a[lo:hi] (ascending) holding a value >= x (hi if none)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@nb.njit(cache=True, nogil=True)
def _find(docs16, s, e, target):
    """Binary search of a uint16 offset in docs16[s:e]; returns the position or -1."""
    lo = lower_bound(docs16, s, e, target)
    return lo if lo < e and docs16[lo] == target else -1


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
    nxt = np.empty(nq, np.int64)  # per query term: where its next container may start in docs16
    ca = np.empty(nq, np.int64)  # per query term: start of its container of this window in docs16
    cn = np.empty(nq, np.int64)  # per query term: documents in that container
    for i in range(nq):
        nxt[i] = term_ptr[1, q_terms[i]]
    probes = 0
    read = 0
    for w in range(n_windows):
        base = w << WINDOW_BITS
        wsize = min(WINDOW, n_docs - base)
        if wsize <= 0:
            break
        for i in range(nq):
            t = q_terms[i]
            cnt = np.int64(win_ptr[t, w + 1] - win_ptr[t, w])
            ca[i] = nxt[i]
            cn[i] = cnt
            if cnt:
                nxt[i] += _size(docs16, nxt[i], cnt)
            qw = q_weights[i]
            bmax = qw * win_max[t, w]
            bmin = qw * win_min[t, w]
            u = bmax if bmax > bmin else bmin
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
            _scan(
                docs16, ca[i], cn[i], weights, term_ptr[0, t] + win_ptr[t, w], q_weights[i] * scales[t], acc
            )
            read += cn[i]
            j += 1
        # Unseen documents can no longer reach theta. Keep scanning until the bound of the terms left is at most
        # SWITCH x theta, so that only documents already close to theta remain candidates.
        while j < nq and rem[j] * slack > theta * SWITCH:
            i = order[j]
            t = q_terms[i]
            _scan(
                docs16, ca[i], cn[i], weights, term_ptr[0, t] + win_ptr[t, w], q_weights[i] * scales[t], acc
            )
            read += cn[i]
            j += 1
        # Only documents already seen can still make the top k. Each remaining term either probes its postings
        # for those candidates (galloping merge in an array, skip table and a short walk in a byte-gap list; when
        # they are few) or is scanned (when they are many); candidates whose score plus the bounds left cannot
        # beat theta are dropped along the way.
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
            p0 = term_ptr[0, t] + win_ptr[t, w]  # the container's first weight
            cnt = cn[i]
            a = ca[i]
            if since >= nc or nc * 8 < cnt:
                # drop candidates that cannot make it any more (amortised: at most as often as postings scanned)
                bound = rem[jj] * slack
                m = 0
                for c in range(nc):
                    if acc[cand[c]] + bound > theta:
                        cand[m] = cand[c]
                        m += 1
                nc = m
                since = 0
            # many candidates: scanning the term is cheaper than probing it (a probe costs more in a byte-gap list:
            # a walk of SKIP / 2 gaps on average)
            if nc * (8 if cnt < GAP_MIN else 32) >= cnt:
                _scan(docs16, a, cnt, weights, p0, qw, acc)
                read += cnt
                since += cnt
                continue
            if cnt >= GAP_MIN:
                _probe_gaps(docs16, a, cnt, weights[p0 : p0 + cnt], qw, acc, cand, nc)
            else:
                _probe_array(docs16[a : a + cnt], weights[p0 : p0 + cnt], qw, acc, cand, nc)
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
        a, cnt = _container(term_ptr, win_ptr, docs16, t, w)
        if cnt >= GAP_MIN:
            j = _gap_find(docs16, a, cnt, off)
        else:
            j = _find(docs16, a, a + cnt, off)
            if j >= 0:
                j -= a
        if j >= 0:
            out[i] = weights[term_ptr[0, t] + win_ptr[t, w] + j] * scales[t]
    return out
