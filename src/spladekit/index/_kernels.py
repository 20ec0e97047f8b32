"""Numba kernels of the index: segment building and exact, pruned top-k search.

Postings of a segment are term-major; within a term they are sorted by document number and split into windows
of ``WINDOW`` (65,536) documents. The documents of one (term, window) form a container of offsets inside the
window (``docs.npy``, in uint16 units); its weights are stored apart, one float32 per posting in the same order.
A container holds either

- a sorted ``uint16`` array of the offsets (2 bytes a posting), when the term has fewer than ``GAP_MIN``
  documents in the window; or
- a byte-gap list, for frequent terms: the gap from the previous offset in one byte (a gap over 255 is written
  as zero bytes, each adding 255, then the rest), after a header with the number of those escape bytes and a skip
  table (the offset of every ``SKIP``-th posting and the escape bytes up to it) for candidate probing. At least
  ``GAP_MIN`` documents in 65,536 offsets need at most 257 escapes, so this is never larger than the array and
  about 1 byte a posting for frequent terms.

Search walks the windows one by one with a window-local accumulator that stays in cache. Inside a window the
query terms are taken in decreasing order of their upper bound (query weight x the term's largest weight in that
window) and scanned term-at-a-time. Once the bounds of the terms left sum to at most ``SWITCH`` x theta (the
current k-th score), only documents whose partial score is within that sum of theta can still enter the top k:
the remaining terms are merged against that candidate list (galloping search in an array, skip table then a short
walk in a byte-gap list, or a plain scan when candidates are many) and candidates are dropped as soon as their
score plus the bounds left cannot beat theta. A window whose total bound cannot beat theta is skipped. Every
test compares bounds with a small slack, so pruning never loses a document of the exact top k (MaxScore-style
safe pruning).
"""

from __future__ import annotations

import numba as nb
import numpy as np

WINDOW_BITS = 16
WINDOW = 1 << WINDOW_BITS
GAP_MIN = 512  # containers of at least this many documents are byte-gap lists
SKIP = 64  # postings between skip table entries of a byte-gap list
SWITCH = 0.5  # see search_segment: where scanning hands over to candidate probing


@nb.njit(cache=True, nogil=True, inline="always")
def _n_skips(cnt):
    return (cnt + SKIP - 1) // SKIP


@nb.njit(cache=True, nogil=True, inline="always")
def _size(docs16, a, cnt):
    """uint16 units of the container of ``cnt`` documents at ``a``."""
    if cnt >= GAP_MIN:
        return 1 + 2 * _n_skips(cnt) + (cnt + np.int64(docs16[a]) + 1) // 2
    return cnt


@nb.njit(cache=True, nogil=True, inline="always")
def _gap_bytes(docs16, a, cnt):
    """The gap bytes of the byte-gap list at ``a`` and how many there are."""
    nb_ = cnt + np.int64(docs16[a])
    s0 = a + 1 + 2 * _n_skips(cnt)
    return docs16[s0 : s0 + (nb_ + 1) // 2].view(np.uint8), nb_


@nb.njit(cache=True, nogil=True)
def _container(term_ptr, win_ptr, docs16, t, w):
    """(start in docs16, document count) of the container of term ``t`` in window ``w``."""
    pos = np.int64(term_ptr[1, t])
    for v in range(w):
        pos += _size(docs16, pos, np.int64(win_ptr[t, v + 1] - win_ptr[t, v]))
    return pos, np.int64(win_ptr[t, w + 1] - win_ptr[t, w])


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


@nb.njit(cache=True, nogil=True)
def _decode(docs16, a, cnt, out):
    """Window offsets of a container's documents into out[:cnt]."""
    if cnt >= GAP_MIN:
        by, nb_ = _gap_bytes(docs16, a, cnt)
        d = np.int64(-1)
        j = 0
        for b in range(nb_):
            g = by[b]
            if g == 0:
                d += 255
            else:
                d += g
                out[j] = d
                j += 1
    else:
        for j in range(cnt):
            out[j] = docs16[a + j]


@nb.njit(cache=True, nogil=True)
def _escapes(docs, p, cnt):
    """Escape bytes the byte-gap list of docs[p:p + cnt] (ascending, same window) needs."""
    e = 0
    prev = np.int64(-1)
    for q in range(p, p + cnt):
        o = np.int64(docs[q] & (WINDOW - 1))
        e += (o - prev - 1) // 255
        prev = o
    return e


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
def build_containers(term_ptr, docs, win_ptr):
    """Containers of term-major postings (``docs``: document numbers): (start of each term's in docs16, docs16)."""
    dim = len(term_ptr) - 1
    n_windows = win_ptr.shape[1] - 1
    doc_ptr = np.zeros(dim + 1, np.int64)
    pos = np.int64(0)
    for t in range(dim):
        doc_ptr[t] = pos
        for w in range(n_windows):
            cnt = np.int64(win_ptr[t, w + 1] - win_ptr[t, w])
            if cnt >= GAP_MIN:
                e = _escapes(docs, term_ptr[t] + win_ptr[t, w], cnt)
                pos += 1 + 2 * _n_skips(cnt) + (cnt + e + 1) // 2
            else:
                pos += cnt
    doc_ptr[dim] = pos
    out = np.zeros(pos, np.uint16)
    for t in range(dim):
        pos = doc_ptr[t]
        for w in range(n_windows):
            p = term_ptr[t] + win_ptr[t, w]
            cnt = np.int64(win_ptr[t, w + 1] - win_ptr[t, w])
            if cnt >= GAP_MIN:
                e = _escapes(docs, p, cnt)
                out[pos] = e
                sk = pos + 1
                s0 = sk + 2 * _n_skips(cnt)
                by = out[s0 : s0 + (cnt + e + 1) // 2].view(np.uint8)
                prev = np.int64(-1)
                b = 0
                esc = 0
                for j in range(cnt):
                    o = np.int64(docs[p + j] & (WINDOW - 1))
                    g = o - prev
                    while g > 255:
                        by[b] = 0
                        b += 1
                        g -= 255
                        esc += 1
                    by[b] = g
                    b += 1
                    prev = o
                    if j % SKIP == 0:
                        out[sk + 2 * (j // SKIP)] = o
                        out[sk + 2 * (j // SKIP) + 1] = esc
                pos = s0 + (cnt + e + 1) // 2
            else:
                for j in range(cnt):
                    out[pos + j] = docs[p + j] & (WINDOW - 1)
                pos += cnt
    return doc_ptr, out


@nb.njit(cache=True, nogil=True)
def postings_to_csr(term_ptr, docs16, win_ptr, weights, scales, n_docs, keep):
    """Rebuild the document vectors of a segment (for merges), keeping rows where ``keep`` is set."""
    dim = term_ptr.shape[1] - 1
    n_windows = win_ptr.shape[1] - 1
    offs = np.empty(WINDOW, np.int64)
    counts = np.zeros(n_docs, np.int64)
    for t in range(dim):
        pos = np.int64(term_ptr[1, t])
        for w in range(n_windows):
            cnt = np.int64(win_ptr[t, w + 1] - win_ptr[t, w])
            _decode(docs16, pos, cnt, offs)
            pos += _size(docs16, pos, cnt)
            base = w << WINDOW_BITS
            for j in range(cnt):
                counts[base + offs[j]] += 1
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
        s = np.int64(term_ptr[0, t])
        pos = np.int64(term_ptr[1, t])
        sc = scales[t]
        for w in range(n_windows):
            cnt = np.int64(win_ptr[t, w + 1] - win_ptr[t, w])
            _decode(docs16, pos, cnt, offs)
            pos += _size(docs16, pos, cnt)
            base = w << WINDOW_BITS
            p = s + win_ptr[t, w]
            for j in range(cnt):
                r = new_row[base + offs[j]]
                if r >= 0:
                    q = fill[r]
                    indices[q] = t
                    data[q] = np.float32(weights[p + j] * sc)
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
def _gap_find(docs16, a, cnt, x):
    """Posting number of window offset ``x`` in the byte-gap list at ``a``, or -1."""
    by, _ = _gap_bytes(docs16, a, cnt)
    n_sk = _n_skips(cnt)
    si = 0
    while si + 1 < n_sk and docs16[a + 1 + 2 * (si + 1)] <= x:
        si += 1
    j = si * SKIP
    d = np.int64(docs16[a + 1 + 2 * si])
    b = j + 1 + np.int64(docs16[a + 2 + 2 * si])
    while d < x and j + 1 < cnt:
        g = by[b]
        b += 1
        while g == 0:
            d += 255
            g = by[b]
            b += 1
        d += g
        j += 1
    return j if d == x else -1


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
