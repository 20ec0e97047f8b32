"""``approx`` over HTTP: /search and /search/batch answer what ``Index.search(..., approx=)`` answers, and a bad
value is a 422 with the index's own one-line rule (``index.approx.check_approx``)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from test_approx_index import topic_vectors

from spladekit.index import Index
from spladekit.serve import create_app

N = 3000


@pytest.fixture(scope="module")
def tuned_index(light_encoder, tmp_path_factory):
    """An index of topic vectors tuned with approximate rows (exact would be faster at this size), and held-out
    query vectors."""
    rng = np.random.default_rng(5)
    vecs = topic_vectors(rng, N + 60, light_encoder.vocab_size)
    path = tmp_path_factory.mktemp("serve-approx") / "idx"
    idx = Index.create(path, encoder=light_encoder, bm25=False)
    idx.add_vectors([f"d{i}" for i in range(N)], vecs[np.arange(N)])
    idx.commit()
    idx.tune(sample=150, exact_if_faster=False)
    yield idx, vecs[np.arange(N, N + 60)]
    idx.close()


def body(qs, i: int) -> dict:
    t, w = qs.row(i)
    return {"indices": t.tolist(), "values": w.tolist()}


def test_approx_search_over_http_is_the_index_search(tuned_index):
    idx, qs = tuned_index
    differs = [
        i
        for i in range(len(qs))
        if [h.id for h in idx.search(qs[i], approx=0.9)] != [h.id for h in idx.search(qs[i])]
    ]
    assert differs, "the approximate path must prune for this test to mean anything"
    with TestClient(create_app(idx)) as c:
        for i in differs[:5] + [0]:
            for approx, as_index in ((0.9, 0.9), (True, True), (1, False), (False, False), (None, False)):
                r = c.post("/search", json={"vector": body(qs, i), "k": 10, "approx": approx})
                assert r.status_code == 200, r.text
                want = idx.search(qs[i], k=10, approx=as_index)
                assert [h["id"] for h in r.json()["hits"]] == [h.id for h in want]
                assert [h["score"] for h in r.json()["hits"]] == pytest.approx([h.score for h in want])
        pick = differs[:5]
        r = c.post("/search/batch", json={"queries": [{"vector": body(qs, i)} for i in pick], "approx": 0.9})
        assert r.status_code == 200, r.text
        want = idx.search_batch(qs[np.asarray(pick)], approx=0.9, threads=1)
        assert [[h["id"] for h in hits] for hits in r.json()["results"]] == [[h.id for h in w] for w in want]
        schema = c.get("/openapi.json").json()["components"]["schemas"]
        assert "recall@k target in (0, 1]" in schema["SearchIn"]["properties"]["approx"]["description"]


@pytest.mark.parametrize("bad", [1.5, 0, -0.2, "0.95", [0.9], {"target": 0.9}])
def test_bad_approx_is_a_422_naming_the_rule(tuned_index, bad):
    idx, qs = tuned_index
    with TestClient(create_app(idx)) as c:
        for path, req in (
            ("/search", {"vector": body(qs, 0), "approx": bad}),
            ("/search/batch", {"queries": [{"vector": body(qs, 0)}], "approx": bad}),
            ("/search", {"query": "not encoded before the check", "approx": bad}),
        ):
            r = c.post(path, json=req)
            assert r.status_code == 422, (path, r.text)
            detail = r.json()["detail"]
            assert detail.startswith("approx must be a recall target in (0, 1]") and repr(bad) in detail
