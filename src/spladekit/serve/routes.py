"""The endpoints, by area: service (health, stats), search, documents, encode.

FastAPI runs these sync endpoints on its thread pool; what they share lives in a `Service`.
"""

from __future__ import annotations

import time
from dataclasses import asdict

from fastapi import APIRouter

from .limits import check_batch, check_text, check_unicode, refuse, resolve_k
from .middleware import ApiKeyGuard
from .schemas import (
    BatchSearchIn,
    BatchSearchOut,
    Document,
    DocumentsIn,
    DocumentsOut,
    EncodeIn,
    EncodeOut,
    Hit,
    QueryIn,
    SearchIn,
    SearchOut,
    SparseIn,
    Term,
)
from .service import Service


def _ms(t0: float) -> float:
    return 1000 * (time.perf_counter() - t0)


def resolve_queries(svc: Service, queries: list[QueryIn], names: list[str]) -> list:
    """Each query as the index takes it: text encoded by the query batcher (the one encoding path of both
    search endpoints), {token: weight} as a dict, indices/values as a 1-row SparseVectors."""
    out: list = []
    texts: dict[int, str] = {}
    for i, (q, what) in enumerate(zip(queries, names)):
        if (q.query is None) == (q.vector is None):
            raise refuse(422, f"{what}: give exactly one of 'query' (text) or 'vector'")
        if q.query is not None:
            check_text(q.query, what, svc.limits)
            texts[i] = q.query
            out.append(None)
        elif (bad_w := _bad_weight(q.vector)) is not None:
            raise refuse(422, f"{what}: vector weight {bad_w!r} is not a finite float32 number")
        elif isinstance(q.vector, SparseIn):
            from ..sparse import SparseVectors

            if len(q.vector.indices) != len(q.vector.values):
                raise refuse(
                    422,
                    f"{what}: vector has {len(q.vector.indices)} indices but {len(q.vector.values)} values",
                )
            index = svc.index
            bad = [i for i in q.vector.indices if not 0 <= i < index.dim]
            if bad:
                raise refuse(422, f"{what}: vector index {bad[0]} is out of range 0..{index.dim - 1}")
            out.append(SparseVectors.from_rows([(q.vector.indices, q.vector.values)], index.dim, index.vocab))
        else:
            out.append(dict(q.vector))
    if texts:
        for i, vec in zip(texts, svc.batcher.encode_many(list(texts.values()))):
            out[i] = vec
    return out


_F32_MAX = 3.4028234663852886e38


def _bad_weight(vector) -> float | None:
    """The first weight that is NaN, infinite or too large for float32 (the index's weights), else None."""
    values = vector.values if isinstance(vector, SparseIn) else vector.values()
    return next((w for w in values if not abs(w) <= _F32_MAX), None)


def _hit(h) -> Hit:
    expl = None
    if h.explanation is not None:
        expl = [Term(token=t, query_weight=a, doc_weight=b, product=c) for t, a, b, c in h.explanation]
    passage = None if h.passage is None else {"start": h.passage[0], "end": h.passage[1]}
    return Hit(
        id=h.id,
        score=h.score,
        text=h.text,
        metadata=h.metadata,
        explanation=expl,
        passage=passage,
        highlights=h.highlights,
    )


def service_routes(svc: Service, guard: ApiKeyGuard) -> APIRouter:
    router = APIRouter(tags=["service"])

    @router.get("/health")
    def health() -> dict:
        """Liveness: always open (no API key), says only that the service answers."""
        return {"status": "ok"}

    @router.get("/stats", dependencies=guard.reads)
    def stats() -> dict:
        """Index statistics (documents, segments, postings, bytes, model), limits and request counts."""
        svc.maybe_refresh()
        return {
            "index": svc.index.info(),
            "limits": asdict(svc.limits),
            "auth": None if guard.api_key is None else guard.protect,
            "uptime_s": time.time() - svc.started,
            "requests": dict(svc.counts),
            "query_encoding": {"calls": svc.batcher.calls, "queries": svc.batcher.queries},
        }

    return router


def search_routes(svc: Service, guard: ApiKeyGuard) -> APIRouter:
    router = APIRouter(tags=["search"], dependencies=guard.reads)
    index = svc.index

    @router.post("/search", response_model=SearchOut, response_model_exclude_none=True)
    def search(body: SearchIn) -> SearchOut:
        """Top-k documents for one query (text or sparse vector), optionally filtered and explained."""
        t0 = time.perf_counter()
        check_unicode(body.model_dump(), "request")
        k = resolve_k(body, svc.limits)
        [q] = resolve_queries(svc, [body], ["query"])
        svc.maybe_refresh()
        hits = index.search(
            q,
            k=k,
            filter=body.filter,
            explain=body.explain,
            with_text=body.with_text,
            highlight=body.highlight,
        )
        svc.count("search")
        return SearchOut(hits=[_hit(h) for h in hits], took_ms=_ms(t0))

    @router.post("/search/batch", response_model=BatchSearchOut, response_model_exclude_none=True)
    def search_batch(body: BatchSearchIn) -> BatchSearchOut:
        """Top-k documents for each of many queries (text queries are encoded together)."""
        t0 = time.perf_counter()
        check_unicode(body.model_dump(), "request")
        check_batch(len(body.queries), "queries", svc.limits)
        k = resolve_k(body, svc.limits)
        qs = resolve_queries(svc, body.queries, [f"queries[{i}]" for i in range(len(body.queries))])
        svc.maybe_refresh()
        results = index.search_batch(
            qs,
            k=k,
            filter=body.filter,
            explain=body.explain,
            with_text=body.with_text,
            threads=1,
            highlight=body.highlight,
        )
        svc.count("search_batch")
        return BatchSearchOut(results=[[_hit(h) for h in hits] for hits in results], took_ms=_ms(t0))

    return router


def document_routes(svc: Service, guard: ApiKeyGuard) -> APIRouter:
    router = APIRouter(tags=["documents"])
    index = svc.index

    @router.post("/documents", response_model=DocumentsOut, dependencies=guard.writes)
    def add_documents(body: DocumentsIn) -> DocumentsOut:
        """Add (``mode="add"``) or upsert a batch; committed before the answer, visible to searches at once."""
        t0 = time.perf_counter()
        check_unicode(body.model_dump(), "request")
        check_batch(len(body.documents), "documents", svc.limits)
        for i, d in enumerate(body.documents):
            check_text(d.text, f"documents[{i}].text", svc.limits)
        ids = [d.id for d in body.documents]
        if len(set(ids)) != len(ids):
            raise refuse(422, "duplicate ids in one request")
        texts = [d.text for d in body.documents]
        meta = [d.metadata for d in body.documents]
        vectors = index.encoder.encode_documents(texts)  # outside the locks: encoding is the slow part
        with svc.writing():
            if body.mode == "add":
                present = [x for x in ids if x in index]
                if present:
                    raise refuse(
                        409,
                        f"{len(present)} id(s) already in the index (first: {present[0]!r}); use mode=upsert",
                    )
                index.add_vectors(ids, vectors, texts, meta)
            else:
                index.upsert_vectors(ids, vectors, texts, meta)
        svc.count("documents")
        return DocumentsOut(written=len(ids), documents=len(index), took_ms=_ms(t0))

    @router.get("/documents/{doc_id:path}", response_model=Document, dependencies=guard.reads)
    def get_document(doc_id: str) -> Document:
        """One document's text and metadata."""
        svc.maybe_refresh()
        doc = index.get(doc_id)
        if doc is None:
            raise refuse(404, f"no document with id {doc_id!r}")
        return Document(**doc)

    @router.delete("/documents/{doc_id:path}", dependencies=guard.writes)
    def delete_document(doc_id: str) -> dict:
        """Delete one document; committed before the answer."""
        with svc.writing():
            if doc_id not in index:
                raise refuse(404, f"no document with id {doc_id!r}")
            index.delete([doc_id])
        svc.count("delete")
        return {"deleted": doc_id}

    return router


def encode_routes(svc: Service, guard: ApiKeyGuard) -> APIRouter:
    router = APIRouter(tags=["encode"], dependencies=guard.reads)

    @router.post("/encode", response_model=EncodeOut)
    def encode(body: EncodeIn) -> EncodeOut:
        """SPLADE vectors ({token: weight}) of texts, as a query or as a document, with the index's model."""
        check_unicode(body.model_dump(), "request")
        texts = [body.texts] if isinstance(body.texts, str) else body.texts
        check_batch(len(texts), "texts", svc.limits)
        for i, t in enumerate(texts):
            check_text(t, f"texts[{i}]", svc.limits)
        vecs = svc.index.encoder.encode(texts, kind=body.kind)
        if body.top_k is not None:
            vecs = vecs.prune(max_active_dims=body.top_k)
        svc.count("encode")
        return EncodeOut(vectors=vecs.to_dicts())

    return router


ROUTERS = (service_routes, search_routes, document_routes, encode_routes)
