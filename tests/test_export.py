"""Parquet shards and the exporters (Anserini/Seismic JSONL, Qdrant points, OpenSearch bulk + rank_features)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from typer.testing import CliRunner

from spladekit.cli import app
from spladekit.errors import DataFormatError, InputError
from spladekit.index import Index
from spladekit.index.qdrant import QdrantIndex
from spladekit.index.qdrant_convert import point_id
from spladekit.scale.export import export_jsonl, export_opensearch, export_qdrant, opensearch_query
from spladekit.scale.shards import iter_shard_batches, read_shards, write_shard, write_shards
from spladekit.sparse import SparseVectors

N = 60


@pytest.fixture(scope="module")
def corpus(encoder):
    """Random vectors that use dotted tokens (".", "e.g" style) so OpenSearch renaming is exercised."""
    rng = np.random.default_rng(3)
    dotted = [i for i, t in enumerate(encoder.vocab) if "." in t][:5]
    assert dotted, "the bundled vocabulary has tokens with dots"
    rows = []
    for i in range(N):
        idx = np.concatenate(
            [rng.choice(np.arange(2000, 2600), 30, replace=False), [dotted[i % len(dotted)]]]
        )
        rows.append((idx, rng.uniform(0.01, 3.0, len(idx))))
    vecs = SparseVectors.from_rows(rows, encoder.vocab_size, encoder.vocab)
    ids = [f"d{i}" for i in range(N)]
    texts = [f"document {i}" for i in range(N)]
    meta = [{"group": i % 3} if i % 2 else None for i in range(N)]
    return ids, vecs, texts, meta, dotted


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, encoder, corpus):
    ids, vecs, texts, meta, _ = corpus
    path = tmp_path_factory.mktemp("exp") / "idx"
    idx = Index.create(path, encoder=encoder)
    idx.add_vectors(ids[:40], vecs[:40], texts[:40], meta[:40])
    idx.commit()
    idx.add_vectors(ids[40:], vecs[40:], texts[40:], meta[40:])  # a second segment
    idx.delete(["d5"])
    idx.commit(merge=False)
    idx.close()
    return path


def test_shards_roundtrip(tmp_path, corpus):
    ids, vecs, texts, meta, _ = corpus
    manifest = write_shards(
        tmp_path / "s", ids, vecs, texts=texts, metadata=meta, shard_size=25, model={"name": "m"}
    )
    assert [s["rows"] for s in manifest["shards"]] == [25, 25, 10]
    got_ids, parts = zip(*read_shards(tmp_path / "s"))
    back = SparseVectors.concat(list(parts))
    assert sum(got_ids, []) == ids and back.allclose(vecs, atol=0) and back.data.dtype == np.float32
    batches = list(iter_shard_batches(tmp_path / "s"))
    assert sum((b.texts for b in batches), []) == texts and sum((b.metadata for b in batches), []) == meta
    import pyarrow.parquet as pq

    schema = pq.read_schema(tmp_path / "s" / "part-00000.parquet")
    assert str(schema.field("term_ids").type) == "list<element: int32>"
    assert str(schema.field("weights").type) == "list<element: float>"
    # a broken shard is named in a one-line error
    (tmp_path / "s" / "part-00001.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataFormatError, match="part-00001.parquet"):
        list(read_shards(tmp_path / "s"))
    with pytest.raises(InputError, match="not a shards folder"):
        list(read_shards(tmp_path))
    with pytest.raises(InputError, match="ids but"):
        write_shard(tmp_path / "x.parquet", ids[:2], vecs[:3])


def test_jsonl_export(index_dir, tmp_path, corpus, encoder):
    ids, vecs, texts, _, _ = corpus
    out = tmp_path / "vectors.jsonl"
    assert export_jsonl(index_dir, out) == N - 1
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    by_id = {d["id"]: d for d in lines}
    assert set(by_id) == set(ids) - {"d5"}
    for i in (0, 17, 59):
        d = by_id[ids[i]]
        assert d["contents"] == texts[i]
        assert d["vector"] == pytest.approx(vecs[i].to_dicts()[0])
    n = export_jsonl(index_dir, tmp_path / "q.jsonl", quantize=100)
    first = json.loads((tmp_path / "q.jsonl").read_text().splitlines()[0])
    assert n == N - 1 and all(isinstance(v, int) and v > 0 for v in first["vector"].values())
    i = ids.index(first["id"])
    expect = {t: round(w * 100) for t, w in vecs[i].to_dicts()[0].items() if round(w * 100) > 0}
    assert first["vector"] == expect


def test_opensearch_export(index_dir, tmp_path, corpus, encoder):
    ids, vecs, _, meta, dotted = corpus
    res = export_opensearch(index_dir, tmp_path / "bulk.ndjson", index_name="docs")
    assert res["documents"] == N - 1
    lines = (tmp_path / "bulk.ndjson").read_text().splitlines()
    assert len(lines) == 2 * (N - 1)
    action, doc = json.loads(lines[0]), json.loads(lines[1])
    assert action["index"]["_index"] == "docs" and action["index"]["_id"] == doc["id"]
    mapping = json.loads((tmp_path / "bulk.mapping.json").read_text())
    assert mapping["mappings"]["properties"]["passage_embedding"]["type"] == "rank_features"
    renamed = json.loads((tmp_path / "bulk.tokens.json").read_text())["renamed"]
    for line in lines[1::2]:
        d = json.loads(line)
        assert all("." not in k and v > 0 for k, v in d["passage_embedding"].items())
    # weights survive, under the safe names; the renaming is reversible through the tokens file
    d = json.loads(lines[1])
    i = ids.index(d["id"])
    inverse = {v: k for k, v in renamed.items()}
    assert {inverse.get(k, k): v for k, v in d["passage_embedding"].items()} == pytest.approx(
        vecs[i].to_dicts()[0]
    )
    assert encoder.vocab[dotted[i % len(dotted)]] in renamed
    q = opensearch_query({encoder.vocab[dotted[0]]: 1.0})
    assert "." not in next(iter(q["query"]["neural_sparse"]["passage_embedding"]["query_tokens"]))


def test_qdrant_export_file_and_upload(index_dir, tmp_path, corpus, encoder):
    ids, vecs, _, _, _ = corpus
    assert export_qdrant(index_dir, tmp_path / "points.jsonl") == N - 1
    points = [json.loads(x) for x in (tmp_path / "points.jsonl").read_text().splitlines()]
    p0 = points[0]
    assert p0["id"] == point_id(p0["payload"]["_id"])
    sv = p0["vector"]["splade"]
    assert sv["indices"] == sorted(set(sv["indices"]))
    # the file loads into Qdrant as-is and ranks like the index
    client = QdrantClient(":memory:")
    client.create_collection(
        "c", vectors_config={}, sparse_vectors_config={"splade": models.SparseVectorParams()}
    )
    client.upsert("c", points=[models.PointStruct(**p) for p in points], wait=True)
    with Index.open(index_dir) as idx:
        qv = vecs[7]
        t, w = qv.row(0)
        res = client.query_points(
            "c", query=models.SparseVector(indices=t.tolist(), values=w.tolist()), using="splade", limit=5
        )
        assert [p.payload["_id"] for p in res.points] == [h.id for h in idx.search(qv, k=5)]
    with pytest.raises(InputError, match="exactly one"):
        export_qdrant(index_dir)


def test_direct_upload_searchable(index_dir, tmp_path, corpus):
    """A direct upload (to an in-memory client here; ``url=`` works the same) gives a searchable QdrantIndex."""
    ids, vecs, _, _, _ = corpus
    client = QdrantClient(":memory:")
    assert export_qdrant(index_dir, client=client, index_dir=tmp_path / "up", collection="exp") == N - 1
    q = QdrantIndex.open(tmp_path / "up", client=client)
    with Index.open(index_dir) as idx:
        for i in (3, 9, 44):
            assert [h.id for h in q.search(vecs[i], k=5)] == [h.id for h in idx.search(vecs[i], k=5)]
        assert q.get("d1") == idx.get("d1")
    assert len(q) == N - 1


def test_export_reads_shards_and_cli(tmp_path, corpus):
    ids, vecs, texts, meta, _ = corpus
    write_shards(tmp_path / "s", ids, vecs, texts=texts, metadata=meta, shard_size=16)
    assert export_jsonl(tmp_path / "s", tmp_path / "a.jsonl") == N
    runner = CliRunner()
    r = runner.invoke(
        app, ["export", str(tmp_path / "s"), "--format", "opensearch", "-o", str(tmp_path / "b.ndjson")]
    )
    assert r.exit_code == 0, r.output
    assert len((tmp_path / "b.ndjson").read_text().splitlines()) == 2 * N
    r = runner.invoke(app, ["export", str(tmp_path / "s"), "--format", "parquet", "-o", str(tmp_path / "c")])
    assert isinstance(r.exception, InputError) and "jsonl, qdrant, opensearch" in str(r.exception)
    r = runner.invoke(app, ["export", str(tmp_path), "--format", "jsonl", "-o", str(tmp_path / "c")])
    assert isinstance(r.exception, InputError) and "not an index folder" in str(r.exception)
