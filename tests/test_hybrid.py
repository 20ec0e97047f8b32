"""Hybrid search: the fusion rules, the index's BM25 view against bm25s (across segments, deletes, merges, reopen),
filters on both runs, the clear errors, passages, the CLI and `spladekit eval --hybrid`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from spladekit.cli import app
from spladekit.errors import InputError
from spladekit.eval import BM25Baseline, reciprocal_rank_fusion
from spladekit.index import Index
from spladekit.index import fusion as fusion_mod
from spladekit.index.fusion import Hybrid, check_hybrid, fuse

TOPICS = {
    "cat": "Cats sleep most of the day and hunt mice at night; a cat purrs when it is content.",
    "dog": "Dogs are loyal companions; a dog needs walks in the park every day.",
    "bread": "Bread is baked from flour, water, yeast and salt; the dough rises before baking.",
    "yeast": "Yeast ferments sugar into alcohol and carbon dioxide, which makes dough rise.",
    "wine": "Wine is fermented grape juice; yeast turns the sugar of grapes into alcohol.",
    "park": "The city park has tall trees, a pond with ducks and paths where people walk their dogs.",
    "bike": "A bicycle chain needs oil; clean the chain before you oil it to keep the bike running smoothly.",
    "tea": "Green tea is brewed at a lower temperature than black tea to avoid bitterness.",
    "coffee": "Coffee beans are roasted; darker roasts taste bitter and less acidic.",
    "rain": "Rain forms when water vapour condenses into droplets heavy enough to fall.",
}


def corpus(n: int = 60) -> tuple[list[str], list[str], list[dict]]:
    """``n`` short documents: every topic's sentence with a numbered variation, metadata by topic and parity."""
    names = list(TOPICS)
    ids, texts, meta = [], [], []
    for i in range(n):
        t = names[i % len(names)]
        extra = ["", " It is common.", " Many people like it very much.", " cats and dogs"][i % 4]
        ids.append(f"{t}-{i:03d}")
        texts.append(TOPICS[t] + extra)
        meta.append({"topic": t, "even": i % 2 == 0})
    return ids, texts, meta


def bm25_reference(ids: list[str], texts: list[str], queries: list[str], k: int = 50):
    b = BM25Baseline()
    b.index(ids, texts)
    return b.search(queries, k=k)


def assert_bm25_equal(idx, ids, texts, queries, k: int = 50, filter=None):
    """The index's BM25 run equals bm25s over the same live texts (scores within float32 rounding)."""
    for q, ref in zip(queries, bm25_reference(ids, texts, queries, k)):
        got = [(h.id, h.score) for h in idx.search_bm25(q, k=k, filter=filter)]
        assert [d for d, _ in got] == [d for d, _ in ref], q
        np.testing.assert_allclose([s for _, s in got], [s for _, s in ref], rtol=1e-5)


QUERIES = [
    "cat hunting mice",
    "yeast dough rising",
    "dogs walking in the park",
    "bitter coffee roast",
    "zebra",
]


@pytest.fixture(scope="module")
def docs(light_encoder):
    ids, texts, meta = corpus()
    return ids, texts, meta, light_encoder.encode_documents(texts)


def build(path, light_encoder, docs, commits: int = 3, **options):
    ids, texts, meta, vecs = docs
    idx = Index.create(path, light_encoder, **options)
    step = -(-len(ids) // commits)
    for s in range(0, len(ids), step):
        rows = np.arange(s, min(s + step, len(ids)))
        idx.add_vectors(ids[s : s + step], vecs[rows], texts[s : s + step], meta[s : s + step])
        idx.commit()
    return idx


# --------------------------------------------------------------------------- the setting and the fusion rules


def test_check_hybrid_reads_every_form_and_refuses_the_rest():
    assert check_hybrid(None) is None and check_hybrid(False) is None
    assert check_hybrid(True) == Hybrid() == check_hybrid("rrf") == check_hybrid(" RRF ")
    assert check_hybrid("linear") == check_hybrid("convex") == Hybrid(method="convex")
    assert check_hybrid({"method": "rrf", "k": 10, "depth": 50}) == Hybrid("rrf", k=10, depth=50)
    h = check_hybrid({"method": "convex", "weight": 1, "normalize": "l2"})
    assert h.weight == 1.0 and isinstance(h.weight, float) and h.normalize == "l2"
    assert check_hybrid(h) is h
    assert (
        Hybrid().depth_for(10) == 100
        and Hybrid().depth_for(500) == 500
        and Hybrid(depth=7).depth_for(10) == 7
    )
    assert Hybrid("convex").record() == {
        "method": "convex",
        "weight": 0.5,
        "normalize": "minmax",
        "depth": None,
    }
    bad = [
        ("bm42", "method must be one of"),
        ({"method": "rrf", "k": 0}, "positive integer"),
        ({"method": "rrf", "k": True}, "positive integer"),
        ({"method": "convex", "weight": 1.5}, r"in \[0, 1\]"),
        ({"method": "convex", "weight": "half"}, r"in \[0, 1\]"),
        ({"method": "convex", "normalize": "zscore"}, "normalize must be one of"),
        ({"method": "rrf", "depth": 0}, "depth"),
        ({"method": "rrf", "weight": 0.3}, "rrf does not take weight"),
        ({"method": "convex", "k": 60}, "convex does not take k"),
        ({"method": "rrf", "colour": 1}, "does not take colour"),
        (5, "hybrid must be None"),
    ]
    for value, msg in bad:
        with pytest.raises(InputError, match=msg):
            check_hybrid(value)


def test_rrf_fusion_math_ties_and_components():
    splade = [("a", 9.0), ("b", 8.0), ("c", 7.0)]
    bm25 = [("c", 3.0), ("d", 2.0), ("a", 2.0)]  # d and a tie: ranked by id (a first)
    out = fuse(splade, bm25, Hybrid("rrf", k=60), k=10)
    scores = {f.id: f.score for f in out}
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert scores["b"] == pytest.approx(1 / 62) and scores["d"] == pytest.approx(1 / 63)
    assert [f.id for f in out] == ["a", "c", "b", "d"]
    tie = fuse([("b", 1.0)], [("a", 1.0)], Hybrid(), k=2)  # equal fused scores: by id
    assert [f.id for f in tie] == ["a", "b"]
    a = out[0].components()
    assert a == {"splade": {"rank": 1, "score": 9.0}, "bm25": {"rank": 2, "score": 2.0}}
    assert out[2].components()["bm25"] is None
    assert len(fuse(splade, bm25, Hybrid(), k=2)) == 2
    # eval's whole-run RRF is the same function, from the index layer
    assert reciprocal_rank_fusion is fusion_mod.reciprocal_rank_fusion
    run = reciprocal_rank_fusion([{"q": splade}, {"q": fusion_mod.ordered(bm25)}], c=60)["q"]
    assert run == [(f.id, f.score) for f in out]


def test_convex_fusion_normalisers_and_weights():
    splade = [("a", 10.0), ("b", 6.0), ("c", 2.0)]
    bm25 = [("c", 4.0), ("d", 1.0)]
    out = {f.id: f for f in fuse(splade, bm25, Hybrid("convex", weight=0.25), k=10)}
    assert out["a"].score == pytest.approx(0.25 * 1.0)
    assert out["b"].score == pytest.approx(0.25 * 0.5)
    assert out["c"].score == pytest.approx(0.25 * 0.0 + 0.75 * 1.0)
    assert out["d"].score == pytest.approx(0.0) and out["c"].bm25 == (1, 4.0, 1.0)
    l2 = {f.id: f.score for f in fuse(splade, bm25, Hybrid("convex", normalize="l2"), k=10)}
    assert l2["a"] == pytest.approx(0.5 * 10 / np.sqrt(140))
    assert l2["c"] == pytest.approx(0.5 * 2 / np.sqrt(140) + 0.5 * 4 / np.sqrt(17))
    raw = {f.id: f.score for f in fuse(splade, bm25, Hybrid("convex", normalize="none"), k=10)}
    assert raw["c"] == pytest.approx(0.5 * 2 + 0.5 * 4)
    only_splade = fuse(splade, bm25, Hybrid("convex", weight=1.0), k=3)
    assert [f.id for f in only_splade] == ["a", "b", "c"]
    only_bm25 = fuse(splade, bm25, Hybrid("convex", weight=0.0), k=1)
    assert [f.id for f in only_bm25] == ["c"]
    same = fuse([("x", 3.0), ("y", 3.0)], [], Hybrid("convex"), k=5)  # min == max: every hit 1
    assert [f.score for f in same] == [0.5, 0.5]


# --------------------------------------------------------------------------- the BM25 view against bm25s


def test_bm25_view_equals_bm25s_across_segments_deletes_merges_and_reopen(tmp_path, light_encoder, docs):
    ids, texts, meta, vecs = docs
    idx = build(tmp_path / "ix", light_encoder, docs)
    assert idx.info()["segments"] == 3 and idx.has_bm25
    assert_bm25_equal(idx, ids, texts, QUERIES)
    assert idx.search_bm25("zebra") == []
    # deletes count at once: N, df and avgdl are those of the live documents
    gone = {ids[i] for i in range(0, 60, 3)}
    idx.delete(sorted(gone))
    idx.upsert_vectors([ids[1]], vecs[np.asarray([1])], ["Zebras graze on the savanna."], [meta[1]])
    idx.commit()
    live_ids = [x for x in ids if x not in gone and x != ids[1]] + [ids[1]]
    live_texts = [texts[ids.index(x)] for x in live_ids[:-1]] + ["Zebras graze on the savanna."]
    assert_bm25_equal(idx, live_ids, live_texts, QUERIES)
    for q in QUERIES:
        assert not gone & {h.id for h in idx.search(q, k=50, hybrid="rrf")}
    before = {q: [(h.id, h.score) for h in idx.search_bm25(q, k=50)] for q in QUERIES}
    idx.optimize()  # merge: the views are combined, deleted documents dropped
    assert idx.info()["segments"] == 1 and idx.info()["deleted"] == 0
    assert {q: [(h.id, h.score) for h in idx.search_bm25(q, k=50)] for q in QUERIES} == before
    idx.snapshot(tmp_path / "snap")  # the view's files travel with the segment
    idx.close()
    for path in (tmp_path / "ix", tmp_path / "snap"):
        with Index.open(path) as again:
            assert {q: [(h.id, h.score) for h in again.search_bm25(q, k=50)] for q in QUERIES} == before
    with Index.open(tmp_path / "ix") as again:
        info = again.info()["bm25"]
        assert info["documents"] == len(live_ids) and info["bytes"] > 0 and info["k1"] == 1.2
        assert again.check(deep=True).ok  # the view's files are checksummed with the segment


def test_documents_without_text_have_no_lexical_view(tmp_path, light_encoder, docs):
    ids, texts, meta, vecs = docs
    idx = Index.create(tmp_path / "ix", light_encoder)
    idx.add_vectors(ids[:30], vecs[np.arange(30)], texts[:30])
    idx.add_vectors(ids[30:], vecs[np.arange(30, 60)])  # vectors only
    idx.commit()
    assert idx.info()["bm25"]["documents"] == 30
    assert_bm25_equal(idx, ids[:30], texts[:30], QUERIES)  # N and avgdl count documents with text only
    hits = idx.search("cat hunting mice", k=60, hybrid="rrf")
    no_text = [h for h in hits if h.id in set(ids[30:])]
    assert no_text and all(h.hybrid["bm25"] is None for h in no_text)


@pytest.mark.slow
def test_bm25_view_equals_bm25s_on_scifact(tmp_path, light_encoder, shared_data):
    """On a real collection (5,183 documents, 300 queries, three segments, then merged) the BM25 top 100 equals
    ``BM25Baseline`` (bm25s, Lucene): same scores within float32 rounding, same documents above the 100th score."""
    from spladekit.data import load_beir
    from spladekit.sparse import SparseVectors

    col = load_beir(shared_data / "scifact", "test")
    ids = list(col.corpus)
    texts = [col.corpus[d].full_text for d in ids]
    queries = [col.queries[q].full_text for q in col.qrels]
    # BM25 reads the texts only: one small SPLADE term per document keeps the build quick
    rows = [(np.asarray([1000 + i % 1000]), np.ones(1, np.float32)) for i in range(len(ids))]
    vecs = SparseVectors.from_rows(rows, light_encoder.vocab_size)
    idx = Index.create(tmp_path / "ix", light_encoder)
    for s in range(0, len(ids), 2000):
        idx.add_vectors(ids[s : s + 2000], vecs[np.arange(s, min(s + 2000, len(ids)))], texts[s : s + 2000])
        idx.commit()
    assert idx.info()["segments"] == 3
    refs = bm25_reference(ids, texts, queries, k=100)
    for merged in (False, True):
        if merged:
            idx.optimize()
        for q, ref in zip(queries, refs):
            got = idx.search_bm25(q, k=100)
            np.testing.assert_allclose([h.score for h in got], [s for _, s in ref], rtol=1e-5)
            kth = ref[-1][1] * (1 + 1e-5)
            assert [h.id for h in got if h.score > kth] == [d for d, s in ref if s > kth]


# --------------------------------------------------------------------------- hybrid search in the index


def test_hybrid_search_fuses_the_two_runs_with_filters(tmp_path, light_encoder, docs):
    ids, texts, meta, _ = docs
    idx = build(tmp_path / "ix", light_encoder, docs)
    q = "yeast dough rising"
    splade = [(h.id, h.score) for h in idx.search(q, k=100)]
    lexical = [(h.id, h.score) for h in idx.search_bm25(q, k=100)]
    for h in [Hybrid(), Hybrid("convex", weight=0.3), Hybrid("rrf", k=5, depth=20)]:
        want = fuse(splade[: h.depth_for(10)], lexical[: h.depth_for(10)], h, 10)
        hits = idx.search(q, k=10, hybrid=h, with_text=True)
        assert [(x.id, x.score) for x in hits] == [(f.id, f.score) for f in want]
        assert all(x.hybrid == f.components() for x, f in zip(hits, want))
        assert all(x.text == texts[ids.index(x.id)] for x in hits)
    # the filter applies to both runs; BM25 statistics stay the collection's
    flt = {"topic": {"$in": ["bread", "wine"]}, "even": True}
    hits = idx.search(q, k=20, filter=flt, hybrid="convex", with_text=True)
    assert hits and all(x.metadata["topic"] in ("bread", "wine") and x.metadata["even"] for x in hits)
    full = dict(lexical)
    for x in hits:
        if x.hybrid["bm25"] is not None:
            assert x.hybrid["bm25"]["score"] == pytest.approx(full[x.id])
    # search_batch is search, query by query
    batch = idx.search_batch(QUERIES, k=5, hybrid={"method": "rrf", "k": 30}, threads=2)
    assert batch == [idx.search(x, k=5, hybrid={"method": "rrf", "k": 30}) for x in QUERIES]
    # explanations of the SPLADE side survive fusion for hits of the SPLADE run
    ex = idx.search(q, k=5, hybrid="rrf", explain=True)
    assert all((x.explanation is not None) == (x.hybrid["splade"] is not None) for x in ex)
    lit = idx.search(q, k=3, hybrid="rrf", highlight=True)
    assert lit[0].highlights["terms"] and lit[0].text is None and lit[0].explanation is None


def test_clear_errors_and_building_a_view_for_an_old_index(tmp_path, light_encoder, docs):
    ids, texts, meta, vecs = docs
    idx = build(tmp_path / "ix", light_encoder, docs)
    qv = light_encoder.encode_queries(["cat"])
    for query in (qv, {"cat": 1.0}):
        with pytest.raises(InputError, match="need text queries"):
            idx.search(query, hybrid="rrf")
    with pytest.raises(InputError, match="need text queries"):
        idx.search_batch(["cat", qv], hybrid="rrf")
    with pytest.raises(InputError, match="method must be one of"):
        idx.search("cat", hybrid="bm42")
    # an index without a view (made before hybrid search, or bm25=False): the error says how to add one
    old = build(tmp_path / "old", light_encoder, docs, bm25=False)
    assert not old.has_bm25 and old.info()["bm25"] is None
    assert not any(p.name.startswith("lex_") for s in old._segments for p in s.files())
    with pytest.raises(InputError, match=r"keeps no BM25 view.*--bm25.*enable_bm25"):
        old.search("cat", hybrid="rrf")
    with pytest.raises(InputError, match="bm25 must be True or False"):
        Index.create(tmp_path / "bad", light_encoder, bm25="yes")
    # building it from the stored texts gives the view a new index has, in one commit
    old.enable_bm25()
    assert old.has_bm25 and old.info()["segments"] == 1
    for q in QUERIES:
        assert old.search(q, k=10, hybrid="convex") == idx.search(q, k=10, hybrid="convex")
    old.enable_bm25()  # a no-op once kept
    old.close()
    with Index.open(tmp_path / "old") as again:  # recorded in the manifest
        assert again.has_bm25 and again.search_bm25("cat", k=3)
    # an index of vectors alone has nothing to build a view from: refused, nothing changed
    bare = Index.create(tmp_path / "bare", light_encoder, bm25=False)
    bare.add_vectors(ids, vecs)
    bare.commit()
    with pytest.raises(InputError, match="no document is stored with its text"):
        bare.enable_bm25()
    assert not bare.has_bm25
    bare.close()


def test_qdrant_backend_refuses_hybrid_clearly(tmp_path, light_encoder, docs):
    pytest.importorskip("qdrant_client")
    ids, texts, _, vecs = docs
    with pytest.raises(InputError, match="does not take bm25"):
        Index.create(tmp_path / "q0", light_encoder, backend="qdrant", bm25=True)
    idx = Index.create(tmp_path / "q", light_encoder, backend="qdrant")
    try:
        idx.add_vectors(ids[:5], vecs[np.arange(5)], texts[:5])
        idx.commit()
        assert not idx.has_bm25
        with pytest.raises(InputError, match="qdrant backend does not keep"):
            idx.search("cat", hybrid="rrf")
        with pytest.raises(InputError, match="qdrant backend does not keep"):
            idx.enable_bm25()
    finally:
        idx.close()


def test_passages_index_ranks_documents_in_both_runs(tmp_path, light_encoder, docs):
    ids, texts, meta, vecs = docs
    idx = Index.create(tmp_path / "ix", light_encoder, long_docs="passages")
    idx.add_vectors(ids, vecs, texts, meta)
    idx.commit()
    assert idx.has_bm25
    assert_bm25_equal(idx, ids, texts, QUERIES)  # document ids, documents counted once
    hits = idx.search("cat hunting mice", k=5, hybrid="rrf", with_text=True)
    assert len(hits) == 5 and all("\x1f" not in h.id for h in hits)
    assert all(h.text == texts[ids.index(h.id)] for h in hits)


# --------------------------------------------------------------------------- the CLI and eval

runner = CliRunner()


def test_cli_index_search_hybrid_and_bm25_flag(tmp_path):
    src = tmp_path / "docs"
    src.mkdir()
    for name in ("cat", "dog", "bread", "yeast"):
        (src / f"{name}.txt").write_text(TOPICS[name])
    ix = tmp_path / "ix"
    r = runner.invoke(app, ["index", str(src), "-i", str(ix)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app, ["search", "yeast dough", "-i", str(ix), "--hybrid", "rrf", "--rrf-k", "10", "--json"]
    )
    assert r.exit_code == 0, r.output
    hits = json.loads(r.output)
    assert hits[0]["id"] in ("yeast.txt", "bread.txt") and set(hits[0]["hybrid"]) == {"splade", "bm25"}
    r = runner.invoke(
        app, ["search", "yeast dough", "-i", str(ix), "--hybrid", "convex", "--hybrid-weight", "0.3"]
    )
    assert r.exit_code == 0 and "bm25 (rank)" in r.output, r.output
    r = runner.invoke(app, ["search", "yeast", "-i", str(ix), "--hybrid", "rrf", "--hybrid-weight", "0.3"])
    assert isinstance(r.exception, InputError) and "rrf does not take weight" in str(r.exception)
    r = runner.invoke(app, ["search", "yeast", "-i", str(ix), "--rrf-k", "3"])
    assert isinstance(r.exception, InputError) and "need --hybrid" in str(r.exception)
    r = runner.invoke(app, ["info", "-i", str(ix)])
    assert "bm25 view: 4 documents with text" in r.output, r.output
    # an index without a view: a clear error, then --bm25 builds it from the stored texts
    old = tmp_path / "old"
    assert runner.invoke(app, ["index", str(src), "-i", str(old), "--no-bm25"]).exit_code == 0
    r = runner.invoke(app, ["search", "yeast", "-i", str(old), "--hybrid", "rrf"])
    assert isinstance(r.exception, InputError) and "--bm25" in str(r.exception)
    r = runner.invoke(app, ["index", str(src), "-i", str(old), "--bm25"])
    assert r.exit_code == 0 and "built the BM25 view of 4 documents" in r.output, r.output
    r = runner.invoke(
        app, ["search", "yeast dough", "-i", str(old), "--hybrid", "rrf", "--rrf-k", "10", "--json"]
    )
    assert r.exit_code == 0 and json.loads(r.output) == hits


def test_eval_hybrid_is_the_index_search(tmp_path, encoder):
    from spladekit.eval import evaluate

    data = tmp_path / "beir"
    (data / "qrels").mkdir(parents=True)
    ids, texts, _ = corpus(30)
    with open(data / "corpus.jsonl", "w") as f:
        for i, t in zip(ids, texts):
            f.write(json.dumps({"_id": i, "title": "", "text": t}) + "\n")
    queries = {"q1": "cat hunting mice", "q2": "yeast dough", "q3": "bitter coffee"}
    with open(data / "queries.jsonl", "w") as f:
        for q, t in queries.items():
            f.write(json.dumps({"_id": q, "text": t}) + "\n")
    rel = {"q1": "cat-000", "q2": "yeast-003", "q3": "coffee-008"}
    (data / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in rel.items())
    )
    res = evaluate(data, encoder=encoder, index_dir=tmp_path / "ix", k=20, hybrid={"method": "convex"})
    assert list(res.runs) == ["splade", "bm25", "rrf", "hybrid"]
    assert res.report["hybrid"]["method"] == "convex" and res.report["timing"]["hybrid_latency_p50_ms"] > 0
    # the very search a user runs on the index eval built (with eval's encoder for the queries)
    with Index.open(tmp_path / "ix", encoder=encoder) as idx:
        for q, t in queries.items():
            assert res.runs["hybrid"][q] == [(h.id, h.score) for h in idx.search(t, k=20, hybrid="convex")]
    with pytest.raises(InputError, match="needs the index retriever"):
        evaluate(data, encoder=encoder, retriever="exact", hybrid="rrf")
    # reusing the index with another query side of the same document model (an IDF table): the hybrid run
    # searches with that model's queries, as `Index.open(path, encoder=that_model)` does
    from spladekit import SpladeEncoder
    from spladekit.encode.idf import build_idf_table
    from spladekit.encode.st_folder import save_inference_free

    table, _ = build_idf_table(encoder, texts=texts)
    idf_model = SpladeEncoder.load(save_inference_free(encoder, table, tmp_path / "idf-model"))
    res2 = evaluate(data, encoder=idf_model, index_dir=tmp_path / "ix", k=20, hybrid="rrf")
    with Index.open(tmp_path / "ix", encoder=idf_model) as idx:
        assert idx.query_encoder.query_table is not None
        for q, t in queries.items():
            assert res2.runs["hybrid"][q] == [(h.id, h.score) for h in idx.search(t, k=20, hybrid="rrf")]
            assert res2.runs["splade"][q][0][0] == idx.search(t, k=1)[0].id
