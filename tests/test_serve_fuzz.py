"""HTTP fuzzing (issue 16, 4-HTTP): schemathesis over the OpenAPI schema of the ASGI app, plus hand-written
hostile requests. No network: every request goes through the in-process ASGI app.

Asserts: no status >= 500, no stack trace in any body, no write accepted without the key (the index's ids
are unchanged after every unauthenticated POST/DELETE), the key comparison is constant-time.
"""

from __future__ import annotations

import collections
import shutil
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from spladekit.index import Index  # noqa: E402
from spladekit.serve import Limits, create_app  # noqa: E402
from spladekit.serve import middleware as mw  # noqa: E402

KEY = "s3cret-key"
TRACE_MARKS = ("Traceback", 'File "')
N_DOCS = 12


class Tally:
    """Every request the tests send, by status; the bodies checked for stack traces."""

    def __init__(self) -> None:
        self.statuses: collections.Counter = collections.Counter()
        self.bad: list[str] = []

    def record(self, what: str, status: int, body: str) -> None:
        self.statuses[status] += 1
        if status >= 500:
            self.bad.append(f"{what}: {status} {body[:300]}")
        if any(m in body for m in TRACE_MARKS):
            self.bad.append(f"{what}: stack trace in body: {body[:300]}")

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


@pytest.fixture(scope="module")
def tally():
    t = Tally()
    yield t
    print(f"\nfuzz: {t.total} requests; status histogram {dict(sorted(t.statuses.items()))}")


@pytest.fixture(scope="module")
def base_index(tmp_path_factory, encoder) -> Path:
    """A small index of random vectors (ids d0..d11, a few with text and metadata)."""
    path = tmp_path_factory.mktemp("fuzz") / "idx"
    rng = np.random.default_rng(0)
    with Index.create(path, encoder=encoder) as idx:
        m = sp.random(N_DOCS, idx.dim, density=0.002, random_state=rng, format="csr", dtype=np.float32)
        m.data = np.abs(m.data) + 0.1
        ids = [f"d{i}" for i in range(N_DOCS)]
        texts = [f"document {i} about topic {i % 3}" for i in range(N_DOCS)]
        meta = [{"topic": i % 3, "lang": "en"} for i in range(N_DOCS)]
        idx.add_vectors(ids, m, texts=texts, metadata=meta)
        idx.commit()
    return path


def _copy(base: Path, tmp: Path, encoder) -> Index:
    dst = tmp / "idx"
    shutil.copytree(base, dst)
    return Index.open(dst, encoder=encoder)


def _state(idx) -> tuple[int, list[str]]:
    idx.refresh()
    return len(idx), sorted(idx.ids())


def _fuzz(app, tally: Tally, *, headers: dict | None, n: int, on_response=None, schema_app=None) -> int:
    """Every operation of the schema, ``n`` generated valid and ``n`` invalid cases each, sent in-process to
    ``app``. ``headers`` replace any ``X-API-Key`` the generator made; ``schema_app`` serves the schema when
    ``app`` guards it."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", schema_app or app)
    sent = 0
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=n,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=op.as_strategy(generation_mode=mode))
            def run(case):
                nonlocal sent
                h = {k: v for k, v in (case.headers or {}).items() if k.lower() != "x-api-key"}
                h.update(headers or {})
                case.headers = h
                resp = case.call(app=app)
                sent += 1
                tally.record(f"{case.method} {case.formatted_path}", resp.status_code, resp.text)
                if on_response is not None:
                    on_response(case, resp)

            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (GET /health has no parameters)
                assert mode == GenerationMode.NEGATIVE
    return sent


@pytest.mark.slow
def test_fuzz_open_server(base_index, tmp_path, encoder, tally):
    """No key: every endpoint, generated valid and invalid requests; no 5xx, no trace."""
    idx = _copy(base_index, tmp_path, encoder)
    app = create_app(idx, limits=Limits(max_k=50, max_batch=16, max_text_chars=2000))
    sent = _fuzz(app, tally, headers=None, n=60)
    idx.close()
    # ~660: GET /health and GET /stats take no parameters (without a key, reads declare no key header), so
    # they add a request or two each; every other operation up to 60 valid and 60 invalid ones
    assert sent >= 600
    assert not tally.bad, "\n".join(tally.bad[:20])


@pytest.mark.slow
@pytest.mark.parametrize("protect", ["writes", "all"])
def test_fuzz_protected_server_accepts_no_write_without_key(base_index, tmp_path, encoder, tally, protect):
    """With an API key: generated requests without the key, with a wrong one, with the key plus a byte:
    no write goes through (ids and count unchanged), and with protect=all no endpoint but /health answers."""
    idx = _copy(base_index, tmp_path, encoder)
    before = _state(idx)
    app = create_app(idx, api_key=KEY, protect=protect, limits=Limits(max_k=50, max_batch=16))
    schema_app = create_app(idx, limits=Limits(max_k=50, max_batch=16))  # same routes, schema not guarded
    writes_seen = collections.Counter()

    def no_write_accepted(case, resp):
        if case.method in ("POST", "DELETE") and case.path.startswith("/documents"):
            writes_seen[resp.status_code] += 1
            assert resp.status_code in (400, 401, 413, 422), (
                case.method,
                case.path,
                resp.status_code,
                resp.text,
            )
        if protect == "all" and case.path != "/health":
            assert resp.status_code in (400, 401, 413, 422), (case.method, case.path, resp.status_code)

    sent = 0
    for hdrs in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY + "x"}):
        sent += _fuzz(app, tally, headers=hdrs, n=20, on_response=no_write_accepted, schema_app=schema_app)
    with TestClient(app) as client:  # deletes and upserts of ids that exist, without or with a wrong key
        for hdrs in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}, {"x-api-key": KEY.upper()}):
            for i in range(4):
                assert client.delete(f"/documents/d{i}", headers=hdrs).status_code == 401
            body = {"documents": [{"id": "d0", "text": "overwritten"}, {"id": "zz", "text": "new"}]}
            assert client.post("/documents", json=body, headers=hdrs).status_code == 401
    assert _state(idx) == before
    with TestClient(app) as client:  # with the key a write goes through: the guard does not refuse everything
        r = client.post(
            "/documents", json={"documents": [{"id": "new", "text": "x"}]}, headers={"X-API-Key": KEY}
        )
        assert r.status_code == 200, r.text
        assert client.post("/documents", json={"documents": [{"id": "new2", "text": "x"}]}).status_code == 401
    idx.close()
    assert sum(writes_seen.values()) > 50
    assert sent >= 300
    assert not tally.bad, "\n".join(tally.bad[:20])


# a lone surrogate as a JSON escape: valid JSON, but not text the tokenizer or the store can take
SURROGATE_BODIES = [
    ("/search", b'{"query": "\\ud800"}'),
    ("/search", b'{"vector": {"\\udfff": 1.0}}'),
    ("/search", b'{"query": "x", "filter": {"\\ud800": "\\ud800"}, "with_text": true}'),
    ("/search/batch", b'{"queries": [{"query": "ok"}, {"query": "\\udbff\\udbff"}]}'),
    ("/encode", b'{"texts": ["\\ud800x"]}'),
    ("/documents", b'{"documents": [{"id": "\\ud800", "text": "\\ud800", "metadata": {"\\ud800": 1}}]}'),
    ("/documents", b'{"documents": [{"id": "ok-id", "text": "t", "metadata": {"k": "\\ud800"}}]}'),
]


def _explicit_cases(limits: Limits) -> list[tuple[str, str, dict]]:
    """(method, path, httpx kwargs) of hand-written hostile requests."""
    big = "x" * (limits.max_body_bytes + 10)
    nested = ('{"query": "x", "filter": {"a": ' + '{"$in": [' * 5000 + "1" + "]}" * 5000 + "}}").encode()
    deep = {"a": 1}
    for _ in range(200):
        deep = {"a": deep}
    ct = {"content-type": "application/json"}
    cases = [
        ("POST", "/search", {"content": b'{"query": "x", ', "headers": ct}),
        ("POST", "/search", {"content": b"\xff\xfe\x00garbage", "headers": ct}),
        ("POST", "/search", {"content": b"[1, 2, 3]", "headers": ct}),
        ("POST", "/search", {"content": b"null", "headers": ct}),
        ("POST", "/search", {"content": b'"just a string"', "headers": ct}),
        ("POST", "/search", {"content": b'{"query": "x", "k": NaN}', "headers": ct}),
        ("POST", "/search", {"content": b'{"query": "x", "k": 1e400}', "headers": ct}),
        ("POST", "/search", {"content": b'{"vector": {"a": Infinity}}', "headers": ct}),
        ("POST", "/search", {"json": {"query": 5}}),
        ("POST", "/search", {"json": {"query": ["a"]}}),
        ("POST", "/search", {"json": {"query": "x", "k": "ten"}}),
        ("POST", "/search", {"json": {"query": "x", "k": -1}}),
        ("POST", "/search", {"json": {"query": "x", "k": 0}}),
        ("POST", "/search", {"json": {"query": "x", "k": 10**30}}),
        ("POST", "/search", {"json": {"query": "x", "k": 2**63}}),
        ("POST", "/search", {"json": {"query": "x", "k": 1.5}}),
        ("POST", "/search", {"json": {"query": "x", "k": True}}),
        ("POST", "/search", {"json": {"vector": {"indices": [-1], "values": [1.0]}}}),
        ("POST", "/search", {"json": {"vector": {"indices": [10**9], "values": [1.0]}}}),
        ("POST", "/search", {"json": {"vector": {"indices": [2**70], "values": [1.0]}}}),
        ("POST", "/search", {"json": {"vector": {"indices": [1, 1], "values": [1.0, 2.0]}}}),
        ("POST", "/search", {"json": {"vector": {"indices": [1], "values": [1.0, 2.0]}}}),
        ("POST", "/search", {"json": {"vector": {"no-such-token-zz": 1.0}}}),
        ("POST", "/search", {"json": {"vector": {"": 1.0}}}),
        ("POST", "/search", {"json": {"vector": {}}}),
        ("POST", "/search", {"json": {"vector": {"the": -5.0}}}),
        ("POST", "/search", {"json": {"vector": {"the": 1e308, "a": 1e308}}}),
        ("POST", "/search", {"json": {"query": "x", "vector": {"a": 1.0}}}),
        ("POST", "/search", {"json": {}}),
        ("POST", "/search", {"content": nested, "headers": ct}),
        ("POST", "/documents", {"content": nested.replace(b'"query"', b'"documents"'), "headers": ct}),
        ("POST", "/search", {"json": {"query": "x", "filter": deep}}),
        ("POST", "/search", {"json": {"query": "x", "filter": {"topic": {"$in": 5}}}}),
        ("POST", "/search", {"json": {"query": "x", "filter": {"topic": {"$nope": 1}}}}),
        ("POST", "/search", {"json": {"query": "x", "filter": {"topic": [1, [2, {"a": None}]]}}}),
        ("POST", "/search", {"json": {"query": "x", "filter": {"": None}}}),
        ("POST", "/search", {"json": {"query": "x", "filter": {"$in": [1]}}}),
        ("POST", "/search", {"json": {"query": "x", "filter": {"topic": {"$in": []}}}}),
        ("POST", "/search", {"json": {"query": "x", "filter": {"topic": 1.5e308}}}),
        ("POST", "/search", {"content": big.encode(), "headers": ct}),
        ("POST", "/search/batch", {"json": {"queries": []}}),
        ("POST", "/search/batch", {"json": {"queries": [{}]}}),
        ("POST", "/search/batch", {"json": {"queries": [{"query": "a"}] * 10_000}}),
        ("POST", "/search/batch", {"json": {"queries": [{"query": "a"}], "k": -5, "filter": deep}}),
        ("POST", "/search/batch", {"json": {"queries": "a"}}),
        ("POST", "/encode", {"json": {"texts": []}}),
        ("POST", "/encode", {"json": {"texts": "x", "top_k": 0}}),
        ("POST", "/encode", {"json": {"texts": "x", "top_k": 10**20}}),
        ("POST", "/encode", {"json": {"texts": "x", "kind": "both"}}),
        ("POST", "/encode", {"json": {"texts": "y" * 100_000}}),
        ("POST", "/documents", {"json": {"documents": [{"id": "", "text": "x"}]}}),
        ("POST", "/documents", {"json": {"documents": [{"id": 5, "text": "x"}]}}),
        ("POST", "/documents", {"json": {"documents": [{"id": "a", "text": None}]}}),
        ("POST", "/documents", {"json": {"documents": [{"id": "a", "text": "x", "metadata": [1]}]}}),
        ("POST", "/documents", {"json": {"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}}),
        ("POST", "/documents", {"json": {"documents": [{"id": "d1", "text": "x"}], "mode": "add"}}),
        ("POST", "/documents", {"json": {"documents": [], "mode": "add"}}),
        ("POST", "/documents", {"json": {"documents": [{"id": "a", "text": "x"}], "mode": "merge"}}),
        ("POST", "/documents", {"content": b"{" * 100_000, "headers": ct}),
        ("POST", "/documents", {"content": big.encode(), "headers": ct}),
        ("POST", "/documents", {"content": big.encode(), "headers": {**ct, "content-length": "12"}}),
        ("POST", "/documents", {"content": b"{}", "headers": {**ct, "content-length": "not-a-number"}}),
        ("GET", "/stats", {"headers": {"X-API-Key": "\u00e9"}}),
    ]
    # unicode edge cases as ids, texts, tokens and filter values
    weird = [
        "\ud800",
        "a\x00b",
        "\u202eevil\u202c",
        "\U0001f600\U0001f9ec",
        "\ufeff",
        "\u0000",
        "e\u0301",
        "\uffff",
    ]
    for w in weird:
        cases += [
            ("POST", "/search", {"json": {"query": w}}),
            ("POST", "/search", {"json": {"vector": {w: 1.0}}}),
            ("POST", "/search", {"json": {"query": "x", "filter": {w: w}}}),
            ("POST", "/encode", {"json": {"texts": [w, w * 50]}}),
            ("POST", "/documents", {"json": {"documents": [{"id": w, "text": w, "metadata": {w: w}}]}}),
            ("GET", "/documents/" + quote(w.encode("utf-8", "surrogatepass"), safe=""), {}),
            ("DELETE", "/documents/" + quote(w.encode("utf-8", "surrogatepass"), safe=""), {}),
        ]
    for doc_id in [
        "../x",
        "a/b",
        "%2e%2e",
        "%2e%2e/%2e%2e/etc/passwd",
        "..",
        ".",
        "a%00b",
        "%ff",
        "a//b",
        "a?b=1",
    ]:
        cases += [
            ("POST", "/documents", {"json": {"documents": [{"id": doc_id, "text": "path-like " + doc_id}]}}),
            ("GET", "/documents/" + doc_id, {}),
            ("DELETE", "/documents/" + doc_id, {}),
        ]
    for path, body in SURROGATE_BODIES:
        cases.append(("POST", path, {"content": body, "headers": ct}))
    return cases


def test_explicit_hostile_requests(base_index, tmp_path, encoder, tally):
    """Malformed JSON, wrong types, huge bodies, unicode edge cases, bad k, deep filters, path-like ids: each
    answers a clear 4xx (or 200/404 where the request is valid), never a 5xx or a trace; path-like ids stay
    ids (stored and found as given, nothing written outside the index)."""
    idx = _copy(base_index, tmp_path, encoder)
    limits = Limits(max_k=50, max_batch=16, max_body_bytes=256 * 1024)
    app = create_app(idx, limits=limits)
    table = []
    with TestClient(app, raise_server_exceptions=False) as client:
        for method, path, kwargs in _explicit_cases(limits):
            try:
                r = client.request(method, path, **kwargs)
            except UnicodeEncodeError:  # the client cannot send a lone surrogate as text (the raw cases do)
                table.append((method, path[:40], "unsendable", ""))
                continue
            tally.record(f"{method} {path[:60]}", r.status_code, r.text)
            assert r.status_code < 500, (method, path[:60], r.status_code, r.text[:300])
            if r.status_code >= 400:
                assert r.json()["detail"], r.text
            table.append((method, path[:40], r.status_code, r.text[:110]))
        for path, body in SURROGATE_BODIES:
            r = client.post(path, content=body, headers={"content-type": "application/json"})
            detail = str(r.json()["detail"])  # ours, or pydantic's for an id
            assert r.status_code == 422 and ("lone surrogate" in detail or "unicode" in detail), (
                path,
                r.text,
            )
        for doc_id in ["../x", "a/b", "%2e%2e"]:
            assert (
                client.post(
                    "/documents", json={"documents": [{"id": doc_id, "text": "again " + doc_id}]}
                ).status_code
                == 200
            )
            idx.refresh()
            assert idx.get(doc_id)["text"] == "again " + doc_id  # stored under exactly the id given
            if "%" not in doc_id:  # (starlette's TestClient decodes the path twice: %252e arrives as '.')
                r = client.get("/documents/" + quote(doc_id, safe=""))
                assert r.status_code == 200 and r.json()["id"] == doc_id, (doc_id, r.text)
    assert not list(tmp_path.glob("x")) and not (tmp_path / "idx" / "a").exists()
    idx.close()
    assert len(table) > 100
    print(f"\nexplicit: {len(table)} requests")
    for row in table:
        print("  ", *row)
    assert not tally.bad, "\n".join(tally.bad[:20])


@pytest.mark.slow
def test_total_requests_and_no_5xx(tally):
    """Runs after the fuzz tests of this module: the total they sent."""
    if tally.total == 0:
        pytest.skip("run with the fuzz tests of this module")
    assert tally.total >= 2000, tally.statuses
    assert not any(s >= 500 for s in tally.statuses), tally.statuses


def test_api_key_comparison_is_constant_time(monkeypatch):
    """The key is compared with hmac.compare_digest (and only with it), including non-ASCII keys."""
    import inspect

    assert "hmac.compare_digest" in inspect.getsource(mw.ApiKeyGuard.matches)
    calls = []
    real = mw.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(mw.hmac, "compare_digest", spy)
    guard = mw.ApiKeyGuard(KEY, "writes")
    assert guard.matches(KEY) and not guard.matches("wrong") and not guard.matches(None)
    assert not guard.matches("\u00e9t\u00e9") and not guard.matches("\ud800")
    assert len(calls) == 4
    assert all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in calls)
