"""The posting codec of a segment (numba): building term-major postings from CSR rows, the per-window containers
of document offsets, and reading them back.

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
"""

from __future__ import annotations

import numba as nb
import numpy as np

WINDOW_BITS = 16
WINDOW = 1 << WINDOW_BITS
GAP_MIN = 512  # containers of at least this many documents are byte-gap lists
SKIP = 64  # postings between skip table entries of a byte-gap list


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
