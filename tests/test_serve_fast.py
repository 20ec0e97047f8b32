"""The fast search path: answers built as plain dicts equal the schema's models, the serialiser's fallbacks,
and the fast lane of ``POST /search``: it answers exactly what the route answers, and hands everything it is
not sure of (bad JSON, a refused body, a missing key, any refusal) to the route with the body replayed."""

from __future__ import annotations

import asyncio
import json
import math

from fastapi.testclient import TestClient

from spladekit.index import Index, SearchHit
from spladekit.serve import create_app
from spladekit.serve.fastlane import FastLane
from spladekit.serve.jsonsafe import dumps
from spladekit.serve.middleware import ApiKeyGuard
from spladekit.serve.schemas import Hit, SearchOut
from spladekit.serve.search import hit_dict


# ----------------------------------------------------------------------------- the answer, built directly
def test_hit_dicts_equal_the_models_dump():
    """Every field of a hit, None inside metadata, a highlight key the schema does not document: the dict the
    endpoint builds is exactly what the response model dumped (without None fields) before."""
    hits = [
        SearchHit("a", 1.5),
        SearchHit(
            "b",
            0.25,
            text="lung cancer",
            metadata={"topic": "cancer", "none": None, "nested": {"x": None}},
            explanation=[("lung", 0.5, 0.25, 0.125)],
            passage=(3, 40),
            highlights={
                "terms": [
                    {"term": "lung", "score": 0.1, "weight": 0.2, "start": None, "end": None, "word": None}
                ],
                "snippet": {"text": "lung cancer", "start": 0, "end": 11, "doc_chars": 11, "marks": [[0, 4]]},
            },
        ),
    ]
    for h in hits:
        model = Hit(
            id=h.id,
            score=h.score,
            text=h.text,
            metadata=h.metadata,
            explanation=None
            if h.explanation is None
            else [dict(zip(("token", "query_weight", "doc_weight", "product"), e)) for e in h.explanation],
            passage=None if h.passage is None else {"start": h.passage[0], "end": h.passage[1]},
            highlights=h.highlights,
        )
        assert hit_dict(h) == model.model_dump(exclude_none=True)


def test_dumps_is_compact_ascii_and_never_fails():
    value = {"id": "caf\u00e9 \ud800", "score": 1.5, "v": [1, 2.5, None, True]}
    assert dumps(value) == json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode()
    odd = {"s": math.nan, "t": [math.inf, -math.inf], 3: "int key"}
    assert json.loads(dumps(odd)) == {"s": "nan", "t": ["inf", "-inf"], "3": "int key"}


def test_search_answers_match_the_schema_and_the_index(index_path, encoder):
    """Every option at once (explain, text, highlight): the answer validates against ``SearchOut`` and dumps back
    to itself; vectors given out of order, repeated or with zeros find what the sorted vector finds."""
    with Index.open(index_path, encoder=encoder) as idx, TestClient(create_app(idx)) as c:
        body = {"query": "lung cancer", "k": 3, "explain": True, "with_text": True, "highlight": True}
        got = c.post("/search", json=body).json()
        assert SearchOut.model_validate(got).model_dump(exclude_none=True) == got
        assert got["hits"][0]["id"] == "d2" and got["hits"][0]["highlights"]["terms"]

        t, w = encoder.encode_queries(["lung cancer"]).row(0)
        t, w = t.tolist(), w.tolist()
        sorted_hits = c.post("/search", json={"vector": {"indices": t, "values": w}}).json()["hits"]
        messy = {"indices": t[::-1] + [t[0], t[1]], "values": w[::-1] + [0.0, 0.0]}
        assert c.post("/search", json={"vector": messy}).json()["hits"] == sorted_hits
        assert [h["id"] for h in sorted_hits] == [h.id for h in idx.search("lung cancer", k=10)]


# ----------------------------------------------------------------------------- the fast lane
def _call(svc, guard, body: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[list[dict], list[bytes]]:
    """One POST /search through a fast lane alone; what it sent, and the bodies it handed on to the app."""
    handed: list[bytes] = []
    sent: list[dict] = []

    async def app(scope, receive, send):  # stands in for FastAPI: records the body it is given
        msg = await receive()
        handed.append(msg["body"])

    async def run():
        chunks = [body[:5], body[5:]]  # a body in two pieces

        async def receive():
            part = chunks.pop(0)
            return {"type": "http.request", "body": part, "more_body": bool(chunks)}

        async def send(msg):
            sent.append(msg)

        scope = {"type": "http", "method": "POST", "path": "/search", "headers": headers}
        await FastLane(app, svc, guard)(scope, receive, send)

    asyncio.run(run())
    return sent, handed


def test_fast_lane_answers_valid_searches_and_hands_on_the_rest(index_path, encoder):
    ct = [(b"content-type", b"application/json")]
    with Index.open(index_path, encoder=encoder) as idx:
        app = create_app(idx)
        svc = app.state.service
        open_ = ApiKeyGuard(None, "writes")
        sent, handed = _call(svc, open_, b'{"vector": {"cancer": 1.0}, "k": 2}', ct)
        assert not handed and sent[0]["status"] == 200
        assert [h["id"] for h in json.loads(sent[1]["body"])["hits"]] == [
            h.id for h in idx.search({"cancer": 1.0}, k=2)
        ]
        for body, headers in [
            (b'{"vector": {"cancer": 1.0}}', [(b"content-type", b"text/plain")]),  # not JSON by its header
            (b'{"vector": {"cancer": 1.0}}', [(b"content-type", b"application/jsonx")]),
            (b'{"vector": {"cancer": 1.0}', ct),  # not JSON
            (b'{"vector": {"cancer": 1.0}, "k": "ten"}', ct),  # refused by the model
            (b'{"vector": {"cancer": 1.0}, "k": 100000}', ct),  # refused by the route's checks (max_k)
            (b'{"vector": {"notatoken123": 1.0}}', ct),  # refused by the index
            (b'{"query": "\\ud800"}', ct),  # a lone surrogate
        ]:
            sent, handed = _call(svc, open_, body, headers)
            assert handed == [body] and not sent, body  # the whole body, replayed, and nothing answered

        keyed = ApiKeyGuard("s3cret", "all")
        body = b'{"vector": {"cancer": 1.0}}'
        assert _call(svc, keyed, body, ct)[1] == [body]  # no key: the route answers (401)
        assert _call(svc, keyed, body, [*ct, (b"x-api-key", b"wrong")])[1] == [body]
        sent, handed = _call(svc, keyed, body, [*ct, (b"x-api-key", b"s3cret")])
        assert not handed and sent[0]["status"] == 200


def test_fast_lane_answers_what_the_route_answers(index_path, encoder):
    """The same bodies through the lane (application/json) and through the route (a +json type the lane leaves
    to it): equal answers but for took_ms, errors included."""
    with Index.open(index_path, encoder=encoder) as idx, TestClient(create_app(idx)) as c:
        t, w = encoder.encode_queries(["breast cancer cells"]).row(0)
        bodies = [
            {"query": "lung cancer", "k": 3, "explain": True, "with_text": True},
            {"vector": {"indices": t.tolist(), "values": w.tolist()}, "filter": {"topic": "cancer"}},
            {"vector": {"cancer": 2.0, "cells": 0.5}, "k": 1, "with_text": True},
            {"query": "x", "k": 0},
            {"vector": {"cancer": math.inf}},
            {"query": "a", "vector": {"a": 1.0}},
        ]
        for body in bodies:
            raw = json.dumps(body).encode()
            lane = c.post("/search", content=raw, headers={"content-type": "application/json"})
            route = c.post("/search", content=raw, headers={"content-type": "application/x-search+json"})
            assert lane.status_code == route.status_code, (body, lane.text, route.text)
            a, b = lane.json(), route.json()
            a.pop("took_ms", None), b.pop("took_ms", None)
            assert a == b, body
        assert c.get("/stats").json()["requests"]["search"] == 2 * 3  # each answered search counted once
