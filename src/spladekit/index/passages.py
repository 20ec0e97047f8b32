"""`PassageIndex`: documents stored as passages (one row per window) in any backend, used as documents.

An index created with ``long_docs="passages"`` stores each window of a document as a row of its backend, with the
id ``<doc id>\\x1f<n>`` and, in the row's metadata, ``_passage: [n, count, start, end]`` (its number, how many the
document has, its character span); the document's text is stored once, on passage 0. This class keeps the
document-level contract on top:

- ``k`` counts documents; a document scores as its best passage, and its hit carries that passage's span;
- ``ids``, ``len``, ``get``, ``in`` and ``delete`` see documents; deleting or upserting a document replaces all its
  passages (an upsert with fewer passages deletes the rest);
- ``vectors`` and ``iter_documents`` give a document's per-term max over its passages (what ``max`` would give);
- filters apply to the document's metadata, which every passage carries.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import InputError
from ..sparse import SparseVectors, max_merge
from .base import ITER_BATCH, Index
from .types import DocumentBatch, SearchHit
from .validate import check_ids, check_texts

SEP = "\x1f"  # ASCII unit separator: never in a document id of a passages index (checked)
FIELD = "_passage"
PROBE = 16  # passage ids asked for at once when looking for a document's passages


def passage_id(doc_id: str, n: int) -> str:
    return f"{doc_id}{SEP}{n}"


def doc_of(pid: str) -> tuple[str, int]:
    doc, _, n = pid.rpartition(SEP)
    return doc, int(n)


class PassageIndex(Index):
    """A passages index: the ``Index`` contract over documents, on a backend index whose rows are passages."""

    def __init__(self, inner: Index) -> None:
        self._inner = inner
        self.path = inner.path
        self.backend = inner.backend
        self._count_cache: tuple[object, list[str]] | None = None

    @property
    def inner(self) -> Index:
        """The backend index, one row per passage."""
        return self._inner

    @classmethod
    def _create(cls, path, encoder, **options):  # pragma: no cover - made by Index.create
        raise InputError("create a passages index with Index.create(path, long_docs='passages')")

    @classmethod
    def _open(cls, path, **options):  # pragma: no cover - opened by Index.open
        raise InputError("open a passages index with Index.open(path)")

    # ------------------------------------------------------------------ model (the backend's)
    @property
    def model(self) -> dict:
        return self._inner.model

    @property
    def vocab(self) -> list[str]:
        return self._inner.vocab

    @property
    def encoder(self):
        return self._inner.encoder

    @property
    def query_encoder(self):
        return self._inner.query_encoder

    def bind_encoder(self, encoder) -> None:
        self._inner.bind_encoder(encoder)

    # ------------------------------------------------------------------ writing
    def _write(self, ids, vectors, texts, metadata, upsert: bool, batch_size=32, show_progress=False) -> None:
        ids = _check_documents(ids, metadata)
        if vectors is None:
            texts = check_texts(texts, len(ids))
            if not ids:
                return
            p = self.encoder.encode_passages(
                list(texts), long_docs=self.long_docs, batch_size=batch_size, show_progress=show_progress
            )
            owner, spans, counts, pvecs = p.owner, p.spans, p.counts, p.vectors
        else:  # precomputed document vectors: one passage spanning the whole text
            pvecs = SparseVectors.coerce(vectors, "vectors")
            if len(pvecs) != len(ids):
                raise InputError(f"{len(ids)} ids but {len(pvecs)} vectors")
            owner, counts = np.arange(len(ids)), np.ones(len(ids), np.int64)
            spans = [(0, len(t) if t else 0) for t in (texts or [None] * len(ids))]
        self.write_passages(ids, pvecs, owner, spans, counts, texts, metadata, upsert)

    def write_passages(
        self, ids, vectors, owner, spans, counts, texts=None, metadata=None, upsert=False
    ) -> None:
        """Store already encoded passages (``encode_passages`` output, or shards of one): ``owner[i]`` is the
        position in ``ids`` of passage ``i``'s document; passages of a document are consecutive, in order."""
        ids = _check_documents(ids, metadata)
        owner = np.asarray(owner, np.int64)
        if len(owner) != len(vectors) or len(spans) != len(vectors):
            raise InputError("passages: owner, spans and vectors differ in length")
        inner = self._inner
        inner._begin_write()
        if not upsert:
            clash = inner._present([passage_id(x, 0) for x in ids])
            if clash:
                first = doc_of(next(iter(sorted(clash))))[0]
                raise InputError(
                    f"{len(clash)} id(s) already in the index (first: {first!r}); use upsert to replace them"
                )
        pids, ptexts, pmeta = [], [], []
        n = 0
        for i, owner_i in enumerate(owner.tolist()):
            n = n + 1 if i and owner[i - 1] == owner_i else 0
            doc = ids[owner_i]
            pids.append(passage_id(doc, n))
            ptexts.append(texts[owner_i] if (texts is not None and n == 0) else None)
            meta = dict(metadata[owner_i]) if metadata is not None and metadata[owner_i] is not None else {}
            meta[FIELD] = [n, int(counts[owner_i]), int(spans[i][0]), int(spans[i][1])]
            pmeta.append(meta)
        stale = self._passage_ids(ids, start=counts) if upsert else []
        inner._write(pids, vectors, ptexts, pmeta, upsert)
        if stale:
            inner.delete(stale)

    def _passage_ids(self, ids: list[str], start=None, committed: bool = False) -> list[str]:
        """Ids of the stored passages of ``ids`` numbered from ``start[i]`` on (pending writes included unless
        ``committed``), probing ``PROBE`` numbers at a time."""
        ask = self._inner._committed if committed else self._inner._present
        out = []
        for i, doc in enumerate(ids):
            n = int(start[i]) if start is not None else 0
            while True:
                probe = [passage_id(doc, m) for m in range(n, n + PROBE)]
                found = ask(probe)
                out.extend(p for p in probe if p in found)
                if len(found) < PROBE:
                    break
                n += PROBE
        return out

    def delete(self, ids) -> None:
        """Delete documents (all their passages); an unknown id is an error and nothing is deleted."""
        ids = check_ids(ids)
        present = self._inner._present([passage_id(x, 0) for x in ids])
        missing = [x for x in ids if passage_id(x, 0) not in present]
        if missing:
            raise InputError(f"{len(missing)} unknown id(s) (first: {missing[0]!r})")
        self._inner.delete(self._passage_ids(ids))

    def _present(self, ids: list[str]) -> set[str]:
        found = self._inner._present([passage_id(x, 0) for x in ids])
        return {doc_of(p)[0] for p in found}

    def _committed(self, ids: list[str]) -> set[str]:
        found = self._inner._committed([passage_id(x, 0) for x in ids])
        return {doc_of(p)[0] for p in found}

    def _apply(self, ids, vectors, records, upsert) -> None:  # pragma: no cover - _write goes to the backend
        raise NotImplementedError

    def commit(self, merge: bool = True) -> None:
        self._inner.commit(merge)

    def refresh(self) -> bool:
        return self._inner.refresh()

    def refresh_if_changed(self) -> bool:
        return self._inner.refresh_if_changed()

    def optimize(self) -> None:
        self._inner.optimize()

    @property
    def has_changes(self) -> bool:
        return self._inner.has_changes

    @property
    def holds_lock(self) -> bool:
        return self._inner.holds_lock

    def writing(self, wait: float = 0.0):
        import contextlib

        @contextlib.contextmanager
        def block():
            with self._inner.writing(wait):
                yield self

        return block()

    def release_lock(self) -> None:
        self._inner.release_lock()

    def rollback(self) -> None:
        self._inner.rollback()

    # ------------------------------------------------------------------ reading
    def ids(self) -> list[str]:
        key = getattr(self._inner, "_segments", None)
        if key is None or self._count_cache is None or self._count_cache[0] is not key:
            docs = [p[: -len(SEP) - 1] for p in self._inner.ids() if p.endswith(SEP + "0")]
            self._count_cache = (key, docs) if key is not None else None
            return docs
        return list(self._count_cache[1])

    def __len__(self) -> int:
        return len(self.ids())

    def get(self, doc_id: str) -> dict | None:
        if not isinstance(doc_id, str):
            raise InputError(f"ids must be strings, got {type(doc_id).__name__}")
        rec = self._inner.get(passage_id(doc_id, 0))
        if rec is None:
            return None
        return {"id": doc_id, "text": rec["text"], "metadata": _user_meta(rec["metadata"])}

    def passages(self, doc_id: str) -> list[tuple[int, int]]:
        """Character spans of a document's passages."""
        out = []
        for pid in self._passage_ids([doc_id], committed=True):
            rec = self._inner.get(pid)
            if rec is not None:
                out.append(tuple(rec["metadata"][FIELD][2:4]))
        return out

    def vectors(self, ids) -> SparseVectors:
        """Per document the per-term max over its passages, in the order of ``ids``."""
        ids = check_ids(ids)
        have = self._committed(ids)
        missing = [x for x in ids if x not in have]
        if missing:
            raise InputError(f"{len(missing)} unknown id(s) (first: {missing[0]!r})")
        rows = []
        for doc in ids:
            pv = self._inner.vectors(self._passage_ids([doc], committed=True))
            rows.append(max_merge(list(pv)))
        v = SparseVectors.from_rows(rows, self.dim) if rows else SparseVectors.empty(0, self.dim)
        v.vocab = self.vocab
        return v

    def iter_documents(self, batch: int = ITER_BATCH) -> Iterator[DocumentBatch]:
        """Every committed document (vector: max over its passages; text and metadata from passage 0)."""
        parts: dict[str, list] = {}
        ready: list[tuple[str, tuple, str | None, dict | None]] = []
        for b in self._inner.iter_documents(batch):
            for j, pid in enumerate(b.ids):
                doc, _ = doc_of(pid)
                meta = b.metadata[j] if b.metadata else None
                entry = parts.setdefault(doc, [[], None, None, (meta or {}).get(FIELD, [0, 1])[1]])
                idx, val = b.vectors.row(j)
                entry[0].append((idx.copy(), val.copy()))
                if (meta or {}).get(FIELD, [0])[0] == 0:
                    entry[1] = b.texts[j] if b.texts else None
                    entry[2] = _user_meta(meta)
                if len(entry[0]) == entry[3]:
                    del parts[doc]
                    ready.append((doc, max_merge(entry[0]), entry[1], entry[2]))
            while len(ready) >= batch:
                yield self._batch(ready[:batch])
                ready = ready[batch:]
        if ready:
            yield self._batch(ready)

    def _batch(self, items) -> DocumentBatch:
        v = SparseVectors.from_rows([x[1] for x in items], self.dim)
        v.vocab = self.vocab
        return DocumentBatch([x[0] for x in items], v, [x[2] for x in items], [x[3] for x in items])

    # ------------------------------------------------------------------ search
    def _prepare_filter(self, filter):
        return self._inner._prepare_filter(filter)

    def _search(
        self, qs, k: int, flt, explain: bool, with_text: bool, threads: int, plan=None
    ) -> list[list[SearchHit]]:
        def one(q):
            return self._search_one(q, k, flt, explain, with_text)

        if threads <= 1 or len(qs) <= 1:
            return [one(q) for q in qs]
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(one, qs))

    @property
    def has_bm25(self) -> bool:
        return self._inner.has_bm25

    def enable_bm25(self) -> None:
        self._inner.enable_bm25()

    def _search_bm25(self, texts, k: int, flt, threads: int) -> list[list[tuple[str, float]]]:
        """BM25 ranks documents: only passage 0 carries the document's text, so each lexical row is a document."""
        runs = self._inner._search_bm25(texts, k, flt, threads)
        return [[(doc_of(pid)[0], s) for pid, s in run] for run in runs]

    def _search_one(self, q, k: int, flt, explain: bool, with_text: bool) -> list[SearchHit]:
        """The top ``k`` documents by best passage: the first ``k`` distinct documents among the top passages,
        asking for more passages until ``k`` documents are found or there are no more (exact). Stored records
        (spans, text, metadata) are read for the ``k`` best passages only."""
        want = max(2 * k, 16)
        while True:
            hits = self._inner._search([q], want, flt, explain, False, 1)[0]
            best: dict[str, SearchHit] = {}
            for h in hits:
                doc = doc_of(h.id)[0]
                if doc not in best:
                    best[doc] = h
                    if len(best) == k:
                        break
            if len(best) >= k or len(hits) < want:
                break
            want *= 4
        out = []
        for doc, h in best.items():
            rec = self._inner.get(h.id) or {}
            meta = rec.get("metadata") or {}
            span = meta.get(FIELD, [0, 1, 0, 0])
            hit = SearchHit(doc, h.score, None, None, h.explanation, (int(span[2]), int(span[3])))
            if with_text:
                hit.metadata = _user_meta(meta)
                first = rec if span[0] == 0 else self._inner.get(passage_id(doc, 0)) or {}
                hit.text = first.get("text")
            out.append(hit)
        return out

    # ------------------------------------------------------------------ info / lifecycle
    def info(self) -> dict:
        info = dict(self._inner.info())
        passages = info.get("documents")
        info["passages"] = passages
        info["documents"] = len(self)
        return info

    def close(self) -> None:
        self._inner.close()


def _check_documents(ids, metadata) -> list[str]:
    """Document ids and metadata a passages index can store: valid ids without the separator, no duplicates in
    one write, no metadata using the bookkeeping field."""
    ids = check_ids(ids)
    bad = next((x for x in ids if SEP in x), None)
    if bad is not None:
        raise InputError(f"id {bad!r} contains the character \\x1f, which a passages index reserves")
    if len(set(ids)) != len(ids):
        raise InputError("duplicate ids in one write")
    if metadata is not None:
        if len(metadata) != len(ids):
            raise InputError(f"{len(ids)} ids but {len(metadata)} metadata entries")
        if any(m is not None and FIELD in m for m in metadata):
            raise InputError(f"metadata field {FIELD!r} is reserved by a passages index")
    return ids


def _user_meta(meta: dict | None) -> dict | None:
    """A passage's metadata without the passages bookkeeping field (None when nothing else is left)."""
    if not meta:
        return None
    out = {k: v for k, v in meta.items() if k != FIELD}
    return out or None
