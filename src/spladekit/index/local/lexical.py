"""The BM25 view of a segment (per document its analysed terms and their counts) and BM25 top-k over segments.

A segment of an index that keeps a BM25 view holds, next to its postings, written with it and as immutable:

- ``lex_terms.bin`` + ``lex_terms_off.npy``: the segment's lexical vocabulary, its stems sorted (UTF-8, so byte
  order is code point order and a term is found by binary search without decoding the rest);
- ``lex_ptr.npy`` (int64, terms + 1): where each term's postings start;
- ``lex_docs.npy`` (uint32) and ``lex_tf.npy`` (uint16, uint32 when a count needs it): per posting the document
  and how often the term occurs in it, documents ascending within a term;
- ``lex_len.npy`` (int32 per document): its length in analysed tokens; -1 for a document stored without text,
  which has no lexical view: it scores 0 and counts in neither N nor avgdl (Lucene's docCount of a field).

Each segment keeps its own vocabulary, as a Lucene segment does; a merge unions them. Collection statistics (N,
df, avgdl) are summed over the live documents of every segment at query time, so a delete counts at once
(Lucene keeps counting deleted documents until a merge drops them). Analysis and the formula are
``index.lexical``'s, so scores equal bm25s (method lucene) over the same live documents.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numba as nb
import numpy as np

from ..lexical import K1, B, analyze, idf, query_terms
from .kernels import _push

FILES = ("lex_terms.bin", "lex_terms_off.npy", "lex_ptr.npy", "lex_docs.npy", "lex_tf.npy", "lex_len.npy")


@dataclass
class LexicalArrays:
    """A BM25 view in memory, as written: sorted terms, their postings (document, count), document lengths."""

    terms: list[str]
    ptr: np.ndarray  # int64, len(terms) + 1
    docs: np.ndarray  # uint32
    tf: np.ndarray  # uint16 / uint32
    lens: np.ndarray  # int32, -1: no text

    @classmethod
    def from_texts(cls, texts: Sequence[str | None]) -> LexicalArrays:
        """Analyse ``texts`` (None: a document without text) into a view of documents 0 .. len - 1."""
        n = len(texts)
        tok = analyze([t or "" for t in texts], ids=True)
        lens = np.fromiter((len(x) for x in tok.ids), np.int64, n)
        flat = np.fromiter(itertools.chain.from_iterable(tok.ids), np.int64, int(lens.sum()))
        by_id = [""] * len(tok.vocab)
        for word, i in tok.vocab.items():
            by_id[i] = word
        order = sorted(range(len(by_id)), key=by_id.__getitem__)
        rank = np.empty(len(by_id), np.int64)
        rank[order] = np.arange(len(by_id))
        terms = [by_id[i] for i in order]
        key = rank[flat] * max(n, 1) + np.repeat(np.arange(n, dtype=np.int64), lens)
        uniq, counts = np.unique(key, return_counts=True)
        term_of = uniq // max(n, 1)
        lens[[i for i, t in enumerate(texts) if t is None]] = -1
        return cls(terms, _ptr(term_of, len(terms)), (uniq % max(n, 1)).astype(np.uint32), _tf(counts), lens)

    def subset(self, keep: np.ndarray) -> LexicalArrays:
        """The view of the documents where ``keep`` is set, renumbered in order (terms left without postings
        are dropped)."""
        keep = np.asarray(keep, bool)
        new_num = np.cumsum(keep, dtype=np.int64) - 1
        term_of = np.repeat(np.arange(len(self.terms), dtype=np.int64), np.diff(self.ptr))
        m = keep[self.docs.astype(np.int64)]
        count = np.bincount(term_of[m], minlength=len(self.terms))
        used = np.flatnonzero(count)
        ptr = np.zeros(len(used) + 1, np.int64)
        np.cumsum(count[used], out=ptr[1:])
        return LexicalArrays(
            [self.terms[i] for i in used],
            ptr,
            new_num[self.docs[m].astype(np.int64)].astype(np.uint32),
            _tf(self.tf[m]),
            np.asarray(self.lens)[keep].astype(np.int32),
        )

    @classmethod
    def concat(cls, parts: list[LexicalArrays]) -> LexicalArrays:
        """One view of the documents of ``parts`` in order (a merge): vocabularies unioned, postings re-sorted."""
        terms = sorted(set().union(*(p.terms for p in parts)))
        pos = {t: i for i, t in enumerate(terms)}
        t_all, d_all, f_all = [], [], []
        base = 0
        for p in parts:
            remap = np.fromiter((pos[t] for t in p.terms), np.int64, len(p.terms))
            t_all.append(np.repeat(remap, np.diff(p.ptr)))
            d_all.append(p.docs.astype(np.int64) + base)
            f_all.append(np.asarray(p.tf, np.uint32))
            base += len(p.lens)
        t_cat = np.concatenate(t_all) if t_all else np.zeros(0, np.int64)
        d_cat = np.concatenate(d_all) if d_all else np.zeros(0, np.int64)
        order = np.lexsort((d_cat, t_cat))
        f_cat = np.concatenate(f_all)[order] if f_all else np.zeros(0, np.uint32)
        lens = np.concatenate([p.lens for p in parts]) if parts else np.zeros(0, np.int32)
        return cls(terms, _ptr(t_cat[order], len(terms)), d_cat[order].astype(np.uint32), _tf(f_cat), lens)

    def save(self, folder: Path, save_array, save_bytes) -> dict:
        """Write the view's files into a new segment folder; its summary for the segment's meta.json."""
        blob = [t.encode("utf-8") for t in self.terms]
        off = np.zeros(len(blob) + 1, np.int64)
        np.cumsum([len(b) for b in blob], out=off[1:])
        save_bytes(folder / "lex_terms.bin", b"".join(blob))
        save_array(folder / "lex_terms_off.npy", off)
        save_array(folder / "lex_ptr.npy", np.asarray(self.ptr, np.int64))
        save_array(folder / "lex_docs.npy", np.asarray(self.docs, np.uint32))
        save_array(folder / "lex_tf.npy", self.tf)
        save_array(folder / "lex_len.npy", np.asarray(self.lens, np.int32))
        has = self.lens >= 0
        return {
            "terms": len(self.terms),
            "postings": int(self.ptr[-1]),
            "documents": int(has.sum()),
            "tokens": int(self.lens[has].sum()),
        }


def _ptr(sorted_terms: np.ndarray, n_terms: int) -> np.ndarray:
    ptr = np.zeros(n_terms + 1, np.int64)
    np.cumsum(np.bincount(sorted_terms, minlength=n_terms), out=ptr[1:])
    return ptr


def _tf(counts: np.ndarray) -> np.ndarray:
    """Term counts in two bytes when they fit (nearly always), else four."""
    fits = counts.size == 0 or int(counts.max()) < 2**16
    return np.asarray(counts).astype(np.uint16 if fits else np.uint32)


@dataclass(eq=False)
class LexicalView:
    """A segment's BM25 view on disk (memory-mapped), read by search and by merges."""

    terms_blob: np.ndarray
    terms_off: np.ndarray
    ptr: np.ndarray
    docs: np.ndarray
    tf: np.ndarray
    lens: np.ndarray

    _terms: bytes | None = None  # the vocabulary's bytes, read once for lookups

    @classmethod
    def load(cls, folder: Path, arr, blob) -> LexicalView:
        """The view's files, memory-mapped (plain ndarray views: a memmap slice costs microseconds in Python)."""
        return cls(
            blob(folder / "lex_terms.bin"),
            *(np.asarray(arr(f"lex_{n}.npy")) for n in ("terms_off", "ptr", "docs", "tf", "len")),
        )

    def term_id(self, word: bytes) -> int:
        """The number of a term in this segment's vocabulary (binary search over the sorted bytes), or -1."""
        if self._terms is None:
            self._terms = bytes(self.terms_blob)
        off, blob = self.terms_off, self._terms
        lo, hi = 0, len(off) - 1
        while lo < hi:
            mid = (lo + hi) >> 1
            if blob[off[mid] : off[mid + 1]] < word:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(off) - 1 and blob[off[lo] : off[lo + 1]] == word:
            return lo
        return -1

    def arrays(self) -> LexicalArrays:
        """The whole view in memory (for a merge)."""
        blob, off = bytes(self.terms_blob), self.terms_off.tolist()
        terms = [blob[off[i] : off[i + 1]].decode("utf-8") for i in range(len(off) - 1)]
        return LexicalArrays(
            terms, np.asarray(self.ptr), np.asarray(self.docs), np.asarray(self.tf), self.lens
        )

    def stats(self, alive: np.ndarray | None) -> tuple[int, int]:
        """(live documents with a view, their summed length)."""
        lens = np.asarray(self.lens)
        has = lens >= 0 if alive is None else (lens >= 0) & (alive != 0)
        return int(has.sum()), int(lens[has].sum())


# ---------------------------------------------------------------------- search
def bm25_top_k(segs, allowed, text: str, k: int) -> list[tuple[float, int, int]]:
    """(score, segment number, document number) of the BM25 top ``k`` of ``text`` over segments ``segs`` (each
    with its view), best first (ties: lower key). ``allowed``: per segment a uint8 mask of searchable documents
    (tombstones and filter) or None. Statistics count live documents of every segment, filter or not."""
    words, qtf = query_terms(text)
    if not words or not segs:
        return []
    encoded = [w.encode("utf-8") for w in words]
    n_docs, total = 0, 0
    tids = []
    df = np.zeros(len(words), np.int64)
    for seg in segs:
        if seg.lex is None:  # a segment without a view (written by a version without one): nothing lexical
            tids.append(None)
            continue
        n, s = seg.lex_stats()
        n_docs, total = n_docs + n, total + s
        ids = np.asarray([seg.lex.term_id(w) for w in encoded], np.int64)
        tids.append(ids)
        df += _live_df(ids, seg.lex.ptr, seg.lex.docs, _NO_MASK if seg.alive is None else seg.alive)
    if n_docs == 0 or not df.any():
        return []
    weights = idf(df, n_docs).astype(np.float32)  # bm25s stores idf as float32
    avgdl = total / n_docs
    hs = np.zeros(k, np.float32)
    hd = np.zeros(k, np.int64)
    size = 0
    for si, seg in enumerate(segs):
        mask = allowed[si]
        lx = seg.lex
        if lx is None:
            continue
        size = _bm25_segment(
            tids[si], weights, qtf, lx.ptr, lx.docs, lx.tf, lx.lens, avgdl, K1, B,
            _NO_MASK if mask is None else mask, mask is not None, si << 32, hs, hd, size, k,
        )  # fmt: skip
    order = sorted(range(size), key=lambda i: (-hs[i], hd[i]))
    return [(float(hs[i]), int(hd[i] >> 32), int(hd[i] & 0xFFFFFFFF)) for i in order]


_NO_MASK = np.zeros(0, np.uint8)


@nb.njit(cache=True, nogil=True)
def _live_df(tids, ptr, docs, alive):
    """Per query term, live documents of this segment holding it (all its postings when nothing is deleted)."""
    out = np.zeros(len(tids), np.int64)
    for i in range(len(tids)):
        t = tids[i]
        if t < 0:
            continue
        if len(alive) == 0:
            out[i] = ptr[t + 1] - ptr[t]
        else:
            for j in range(ptr[t], ptr[t + 1]):
                out[i] += alive[docs[j]] != 0
    return out


@nb.njit(cache=True, nogil=True)
def _bm25_segment(
    tids, weights, qtf, ptr, docs, tf, lens, avgdl, k1, b, allowed, use_allowed, base, hs, hd, size, k
):
    """Score one segment term at a time into an accumulator, then push its positive scores into the shared top-k
    heap. Each posting scores as bm25s stores it: float32(idf x tf / (tf + k1 (1 - b + b dl / avgdl))) in
    float64, summed over the query's terms in float32."""
    n = len(lens)
    total = 0
    for i in range(len(tids)):
        if tids[i] >= 0:
            total += ptr[tids[i] + 1] - ptr[tids[i]]
    acc = np.zeros(n, np.float32)
    touched = np.empty(min(n, total), np.int64)
    nt = 0
    for i in range(len(tids)):
        t = tids[i]
        if t < 0:
            continue
        w = np.float64(weights[i])
        for j in range(ptr[t], ptr[t + 1]):
            d = docs[j]
            if use_allowed and allowed[d] == 0:
                continue
            f = np.float64(tf[j])
            s = np.float32(w * (f / (k1 * ((1.0 - b) + b * lens[d] / avgdl) + f)))
            if acc[d] == 0:
                touched[nt] = d
                nt += 1
            acc[d] += s * qtf[i]
    for c in range(nt):
        d = touched[c]
        x = acc[d]
        if x > 0 and (size < k or x > hs[0] or (x == hs[0] and base + d < hd[0])):
            size = _push(hs, hd, size, k, x, base + d)
    return size
