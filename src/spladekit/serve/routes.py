"""The endpoints, by area: service (health, stats), documents, encode; search lives in ``search``.

FastAPI runs these sync endpoints on its thread pool (writes wait for locks there, not on the event loop); what
they share lives in a `Service`.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict

from fastapi import APIRouter

from .limits import check_batch, check_text, check_unicode, refuse
from .middleware import ApiKeyGuard
from .schemas import Document, DocumentsIn, DocumentsOut, EncodeIn, EncodeOut
from .search import search_routes
from .service import Service


def _ms(t0: float) -> float:
    return 1000 * (time.perf_counter() - t0)


def service_routes(svc: Service, guard: ApiKeyGuard) -> APIRouter:
    router = APIRouter(tags=["service"])

    @router.get("/health")
    async def health() -> dict:
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
            "pid": os.getpid(),  # with several workers, the counts below are this worker's
            "requests": dict(svc.counts),
            "query_encoding": {"calls": svc.batcher.calls, "queries": svc.batcher.queries},
        }

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
        enc = (
            svc.query_encoder if body.kind == "query" else svc.index.encoder
        )  # queries: the search's own path
        vecs = enc.encode(texts, kind=body.kind)
        if body.top_k is not None:
            vecs = vecs.prune(max_active_dims=body.top_k)
        svc.count("encode")
        return EncodeOut(vectors=vecs.to_dicts())

    return router


ROUTERS = (service_routes, search_routes, document_routes, encode_routes)
