"""The approximate-search structure of a segment (Seismic-style), built with the segment and as immutable.

Per term, its postings cut to the heaviest ``lam`` x the segment's documents (at least ``LAM_MIN``, at most
``list_max``) among the segment's ``global_postings`` x vocabulary heaviest (Seismic's global threshold), grouped into blocks of about ``block`` documents by clustering (a document joins the block of the
sampled centroid document it has the largest dot product with, on both vectors' ``DOC_CUT`` heaviest terms); each
block has a summary vector: per term the largest weight over its documents (all their terms, or their
``summary_terms`` heaviest), pruned to the heaviest entries holding ``alpha`` of its mass and quantised to a byte
(rounded up: a summary never scores below its block's best document on the terms it keeps). A forward index (each
document's terms and weights, in the segment's own storage: float32, or the 8-bit codes of a compact index)
re-scores candidates exactly. Files (``ax_*``), written through the segment's ``save_array`` so they are synced
and checksummed like every other segment file:

- ``ax_tblk.npy`` (int64, dim + 1): per term, its first block; blocks of a term are contiguous;
- ``ax_bptr.npy`` (int64, blocks + 1) + ``ax_bdocs.npy`` (uint32): each block's documents, ascending;
- ``ax_sscale.npy`` (float32 per block): a summary weight is its code x its block's scale;
- summaries, component-major (``approx_summaries``): ``ax_tcomp.npy`` (int64, dim + 1) + ``ax_ccomp.npy``
  (uint16 / int32) + ``ax_tent.npy`` (int64, dim + 1) + ``ax_cptr.npy`` (uint32, from the term's first entry) +
  ``ax_cblk.npy`` (uint16 / uint32) + ``ax_cq.npy`` (uint8);
- ``ax_fptr.npy`` (int64, documents + 1) + ``ax_fterms.npy`` (uint16 / int32) + ``ax_fw.npy``: the forward index.

Segments written before the component-major layout (``sptr`` / ``sterms`` / ``sq``, one sparse vector a block)
are read and transposed in memory on open.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numba as nb
import numpy as np

from .approx_files import LAYOUT, NAMES
from .approx_summaries import code, emit_list, grow, summary_cut

LAM_MIN = 256  # a term keeps at least this many postings (all of them in small segments)
DOC_CUT = 16  # terms per document vector used to cluster a list
SUM_CUT = 32  # terms per document vector that summaries are built from (the heaviest carry a block's maxima)

LEGACY = {
    "summary_terms": SUM_CUT,
    "list_max": 0,
    "global_postings": 0,
}  # knobs a record written before them did not name


@dataclass(frozen=True)
class BuildSettings:
    """Build-time knobs: ``lam`` (share of the segment's documents a term keeps, heaviest first), ``list_max``
    (the most it keeps, 0: no cap) and ``global_postings`` (x the vocabulary: the segment's heaviest postings
    kept in all, so light terms give way to heavy ones; 0: no global cut; Seismic's n_postings 3,500 and its
    cap of 1.5 x that per list), ``block`` (documents per block, on average), ``alpha``
    (share of a summary's mass kept), ``summary_max`` (entries a summary keeps at most, 0: no cap) and
    ``summary_terms`` (heaviest terms of each document a summary is built from, 0: all of them, as Seismic)."""

    lam: float = 0.05
    block: int = 10
    alpha: float = 0.4
    cluster: bool = True
    summary_max: int = 0
    summary_terms: int = 0
    list_max: int = 5250
    global_postings: int = 3500

    def record(self) -> dict:
        return {**self.__dict__}

    @classmethod
    def from_record(cls, rec: dict | None) -> BuildSettings:
        """The settings an index recorded; a record from before a knob existed keeps the behaviour it was built
        with (summaries from 32 terms, lists cut by ``lam`` alone), so new segments of an old index match its own."""
        return cls(**{**LEGACY, **rec}) if rec else cls()


@nb.njit(cache=True, nogil=True, inline="always")
def _take_max(u, w, mx, touched, nt, total):
    """Fold weight ``w`` of term ``u`` into a block's running maxima ``mx`` (``touched``: the terms set so far,
    ``total``: their summed maxima); returns the new (nt, total)."""
    if w <= 0:
        return nt, total
    if mx[u] == 0:
        touched[nt] = u
        nt += 1
    if w > mx[u]:
        total += w - mx[u]
        mx[u] = w
    return nt, total


@nb.njit(cache=True, nogil=True)
def _doc_tops(indptr, indices, data, cut):
    """Each document's ``cut`` heaviest terms (padded with -1) and their weights."""
    n = len(indptr) - 1
    tt = np.full((n, cut), -1, np.int64)
    tw = np.zeros((n, cut), np.float32)
    for d in range(n):
        s, e = indptr[d], indptr[d + 1]
        o = np.argsort(-data[s:e])[:cut]
        for j in range(len(o)):
            tt[d, j] = indices[s + o[j]]
            tw[d, j] = data[s + o[j]]
    return tt, tw


@nb.njit(cache=True, nogil=True)
def _build(
    indptr,
    indices,
    data,
    term_ptr,
    docs,
    weights,
    dim,
    lam_n,
    thr,
    block,
    alpha,
    cluster,
    smax,
    sum_cut,
    seed,
    ccomp,
    cblk,
):
    """Blocks and summaries, list by list; each list's summaries are written component-major as soon as they are
    built (``emit_list``: the block-major form of the whole segment, several times larger, never exists).
    ``ccomp`` / ``cblk``: empty arrays of the dtypes to write components and block numbers in; ``thr``: the
    weight below which no posting is kept (the segment's global cut)."""
    n = len(indptr) - 1
    np.random.seed(seed)
    tt, tw = _doc_tops(indptr, indices, data, max(DOC_CUT, sum_cut))
    hist = np.zeros(257, np.float64)
    tblk = np.zeros(dim + 1, np.int64)
    bptr = np.zeros(1024, np.int64)
    bdocs = np.empty(1024, np.uint32)
    sscale = np.empty(1024, np.float32)
    tcomp = np.zeros(dim + 1, np.int64)
    tent = np.zeros(dim + 1, np.int64)
    cptr = np.empty(4096, np.uint32)
    cq = np.empty(4096, np.uint8)
    lt = np.empty(4096, np.int64)  # the current list's summaries, block-major
    lb = np.empty(4096, np.int64)
    lq = np.empty(4096, np.uint8)
    nbk = 0
    nd = 0
    nc_ = 0
    n_ent = 0  # summary entries written (``ne`` counts the centroid map)
    mx = np.zeros(dim, np.float32)
    touched = np.empty(dim, np.int64)
    head = np.full(dim, -1, np.int64)  # term -> first (centroid, weight) entry of the centroid map
    assign = np.empty(0, np.int64)
    for t in range(dim):
        tblk[t] = nbk
        tcomp[t] = nc_
        tent[t] = n_ent
        s, e = term_ptr[t], term_ptr[t + 1]
        L = e - s
        if L == 0:
            continue
        keep = np.argsort(-weights[s:e], kind="mergesort")[: min(L, lam_n)]
        m = len(keep)
        while m > 0 and weights[s + keep[m - 1]] < thr:  # below the segment's global cut
            m -= 1
        if m == 0:
            continue
        keep = keep[:m]
        kd = np.empty(m, np.int64)
        for j in range(m):
            kd[j] = docs[s + keep[j]]
        nc = max(1, (m + block - 1) // block)
        assign = np.empty(m, np.int64)
        if not cluster or nc == 1:
            kd.sort()
            for j in range(m):
                assign[j] = j // block
        else:
            cents = np.random.choice(m, nc, replace=False)
            nxt = np.empty(nc * DOC_CUT, np.int64)
            ent_c = np.empty(nc * DOC_CUT, np.int64)
            ent_w = np.empty(nc * DOC_CUT, np.float32)
            ne = 0
            for c in range(nc):
                cd = kd[cents[c]]
                for j in range(DOC_CUT):
                    u = tt[cd, j]
                    if u < 0:
                        break
                    ent_c[ne] = c
                    ent_w[ne] = tw[cd, j]
                    nxt[ne] = head[u]
                    head[u] = ne
                    ne += 1
            acc = np.zeros(nc, np.float32)
            for j in range(m):
                d = kd[j]
                best = -1
                bv = np.float32(0.0)
                for a in range(DOC_CUT):
                    u = tt[d, a]
                    if u < 0:
                        break
                    if u == t:  # every document of the list has it: it cannot tell centroids apart
                        continue
                    x = head[u]
                    while x >= 0:
                        c = ent_c[x]
                        acc[c] += tw[d, a] * ent_w[x]
                        if acc[c] > bv:
                            bv = acc[c]
                            best = c
                        x = nxt[x]
                for a in range(DOC_CUT):  # reset only what was touched
                    u = tt[d, a]
                    if u < 0:
                        break
                    if u == t:
                        continue
                    x = head[u]
                    while x >= 0:
                        acc[ent_c[x]] = 0
                        x = nxt[x]
                assign[j] = best if best >= 0 else np.random.randint(0, nc)
            for c in range(nc):
                cd = kd[cents[c]]
                for j in range(DOC_CUT):
                    u = tt[cd, j]
                    if u < 0:
                        break
                    head[u] = -1
        # group by block (blocks in centroid order, documents ascending inside a block)
        o = np.argsort(assign * n + kd)
        bptr = grow(bptr, nbk + nc + 1)
        sscale = grow(sscale, nbk + nc)
        bdocs = grow(bdocs, nd + m)
        j = 0
        ln = 0
        lb0 = nbk
        while j < m:
            c = assign[o[j]]
            j0 = j
            while j < m and assign[o[j]] == c:
                bdocs[nd] = kd[o[j]]
                nd += 1
                j += 1
            # summary: per-term max over the block's documents (their ``sum_cut`` heaviest terms, or all of them),
            # pruned to alpha of its mass and to smax entries
            nt = 0
            total = 0.0
            for q in range(j0, j):
                d = kd[o[q]]
                if sum_cut > 0:
                    for a in range(sum_cut):
                        if tt[d, a] < 0:
                            break
                        nt, total = _take_max(tt[d, a], tw[d, a], mx, touched, nt, total)
                else:
                    for x in range(indptr[d], indptr[d + 1]):
                        nt, total = _take_max(indices[x], data[x], mx, touched, nt, total)
            keepn, kt, scale = summary_cut(mx, touched, nt, total, alpha, smax, hist)
            lt = grow(lt, ln + keepn)
            lb = grow(lb, ln + keepn)
            lq = grow(lq, ln + keepn)
            for q in range(keepn):
                u = kt[q]
                lt[ln] = u
                lb[ln] = nbk - lb0
                lq[ln] = code(mx[u], scale)
                ln += 1
            for q in range(nt):
                mx[touched[q]] = 0
            sscale[nbk] = scale
            nbk += 1
            bptr[nbk] = nd
        ccomp, cptr, cblk, cq, nc_, n_ent = emit_list(
            lt, lb, lq, ln, nbk - lb0, ccomp, cptr, cblk, cq, nc_, n_ent
        )
    tblk[dim] = nbk
    tcomp[dim] = nc_
    tent[dim] = n_ent
    return (
        tblk,
        bptr[: nbk + 1].copy(),
        bdocs[:nd].copy(),
        sscale[:nbk].copy(),
        tcomp,
        ccomp[:nc_].copy(),
        tent,
        cptr[:nc_].copy(),
        cblk[:n_ent].copy(),
        cq[:n_ent].copy(),
    )


def build(
    folder: Path, indptr, indices, data, fw, term_ptr, docs, weights, dim: int, settings, save_array
) -> dict:
    """Build and write a segment's approximate structure (``fw``: the forward weights as the segment stores
    them); its summary for meta.json."""
    n = len(indptr) - 1
    lam_n = max(LAM_MIN, math.ceil(settings.lam * n))
    if settings.list_max > 0:
        lam_n = min(lam_n, max(LAM_MIN, int(settings.list_max)))
    thr = np.float32(0.0)
    budget = int(settings.global_postings) * dim
    if 0 < budget < len(weights):  # Seismic's global threshold: the segment's heaviest budget postings
        thr = np.float32(
            np.partition(np.asarray(weights, np.float32), len(weights) - budget)[len(weights) - budget]
        )
    tdt = np.uint16 if dim <= 1 << 16 else np.int32
    longest = int(np.diff(np.asarray(term_ptr, np.int64)).max()) if dim else 0
    per_list = -(-min(longest, lam_n) // int(settings.block))  # blocks of the longest list, at most
    out = _build(
        np.asarray(indptr, np.int64),
        np.asarray(indices, np.int64),
        np.asarray(data, np.float32),
        term_ptr,
        docs,
        weights,
        dim,
        lam_n,
        thr,
        int(settings.block),
        float(settings.alpha),
        bool(settings.cluster),
        int(settings.summary_max),
        int(settings.summary_terms),
        0,
        np.empty(4096, tdt),
        np.empty(4096, np.uint16 if per_list <= 1 << 16 else np.uint32),
    )
    tblk, bptr, bdocs, sscale, tcomp, ccomp, tent, cptr, cblk, cq = out
    arrays = {
        "tblk": tblk,
        "bptr": bptr,
        "bdocs": bdocs,
        "sscale": sscale,
        "tcomp": tcomp,
        "ccomp": ccomp,
        "tent": tent,
        "cptr": cptr,
        "cblk": cblk,
        "cq": cq,
        "fptr": np.asarray(indptr, np.int64),
        "fterms": np.asarray(indices).astype(tdt),
        "fw": np.asarray(fw),
    }
    for name in NAMES:
        save_array(folder / f"ax_{name}.npy", arrays[name])
    return {
        **settings.record(),
        "lam_n": lam_n,
        "blocks": int(len(bptr) - 1),
        "kept": int(len(bdocs)),
        "summary_entries": int(len(cq)),
        "summaries": LAYOUT,
    }
