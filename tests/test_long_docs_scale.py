"""Long documents on the scale-out paths: Ray shards (max / passages), loading passage shards into an index, the
exporters, and passages / max indexes on the Qdrant backend (in-process client)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qdrant_client import QdrantClient

from spladekit.encode.windows import LongDocs
from spladekit.errors import DataFormatError, InputError
from spladekit.index import Index
from spladekit.index.passages import PassageIndex
from spladekit.scale.export import export_jsonl
from spladekit.scale.load import index_shards
from spladekit.scale.shards import (
    iter_shard_batches,
    read_manifest,
    read_shard,
    shards_long_docs,
    write_manifest,
    write_shard,
    write_shards,
)
from spladekit.sparse import SparseVectors

LD = LongDocs("passages", window=32, stride=8)
SENTENCES = [
    "Lung cancer is strongly linked to smoking tobacco.",
    "Protein folding happens inside living cells.",
    "Vitamin D deficiency affects bone density in older adults.",
    "Insulin controls glucose uptake in muscle tissue.",
    "Bacteria can develop resistance to common antibiotics.",
    "Regular exercise improves heart health and sleep.",
    "Koalas eat eucalyptus leaves almost exclusively.",
]
QUERIES = ["insulin glucose", "smoking cancer", "koala eucalyptus", "antibiotic resistance", "bone vitamin"]


def long_text(i: int, n: int) -> str:
    """``n`` sentences starting at sentence ``i``: long enough for several 32-token windows when n > 3."""
    return " ".join(SENTENCES[(i + j) % len(SENTENCES)] for j in range(n))


def corpus(n: int = 9) -> list[dict]:
    """Short and long documents, some with a title or metadata."""
    recs = []
    for i in range(n):
        r = {"_id": f"d{i}", "text": long_text(i, 1 + (i * 3) % 8)}
        if i % 3 == 1:
            r["title"] = f"Study {i}"
        if i % 2 == 0:
            r["metadata"] = {"year": 2000 + i % 3}
        recs.append(r)
    return recs


def full_texts(recs) -> list[str]:
    return [(r.get("title", "") + " " + r["text"]).strip() for r in recs]


def write_jsonl(path, recs) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))


def same_hits(a, b) -> None:
    """Equal ranked ids, scores and best-passage spans; tied scores (|diff| < 1e-4) may come in either order."""
    assert len(a) == len(b)
    assert [h.score for h in a] == pytest.approx([h.score for h in b], rel=1e-5, abs=1e-4)
    for x, y in zip(a, b):
        if x.id != y.id:
            assert y.id in [h.id for h in a if abs(h.score - x.score) < 1e-4]
    spans = {h.id: h.passage for h in a}
    assert all(h.passage == spans[h.id] for h in b if h.id in spans)


# ----------------------------------------------------------------------------- shards (no Ray)
def _passage_shard(encoder, tmp_path, texts, ids):
    p = encoder.encode_passages(texts, long_docs=LD)
    owner = p.owner.tolist()
    numbers = [0] * len(owner)
    for j in range(1, len(owner)):
        numbers[j] = numbers[j - 1] + 1 if owner[j] == owner[j - 1] else 0
    first = [n == 0 for n in numbers]
    path = tmp_path / "part-00000.parquet"
    write_shard(
        path,
        [ids[o] for o in owner],
        p.vectors,
        texts=[texts[o] if f else None for o, f in zip(owner, first)],
        metadata=[{"k": o} if f else None for o, f in zip(owner, first)],
        passages=(numbers, [s[0] for s in p.spans], [s[1] for s in p.spans]),
    )
    return p, path, numbers


def test_passage_shard_roundtrip_and_checks(tmp_path, encoder):
    texts = [long_text(i, 1 + 2 * i) for i in range(4)]
    ids = [f"x{i}" for i in range(4)]
    p, path, numbers = _passage_shard(encoder, tmp_path, texts, ids)
    assert p.counts.tolist()[0] == 1 and p.counts.max() > 2
    b = read_shard(path, encoder.vocab_size, encoder.vocab)
    assert b.passages is not None and b.passages[0].tolist() == numbers
    assert list(zip(b.passages[1].tolist(), b.passages[2].tolist())) == [tuple(s) for s in p.spans]
    assert b.vectors.allclose(p.vectors, atol=0)
    docs = b.documents()
    assert docs.ids == ids and docs.counts.tolist() == p.counts.tolist()
    assert docs.owner.tolist() == p.owner.tolist() and docs.texts == texts
    assert docs.metadata == [{"k": i} for i in range(4)]
    merged = b.merged()
    assert merged.ids == ids and merged.passages is None
    assert merged.vectors.allclose(p.document_vectors(), atol=0)
    # documents read back from a whole-document shard are one passage each
    plain = write_shards(tmp_path / "plain", ids, p.document_vectors(), texts=texts)
    assert plain["complete"]
    one = next(iter_shard_batches(tmp_path / "plain"))
    assert one.passages is None and one.documents().counts.tolist() == [1] * 4 and one.merged() is one

    # a document's passages out of order or split is refused, when writing and when reading
    with pytest.raises(InputError, match="out of order"):
        write_shard(tmp_path / "bad.parquet", ["a", "a"], p.vectors[:2], passages=([0, 2], [0, 1], [1, 2]))
    with pytest.raises(InputError, match="not consecutive"):
        write_shard(
            tmp_path / "bad.parquet", ["a", "b", "a"], p.vectors[:3], passages=([0, 0, 0], [0] * 3, [1] * 3)
        )
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    pq.write_table(
        table.slice(1), tmp_path / "cut.parquet"
    )  # without x0 (one passage): still whole documents
    assert read_shard(tmp_path / "cut.parquet", encoder.vocab_size).documents().ids == ids[1:]
    k = int(np.flatnonzero(p.counts > 1)[0])
    cut = int(p.counts[:k].sum()) + 1  # the passage 0 of a document with several is lost
    pq.write_table(table.slice(cut), tmp_path / "cut.parquet")
    with pytest.raises(DataFormatError, match="out of order"):
        read_shard(tmp_path / "cut.parquet", encoder.vocab_size)
    pq.write_table(table.drop_columns(["end"]), tmp_path / "cut.parquet")
    with pytest.raises(DataFormatError, match="passage, start, end"):
        read_shard(tmp_path / "cut.parquet", encoder.vocab_size)

    # the manifest and the shards must agree on passages
    folder = tmp_path / "plain"
    m = read_manifest(folder)
    m["model"] = {"long_docs": LD.record()}
    write_manifest(folder, m)
    assert shards_long_docs(m) == LD
    with pytest.raises(DataFormatError, match="holds whole documents, but the manifest says passages"):
        list(iter_shard_batches(folder))
    assert shards_long_docs({}).strategy == "truncate"  # folders written before windows


# ----------------------------------------------------------------------------- Qdrant
def _qdrant(tmp_path, name, encoder, long_docs=LD):
    return Index.create(
        tmp_path / name, encoder, backend="qdrant", client=QdrantClient(":memory:"), long_docs=long_docs
    )


def test_qdrant_passages_index_matches_local(tmp_path, encoder):
    recs = corpus(8)
    ids, texts, meta = [r["_id"] for r in recs], full_texts(recs), [r.get("metadata") for r in recs]
    q = _qdrant(tmp_path, "q", encoder)
    local = Index.create(tmp_path / "l", encoder, long_docs=LD)
    try:
        assert isinstance(q, PassageIndex) and q.inner.backend == "qdrant" and q.long_docs == LD
        cfg = json.loads((tmp_path / "q" / "qdrant.json").read_text())
        assert cfg["model"]["long_docs"] == LD.record()
        for idx in (q, local):
            idx.add(ids, texts, meta)
            idx.commit()
        assert len(q) == len(local) == 8 and sorted(q.ids()) == sorted(ids)
        assert len(q.inner) == sum(len(local.passages(x)) for x in ids) > 8
        assert q.info()["documents"] == 8 and q.info()["passages"] == len(q.inner)
        for x in ids:
            assert q.get(x) == local.get(x) and q.passages(x) == local.passages(x)
        assert q.get("nope") is None and "d3" in q and "nope" not in q
        for text in QUERIES:
            a, b = local.search(text, k=4), q.search(text, k=4)
            assert len({h.id for h in b}) == len(b) == 4  # k counts documents
            same_hits(a, b)
            assert [h.passage for h in a] == [h.passage for h in b]
            flt = {"year": 2000}
            a, b = local.search(text, k=3, filter=flt), q.search(text, k=3, filter=flt)
            same_hits(a, b)
            assert all(q.get(h.id)["metadata"] == flt for h in b)
        hit = q.search("koala eucalyptus", k=1, with_text=True)[0]
        s, e = hit.passage
        assert hit.text == q.get(hit.id)["text"] and "eucalyptus" in hit.text[s:e].lower()
        assert q.vectors(["d5"]).allclose(local.vectors(["d5"]), atol=1e-6)

        # upsert with fewer passages drops the rest; delete removes every passage
        long_id = max(ids, key=lambda x: len(local.passages(x)))
        for idx in (q, local):
            idx.upsert([long_id], ["Penguins of Antarctica."])
            idx.commit()
        assert q.passages(long_id) == local.passages(long_id) == [(0, 23)]
        assert len(q.inner) == sum(len(local.passages(x)) for x in ids)
        assert q.search("penguins antarctica", k=1)[0].id == long_id
        with pytest.raises(InputError, match="unknown id"):
            q.delete([long_id, "zzz"])
        other = next(x for x in ids if x != long_id and len(local.passages(x)) > 1)
        q.delete([long_id, other])
        assert len(q) == 6 and long_id not in q and other not in q.ids()
        assert len(q.inner) == sum(len(local.passages(x)) for x in ids if x not in (long_id, other))
        assert not any(h.id in (long_id, other) for h in q.search("penguins koalas cancer insulin", k=10))
        with pytest.raises(InputError, match="already in the index"):
            q.add(["d3"], ["again"])
    finally:
        q.close()
        local.close()


def test_qdrant_embedded_passages_reopen_and_max_recorded(tmp_path, encoder):
    path = tmp_path / "emb"
    idx = Index.create(path, encoder, backend="qdrant", long_docs=LD)
    idx.add(["a", "b"], [long_text(0, 6), "Protein folding."], [{"t": 1}, {"t": 2}])
    idx.close()
    again = Index.open(path)
    try:
        assert isinstance(again, PassageIndex) and again.long_docs == LD and len(again) == 2
        assert again.search("insulin glucose", k=5, filter={"t": 1})[0].id == "a"
        assert all(h.id == "b" for h in again.search("insulin glucose protein", k=5, filter={"t": 2}))
    finally:
        again.close()
    m = _qdrant(tmp_path, "max", encoder, long_docs="max")
    try:
        assert not isinstance(m, PassageIndex) and m.long_docs.strategy == "max"
        cfg = json.loads((tmp_path / "max" / "qdrant.json").read_text())
        assert cfg["model"]["long_docs"] == LongDocs("max").record()
        text = long_text(2, 8)
        m.add(["x"], [text])
        want = encoder.encode_documents([text], long_docs="max")
        assert m.vector("x").allclose(want, atol=1e-6)
    finally:
        m.close()
    t = _qdrant(tmp_path, "trunc", encoder, long_docs=LongDocs("truncate"))
    try:
        assert json.loads((tmp_path / "trunc" / "qdrant.json").read_text())["model"]["long_docs"][
            "strategy"
        ] == ("truncate")
    finally:
        t.close()


# ----------------------------------------------------------------------------- Ray
@pytest.mark.slow
def test_ray_passages_equal_in_process_and_load_into_indexes(tmp_path, encoder):
    from spladekit.scale.ray_encode import encode_with_ray

    recs = corpus(9)
    write_jsonl(tmp_path / "c.jsonl", recs)
    out = tmp_path / "shards"
    manifest = encode_with_ray(
        tmp_path / "c.jsonl", out, shard_size=4, num_workers=1, long_docs=LD, verbose=False
    )
    ids, texts, meta = [r["_id"] for r in recs], full_texts(recs), [r.get("metadata") for r in recs]
    want = encoder.encode_passages(texts, long_docs=LD)
    assert manifest["complete"] and manifest["model"]["long_docs"] == LD.record()
    assert manifest["settings"]["long_docs"] == LD.record()
    entries = manifest["shards"]
    assert [s["rows"] for s in entries] == [4, 4, 1]
    assert sum(s["passages"] for s in entries) == len(want.vectors) == sum(s["windows"] for s in entries)
    assert sum(s["windowed"] for s in entries) == int((want.counts > 1).sum()) > 0

    batches = list(iter_shard_batches(out))
    got = SparseVectors.concat([b.vectors for b in batches])
    assert np.array_equal(got.indptr, want.vectors.indptr) and np.array_equal(
        got.indices, want.vectors.indices
    )
    np.testing.assert_allclose(got.data, want.vectors.data, rtol=0, atol=1e-5)
    spans = [(int(s), int(e)) for b in batches for s, e in zip(b.passages[1], b.passages[2])]
    assert spans == [tuple(s) for s in want.spans]
    assert sum((b.ids for b in batches), []) == [ids[o] for o in want.owner]
    docs = [b.documents() for b in batches]
    assert sum((d.ids for d in docs), []) == ids and sum((d.texts for d in docs), []) == texts
    assert sum((d.metadata for d in docs), []) == meta
    assert sum(t is not None for b in batches for t in b.texts) == len(ids)  # text on passage 0 only

    # resuming with another setting is refused before any work; the same one is a no-op
    for other in (LongDocs("max", 32, 8), LongDocs("passages", 48, 8), None):
        with pytest.raises(InputError, match="different long_docs"):
            encode_with_ray(tmp_path / "c.jsonl", out, shard_size=4, long_docs=other, verbose=False)
    assert encode_with_ray(tmp_path / "c.jsonl", out, shard_size=4, long_docs=LD, verbose=False)["complete"]

    # the shards load into a passages index (local and Qdrant) with the results of adding the texts
    direct = Index.create(tmp_path / "direct", encoder, long_docs=LD)
    direct.add(ids, texts, meta)
    direct.commit()
    local = Index.create(tmp_path / "loaded", encoder, long_docs=LD)
    q = _qdrant(tmp_path, "q", encoder)
    try:
        for idx in (local, q):
            done = index_shards(idx, out)
            assert (done.added, done.updated, done.ids) == (9, 0, ids)
            idx.commit()
            assert sorted(idx.ids()) == sorted(ids)
            for x in ids:
                assert idx.get(x) == direct.get(x) and idx.passages(x) == direct.passages(x)
            for text in QUERIES:
                same_hits(direct.search(text, k=5), idx.search(text, k=5))
                same_hits(
                    direct.search(text, k=3, filter={"year": 2001}),
                    idx.search(text, k=3, filter={"year": 2001}),
                )
        again = index_shards(local, out)  # a second load replaces every document, passages included
        local.commit()
        assert (again.added, again.updated) == (0, 9) and len(local.inner) == len(want.vectors)
        # passages shards into a whole-document index: a clear error, nothing written
        plain = Index.create(tmp_path / "plain", encoder, long_docs="max")
        with pytest.raises(InputError, match="hold passages .* stores whole documents"):
            index_shards(plain, out)
        assert len(plain) == 0
        plain.close()
        # exporters see documents: passages merged by max, as the in-process max over the same windows
        assert export_jsonl(out, tmp_path / "e.jsonl") == 9
        lines = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
        assert [x["id"] for x in lines] == ids and [x["contents"] for x in lines] == texts
        maxed = want.document_vectors().to_dicts()
        for x, w in zip(lines, maxed):
            assert x["vector"].keys() == w.keys()
            assert np.allclose([x["vector"][t] for t in w], list(w.values()), atol=1e-5)
    finally:
        q.close()
        local.close()
        direct.close()


@pytest.mark.slow
def test_ray_max_through_cli_one_row_per_document(tmp_path, encoder):
    from typer.testing import CliRunner

    from spladekit.cli import app
    from spladekit.scale.ray_encode import encode_with_ray

    recs = corpus(7)
    write_jsonl(tmp_path / "c.jsonl", recs)
    out = tmp_path / "shards"
    runner = CliRunner()
    args = ["encode", str(tmp_path / "c.jsonl"), "-o", str(out), "--ray", "--chunk", "4"]
    r = runner.invoke(app, args + ["--window", "32", "--stride", "8"])
    assert r.exit_code == 0, r.output
    m = read_manifest(out)
    ld = LongDocs("max", 32, 8)
    assert m["model"]["long_docs"] == ld.record() and shards_long_docs(m) == ld
    assert [s["rows"] for s in m["shards"]] == [4, 3] and all("passages" not in s for s in m["shards"])
    texts = full_texts(recs)
    want = encoder.encode_documents(texts, long_docs=ld)
    batches = list(iter_shard_batches(out))
    assert all(b.passages is None for b in batches) and sum((b.ids for b in batches), []) == [
        r["_id"] for r in recs
    ]
    got = SparseVectors.concat([b.vectors for b in batches])
    assert np.array_equal(got.indices, want.indices)
    np.testing.assert_allclose(got.data, want.data, rtol=0, atol=1e-5)
    assert sum(s["windowed"] for s in m["shards"]) == encoder.last_report.windowed > 0
    assert sum(s["truncated"] for s in m["shards"]) == 0

    # the default setting (max over the model's window) is not this folder's: refused on resume
    r = runner.invoke(app, args)
    assert isinstance(r.exception, InputError) and "different long_docs" in str(r.exception)
    # whole-document shards into a passages index: a clear error
    idx = Index.create(tmp_path / "p", encoder, long_docs=LD)
    with pytest.raises(InputError, match="hold whole documents .* stores passages"):
        index_shards(idx, out)
    idx.close()
    # into a max index: one document per row
    idx = Index.create(tmp_path / "m", encoder, long_docs=ld)
    assert index_shards(idx, out).added == 7
    idx.commit()
    assert idx.vectors([recs[3]["_id"]]).allclose(want[3:4], atol=1e-5)
    idx.close()
    # queries are truncated; passages need shards
    with pytest.raises(InputError, match="queries are truncated"):
        encode_with_ray(tmp_path / "c.jsonl", tmp_path / "q", query=True, long_docs="passages", verbose=False)
    r = runner.invoke(
        app, ["encode", str(tmp_path / "c.jsonl"), "-o", str(tmp_path / "v.jsonl"), "--long-docs", "passages"]
    )
    assert isinstance(r.exception, InputError) and "needs --ray" in str(r.exception)
    r = runner.invoke(
        app,
        ["encode", str(tmp_path / "c.jsonl"), "-o", str(tmp_path / "v.jsonl"), "--query", "--window", "32"],
    )
    assert isinstance(r.exception, InputError) and "queries are truncated" in str(r.exception)
    with pytest.raises(InputError, match="window 1024 is longer"):
        encode_with_ray(tmp_path / "c.jsonl", tmp_path / "w", long_docs="max", window=1024, verbose=False)
