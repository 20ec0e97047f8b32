"""The search endpoints, built for the hot path: ``/search`` and ``/search/batch``.

What a search request costs besides the search itself (~0.1 ms) is what the server adds, so these endpoints are
``async`` and avoid every thread hop: a vector query is searched inline on the event loop (faster than a thread
pool hop, and a worker process has one core's worth of Python anyway); a text query awaits the query batcher
(encoding runs in its thread, the loop keeps serving); only work that can take long goes to the thread pool
(highlights, which encode the hits, and large batches). The answer is built as plain dicts from the hits and
serialised once (``jsonsafe.dumps``), not validated again through the response model; the pydantic models still
define the OpenAPI schema, and a test holds the dicts equal to the models' dump. ``search_one`` is the whole of
``/search``; the fast lane (``fastlane``) calls it too.
"""

from __future__ import annotations

import time

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from ..index.approx import check_approx
from .jsonsafe import JSON, dumps
from .limits import check_batch, check_body_unicode, check_text, refuse, resolve_k
from .middleware import ApiKeyGuard
from .schemas import BatchSearchIn, BatchSearchOut, Highlights, QueryIn, SearchIn, SearchOut, SparseIn
from .service import Service

# A batch of more queries than this is searched on the thread pool, not inline on the event loop.
INLINE_QUERIES = 8
_F32_MAX = 3.4028234663852886e38


def parse_queries(svc: Service, queries: list[QueryIn], names: list[str]) -> tuple[list, dict[int, str]]:
    """Each query as the index takes it, and the texts still to encode by position: {token: weight} as a dict,
    indices/values as a 1-row SparseVectors, text as None in the list (``encode_texts`` fills it in)."""
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
            if len(q.vector.indices) != len(q.vector.values):
                raise refuse(
                    422,
                    f"{what}: vector has {len(q.vector.indices)} indices but {len(q.vector.values)} values",
                )
            index, ids = svc.index, q.vector.indices
            dim = index.dim
            if ids and not (0 <= min(ids) and max(ids) < dim):
                bad = next(i for i in ids if not 0 <= i < dim)
                raise refuse(422, f"{what}: vector index {bad} is out of range 0..{dim - 1}")
            out.append(_one_row(ids, q.vector.values, dim, index.vocab))
        else:
            out.append(dict(q.vector))
    return out, texts


async def encode_texts(svc: Service, out: list, texts: dict[int, str]) -> list:
    """``out`` with the text queries encoded (the one encoding path of both endpoints): by the query batcher,
    or inline for an inference-free model, whose table lookup (~0.05 ms, no torch) costs less than a hop."""
    if not texts:
        return out
    if svc.inline_queries:
        vecs = svc.query_encoder.encode_queries(list(texts.values()))
        for j, i in enumerate(texts):
            out[i] = vecs[j : j + 1]
    else:
        for i, vec in zip(texts, await svc.batcher.encode_many_async(list(texts.values()))):
            out[i] = vec
    return out


def hybrid_of(body) -> object:
    """The request's ``hybrid`` in the form ``check_hybrid`` reads (the index checks it: one rule)."""
    h = body.hybrid
    return h.model_dump(exclude_unset=True) if hasattr(h, "model_dump") else h


def approx_of(body) -> float | bool:
    """The request's recall target (False: exact), read by the index's one rule before any query is encoded; a
    bad value is a 422 naming it."""
    target = check_approx(body.approx)
    return False if target is None else target


async def search_texts_hybrid(svc: Service, queries: list, texts: dict[int, str], hybrid, args: dict) -> list:
    """Hybrid search: the index fuses its SPLADE and BM25 rankings of each query text (texts only)."""
    if len(texts) != len(queries):
        raise refuse(422, "hybrid search needs text queries ('query'): BM25 ranks words, not vectors")
    run = svc.index.search_batch
    texts_list = [texts[i] for i in range(len(queries))]
    if svc.inline_queries and not args.get("highlight") and len(queries) <= INLINE_QUERIES:
        return run(texts_list, hybrid=hybrid, **args)
    return await run_in_threadpool(run, texts_list, hybrid=hybrid, **args)


def _one_row(ids: list[int], values: list[float], dim: int, vocab):
    """A 1-row SparseVectors: as given when the ids ascend and no weight is 0 in float32 (what an encoder sends,
    checked in microseconds), else through ``from_rows``, which sorts, sums repeats and drops zeros."""
    from ..sparse import SparseVectors

    t = np.asarray(ids, np.int32)
    w = np.asarray(values, np.float32)
    if (len(t) < 2 or bool((t[1:] > t[:-1]).all())) and bool(w.all()):
        return SparseVectors.from_sorted_rows([(t, w)], dim, vocab)
    return SparseVectors.from_rows([(ids, values)], dim, vocab)


def _bad_weight(vector) -> float | None:
    """The first weight that is NaN, infinite or too large for float32 (the index's weights), else None."""
    values = vector.values if isinstance(vector, SparseIn) else list(vector.values())
    ok = np.abs(np.asarray(values, np.float64)) <= _F32_MAX  # one pass in numpy, not a Python loop
    return None if ok.all() else values[int(np.argmin(ok))]


def hit_dict(h) -> dict:
    """One hit as the API answers it: the ``Hit`` model's dump without its None fields, built directly."""
    d: dict = {"id": h.id, "score": float(h.score)}
    if h.text is not None:
        d["text"] = h.text
    if h.metadata is not None:
        d["metadata"] = h.metadata
    if h.explanation is not None:
        d["explanation"] = [
            {"token": t, "query_weight": float(a), "doc_weight": float(b), "product": float(c)}
            for t, a, b, c in h.explanation
        ]
    if h.passage is not None:
        d["passage"] = {"start": int(h.passage[0]), "end": int(h.passage[1])}
    if h.highlights is not None:  # rare and nested: the model keeps exactly its documented fields
        d["highlights"] = Highlights.model_validate(h.highlights).model_dump(exclude_none=True)
    if h.hybrid is not None:
        d["hybrid"] = {run: _run_score(v) for run, v in h.hybrid.items() if v is not None}
    return d


def _run_score(v: dict) -> dict:
    out = {"rank": int(v["rank"]), "score": float(v["score"])}
    if v.get("normalized") is not None:
        out["normalized"] = float(v["normalized"])
    return out


def _ms(t0: float) -> float:
    return 1000 * (time.perf_counter() - t0)


async def search_one(svc: Service, body: SearchIn, raw: bytes) -> bytes:
    """The answer to ``POST /search`` as JSON bytes, from the parsed ``body`` and its ``raw`` bytes. The route
    and the fast lane (``fastlane``) both answer with it; refusals raise ``HTTPException``."""
    t0 = time.perf_counter()
    check_body_unicode(raw, body)
    k = resolve_k(body, svc.limits)
    qs, texts = parse_queries(svc, [body], ["query"])
    args = dict(
        k=k, filter=body.filter, explain=body.explain, with_text=body.with_text, approx=approx_of(body)
    )
    hybrid = hybrid_of(body)
    if hybrid not in (None, False):
        svc.maybe_refresh()
        args.update(threads=1, highlight=body.highlight)
        [hits] = await search_texts_hybrid(svc, qs, texts, hybrid, args)
        svc.count("search")
        return dumps({"hits": [hit_dict(h) for h in hits], "took_ms": _ms(t0)})
    [q] = await encode_texts(svc, qs, texts)
    svc.maybe_refresh()
    if body.highlight:  # encodes the hits' texts: milliseconds, off the event loop
        hits = await run_in_threadpool(svc.index.search, q, highlight=True, **args)
    else:
        hits = svc.index.search(q, **args)
    svc.count("search")
    return dumps({"hits": [hit_dict(h) for h in hits], "took_ms": _ms(t0)})


def search_routes(svc: Service, guard: ApiKeyGuard) -> APIRouter:
    router = APIRouter(tags=["search"], dependencies=guard.reads)

    # response_model documents the answer in the OpenAPI schema; the endpoints return a ready Response, so
    # FastAPI neither validates nor re-serialises it.
    @router.post("/search", response_model=SearchOut, response_model_exclude_none=True)
    async def search(body: SearchIn, request: Request) -> Response:
        """Top-k documents for one query (text or sparse vector), optionally filtered and explained."""
        return Response(await search_one(svc, body, await request.body()), media_type=JSON)

    @router.post("/search/batch", response_model=BatchSearchOut, response_model_exclude_none=True)
    async def search_batch(body: BatchSearchIn, request: Request) -> Response:
        """Top-k documents for each of many queries (text queries are encoded together)."""
        t0 = time.perf_counter()
        check_body_unicode(await request.body(), body)
        check_batch(len(body.queries), "queries", svc.limits)
        k = resolve_k(body, svc.limits)
        names = [f"queries[{i}]" for i in range(len(body.queries))]
        qs, texts = parse_queries(svc, body.queries, names)
        args = dict(
            k=k,
            filter=body.filter,
            explain=body.explain,
            with_text=body.with_text,
            threads=1,
            highlight=body.highlight,
            approx=approx_of(body),
        )
        hybrid = hybrid_of(body)
        if hybrid not in (None, False):
            svc.maybe_refresh()
            results = await search_texts_hybrid(svc, qs, texts, hybrid, args)
        else:
            results = await _search_vectors(svc, await encode_texts(svc, qs, texts), args, body.highlight)
        svc.count("search_batch")
        answer = {"results": [[hit_dict(h) for h in hits] for hits in results], "took_ms": _ms(t0)}
        return Response(dumps(answer), media_type=JSON)

    return router


async def _search_vectors(svc: Service, qs: list, args: dict, highlight: bool) -> list:
    """``search_batch`` of encoded queries: inline when small and cheap, else on the thread pool."""
    svc.maybe_refresh()
    index = svc.index
    if highlight or len(qs) > INLINE_QUERIES:
        return await run_in_threadpool(index.search_batch, qs, **args)
    return index.search_batch(qs, **args)
