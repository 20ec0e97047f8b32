"""The HTTP API: a FastAPI app around one `Index` (embedded or Qdrant).

Concurrency model: FastAPI runs these sync endpoints on a thread pool. Searches read an immutable snapshot of the
committed segments, so they need no lock and never see a half-written document. Writes are serialised by one
lock (this process is the index's only writer); each write request is encoded outside every lock, then applied
and committed, so it becomes visible atomically when its commit swaps in the new segment list. Lookups by id
(``GET /documents/{id}``) take a short lock against that swap, because the id map is rebuilt on commit.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field

from ..errors import InputError, SpladekitError

API_KEY_HEADER = "X-API-Key"


@dataclass
class Limits:
    """Request limits; a request over one is refused with 413 (body) or 422 (the rest), naming the limit."""

    max_body_bytes: int = 8 * 1024 * 1024
    max_batch: int = 256
    max_text_chars: int = 20_000
    max_k: int = 1000


# ----------------------------------------------------------------------------- schemas
class SparseIn(BaseModel):
    """A sparse vector by term ids: ``indices`` and ``values`` of equal length."""

    indices: list[int]
    values: list[float]


class QueryIn(BaseModel):
    """One query: text (encoded with the index's model) or a vector ({token: weight} or indices/values)."""

    model_config = ConfigDict(extra="forbid")
    query: str | None = Field(None, description="Query text.")
    vector: dict[str, float] | SparseIn | None = Field(
        None, description="{token: weight} or {indices, values}."
    )


class SearchIn(QueryIn):
    k: int = Field(10, ge=1, description="Number of hits.")
    filter: dict[str, Any] | None = Field(
        None, description='{"field": value} or {"field": {"$in": [...]}}, ANDed.'
    )
    explain: bool = Field(False, description="Per-term contributions of each hit.")
    with_text: bool = Field(False, description="Return text and metadata of each hit.")


class BatchSearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: list[QueryIn]
    k: int = Field(10, ge=1)
    filter: dict[str, Any] | None = None
    explain: bool = False
    with_text: bool = False


class Term(BaseModel):
    token: str
    query_weight: float
    doc_weight: float
    product: float


class Hit(BaseModel):
    id: str
    score: float
    text: str | None = None
    metadata: dict[str, Any] | None = None
    explanation: list[Term] | None = None


class SearchOut(BaseModel):
    hits: list[Hit]
    took_ms: float


class BatchSearchOut(BaseModel):
    results: list[list[Hit]]
    took_ms: float


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(..., min_length=1)
    text: str
    metadata: dict[str, Any] | None = None


class DocumentsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    documents: list[DocumentIn]
    mode: Literal["upsert", "add"] = Field(
        "upsert", description="upsert replaces existing ids; add refuses them."
    )


class DocumentsOut(BaseModel):
    written: int
    documents: int
    took_ms: float


class Document(BaseModel):
    id: str
    text: str | None = None
    metadata: dict[str, Any] | None = None


class EncodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[str] | str
    kind: Literal["query", "document"] = "query"
    top_k: int | None = Field(None, ge=1, description="Keep only the heaviest terms of each vector.")


class EncodeOut(BaseModel):
    vectors: list[dict[str, float]]


# ----------------------------------------------------------------------------- the service
class QueryBatcher:
    """Encodes the text queries of concurrent requests together, in one background thread.

    Each request thread queues its text and waits; the worker takes everything queued (up to ``max_batch``)
    and encodes it in one call. Batches form by themselves while the previous one is encoding, so a lone client
    waits for nobody, and under load the per-query cost falls (a batch of 16 short queries costs about a
    quarter of 16 single calls on CPU).
    """

    def __init__(self, encoder, max_batch: int = 32) -> None:
        self.encoder = encoder
        self.max_batch = max_batch
        self._queue: list[tuple[str, Future]] = []
        self._cond = threading.Condition()
        self._closed = False
        self.calls = 0  # encoder calls and queries encoded, for /stats
        self.queries = 0
        self._thread = threading.Thread(target=self._run, name="spladekit-query-encoder", daemon=True)
        self._thread.start()

    def encode(self, text: str):
        """The 1-row SparseVectors of one query."""
        fut: Future = Future()
        with self._cond:
            if self._closed:
                raise SpladekitError("the server is shutting down")
            self._queue.append((text, fut))
            self._cond.notify()
        return fut.result()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed and not self._queue:
                    return
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                vecs = self.encoder.encode_queries([t for t, _ in batch])
                self.calls += 1
                self.queries += len(batch)
                for i, (_, fut) in enumerate(batch):
                    fut.set_result(vecs[i])
            except BaseException as e:  # noqa: BLE001 - handed to every waiting request
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=10)


class _Service:
    """The index plus the locks and counters the endpoints share."""

    def __init__(self, index, limits: Limits) -> None:
        self.index = index
        self.limits = limits
        self.write_lock = threading.Lock()
        self.swap_lock = threading.Lock()
        self.started = time.time()
        self.counts: dict[str, int] = {}
        self._count_lock = threading.Lock()
        self._last_refresh = time.monotonic()

    def count(self, name: str) -> None:
        with self._count_lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def maybe_refresh(self) -> None:
        """Pick up commits of another writer process (at most once a second) when this one is not writing."""
        now = time.monotonic()
        if now - self._last_refresh < 1.0:
            return
        self._last_refresh = now
        if self.write_lock.acquire(blocking=False):
            try:
                with self.swap_lock:
                    self.index.refresh()
            finally:
                self.write_lock.release()


def _err(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail=message)


def _check_text(text: str, what: str, limits: Limits) -> None:
    if len(text) > limits.max_text_chars:
        raise _err(
            422, f"{what} has {len(text)} characters; the limit is max_text_chars={limits.max_text_chars}"
        )


def _check_batch(n: int, what: str, limits: Limits) -> None:
    if n > limits.max_batch:
        raise _err(422, f"{n} {what} in one request; the limit is max_batch={limits.max_batch}")
    if n == 0:
        raise _err(422, f"no {what} given")


def _check_k(body: SearchIn | BatchSearchIn, limits: Limits) -> int:
    """The k to use: the default shrinks to ``max_k``; an explicit k over it is refused."""
    if "k" not in body.model_fields_set:
        return min(body.k, limits.max_k)
    if body.k > limits.max_k:
        raise _err(422, f"k={body.k} is over the limit max_k={limits.max_k}")
    return body.k


def _query_of(q: QueryIn, what: str, index, limits: Limits):
    if (q.query is None) == (q.vector is None):
        raise _err(422, f"{what}: give exactly one of 'query' (text) or 'vector'")
    if q.query is not None:
        _check_text(q.query, what, limits)
        return q.query
    if isinstance(q.vector, SparseIn):
        from ..sparse import SparseVectors

        if len(q.vector.indices) != len(q.vector.values):
            raise _err(
                422, f"{what}: vector has {len(q.vector.indices)} indices but {len(q.vector.values)} values"
            )
        return SparseVectors.from_rows([(q.vector.indices, q.vector.values)], index.dim, index.vocab)
    return dict(q.vector)


def _hit(h) -> Hit:
    expl = None
    if h.explanation is not None:
        expl = [Term(token=t, query_weight=a, doc_weight=b, product=c) for t, a, b, c in h.explanation]
    return Hit(id=h.id, score=h.score, text=h.text, metadata=h.metadata, explanation=expl)


class _BodyLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` with 413, by Content-Length or while streaming."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"request body is over the limit max_body_bytes={self.max_bytes}"
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    return await JSONResponse({"detail": message}, status_code=413)(scope, receive, send)
        seen = 0
        started = False
        refused = False

        async def counting_receive():
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    # Answer 413 now and tell the app the client went away, so it stops reading.
                    refused = True
                    if not started:
                        await JSONResponse({"detail": message}, status_code=413)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg):
            nonlocal started
            if refused:
                return
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        await self.app(scope, counting_receive, guarded_send)


def create_app(
    index: str | os.PathLike | Any,
    *,
    api_key: str | None = None,
    protect: Literal["writes", "all"] = "writes",
    limits: Limits | None = None,
    create: bool = False,
) -> FastAPI:
    """A FastAPI app serving ``index`` (an index folder, or an open `Index` / `QdrantIndex`).

    ``api_key``: when set, requests must carry it in the ``X-API-Key`` header: write endpoints only
    (``protect="writes"``) or every endpoint except ``/health`` (``protect="all"``, which also guards the docs).
    ``create``: make an empty embedded index (bundled model) when the folder holds none.
    """
    from ..index import Index, IndexLockedError

    if protect not in ("writes", "all"):
        raise InputError(f"protect must be 'writes' or 'all', got {protect!r}")
    limits = limits or Limits()
    for name, value in asdict(limits).items():
        if not isinstance(value, int) or value < 1:
            raise InputError(f"limit {name} must be a positive integer, got {value!r}")
    owns = False
    if isinstance(index, (str, os.PathLike)):
        path = Path(index)
        has_index = (path / "manifest.json").is_file() or (path / "qdrant.json").is_file()
        if not has_index and create:
            index = Index.create(path)
        elif not has_index:
            raise InputError(f"{path}: no index here (build one with `spladekit index`, or pass --create)")
        else:
            index = Index.open(path)
        owns = True
    # Load the query encoder now: the first requests would otherwise race to load it on several threads
    # (transformers' lazy imports are not thread-safe) and the first user would wait for the model.
    _ = index.encoder
    svc = _Service(index, limits)
    batcher = QueryBatcher(index.encoder)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        batcher.close()
        if owns:
            index.close()

    app = FastAPI(
        lifespan=lifespan,
        title="spladekit",
        version=_version(),
        description="Learned sparse retrieval with SPLADE: search, documents, encoding.",
    )
    app.state.service = svc
    app.add_middleware(_BodyLimit, max_bytes=limits.max_body_bytes)

    header = APIKeyHeader(
        name=API_KEY_HEADER, auto_error=False, description="API key (when the server has one)"
    )

    def _check_key(given: str | None) -> None:
        if api_key is None:
            return
        if given is None or not hmac.compare_digest(given.encode(), api_key.encode()):
            raise _err(401, f"missing or wrong API key (send it in the {API_KEY_HEADER} header)")

    def guard_write(given: str | None = Security(header)) -> None:
        _check_key(given)

    def guard_read(given: str | None = Security(header)) -> None:
        if protect == "all":
            _check_key(given)

    if api_key is not None and protect == "all":

        @app.middleware("http")
        async def guard_docs(request: Request, call_next):
            if request.url.path in (app.openapi_url, app.docs_url, app.redoc_url, "/docs/oauth2-redirect"):
                given = request.headers.get(API_KEY_HEADER)
                if given is None or not hmac.compare_digest(given.encode(), api_key.encode()):
                    return JSONResponse(
                        {"detail": f"missing or wrong API key (send it in the {API_KEY_HEADER} header)"},
                        status_code=401,
                    )
            return await call_next(request)

    @app.exception_handler(SpladekitError)
    async def _user_error(request: Request, exc: SpladekitError):
        status = 409 if isinstance(exc, IndexLockedError) else 422
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):
        # One line for the client; the traceback goes to the server log.
        import logging

        logging.getLogger("spladekit.serve").exception("internal error on %s", request.url.path)
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {first}"}, status_code=500)

    reads = [Depends(guard_read)]
    writes = [Depends(guard_write)]

    @app.get("/health", tags=["service"])
    def health() -> dict:
        """Liveness: always open (no API key), says only that the service answers."""
        return {"status": "ok"}

    @app.get("/stats", tags=["service"], dependencies=reads)
    def stats() -> dict:
        """Index statistics (documents, segments, postings, bytes, model), limits and request counts."""
        with svc.swap_lock:
            info = index.info()
        return {
            "index": info,
            "limits": asdict(limits),
            "auth": None if api_key is None else protect,
            "uptime_s": time.time() - svc.started,
            "requests": dict(svc.counts),
            "query_encoding": {"calls": batcher.calls, "queries": batcher.queries},
        }

    @app.post(
        "/search",
        response_model=SearchOut,
        response_model_exclude_none=True,
        tags=["search"],
        dependencies=reads,
    )
    def search(body: SearchIn) -> SearchOut:
        """Top-k documents for one query (text or sparse vector), optionally filtered and explained."""
        t0 = time.perf_counter()
        k = _check_k(body, limits)
        q = _query_of(body, "query", index, limits)
        if isinstance(q, str):
            q = batcher.encode(q)
        svc.maybe_refresh()
        hits = index.search(q, k=k, filter=body.filter, explain=body.explain, with_text=body.with_text)
        svc.count("search")
        return SearchOut(hits=[_hit(h) for h in hits], took_ms=1000 * (time.perf_counter() - t0))

    @app.post(
        "/search/batch",
        response_model=BatchSearchOut,
        response_model_exclude_none=True,
        tags=["search"],
        dependencies=reads,
    )
    def search_batch(body: BatchSearchIn) -> BatchSearchOut:
        """Top-k documents for each of many queries (text queries are encoded in one batch)."""
        t0 = time.perf_counter()
        _check_batch(len(body.queries), "queries", limits)
        k = _check_k(body, limits)
        qs = [_query_of(q, f"queries[{i}]", index, limits) for i, q in enumerate(body.queries)]
        svc.maybe_refresh()
        results = index.search_batch(
            qs, k=k, filter=body.filter, explain=body.explain, with_text=body.with_text, threads=1
        )
        svc.count("search_batch")
        return BatchSearchOut(
            results=[[_hit(h) for h in hits] for hits in results], took_ms=1000 * (time.perf_counter() - t0)
        )

    @app.post("/documents", response_model=DocumentsOut, tags=["documents"], dependencies=writes)
    def add_documents(body: DocumentsIn) -> DocumentsOut:
        """Add (``mode="add"``) or upsert a batch; committed before the answer, visible to searches at once."""
        t0 = time.perf_counter()
        _check_batch(len(body.documents), "documents", limits)
        for i, d in enumerate(body.documents):
            _check_text(d.text, f"documents[{i}].text", limits)
        ids = [d.id for d in body.documents]
        if len(set(ids)) != len(ids):
            raise _err(422, "duplicate ids in one request")
        texts = [d.text for d in body.documents]
        meta = [d.metadata for d in body.documents]
        vectors = index.encoder.encode_documents(texts)  # outside the locks: encoding is the slow part
        with svc.write_lock:
            if body.mode == "add":
                present = [x for x in ids if _contains(svc, x)]
                if present:
                    raise _err(
                        409,
                        f"{len(present)} id(s) already in the index (first: {present[0]!r}); use mode=upsert",
                    )
                index.add_vectors(ids, vectors, texts, meta)
            else:
                index.upsert_vectors(ids, vectors, texts, meta)
            with svc.swap_lock:
                index.commit()
            n = len(index)
        svc.count("documents")
        return DocumentsOut(written=len(ids), documents=n, took_ms=1000 * (time.perf_counter() - t0))

    @app.get("/documents/{doc_id:path}", response_model=Document, tags=["documents"], dependencies=reads)
    def get_document(doc_id: str) -> Document:
        """One document's text and metadata."""
        with svc.swap_lock:
            doc = index.get(doc_id)
        if doc is None:
            raise _err(404, f"no document with id {doc_id!r}")
        return Document(**doc)

    @app.delete("/documents/{doc_id:path}", tags=["documents"], dependencies=writes)
    def delete_document(doc_id: str) -> dict:
        """Delete one document; committed before the answer."""
        with svc.write_lock:
            if not _contains(svc, doc_id):
                raise _err(404, f"no document with id {doc_id!r}")
            index.delete([doc_id])
            with svc.swap_lock:
                index.commit()
        svc.count("delete")
        return {"deleted": doc_id}

    @app.post("/encode", response_model=EncodeOut, tags=["encode"], dependencies=reads)
    def encode(body: EncodeIn) -> EncodeOut:
        """SPLADE vectors ({token: weight}) of texts, as a query or as a document, with the index's model."""
        texts = [body.texts] if isinstance(body.texts, str) else body.texts
        _check_batch(len(texts), "texts", limits)
        for i, t in enumerate(texts):
            _check_text(t, f"texts[{i}]", limits)
        vecs = index.encoder.encode(texts, kind=body.kind)
        if body.top_k is not None:
            vecs = vecs.prune(max_active_dims=body.top_k)
        svc.count("encode")
        return EncodeOut(vectors=vecs.to_dicts())

    return app


def _contains(svc: _Service, doc_id: str) -> bool:
    with svc.swap_lock:
        return doc_id in svc.index


def _version() -> str:
    from .. import __version__

    return __version__
