"""Index: exactness against brute force (random vectors), edits, reopen, filters, errors, lock, compact weights."""

from __future__ import annotations

import numpy as np
import pytest

from spladekit.errors import InputError, SpladekitError
from spladekit.index import Index, IndexLockedError, SearchHit
from spladekit.sparse import SparseVectors


def rand_vectors(rng, n: int, dim: int, nnz: int, skew: bool = True) -> SparseVectors:
    """Random sparse vectors; with ``skew`` the term frequencies follow a power law like real SPLADE terms."""
    rows = []
    p = 1.0 / np.arange(1, dim + 1) ** (1.1 if skew else 0.0)
    p /= p.sum()
    for _ in range(n):
        m = max(1, rng.poisson(nnz))
        t = np.unique(rng.choice(dim, size=m, p=p))
        rows.append((t, rng.gamma(1.5, 0.6, len(t)).astype(np.float32)))
    return SparseVectors.from_rows(rows, dim)


def brute(docs: SparseVectors, q: SparseVectors, allowed=None) -> np.ndarray:
    s = (q.to_scipy() @ docs.to_scipy().T).toarray().astype(np.float32)[0]
    if allowed is not None:
        s[~allowed] = 0
    return s


def assert_exact(hits: list[SearchHit], scores: np.ndarray, ids: list[str], k: int) -> None:
    """Same documents and scores as brute force (within 1e-4 relative; ties at the k-th score may swap)."""
    pos = scores[scores > 0]
    ref = np.sort(pos)[::-1][:k]
    got = np.array([h.score for h in hits], np.float64)
    assert len(got) == len(ref)
    np.testing.assert_allclose(got, ref, rtol=1e-4)
    lookup = {x: i for i, x in enumerate(ids)}
    for h in hits:
        assert h.score == pytest.approx(float(scores[lookup[h.id]]), rel=1e-4)
    if len(ref):
        kth = ref[-1]
        must = {ids[i] for i in np.flatnonzero(scores > kth * (1 + 1e-4))}
        assert must <= {h.id for h in hits}


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(7)


@pytest.fixture(scope="module")
def small(light_encoder, tmp_path_factory, rng):
    """A committed index of 3,000 random documents across three segments with text and metadata (the model is
    recorded through the numpy encoder: random vectors need no torch)."""
    dim = light_encoder.vocab_size
    docs = rand_vectors(rng, 3000, dim, 60)
    ids = [f"doc{i}" for i in range(3000)]
    meta = [{"group": i % 7, "lang": ["en", "fr", "de"][i % 3]} for i in range(3000)]
    path = tmp_path_factory.mktemp("idx") / "small"
    idx = Index.create(path)
    for s in range(0, 3000, 1000):
        idx.add_vectors(
            ids[s : s + 1000],
            docs[s : s + 1000],
            [f"text {i}" for i in range(s, s + 1000)],
            meta[s : s + 1000],
        )
        idx.commit()
    return idx, docs, ids, meta


def test_exact_random_vectors_across_segments(small, rng):
    idx, docs, ids, _ = small
    assert len(idx) == 3000 and idx.info()["segments"] == 3
    qs = rand_vectors(rng, 40, docs.dim, 25)
    for k in (1, 10, 100):
        for i in range(len(qs)):
            assert_exact(idx.search(qs[i], k=k), brute(docs, qs[i]), ids, k)


def test_search_batch_threads_equals_search(small, rng):
    idx, docs, ids, _ = small
    qs = rand_vectors(rng, 30, docs.dim, 25)
    batch = idx.search_batch(qs, k=20, threads=2)
    for i, hits in enumerate(batch):
        assert [(h.id, h.score) for h in hits] == [(h.id, h.score) for h in idx.search(qs[i], k=20)]


def test_exact_many_windows(encoder, tmp_path, rng):
    """More than 65,536 documents: postings span several windows; still exact, with pruning on."""
    dim = encoder.vocab_size
    n = 140_000
    indptr = np.arange(n + 1, dtype=np.int64) * 6
    indices = np.sort(rng.choice(400, size=(n, 6), replace=True), axis=1).astype(np.int32)
    # make each row's terms unique and sorted
    indices = np.sort(indices + np.arange(6, dtype=np.int32) * 400, axis=1).ravel()
    data = rng.gamma(1.5, 0.6, n * 6).astype(np.float32)
    docs = SparseVectors(indptr, indices, data, dim)
    ids = [str(i) for i in range(n)]
    idx = Index.create(tmp_path / "big", encoder)
    idx.add_vectors(ids, docs)
    idx.commit()
    for _ in range(15):
        t = np.sort(rng.choice(2400, size=8, replace=False)).astype(np.int32)
        q = SparseVectors(np.array([0, 8]), t, rng.gamma(2, 1, 8).astype(np.float32), dim)
        assert_exact(idx.search(q, k=10), brute(docs, q), ids, 10)


def test_text_metadata_explain(small, rng):
    idx, docs, ids, meta = small
    q = rand_vectors(rng, 1, docs.dim, 30)
    hits = idx.search(q, k=5, explain=True, with_text=True)
    for h in hits:
        i = int(h.id[3:])
        assert h.text == f"text {i}" and h.metadata == meta[i]
        assert h.explanation and sum(r[3] for r in h.explanation) == pytest.approx(h.score, rel=1e-4)
        for _token, qw, dw, prod in h.explanation:
            assert prod == pytest.approx(qw * dw, rel=1e-5)
    assert idx.get("doc5") == {"id": "doc5", "text": "text 5", "metadata": meta[5]}
    assert idx.get("nope") is None and "doc5" in idx and "nope" not in idx


def test_query_forms_and_dict_query(small):
    idx, docs, ids, _ = small
    t, w = docs.row(11)
    as_dict = {idx.vocab[int(a)]: float(b) for a, b in zip(t, w)}
    hits = idx.search(as_dict, k=1)
    assert hits[0].id == "doc11" or hits[0].score >= float(w @ w) * (1 - 1e-4)


@pytest.mark.parametrize(
    "flt, pred",
    [
        ({"group": 3}, lambda m: m["group"] == 3),
        ({"lang": {"$in": ["fr", "de"]}}, lambda m: m["lang"] in ("fr", "de")),
        ({"group": 2, "lang": "en"}, lambda m: m["group"] == 2 and m["lang"] == "en"),
        ({"group": 99}, lambda m: False),
    ],
)
def test_filters_inside_search(small, rng, flt, pred):
    idx, docs, ids, meta = small
    allowed = np.array([pred(m) for m in meta])
    qs = rand_vectors(rng, 10, docs.dim, 25)
    for i in range(len(qs)):
        s = brute(docs, qs[i], allowed)
        hits = idx.search(qs[i], k=25, filter=flt)
        assert_exact(hits, s, ids, 25)
        assert all(pred(meta[int(h.id[3:])]) for h in hits)
        # k results whenever k matching documents score above zero
        assert len(hits) == min(25, int((s > 0).sum()))


def test_filter_errors(small):
    idx = small[0]
    q = {"the": 1.0}
    for bad in ([1], {"group": {"$gt": 3}}, {"group": {"$in": "abc"}}):
        with pytest.raises(InputError):
            idx.search(q, filter=bad)


def test_add_delete_upsert_reopen(encoder, tmp_path, rng):
    dim = encoder.vocab_size
    docs = rand_vectors(rng, 300, dim, 40)
    ids = [f"d{i}" for i in range(300)]
    idx = Index.create(tmp_path / "ix", encoder)
    idx.add_vectors(ids[:200], docs[:200], metadata=[{"v": 1}] * 200)
    assert len(idx) == 0  # not visible before commit
    idx.commit()
    idx.delete(["d3", "d4"])
    idx.upsert_vectors(["d5", "d250"], docs[[250, 251]], texts=["new five", "two-fifty"])
    idx.add_vectors(ids[200:250], docs[200:250])
    idx.commit()
    assert len(idx) == 249 and "d3" not in idx and idx.get("d5")["text"] == "new five"
    idx.close()

    r = Index.open(tmp_path / "ix")
    assert len(r) == 249 and r.get("d4") is None and r.get("d250")["text"] == "two-fifty"
    expect_ids = [x for x in ids[:250] if x not in ("d3", "d4")] + ["d250"]
    expect = SparseVectors.concat(
        [docs[[int(x[1:]) for x in expect_ids if x not in ("d5", "d250")]], docs[[250, 251]]]
    )
    order = [x for x in expect_ids if x not in ("d5", "d250")] + ["d5", "d250"]
    for i in range(5):
        q = docs[i * 40 : i * 40 + 1]
        assert_exact(r.search(q, k=10), brute(expect, q), order, 10)
    # deleted documents never come back, even as the best match
    assert all(h.id != "d3" for h in r.search(docs[3:4], k=50))
    # a reader keeps its view until refresh()
    w = Index.open(tmp_path / "ix")
    w.delete(["d0"])
    w.commit()
    assert "d0" in r and r.refresh() and "d0" not in r
    w.close()


def test_merge_and_optimize(encoder, tmp_path, rng):
    dim = encoder.vocab_size
    docs = rand_vectors(rng, 400, dim, 30)
    ids = [f"m{i}" for i in range(400)]
    idx = Index.create(tmp_path / "m", encoder)
    for s in range(0, 400, 40):  # ten commits -> merges keep the segment count bounded
        idx.add_vectors(ids[s : s + 40], docs[s : s + 40], texts=ids[s : s + 40])
        if s:
            idx.delete([ids[s]])
        idx.commit()
    assert idx.info()["segments"] <= 8
    idx.optimize()
    assert idx.info()["segments"] == 1 and idx.info()["deleted"] == 0
    # each commit after the first deleted the first id of its own (pending) batch: m40, m80, ..., m360
    dead = {ids[s] for s in range(40, 400, 40)}
    present = set(idx.ids())
    assert present == set(ids) - dead and len(idx) == 400 - len(dead)
    for x in present:
        assert idx.get(x)["text"] == x
        v = idx.vector(x)
        i = int(x[1:])
        np.testing.assert_array_equal(v.indices, docs.row(i)[0])
        np.testing.assert_array_equal(v.data, docs.row(i)[1])


def test_reader_outlives_a_merge_in_another_writer(light_encoder, tmp_path, rng):
    """A reader's commit stays readable after another writer merged its segments and removed their folders:
    its first id lookup after that must not reopen files by path (found by bench/serve.py --load)."""
    dim = light_encoder.vocab_size
    docs = rand_vectors(rng, 60, dim, 20)
    ids = [f"r{i}" for i in range(60)]
    path = tmp_path / "r"
    idx = Index.create(path)
    for s in range(0, 60, 20):
        idx.add_vectors(ids[s : s + 20], docs[s : s + 20], texts=ids[s : s + 20])
        idx.commit(merge=False)
    idx.close()
    reader = Index.open(path)
    old = {p.name for p in path.glob("seg_*")}
    writer = Index.open(path)
    writer.optimize()
    writer.close()
    assert old and not any((path / name).exists() for name in old), "the merge left the old segments"
    assert reader.get("r7")["text"] == "r7"
    hits = reader.search(docs[41], k=1)
    assert hits[0].id == "r41"
    assert reader.refresh() and reader.get("r59")["text"] == "r59"
    reader.close()


def test_bad_input_is_refused_and_nothing_lost(encoder, tmp_path, rng):
    dim = encoder.vocab_size
    docs = rand_vectors(rng, 10, dim, 20)
    idx = Index.create(tmp_path / "e", encoder)
    idx.add_vectors([f"x{i}" for i in range(5)], docs[:5])
    idx.commit()
    cases = [
        (lambda: idx.add_vectors(["a", "a"], docs[:2]), "duplicate id"),
        (lambda: idx.add_vectors(["a", 3], docs[:2]), "must be strings"),
        (lambda: idx.add_vectors("ab", docs[:2]), "list of strings"),
        (lambda: idx.add_vectors(["x1"], docs[:1]), "already in the index"),
        (lambda: idx.add_vectors(["a"], docs[:1], metadata=[{"f": {1, 2}}]), "not JSON"),
        (lambda: idx.add_vectors(["a"], docs[:1], metadata=[{"f": float("nan")}]), "not JSON"),
        (lambda: idx.add_vectors(["a", "b"], docs[:1]), "2 ids but 1 vectors"),
        (lambda: idx.delete(["x1", "ghost"]), "unknown id"),
        (lambda: idx.add_vectors(["a"], SparseVectors.empty(1, 100)), "different model"),
        (lambda: idx.search(SparseVectors.empty(1, 100)), "different model"),
        (lambda: idx.search({"the": 1.0}, k=0), "positive integer"),
        (lambda: idx.search(42), "query must be"),
    ]
    for fn, msg in cases:
        with pytest.raises(InputError, match=msg):
            fn()
    idx.commit()
    assert len(idx) == 5 and "x1" in idx  # the failed delete removed nothing
    with pytest.raises(InputError, match="already holds an index"):
        Index.create(tmp_path / "e", encoder)


def test_model_mismatch_refused(encoder, tiny_mlm, tmp_path):
    from spladekit import SpladeEncoder

    idx = Index.create(tmp_path / "mm", encoder)
    other = SpladeEncoder.load(str(tiny_mlm))
    with pytest.raises(InputError, match="model mismatch"):
        Index.open(tmp_path / "mm", encoder=other)
    wrong_vocab = SparseVectors.empty(
        1, encoder.vocab_size, vocab=[f"t{i}" for i in range(encoder.vocab_size)]
    )
    with pytest.raises(InputError, match="different vocabulary"):
        idx.search(wrong_vocab)


def test_one_writer_at_a_time(encoder, tmp_path, rng):
    docs = rand_vectors(rng, 4, encoder.vocab_size, 10)
    a = Index.create(tmp_path / "l", encoder)
    a.add_vectors(["a"], docs[:1])
    b = Index.open(tmp_path / "l")
    with pytest.raises(IndexLockedError, match="one writer at a time"):
        b.add_vectors(["b"], docs[1:2])
    assert isinstance(IndexLockedError("x"), SpladekitError)
    a.commit()
    a.close()
    b.add_vectors(["b"], docs[1:2])
    b.commit()
    assert set(b.ids()) == {"a", "b"}


def test_string_queries_use_the_index_encoder(encoder, tmp_path):
    texts = ["the cat sat on the mat", "stock markets fell sharply", "a recipe for tomato soup"]
    idx = Index.create(tmp_path / "s", encoder)
    idx.add(["c", "m", "s"], texts, metadata=[{"k": 1}, {"k": 2}, {"k": 3}])
    idx.commit()
    assert idx.search("tomato soup recipe", k=1)[0].id == "s"
    r = Index.open(tmp_path / "s")
    assert r.search("cat on a mat", k=1)[0].id == "c"
    assert [h[0].id for h in r.search_batch(["cat on a mat", "markets fell"], k=1)] == ["c", "m"]
    assert r.info()["model"]["weights_sha256"] == encoder.weights_hash


def test_compact_weights_close_to_exact(encoder, tmp_path, rng):
    dim = encoder.vocab_size
    docs = rand_vectors(rng, 2000, dim, 50)
    ids = [str(i) for i in range(2000)]
    ex = Index.create(tmp_path / "f32", encoder)
    cp = Index.create(tmp_path / "u8", encoder, compact=True)
    for ix in (ex, cp):
        ix.add_vectors(ids, docs)
        ix.commit()
    wsize = [sum(f.stat().st_size for f in ix.path.glob("seg_*/weights.npy")) for ix in (ex, cp)]
    assert wsize[0] >= 4 * docs.nnz and wsize[1] <= docs.nnz + 200  # 4-byte weights became 1 byte
    qs = rand_vectors(rng, 30, dim, 25)
    rec = []
    for i in range(len(qs)):
        e = {h.id for h in ex.search(qs[i], k=10)}
        c = {h.id for h in cp.search(qs[i], k=10)}
        rec.append(len(e & c) / len(e))
    assert np.mean(rec) > 0.9


def test_approx_reports_recall(small, rng):
    idx, docs, _, _ = small
    qs = rand_vectors(rng, 30, docs.dim, 25)
    rep = idx.measure_approx(qs, k=10, approx=0.6, sample=30)
    assert rep["queries"] == 30 and 0 < rep["recall"] <= 1
    full = idx.measure_approx(qs, k=10, approx=1.0, sample=30)
    assert full["recall"] == 1.0


def _dense_corpus(rng, dim: int) -> SparseVectors:
    """140,000 documents (three windows, the last partial) whose first terms fill every container kind: a term
    in every document, every third, a dense burst followed by gaps over 255 and a far jump (escape bytes), ~1%
    random (many escapes), a term starting late in each window, plus sparse random terms (uint16 arrays)."""
    n = 140_000
    off = np.arange(n) & 0xFFFF
    member = [
        np.ones(n, bool),
        np.arange(n) % 3 == 0,
        (off < 2000) | ((off % 300) == 7) | (off == 60_000),
        rng.random(n) < 0.01,
        off >= 64_900,
    ]
    rows = []
    sparse = rng.choice(np.arange(10, 3000), size=(n, 4))
    for d in range(n):
        t = [i for i, m in enumerate(member) if m[d]]
        t = np.unique(np.concatenate([np.asarray(t, np.int64), sparse[d]]))
        rows.append((t, rng.gamma(1.5, 0.6, len(t)).astype(np.float32)))
    return SparseVectors.from_rows(rows, dim)


def test_gap_containers_roundtrip_and_size():
    """Byte-gap lists decode to the offsets they were built from, and are never larger than uint16 arrays."""
    from spladekit.index.local import codec as K
    from spladekit.index.local import kernels

    rng = np.random.default_rng(3)
    cases = [
        np.arange(K.WINDOW),  # full window, all gaps 1
        np.arange(0, K.WINDOW, 128)[: K.GAP_MIN],  # exactly GAP_MIN documents
        np.sort(rng.choice(K.WINDOW, size=K.GAP_MIN, replace=False)),  # many escapes
        np.concatenate([np.arange(K.GAP_MIN - 1), [K.WINDOW - 1]]),  # one far jump
        K.WINDOW - 1 - np.arange(700)[::-1],  # starts late: the first gap escapes
        np.sort(rng.choice(K.WINDOW, size=5, replace=False)),  # a small array
    ]
    for offs in cases:
        cnt = len(offs)
        term_ptr = np.array([0, cnt], np.int64)
        docs = offs.astype(np.int32)
        win_ptr = np.array([[0, cnt]], np.int32)
        doc_ptr, docs16 = K.build_containers(term_ptr, docs, win_ptr)
        assert len(docs16) <= cnt  # uint16 units: never more than the plain array
        out = np.empty(K.WINDOW, np.int64)
        K._decode(docs16, 0, cnt, out)
        np.testing.assert_array_equal(out[:cnt], offs)
        tp2 = np.stack([term_ptr, doc_ptr])
        w = np.arange(1, cnt + 1, dtype=np.float32)
        for j in list(range(min(cnt, 70))) + list(range(max(0, cnt - 70), cnt)):
            got = kernels.doc_weights(
                np.array([0], np.int32), tp2, win_ptr, docs16, w, np.ones(1, np.float32), offs[j]
            )
            assert got[0] == w[j]
        absent = np.setdiff1d(np.arange(K.WINDOW), offs)[:50]
        for x in absent:
            assert (
                kernels.doc_weights(
                    np.array([0], np.int32), tp2, win_ptr, docs16, w, np.ones(1, np.float32), x
                )[0]
                == 0
            )


@pytest.mark.slow
def test_exact_with_dense_terms(encoder, tmp_path, rng):
    """Frequent terms (byte-gap lists with escapes and skips) across windows: exact search, explain, vectors,
    deletes and merges; the segment's term_ptr is uint32 and an int64 one (huge segments) reads the same."""
    from spladekit.index.local.segment import Segment

    dim = encoder.vocab_size
    docs = _dense_corpus(rng, dim)
    n = len(docs)
    ids = [str(i) for i in range(n)]
    idx = Index.create(tmp_path / "dense", encoder)
    idx.add_vectors(ids, docs)
    idx.commit()
    seg_dir = next(idx.path.glob("seg_*"))
    # the frequent terms take about 1 byte a posting for their documents instead of 2
    frequent = int((docs.indices < 5).sum())
    assert (seg_dir / "docs.npy").stat().st_size < 2 * docs.nnz - 0.8 * frequent
    queries = []
    for i in range(16):
        t = np.concatenate(
            [rng.choice(5, size=3, replace=False), rng.choice(np.arange(10, 3000), 5, replace=False)]
        )
        w = rng.gamma(2, 1, len(t)).astype(np.float32)
        if i % 2:  # light frequent terms: probed for the candidates of the heavy rare ones
            w[:3] *= 0.05
        o = np.argsort(t)
        queries.append(SparseVectors(np.array([0, len(t)]), t[o].astype(np.int32), w[o], dim))
    for q in queries:
        for k in (10, 100):
            assert_exact(idx.search(q, k=k), brute(docs, q), ids, k)
    hits = idx.search(queries[0], k=5, explain=True)
    for h in hits:
        assert sum(r[3] for r in h.explanation) == pytest.approx(h.score, rel=1e-4)
    for x in ("0", "7", "65535", "65536", "131072", "139999", "70003"):
        v = idx.vector(x)
        np.testing.assert_array_equal(v.indices, docs.row(int(x))[0])
        np.testing.assert_array_equal(v.data, docs.row(int(x))[1])

    assert np.load(seg_dir / "term_ptr.npy").dtype == np.uint32
    # a segment too big for uint32 offsets stores them as int64: the same data read that way searches the same
    wide = Segment.load(seg_dir)
    wide.term_ptr = np.asarray(wide.term_ptr, np.int64)
    idx2 = Index.open(idx.path)
    idx2._segments = (wide,)
    for q in queries[:4]:
        assert [(h.id, h.score) for h in idx2.search(q, k=10)] == [
            (h.id, h.score) for h in idx.search(q, k=10)
        ]
    idx2.close()

    dead = [str(i) for i in range(0, n, 5)]
    idx.delete(dead)
    idx.commit()
    alive = np.ones(n, bool)
    alive[::5] = False
    for q in queries[:6]:
        assert_exact(idx.search(q, k=10), brute(docs, q, alive), ids, 10)
    idx.optimize()  # rebuilds the postings from the containers
    assert idx.info()["segments"] == 1 and len(idx) == alive.sum()
    for q in queries[:6]:
        assert_exact(idx.search(q, k=10), brute(docs, q, alive), ids, 10)


def test_old_segment_format_is_refused(encoder, tmp_path, rng):
    import json

    from spladekit.errors import DataFormatError

    idx = Index.create(tmp_path / "old", encoder)
    idx.add_vectors(["a", "b"], rand_vectors(rng, 2, encoder.vocab_size, 10))
    idx.commit()
    idx.close()
    meta_file = next((tmp_path / "old").glob("seg_*/meta.json"))
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "format": 1}))
    with pytest.raises(DataFormatError, match="segment format 1"):
        Index.open(tmp_path / "old")
