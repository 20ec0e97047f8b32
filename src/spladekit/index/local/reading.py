"""Reading the embedded index: documents by id, stored vectors, batches for exporters, and exact top-k search.

Every read works on one snapshot of the committed segments (a tuple swapped whole by a commit or refresh), so a
reader never mixes two commits, and needs no lock.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ...errors import InputError
from ...sparse import SparseVectors
from ..base import ITER_BATCH
from ..filters import parse_filter
from ..fusion import ordered
from ..hybrid import no_view
from ..lexical import check_settings
from ..types import DocumentBatch, SearchHit
from ..validate import check_ids
from .lexical import bm25_top_k
from .segment import Segment

IdMap = dict[str, tuple[int, int]]
CHUNK = 16  # queries per task of a threaded search_batch, at most


class LocalReading:
    """The reader half of `LocalIndex` (a mixin: the state lives in ``LocalIndex.__init__``)."""

    def _snapshot(self) -> tuple[tuple[Segment, ...], IdMap]:
        """The committed segments and their id map, taken together: a refresh in another thread swaps both
        atomically (one tuple), so a reader never pairs an id map with the segments of another commit."""
        cached = self._id_map
        segs = self._segments
        if cached is not None and cached[0] is segs:
            return cached
        m: IdMap = {}
        for si, seg in enumerate(segs):
            ids = seg.ids()
            if seg.alive is None:
                m.update(zip(ids, ((si, d) for d in range(len(ids)))))
            else:
                for d in np.flatnonzero(seg.alive):
                    m[ids[d]] = (si, int(d))
        self._id_map = (segs, m)
        return segs, m

    def _ids(self) -> IdMap:
        """id -> (segment number, document number) of every live committed document."""
        return self._snapshot()[1]

    def __len__(self) -> int:
        return sum(s.n_live for s in self._segments)

    def _committed(self, ids: list[str]) -> set[str]:
        m = self._ids()
        return {x for x in ids if x in m}

    def get(self, doc_id: str) -> dict | None:
        """The committed document ``{"id", "text", "metadata"}``, or None."""
        if not isinstance(doc_id, str):
            raise InputError(f"ids must be strings, got {type(doc_id).__name__}")
        segs, m = self._snapshot()
        loc = m.get(doc_id)
        if loc is None:
            return None
        text, meta = segs[loc[0]].record(loc[1])
        return {"id": doc_id, "text": text, "metadata": meta}

    def ids(self) -> list[str]:
        """Ids of every committed live document."""
        return list(self._ids())

    def vectors(self, ids) -> SparseVectors:
        """Stored vectors of committed documents, in the order of ``ids`` (one pass per segment involved)."""
        ids = check_ids(ids)
        segs, m = self._snapshot()
        missing = [x for x in ids if x not in m]
        if missing:
            raise InputError(f"{len(missing)} unknown id(s) (first: {missing[0]!r})")
        by_seg: dict[int, list[int]] = {}
        for x in ids:
            by_seg.setdefault(m[x][0], []).append(m[x][1])
        rows: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        for si, docs in by_seg.items():
            seg = segs[si]
            keep = np.zeros(seg.n_docs, bool)
            keep[docs] = True
            indptr, indices, data = seg.vectors(keep)
            for r, d in enumerate(np.flatnonzero(keep)):
                rows[(si, int(d))] = (indices[indptr[r] : indptr[r + 1]], data[indptr[r] : indptr[r + 1]])
        v = (
            SparseVectors.from_rows([rows[m[x]] for x in ids], self.dim)
            if ids
            else SparseVectors.empty(0, self.dim)
        )
        v.vocab = self._vocab
        return v

    def iter_documents(self, batch: int = ITER_BATCH) -> Iterator[DocumentBatch]:
        """Every committed live document in batches, segment by segment (postings turned back into rows);
        for exporters and migrations, reading each segment once instead of one lookup per id."""
        segs, _ = self._snapshot()
        for seg in segs:
            keep = np.ones(seg.n_docs, bool) if seg.alive is None else seg.alive.astype(bool)
            live = np.flatnonzero(keep)
            if not len(live):
                continue
            indptr, indices, data = seg.vectors(keep)
            vectors = SparseVectors(indptr, indices, data, self.dim, self._vocab)
            all_ids = seg.ids()
            for s in range(0, len(live), batch):
                rows = live[s : s + batch]
                records = [seg.record(int(d)) for d in rows]
                yield DocumentBatch(
                    [all_ids[int(d)] for d in rows],
                    vectors[np.arange(s, s + len(rows))],
                    [r[0] for r in records],
                    [r[1] for r in records],
                )

    # ------------------------------------------------------------------ search
    def _prepare_filter(self, filter: Mapping | None):
        """(segments, per segment a uint8 mask of searchable documents or None for all): tombstones and filter,
        for one snapshot of the segments."""
        segs = self._segments
        if filter is None:
            return segs, [s.alive for s in segs]
        conds = parse_filter(filter)
        out = []
        for s in segs:
            mask = np.ones(s.n_docs, np.uint8) if s.alive is None else s.alive.copy()
            for fname, values in conds:
                idx = s.field_index(fname)
                m = np.zeros(s.n_docs, np.uint8)
                for v in values:
                    hit = idx.get(v)
                    if hit is not None:
                        m[hit] = 1
                mask &= m
            out.append(mask)
        return segs, out

    def _search(
        self, qs, k: int, flt, explain: bool, with_text: bool, threads: int, plan=None
    ) -> list[list[SearchHit]]:
        segs, allowed = flt

        def one(q):
            if plan is None:
                raw = self._top_k(segs, allowed, q[0], q[1], k)
            else:
                raw = self._approx_top_k(segs, allowed, q[0], q[1], k, plan)[0]
            return self._hits(segs, raw, q[0], q[1], with_text, explain)

        if threads <= 1 or len(qs) <= 1:
            return [one(q) for q in qs]
        # a few queries per task: the pool's bookkeeping holds the GIL, the kernels do not
        step = max(1, min(CHUNK, len(qs) // (4 * threads)))
        chunks = [qs[i : i + step] for i in range(0, len(qs), step)]
        with ThreadPoolExecutor(threads) as pool:
            return [hits for part in pool.map(lambda c: [one(q) for q in c], chunks) for hits in part]

    def _search_bm25(self, texts: list[str], k: int, flt, threads: int) -> list[list[tuple[str, float]]]:
        """Per text its BM25 top ``k`` (id, score) over the same snapshot and masks (tombstones, filter) as the
        SPLADE search it is fused with."""
        bm25 = self._manifest.get("bm25")
        if not bm25:
            raise no_view(self.path)
        check_settings(bm25, str(self.path))
        segs, allowed = flt

        def one(text: str) -> list[tuple[str, float]]:  # ties by id, whatever the segment layout
            # ids() is decoded once per segment and cached (the id map of a snapshot reads it too)
            return ordered([(segs[si].ids()[d], s) for s, si, d in bm25_top_k(segs, allowed, text, k)])

        if threads <= 1 or len(texts) <= 1:
            return [one(t) for t in texts]
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(one, texts))

    @staticmethod
    def _top_k(segs, allowed, q_terms, q_weights, k: int) -> list[tuple[float, int, int]]:
        """(score, segment number, document number) of the exact top ``k``, best first (ties: lower key)."""
        hs = np.zeros(k, np.float32)
        hd = np.zeros(k, np.int64)
        size = 0
        for si, seg in enumerate(segs):
            size = seg.search(q_terms, q_weights, allowed[si], si << 32, hs, hd, size, k)
        order = sorted(range(size), key=lambda i: (-hs[i], hd[i]))
        return [(float(hs[i]), int(hd[i] >> 32), int(hd[i] & 0xFFFFFFFF)) for i in order]

    def _approx_top_k(self, segs, allowed, q_terms, q_weights, k: int, plan) -> tuple[list, int]:
        """``_top_k`` through each segment's approximate structure (exact scores, approximate membership), and
        the entries read (summaries and forward postings: the cost ``tune`` minimises)."""
        hs = np.zeros(k, np.float32)
        hd = np.zeros(k, np.int64)
        qd = np.zeros(self.dim, np.float32)
        t = np.asarray(q_terms, np.int64)
        w = np.asarray(q_weights, np.float32)
        size, work = 0, 0
        for si, seg in enumerate(segs):
            size, got = seg.search_approx(t, w, qd, plan, allowed[si], si << 32, hs, hd, size, k)
            work += int(got)
        order = sorted(range(size), key=lambda i: (-hs[i], hd[i]))
        return [(float(hs[i]), int(hd[i] >> 32), int(hd[i] & 0xFFFFFFFF)) for i in order], work

    def _hits(self, segs, raw, q_terms, q_weights, with_text: bool, explain: bool) -> list[SearchHit]:
        hits = []
        for score, si, d in raw:
            seg = segs[si]
            hit = SearchHit(seg.doc_id(d), score)
            if with_text:
                hit.text, hit.metadata = seg.record(d)
            if explain:
                dw = seg.doc_weights(q_terms, d)
                rows = [
                    (self._vocab[int(t)], float(q), float(w), float(np.float32(q) * np.float32(w)))
                    for t, q, w in zip(q_terms, q_weights, dw)
                    if w != 0
                ]
                hit.explanation = sorted(rows, key=lambda r: -r[3])
            hits.append(hit)
        return hits
