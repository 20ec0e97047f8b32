"""HTTP API: FastAPI test client for every endpoint, limits, API keys, concurrency; one real uvicorn process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from spladekit.index import Index
from spladekit.serve import Limits, create_app

DOCS = [
    ("d0", "Vitamin D deficiency is linked to bone loss in older adults.", {"topic": "health", "year": 2019}),
    (
        "d1",
        "Protein folding is guided by hydrophobic interactions in the cell.",
        {"topic": "biology", "year": 2020},
    ),
    ("d2", "Tumor growth slows when angiogenesis is blocked.", {"topic": "cancer", "year": 2021}),
    ("d3", "Chemotherapy resistance in breast cancer cells.", {"topic": "cancer", "year": 2019}),
    ("d4", "Gut bacteria influence the immune response to infection.", {"topic": "biology", "year": 2022}),
    (
        "d5",
        "Exercise lowers blood pressure in patients with hypertension.",
        {"topic": "health", "year": 2020},
    ),
    ("d6", "Insulin signalling controls glucose uptake in muscle.", {"topic": "biology", "year": 2021}),
    ("d7", "Smoking raises the risk of lung cancer.", {"topic": "cancer", "year": 2018}),
]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, encoder) -> Path:
    path = tmp_path_factory.mktemp("serve") / "idx"
    idx = Index.create(path, encoder=encoder)
    idx.add([d[0] for d in DOCS], [d[1] for d in DOCS], [d[2] for d in DOCS])
    idx.commit()
    idx.close()
    return path


@pytest.fixture()
def live_index(index_dir, tmp_path, encoder):
    """A private copy of the index (tests below write to it), opened with the shared encoder."""
    import shutil

    dst = tmp_path / "idx"
    shutil.copytree(index_dir, dst)
    idx = Index.open(dst, encoder=encoder)
    yield idx
    idx.close()


def client_for(idx, **kwargs) -> TestClient:
    return TestClient(create_app(idx, **kwargs))


def test_search_text_vector_filter_explain(live_index, encoder):
    c = client_for(live_index)
    r = c.post("/search", json={"query": "cancer tumor", "k": 3})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    expected = live_index.search("cancer tumor", k=3)
    assert [h["id"] for h in hits] == [h.id for h in expected]
    assert [h["score"] for h in hits] == pytest.approx([h.score for h in expected], rel=1e-6)
    assert "text" not in hits[0]

    # the same query as {token: weight} and as indices/values gives the same hits
    vec = encoder.encode_queries(["cancer tumor"])
    by_tokens = c.post("/search", json={"vector": vec.to_dicts()[0], "k": 3}).json()["hits"]
    t, w = vec.row(0)
    by_ids = c.post("/search", json={"vector": {"indices": t.tolist(), "values": w.tolist()}, "k": 3}).json()[
        "hits"
    ]
    assert [h["id"] for h in by_tokens] == [h["id"] for h in hits] == [h["id"] for h in by_ids]

    r = c.post(
        "/search",
        json={
            "query": "cancer",
            "k": 10,
            "filter": {"year": {"$in": [2019, 2021]}},
            "explain": True,
            "with_text": True,
        },
    )
    hits = r.json()["hits"]
    assert hits and {h["id"] for h in hits} <= {"d0", "d2", "d3", "d6"}
    assert all(h["metadata"]["year"] in (2019, 2021) for h in hits)
    top = hits[0]
    assert top["text"] == dict((d[0], d[1]) for d in DOCS)[top["id"]]
    assert sum(t["product"] for t in top["explanation"]) == pytest.approx(top["score"], rel=1e-4)

    r = c.post("/search/batch", json={"queries": [{"query": "cancer"}, {"vector": {"insulin": 1.0}}], "k": 2})
    assert r.status_code == 200
    res = r.json()["results"]
    assert [h["id"] for h in res[0]] == [h.id for h in live_index.search("cancer", k=2)]
    assert res[1][0]["id"] == "d6"


def test_documents_get_delete_encode_stats(live_index):
    c = client_for(live_index)
    r = c.post(
        "/documents",
        json={
            "documents": [
                {"id": "n1", "text": "Zebrafish regenerate their heart muscle.", "metadata": {"year": 2023}}
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["documents"] == len(DOCS) + 1
    assert (
        c.post("/search", json={"query": "zebrafish heart regeneration", "k": 1}).json()["hits"][0]["id"]
        == "n1"
    )
    assert c.get("/documents/n1").json() == {
        "id": "n1",
        "text": "Zebrafish regenerate their heart muscle.",
        "metadata": {"year": 2023},
    }
    # add refuses an existing id, upsert replaces it
    r = c.post("/documents", json={"documents": [{"id": "n1", "text": "x"}], "mode": "add"})
    assert r.status_code == 409 and "n1" in r.json()["detail"]
    r = c.post("/documents", json={"documents": [{"id": "n1", "text": "Koalas eat eucalyptus leaves."}]})
    assert r.status_code == 200 and r.json()["documents"] == len(DOCS) + 1
    assert c.get("/documents/n1").json()["text"] == "Koalas eat eucalyptus leaves."

    # ids with slashes and spaces work in the path
    assert (
        c.post("/documents", json={"documents": [{"id": "pmc/12 a", "text": "Slash id."}]}).status_code == 200
    )
    assert c.get("/documents/pmc%2F12%20a").json()["id"] == "pmc/12 a"
    assert c.delete("/documents/pmc/12 a").json() == {"deleted": "pmc/12 a"}
    assert c.delete("/documents/n1").json() == {"deleted": "n1"}
    assert c.get("/documents/n1").status_code == 404
    assert c.delete("/documents/n1").status_code == 404
    assert "n1" not in {h["id"] for h in c.post("/search", json={"query": "koalas", "k": 20}).json()["hits"]}

    r = c.post("/encode", json={"texts": ["cancer"], "kind": "query", "top_k": 5})
    vec = r.json()["vectors"][0]
    assert len(vec) == 5 and "cancer" in vec
    doc_vec = c.post("/encode", json={"texts": "cancer", "kind": "document"}).json()["vectors"][0]
    assert doc_vec == pytest.approx(live_index.encoder.encode_documents(["cancer"]).to_dicts()[0])

    assert c.get("/health").json() == {"status": "ok"}
    stats = c.get("/stats").json()
    assert stats["index"]["documents"] == len(DOCS)
    assert stats["requests"]["search"] >= 2
    schema = c.get("/openapi.json").json()
    assert {
        "/search",
        "/search/batch",
        "/documents",
        "/documents/{doc_id}",
        "/encode",
        "/health",
        "/stats",
    } <= set(schema["paths"])


def test_full_disk_on_a_write_is_507_and_loses_nothing(live_index, monkeypatch):
    """A write that hits a full disk answers 507 with Retry-After, says nothing was committed and shows no server
    path; the index keeps serving, the next write lands, and the folder checks clean."""
    import errno

    c = client_for(live_index)
    real_fsync, fired = os.fsync, []

    def full(fd):
        if not fired:
            fired.append(fd)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as the kernel: no file name
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    r = c.post("/documents", json={"documents": [{"id": "full", "text": "Zebrafish regenerate their fins."}]})
    assert fired and r.status_code == 507, r.text
    detail = r.json()["detail"]
    assert "No space left on device" in detail and "nothing of this request was committed" in detail, detail
    assert str(live_index.path) not in r.text and r.headers["retry-after"] == "5"
    assert c.get("/documents/full").status_code == 404
    assert c.post("/search", json={"query": "cancer", "k": 3}).status_code == 200
    r = c.post("/documents", json={"documents": [{"id": "full", "text": "Zebrafish regenerate their fins."}]})
    assert r.status_code == 200 and r.json()["documents"] == len(DOCS) + 1, r.text
    report = live_index.check(deep=True)
    assert report.ok, report
    reader = Index.open(live_index.path)
    assert len(reader) == len(DOCS) + 1 and reader.get("full")["text"].startswith("Zebrafish")
    reader.close()


def test_limits_name_the_limit(live_index):
    limits = Limits(max_body_bytes=2000, max_batch=2, max_text_chars=50, max_k=5)
    c = client_for(live_index, limits=limits)
    r = c.post(
        "/search", content=json.dumps({"query": "x" * 3000}), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and "max_body_bytes=2000" in r.json()["detail"]

    # a chunked body (no Content-Length) is counted while it streams
    def chunks():
        yield b'{"query": "'
        for _ in range(10):
            yield b"y" * 500
        yield b'"}'

    r = c.post("/search", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"]

    r = c.post("/search", json={"query": "z" * 60})
    assert r.status_code == 422 and "max_text_chars=50" in r.json()["detail"]
    r = c.post("/search", json={"query": "cancer", "k": 6})
    assert r.status_code == 422 and "max_k=5" in r.json()["detail"]
    for path, body in (("/search", {"query": "cancer"}), ("/search/batch", {"queries": [{"query": "a"}]})):
        r = c.post(path, json={**body, "k": 0})
        assert r.status_code == 422 and "at least 1" in r.json()["detail"]
    assert c.post("/search", json={"query": "cancer"}).status_code == 200  # the default k shrinks to max_k
    r = c.post("/search/batch", json={"queries": [{"query": "a"}] * 3})
    assert r.status_code == 422 and "max_batch=2" in r.json()["detail"]
    docs = [{"id": f"x{i}", "text": "t"} for i in range(3)]
    r = c.post("/documents", json={"documents": docs})
    assert r.status_code == 422 and "max_batch=2" in r.json()["detail"]
    assert len(live_index) == len(DOCS)  # nothing half-added
    r = c.post("/documents", json={"documents": [{"id": "long", "text": "w" * 51}]})
    assert r.status_code == 422 and "max_text_chars=50" in r.json()["detail"]
    # malformed requests are 422 with one line, not a 500
    assert c.post("/search", json={"query": "a", "vector": {"a": 1.0}}).status_code == 422
    r = c.post("/search", json={"vector": {"notatoken123": 1.0}})
    assert r.status_code == 422 and "vocabulary" in r.json()["detail"]
    r = c.post("/search", json={"query": "a", "filter": {"year": {"$gt": 1}}})
    assert r.status_code == 422 and "$in" in r.json()["detail"]


def test_api_key_modes(live_index):
    c = client_for(live_index, api_key="s3cret")
    assert c.post("/search", json={"query": "cancer"}).status_code == 200
    doc = {"documents": [{"id": "k1", "text": "guarded write"}]}
    assert c.post("/documents", json=doc).status_code == 401
    assert c.post("/documents", json=doc, headers={"X-API-Key": "wrong"}).status_code == 401
    assert c.delete("/documents/d0").status_code == 401
    assert c.post("/documents", json=doc, headers={"X-API-Key": "s3cret"}).status_code == 200

    c = client_for(live_index, api_key="s3cret", protect="all")
    assert c.post("/search", json={"query": "cancer"}).status_code == 401
    assert c.get("/documents/d0").status_code == 401
    assert c.get("/stats").status_code == 401
    assert c.get("/openapi.json").status_code == 401
    assert c.get("/health").status_code == 200
    h = {"X-API-Key": "s3cret"}
    assert c.post("/search", json={"query": "cancer"}, headers=h).status_code == 200
    assert "/search" in c.get("/openapi.json", headers=h).json()["paths"]


def test_concurrent_searches_while_adding(live_index):
    """Searches and lookups during writes never fail and never see a document without its text/metadata."""
    c = client_for(live_index)
    errors: list[str] = []
    stop = threading.Event()
    texts = {f"c{i}": f"Concurrent document number {i} about cancer cells." for i in range(12)}

    def reader():
        while not stop.is_set():
            r = c.post("/search", json={"query": "cancer cells", "k": 20, "with_text": True})
            if r.status_code != 200:
                errors.append(f"search {r.status_code} {r.text}")
                continue
            for h in r.json()["hits"]:
                want = texts.get(h["id"]) or dict((d[0], d[1]) for d in DOCS)[h["id"]]
                if h.get("text") != want:
                    errors.append(f"hit {h['id']} has text {h.get('text')!r}")
                if h["id"].startswith("c") and h.get("metadata") != {"n": int(h["id"][1:])}:
                    errors.append(f"hit {h['id']} has metadata {h.get('metadata')!r}")
            for doc_id in ("c0", "c5", "d1"):
                g = c.get(f"/documents/{doc_id}")
                if g.status_code not in (200, 404) or (g.status_code == 200 and not g.json()["text"]):
                    errors.append(f"get {doc_id}: {g.status_code} {g.text}")

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(0, 12, 2):
            batch = [{"id": f"c{j}", "text": texts[f"c{j}"], "metadata": {"n": j}} for j in (i, i + 1)]
            r = c.post("/documents", json={"documents": batch})
            assert r.status_code == 200, r.text
        r = c.delete("/documents/c3")
        assert r.status_code == 200
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:5]
    assert len(live_index) == len(DOCS) + 11


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_real_uvicorn_process(index_dir, tmp_path):
    """``spladekit serve`` in its own process on 127.0.0.1: health, search, guarded write, clean shutdown."""
    import shutil

    dst = tmp_path / "idx"
    shutil.copytree(index_dir, dst)
    port = _free_port()
    env = {**os.environ, "SPLADEKIT_API_KEY": "k"}
    cmd = [
        sys.executable,
        "-c",
        "from spladekit.cli import main; main()",
        "serve",
        "-i",
        str(dst),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read() if proc.poll() is not None else ""
                pytest.fail(f"server did not start: {out[-2000:]}")
            time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=60) as h:
            r = h.post("/search", json={"query": "lung cancer smoking", "k": 2})
            assert r.status_code == 200 and r.json()["hits"][0]["id"] == "d7"
            assert (
                h.post("/documents", json={"documents": [{"id": "u1", "text": "hello"}]}).status_code == 401
            )
            r = h.post(
                "/documents", json={"documents": [{"id": "u1", "text": "hello"}]}, headers={"X-API-Key": "k"}
            )
            assert r.status_code == 200
            assert h.get("/documents/u1").json()["text"] == "hello"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # the write was committed: a fresh reader sees it
    with Index.open(dst) as idx:
        assert idx.get("u1")["text"] == "hello"


def test_app_over_qdrant_backend(tmp_path, encoder):
    """The same app serves a Qdrant-backed index: switching backends is a configuration change."""
    from qdrant_client import QdrantClient

    idx = Index.create(tmp_path / "q", encoder=encoder, backend="qdrant", client=QdrantClient(":memory:"))
    c = client_for(idx)
    docs = [{"id": d[0], "text": d[1], "metadata": d[2]} for d in DOCS]
    assert c.post("/documents", json={"documents": docs}).json()["documents"] == len(DOCS)
    hits = c.post(
        "/search", json={"query": "lung cancer smoking", "k": 3, "filter": {"topic": "cancer"}}
    ).json()
    assert hits["hits"][0]["id"] == "d7" and len(hits["hits"]) == 3
    assert c.get("/documents/d1").json()["metadata"] == {"topic": "biology", "year": 2020}
    assert c.delete("/documents/d1").status_code == 200 and c.get("/documents/d1").status_code == 404
    assert c.get("/stats").json()["index"]["backend"] == "qdrant"


def test_query_batcher_groups_concurrent_queries(encoder):
    """Concurrent text queries are encoded together, and each gets its own vector back."""
    from concurrent.futures import ThreadPoolExecutor

    from spladekit.serve.batching import QueryBatcher

    texts = [
        f"{w} in human cells" for w in ("insulin", "tumor", "vitamin", "protein", "bacteria", "smoking")
    ] * 4
    b = QueryBatcher(encoder)
    try:
        with ThreadPoolExecutor(12) as pool:
            got = list(pool.map(b.encode, texts))
    finally:
        b.close()
    for t, v in zip(texts, got):
        assert v.allclose(encoder.encode_queries([t]), atol=1e-4)
    assert b.queries == len(texts) and b.calls < len(texts)
    with pytest.raises(Exception, match="shutting down"):
        b.encode("after close")


def test_hybrid_search_over_http_is_the_index_search(live_index):
    """``hybrid`` on /search and /search/batch answers what ``Index.search(text, hybrid=...)`` gives, with each
    run's rank and score per hit; vector queries and bad settings are 422 with the index's own message."""
    c = client_for(live_index)
    for hybrid, as_index in (
        ("rrf", "rrf"),
        (True, "rrf"),
        ({"method": "convex", "weight": 0.7}, {"method": "convex", "weight": 0.7}),
        ({"method": "rrf", "k": 10, "depth": 5}, {"method": "rrf", "k": 10, "depth": 5}),
    ):
        r = c.post(
            "/search", json={"query": "cancer cells", "k": 4, "hybrid": hybrid, "filter": {"year": 2019}}
        )
        assert r.status_code == 200, r.text
        want = live_index.search("cancer cells", k=4, hybrid=as_index, filter={"year": 2019})
        got = r.json()["hits"]
        assert [h["id"] for h in got] == [h.id for h in want]
        assert [h["score"] for h in got] == pytest.approx([h.score for h in want], rel=1e-6)
        for g, w in zip(got, want):
            assert g["hybrid"] == {run: pytest.approx(v) for run, v in w.hybrid.items() if v is not None}
        b = c.post(
            "/search/batch",
            json={"queries": [{"query": "cancer cells"}], "k": 4, "hybrid": hybrid, "filter": {"year": 2019}},
        )
        assert b.status_code == 200 and [h["id"] for h in b.json()["results"][0]] == [h.id for h in want]
    plain = c.post("/search", json={"query": "cancer cells", "k": 4}).json()["hits"]
    assert all("hybrid" not in h for h in plain)
    r = c.post("/search", json={"vector": {"cancer": 1.0}, "hybrid": "rrf"})
    assert r.status_code == 422 and "text queries" in r.json()["detail"]
    r = c.post("/search", json={"query": "cancer", "hybrid": {"method": "convex", "weight": 2}})
    assert r.status_code == 422 and "weight" in r.json()["detail"]
    r = c.post("/search", json={"query": "cancer", "hybrid": "bm42"})
    assert r.status_code == 422
