"""One contract, two backends: the same sequence of calls gives the same results on the embedded index and on
Qdrant (in-process client), and the contract's promises hold for both."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from qdrant_client import QdrantClient

from spladekit.errors import InputError
from spladekit.index import DocumentBatch, Index, SearchHit
from spladekit.sparse import SparseVectors

DIM = 30522  # the bundled model's vocabulary


def _vectors(rng, n: int, terms: int = 12) -> SparseVectors:
    rows = []
    for _ in range(n):
        idx = np.sort(rng.choice(np.arange(2000, 2300), size=terms, replace=False))
        rows.append((idx, rng.gamma(1.0, 1.0, size=terms).astype(np.float32)))
    return SparseVectors.from_rows(rows, DIM)


def _make(backend: str, path):
    if backend == "qdrant":
        return Index.create(path, backend="qdrant", client=QdrantClient(":memory:"))
    return Index.create(path)


def _run_sequence(idx) -> dict:
    """The contract's calls in one fixed order; everything they return, in comparable form."""
    rng = np.random.default_rng(3)
    v = _vectors(rng, 40)
    ids = [f"d{i}" for i in range(40)]
    meta = [{"lang": ["en", "fr"][i % 2], "year": 2000 + i % 5} for i in range(40)]
    texts = [f"text {i}" for i in range(40)]
    out: dict = {}
    idx.add_vectors(ids[:30], v[np.arange(30)], texts[:30], meta[:30])
    idx.commit()
    # scipy and torch sparse inputs are accepted like SparseVectors
    idx.add_vectors(ids[30:35], v[np.arange(30, 35)].to_scipy(), texts[30:35], meta[30:35])
    idx.upsert_vectors(ids[35:40], v[np.arange(35, 40)].to_torch(), texts[35:40], meta[35:40])
    idx.commit()
    idx.upsert_vectors(
        ["d3"], _vectors(np.random.default_rng(77), 1), ["replaced"], [{"lang": "de", "year": 1999}]
    )
    idx.delete(["d5", "d6"])
    idx.commit()
    out["len"] = len(idx)
    out["contains"] = ("d5" in idx, "d3" in idx)
    out["get"] = idx.get("d3")
    out["missing"] = idx.get("nope")
    out["ids"] = sorted(idx.ids())
    vec = idx.vectors(["d3", "d1"])
    out["vectors"] = [(r[0].tolist(), np.round(r[1], 6).tolist()) for r in vec]
    q = _vectors(np.random.default_rng(9), 6, terms=8)
    out["search"] = [[(h.id, round(h.score, 4)) for h in idx.search(q[i], k=7)] for i in range(len(q))]
    out["filtered"] = [
        (h.id, round(h.score, 4))
        for h in idx.search(q[0], k=5, filter={"lang": "fr", "year": {"$in": [2001, 2003]}})
    ]
    hit = idx.search(q[1], k=1, explain=True, with_text=True)[0]
    assert isinstance(hit, SearchHit)
    out["explained"] = (hit.id, hit.text, hit.metadata, [(t, round(p, 4)) for t, _, _, p in hit.explanation])
    out["batch"] = [[h.id for h in hs] for hs in idx.search_batch(q, k=3, threads=2)]
    docs = {}
    for b in idx.iter_documents(batch=7):
        assert isinstance(b, DocumentBatch) and len(b.ids) <= 7
        for i, doc_id in enumerate(b.ids):
            r = b.vectors.row(i)
            docs[doc_id] = (b.texts[i], b.metadata[i], r[0].tolist())
    out["documents"] = docs
    info = idx.info()
    out["info"] = (info["documents"], info["model"]["weights_sha256"])
    assert info["backend"] == idx.backend
    return out


def _same(a: dict, b: dict) -> None:
    for key in a:
        if key in ("search", "filtered", "batch"):
            continue
        assert a[key] == b[key], key
    for ra, rb in zip(a["search"], b["search"]):  # scores equal; among equal scores either order is right
        assert [s for _, s in ra] == pytest.approx([s for _, s in rb], abs=2e-4)
        assert sorted(ra) == sorted(rb) or {i for i, _ in ra} ^ {i for i, _ in rb} <= {
            i for i, s in ra + rb if s == ra[-1][1]
        }
    assert a["filtered"] == b["filtered"]
    assert [set(x) for x in a["batch"]] == [set(x) for x in b["batch"]]


def test_both_backends_give_the_same_results(tmp_path):
    results = {}
    for backend in ("local", "qdrant"):
        with _make(backend, tmp_path / backend) as idx:
            assert idx.backend == backend
            results[backend] = _run_sequence(idx)
    assert results["local"]["len"] == 38
    _same(results["local"], results["qdrant"])


@pytest.mark.parametrize("backend", ["local", "qdrant"])
def test_contract_promises(tmp_path, backend):
    idx = _make(backend, tmp_path / "ix")
    try:
        v = _vectors(np.random.default_rng(1), 3)
        idx.add_vectors(["a", "b", "c"], v)
        idx.commit()
        with pytest.raises(InputError, match="already in the index"):
            idx.add_vectors(["a"], v[np.arange(1)])
        with pytest.raises(InputError, match="unknown id"):
            idx.delete(["zzz"])
        with pytest.raises(InputError, match="only equality"):
            idx.search(v[0], filter={"x": {"$gt": 1}})
        with pytest.raises(InputError, match="k must be a positive integer"):
            idx.search(v[0], k=0)
        with pytest.raises(InputError, match="scipy sparse matrix or a torch sparse tensor"):
            idx.add_vectors(["z"], [[1.0]])
        with pytest.raises(InputError, match="dimension"):
            idx.add_vectors(["z"], sp.csr_matrix(np.ones((1, 10), np.float32)))
        want = [h.id for h in idx.search(v[0], k=3)]
        assert [h.id for h in idx.search(v[0].to_scipy(), k=3)] == want
        assert [h.id for h in idx.search(v[0].to_torch(), k=3)] == want
        assert [[h.id for h in hs] for hs in idx.search_batch(v.to_scipy(), k=3)][0] == want
        with pytest.raises(InputError, match="sparse vectors"):
            idx.search(np.ones(3))
        with idx.writing(wait=1):
            idx.upsert_vectors(["d"], v[np.arange(1)])
        assert "d" in idx and len(idx) == 4
        assert isinstance(idx.refresh_if_changed(), bool)
    finally:
        idx.close()
    if backend == "local":  # (an in-memory Qdrant collection ends with its client)
        with Index.open(tmp_path / "ix") as again:
            assert len(again) == 4 and again.backend == "local"


def test_unknown_options_are_refused(tmp_path):
    with pytest.raises(InputError, match="local backend does not take url"):
        Index.create(tmp_path / "a", compact=True, url="http://x")
    with pytest.raises(InputError, match="qdrant backend does not take compact"):
        Index.create(tmp_path / "b", backend="qdrant", client=QdrantClient(":memory:"), compact=True)
    with pytest.raises(InputError, match="unknown backend"):
        Index.create(tmp_path / "c", backend="milvus")
    assert not any((tmp_path / n).exists() for n in "abc")


def test_an_index_for_vectors_needs_no_torch(tmp_path):
    """Creating an index with the bundled model, adding vectors and searching it by text loads neither torch
    nor transformers: the model is recorded (and checked) through the numpy encoder."""
    code = f"""
import sys
import numpy as np
from spladekit.index import Index
from spladekit.sparse import SparseVectors
idx = Index.create({str(tmp_path / "ix")!r})
v = SparseVectors.from_dicts([{{"yeast": 1.0, "sugar": 0.5}}, {{"password": 2.0}}], idx.vocab, idx.dim)
idx.add_vectors(["a", "b"], v)
idx.commit()
print(idx.search("reset my password", k=1)[0].id, 'torch' in sys.modules, 'transformers' in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["b", "False", "False"], out.stdout + out.stderr
