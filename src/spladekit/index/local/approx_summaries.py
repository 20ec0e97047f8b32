"""Block summaries of the approximate-search structure: choosing a summary's entries, and storing a term's
summaries component-major (as Seismic does) so that scoring them reads only the entries of the query's terms.

Block-major (one sparse vector per block) is how summaries are built; component-major is how they are stored and
searched: per term list, its summaries' distinct components ascending (``ccomp``), and per component the blocks
that have it and their byte codes (``cblk``, ``cq``; ``cptr`` delimits them, counted from the term's first entry
``tent``). Scoring a list's summaries is then
one binary search per query term and one multiply-add per matching entry, instead of a pass over every entry of
every summary (which grew with whole-document summaries to ~400 entries a block).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .kernels import lower_bound


@nb.njit(cache=True, nogil=True, inline="always")
def code(w, scale):
    """The byte a summary stores weight ``w`` as, rounded up (code x scale never under-scores ``w``)."""
    return min(255, int(math.ceil(w / scale - 1e-4)))


@nb.njit(cache=True, nogil=True)
def summary_cut(mx, touched, nt, total, alpha, smax, hist):
    """A block summary's entries: (count, sorted terms, scale). The heaviest of the ``nt`` touched terms holding
    ``alpha`` of the mass (``total``), at most ``smax`` (0: no cap). Selected by a 256-bucket histogram of the
    byte codes the summary is stored in (one pass, no sort: the cut is at code resolution, ties kept together
    unless the cap splits them)."""
    top = np.float32(0.0)
    for q in range(nt):
        if mx[touched[q]] > top:
            top = mx[touched[q]]
    scale = np.float32(top / 255.0) if top > 0 else np.float32(1.0)
    cnt = np.zeros(257, np.int64)
    hist[:] = 0.0
    for q in range(nt):
        w = mx[touched[q]]
        c = code(w, scale)
        cnt[c] += 1
        hist[c] += w
    cap = smax if smax > 0 else nt
    run = 0.0
    keepn = 0
    cut = 256
    room = -1  # entries the cap leaves for the bucket where it falls (-1: the whole bucket)
    while cut > 0 and keepn < cap and run < alpha * total:
        cut -= 1
        if keepn + cnt[cut] > cap:
            room = cap - keepn
            keepn = cap
            break
        keepn += cnt[cut]
        run += hist[cut]
    kt = np.empty(keepn, np.int64)
    m = 0
    for q in range(nt):
        u = touched[q]
        c = code(mx[u], scale)
        if c > cut or (c == cut and room != 0):
            if c == cut and room > 0:
                room -= 1
            kt[m] = u
            m += 1
    return keepn, np.sort(kt[:m]), scale


@nb.njit(cache=True, nogil=True)
def grow(a, need):
    """``a`` with room for ``need`` entries (x1.5: the summaries are the structure's largest arrays)."""
    if need <= len(a):
        return a
    b = np.empty(max(need, len(a) + len(a) // 2), a.dtype)
    b[: len(a)] = a
    return b


@nb.njit(cache=True, nogil=True)
def emit_list(lt, lb, lq, ln, nblocks, ccomp, cptr, cblk, cq, nc, ne):
    """Append one term list's summaries, given block-major as ``ln`` entries (component ``lt``, block ``lb``
    within the list, code ``lq``), component-major to the segment's arrays (``cptr`` counted from the list's
    first entry). Returns the arrays (grown as needed) and the new counts (components, entries)."""
    o = np.argsort(lt[:ln] * nblocks + lb[:ln])
    ccomp = grow(ccomp, nc + ln)
    cptr = grow(cptr, nc + ln)
    cblk = grow(cblk, ne + ln)
    cq = grow(cq, ne + ln)
    last = -1
    for j in range(ln):
        e = o[j]
        if lt[e] != last:
            last = lt[e]
            ccomp[nc] = last
            cptr[nc] = j
            nc += 1
        cblk[ne + j] = lb[e]
        cq[ne + j] = lq[e]
    return ccomp, cptr, cblk, cq, nc, ne + ln


@nb.njit(cache=True, nogil=True)
def score_summaries(t, st, sw, tcomp, ccomp, tent, cptr, cblk, cq, sc):
    """Add the query's dot product with each summary of term ``t``'s list into ``sc`` (codes, not yet scaled);
    ``st`` / ``sw``: the query's terms ascending and their weights; ``cptr``: offsets from ``tent[t]``. Returns
    the entries read."""
    lo, hi = tcomp[t], tcomp[t + 1]
    base = tent[t]
    read = 0
    for i in range(len(st)):
        if lo >= hi:
            break
        pos = lower_bound(ccomp, lo, hi, st[i])
        if pos < hi and ccomp[pos] == st[i]:
            w = sw[i]
            e1 = base + cptr[pos + 1] if pos + 1 < hi else tent[t + 1]
            for e in range(base + cptr[pos], e1):
                sc[cblk[e]] += w * np.float32(cq[e])
            read += e1 - base - cptr[pos] + 1
            lo = pos + 1
        else:
            lo = pos
    return read


@nb.njit(cache=True, nogil=True)
def to_component_major(tblk, sptr, sterms, sq):
    """(tcomp, ccomp, tent, cptr, cblk, cq) from block-major summaries (the layout segments were written in
    before): per term t its components ``ccomp[tcomp[t]:tcomp[t + 1]]`` ascending, each component's entries
    from ``tent[t] + cptr[c]``, as ``emit_list`` writes them."""
    dim = len(tblk) - 1
    tcomp = np.zeros(dim + 1, np.int64)
    tent = np.zeros(dim + 1, np.int64)
    ccomp = np.empty(1024, np.int32)
    cptr = np.empty(1024, np.uint32)
    cblk = np.empty(1024, np.int32)
    cq = np.empty(1024, np.uint8)
    nc = 0
    ne = 0
    for t in range(dim):
        tcomp[t] = nc
        tent[t] = ne
        b0, b1 = tblk[t], tblk[t + 1]
        e0, e1 = sptr[b0], sptr[b1]
        lt = np.empty(e1 - e0, np.int64)
        lb = np.empty(e1 - e0, np.int64)
        for b in range(b0, b1):
            for e in range(sptr[b], sptr[b + 1]):
                lt[e - e0] = sterms[e]
                lb[e - e0] = b - b0
        ccomp, cptr, cblk, cq, nc, ne = emit_list(
            lt, lb, sq[e0:e1], e1 - e0, b1 - b0, ccomp, cptr, cblk, cq, nc, ne
        )
    tcomp[dim] = nc
    tent[dim] = ne
    return tcomp, ccomp[:nc].copy(), tent, cptr[:nc].copy(), cblk[:ne].copy(), cq[:ne].copy()
