"""Qdrant backend through qdrant-client's in-process mode: same calls and same exact top-k as the embedded index."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from qdrant_client import QdrantClient

from spladekit.errors import InputError
from spladekit.index import Index
from spladekit.index.qdrant import QdrantIndex
from spladekit.index.qdrant_convert import point_id
from spladekit.index.qdrant_convert import qdrant_sparse as _sparse
from spladekit.sparse import SparseVectors

N_DOCS = 400


def random_vectors(rng, n: int, dim: int, vocab, terms: int = 40, pool: int = 600) -> SparseVectors:
    """Sparse vectors over a small pool of term ids, so queries overlap many documents."""
    rows = []
    for _ in range(n):
        idx = rng.choice(pool, size=rng.integers(1, terms), replace=False) + 1000
        rows.append((idx, rng.gamma(1.0, 1.0, size=len(idx)).astype(np.float32)))
    return SparseVectors.from_rows(rows, dim, vocab)


@pytest.fixture(scope="module")
def pair(tmp_path_factory, encoder):
    """An embedded index and a Qdrant index (in-memory client) holding the same vectors and metadata."""
    rng = np.random.default_rng(7)
    vecs = random_vectors(rng, N_DOCS, encoder.vocab_size, encoder.vocab)
    ids = [f"doc-{i}" for i in range(N_DOCS)]
    texts = [f"text of document {i}" for i in range(N_DOCS)]
    meta = [
        {"year": 2000 + i % 7, "lang": ["en", "fr", "de"][i % 3], "score": float(i % 4) / 2}
        for i in range(N_DOCS)
    ]
    root = tmp_path_factory.mktemp("qdrant")
    local = Index.create(root / "local", encoder=encoder)
    local.add_vectors(ids, vecs, texts, meta)
    local.commit()
    q = Index.create(root / "q", encoder=encoder, backend="qdrant", client=QdrantClient(":memory:"))
    assert isinstance(q, QdrantIndex)
    q.add_vectors(ids, vecs, texts, meta)
    queries = random_vectors(rng, 25, encoder.vocab_size, encoder.vocab, terms=20)
    yield local, q, queries
    q.close()
    local.close()


def same_hits(a, b) -> None:
    """Equal ranked ids and scores; where two scores tie (|diff| < 1e-5) either order is right."""
    assert len(a) == len(b)
    assert [h.score for h in a] == pytest.approx([h.score for h in b], rel=1e-5, abs=1e-5)
    for i, (x, y) in enumerate(zip(a, b)):
        if x.id != y.id:
            tied = [h.id for h in a if abs(h.score - x.score) < 1e-5]
            assert y.id in tied, f"rank {i}: {x.id} vs {y.id}"


def test_exact_topk_equals_embedded(pair):
    local, q, queries = pair
    assert len(q) == len(local) == N_DOCS
    for i in range(len(queries)):
        same_hits(local.search(queries[i], k=10), q.search(queries[i], k=10))
    batch_l = local.search_batch(queries, k=5)
    batch_q = q.search_batch(queries, k=5)
    for a, b in zip(batch_l, batch_q):
        same_hits(a, b)


@pytest.mark.parametrize(
    "flt",
    [
        {"lang": "fr"},
        {"year": 2003},
        {"year": {"$in": [2001, 2004]}, "lang": {"$in": ["en", "de"]}},
        {"lang": {"$in": ["en", 5]}},
        {"score": 0.5},
        {"year": {"$in": []}},
    ],
)
def test_filters_match_embedded(pair, flt):
    local, q, queries = pair
    for i in range(5):
        a, b = local.search(queries[i], k=10, filter=flt), q.search(queries[i], k=10, filter=flt)
        same_hits(a, b)
    if flt == {"year": {"$in": []}}:
        assert q.search(queries[0], k=10, filter=flt) == []


def test_text_explain_get_and_errors(pair, encoder):
    local, q, _ = pair
    qv = {encoder.vocab[1005]: 1.5, encoder.vocab[1010]: 0.5}
    a = local.search(qv, k=3, explain=True, with_text=True)
    b = q.search(qv, k=3, explain=True, with_text=True)
    same_hits(a, b)
    assert b[0].text == local.get(b[0].id)["text"] and b[0].metadata == local.get(b[0].id)["metadata"]
    want = local.search(qv, k=1, explain=True)[0].explanation
    assert [t[0] for t in b[0].explanation] == [t[0] for t in want]
    for got_row, want_row in zip(b[0].explanation, want):
        assert list(got_row[1:]) == pytest.approx(list(want_row[1:]), rel=1e-5, abs=1e-6)
    assert sum(t[3] for t in b[0].explanation) == pytest.approx(b[0].score, rel=1e-5)
    # a text query is encoded with the index's model, as in the embedded index
    same_hits(local.search("document retrieval", k=5), q.search("document retrieval", k=5))
    assert q.get("doc-3") == local.get("doc-3")
    assert q.get("nope") is None and "doc-3" in q and "nope" not in q
    with pytest.raises(InputError, match="already in the index"):
        q.add_vectors(["doc-1"], local.vector("doc-1"))
    with pytest.raises(InputError, match="only equality"):
        q.search(qv, filter={"year": {"$gt": 3}})
    with pytest.raises(InputError, match="different model|dimension"):
        q.add_vectors(["z"], SparseVectors.empty(1, 10))


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect")
def test_writes_upsert_delete(tmp_path, encoder):
    q = QdrantIndex.create(tmp_path / "w", encoder, client=QdrantClient(":memory:"))
    q.index_field("t", "integer")  # a payload index (a no-op in the in-process mode, real on a server)
    with pytest.raises(InputError, match="unknown field kind"):
        q.index_field("t", "date")
    q.add(["a", "b"], ["Lung cancer and smoking.", "Protein folding in cells."], [{"t": 1}, None])
    assert q.search("smoking", k=5, filter={"t": 1})[0].id == "a"
    assert len(q) == 2 and q.search("smoking cancer", k=1)[0].id == "a"
    q.upsert(["a"], ["Koalas eat eucalyptus."])
    assert len(q) == 2 and q.get("a") == {"id": "a", "text": "Koalas eat eucalyptus.", "metadata": None}
    assert q.search("koala eucalyptus", k=1)[0].id == "a"
    with pytest.raises(InputError, match="unknown id"):
        q.delete(["a", "zzz"])
    assert len(q) == 2  # nothing deleted
    q.delete(["a"])
    assert len(q) == 1 and "a" not in q and q.ids() == ["b"]
    q.commit()
    assert q.refresh() is False
    assert q.info()["documents"] == 1 and q.info()["backend"] == "qdrant"


def test_sorted_deduplicated_float32():
    sv = _sparse(np.array([7, 3, 7, 1]), np.array([0.5, 1.0, 0.25, 2.0], np.float32))
    assert sv.indices == [1, 3, 7] and sv.values == [2.0, 1.0, 0.75]
    w = np.float32(
        0.1234567
    )  # not representable in float32: the float32 value itself is sent, not a rounding
    assert _sparse(np.array([2]), np.array([w])).values == [float(w)]
    assert _sparse(np.array([4, 4]), np.array([1.0, -1.0], np.float32)).indices == []  # zero sums dropped


def test_weights_roundtrip_exactly(pair):
    local, q, _ = pair
    for doc_id in ("doc-0", "doc-17", "doc-399"):
        a, b = local.vector(doc_id), q.vector(doc_id)
        assert np.array_equal(a.indices, b.indices) and np.array_equal(a.data, b.data)
    assert point_id("doc-0") == point_id("doc-0") != point_id("doc-1")


def test_local_storage_dispatch(tmp_path, encoder):
    """Without url or client the collection lives in ``path/qdrant_data``; Index.open dispatches on qdrant.json."""
    path = tmp_path / "embedded"
    idx = Index.create(path, encoder=encoder, backend="qdrant")
    idx.add(["x"], ["Insulin controls glucose uptake."], [{"k": "v"}])
    idx.close()
    assert (path / "qdrant.json").is_file() and (path / "qdrant_data").is_dir()
    again = Index.open(path)
    try:
        assert isinstance(again, QdrantIndex)
        assert again.search("insulin glucose", k=1, filter={"k": "v"})[0].id == "x"
        assert again.search("insulin glucose", k=1, filter={"k": "w"}) == []
    finally:
        again.close()
    with pytest.raises(InputError, match="already holds an index"):
        QdrantIndex.create(path, encoder)
    mem = tmp_path / "mem"
    QdrantIndex.create(mem, encoder, client=QdrantClient(":memory:")).close()
    with pytest.raises(InputError, match="pass client="):
        QdrantIndex.open(mem)


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
def test_unreachable_server_is_one_line(tmp_path, encoder):
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InputError, match=r"cannot create Qdrant collection .*"):
        QdrantIndex.create(tmp_path / "remote", encoder, url=f"http://127.0.0.1:{port}")
    assert not (tmp_path / "remote" / "qdrant.json").exists()


def test_cli_index_search_info_with_qdrant_backend(tmp_path):
    """`spladekit index --backend qdrant` builds a Qdrant collection (embedded storage) that search and info read;
    a re-run finds every document unchanged; backend-only options without the backend are refused."""
    import json

    from typer.testing import CliRunner

    from spladekit.cli import app

    src = tmp_path / "docs"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("Reset your password from the account settings page.")
    (src / "sub" / "b.md").write_text("Yeast ferments sugar into alcohol and carbon dioxide.")
    ix = tmp_path / "qidx"
    runner = CliRunner()
    r = runner.invoke(app, ["index", str(src), "--index", str(ix), "--backend", "qdrant"])
    assert r.exit_code == 0, r.output
    assert "2 added" in r.output
    r = runner.invoke(app, ["search", "how do I reset my password", "-i", str(ix), "-k", "1", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)[0]["id"] == "a.txt"
    r = runner.invoke(app, ["index", str(src), "--index", str(ix)])
    assert r.exit_code == 0 and "2 unchanged" in r.output, r.output
    r = runner.invoke(app, ["info", "-i", str(ix)])
    assert r.exit_code == 0 and "qdrant" in r.output, r.output
    r = runner.invoke(
        app, ["index", str(src), "--index", str(tmp_path / "x"), "--url", "http://localhost:6333"]
    )
    assert r.exit_code != 0 and "--backend qdrant" in str(r.exception or r.output)
