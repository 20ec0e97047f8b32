"""Distributed encoding with Ray Data on a local loopback cluster: same vectors as the single-process encoder."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spladekit.errors import DataFormatError, InputError
from spladekit.scale.ray_encode import encode_with_ray, plan_shards, read_slice
from spladekit.scale.shards import iter_shard_batches, read_manifest, read_shards
from spladekit.sparse import SparseVectors

pytestmark = pytest.mark.slow

TOPICS = ["cancer", "protein", "vitamin", "insulin", "bacteria", "smoking", "exercise"]


def rows(n: int) -> list[dict]:
    return [
        {
            "_id": f"r{i}",
            "title": f"Study {i}" if i % 2 else "",
            "text": f"A short abstract about {TOPICS[i % len(TOPICS)]} and {TOPICS[(3 * i) % len(TOPICS)]} number {i}.",
        }
        for i in range(n)
    ]


def write_jsonl(path, records) -> None:
    with path.open("w") as f:
        for i, r in enumerate(records):
            f.write(json.dumps(r) + "\n")
            if i == 3:
                f.write("\n")  # blank lines are skipped, as read_records does


def test_plan_and_slices_jsonl_and_parquet(tmp_path):
    recs = rows(11)
    write_jsonl(tmp_path / "c.jsonl", recs)
    plans = plan_shards(tmp_path / "c.jsonl", "jsonl", 4)
    assert [(p.start, p.rows) for p in plans] == [(0, 4), (4, 4), (8, 3)]
    got = [r for p in plans for r in read_slice(tmp_path / "c.jsonl", "jsonl", p)]
    assert [g[0] for g in got] == [r["_id"] for r in recs]
    assert got[1][1] == "Study 1 " + recs[1]["text"] and got[0][1] == recs[0]["text"]

    table = pa.Table.from_pylist(recs)
    pq.write_table(table, tmp_path / "c.parquet", row_group_size=3)
    plans = plan_shards(tmp_path / "c.parquet", "parquet", 4)
    got_pq = [r for p in plans for r in read_slice(tmp_path / "c.parquet", "parquet", p)]
    assert got_pq == got

    (tmp_path / "bad.jsonl").write_text('{"_id": "a", "text": "x"}\n{"text": "no id"}\n')
    plan = plan_shards(tmp_path / "bad.jsonl", "jsonl", 10)[0]
    with pytest.raises(DataFormatError, match=r"bad.jsonl:2: document has no '_id'"):
        read_slice(tmp_path / "bad.jsonl", "jsonl", plan)


def test_ray_encode_equals_single_process(tmp_path, encoder):
    """Three shards through a 1-actor pool; then a lost shard is re-encoded alone on the rerun."""
    recs = rows(13)
    write_jsonl(tmp_path / "corpus.jsonl", recs)
    out = tmp_path / "shards"
    manifest = encode_with_ray(tmp_path / "corpus.jsonl", out, shard_size=5, num_workers=1, verbose=False)
    assert manifest["complete"] and [s["rows"] for s in manifest["shards"]] == [5, 5, 3]
    assert manifest["model"]["weights_sha256"] == encoder.weights_hash

    ids, parts = zip(*read_shards(out))
    got = SparseVectors.concat(list(parts))
    full = [(r["title"] + " " + r["text"]).strip() for r in recs]
    want = encoder.encode_documents(full)
    assert sum(ids, []) == [r["_id"] for r in recs]
    assert np.array_equal(got.indptr, want.indptr) and np.array_equal(got.indices, want.indices)
    np.testing.assert_allclose(got.data, want.data, rtol=0, atol=1e-5)
    assert sum((b.texts for b in iter_shard_batches(out)), []) == full

    # resume: forget the middle shard; only it is encoded again, the others are left untouched
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    m = read_manifest(out)
    m["shards"] = [s for s in m["shards"] if s["name"] != "part-00001.parquet"]
    (out / "_manifest.json").write_text(json.dumps(m))
    os.remove(out / "part-00001.parquet")
    again = encode_with_ray(tmp_path / "corpus.jsonl", out, shard_size=5, num_workers=1, verbose=False)
    assert again["complete"] and len(again["shards"]) == 3
    now = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    assert now["part-00000.parquet"] == mtimes["part-00000.parquet"]
    assert now["part-00002.parquet"] == mtimes["part-00002.parquet"]
    assert SparseVectors.concat([v for _, v in read_shards(out)]).allclose(got, atol=0)

    # a finished folder is a no-op; different settings are refused before any work
    assert encode_with_ray(tmp_path / "corpus.jsonl", out, shard_size=5, verbose=False)["complete"]
    with pytest.raises(InputError, match="different shard_size"):
        encode_with_ray(tmp_path / "corpus.jsonl", out, shard_size=4, verbose=False)


def test_ray_bad_input_is_one_line(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        encode_with_ray(tmp_path / "missing.jsonl", tmp_path / "o", verbose=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    (tmp_path / "one.jsonl").write_text('{"_id": "a", "text": "x"}\n')
    with pytest.raises(InputError, match="not empty"):
        encode_with_ray(tmp_path / "one.jsonl", tmp_path / "busy", verbose=False)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="no records"):
        encode_with_ray(tmp_path / "empty.jsonl", tmp_path / "o2", verbose=False)


@pytest.mark.slow
def test_ray_with_an_inference_free_model(tmp_path, encoder):
    """Ray encodes an inference-free folder's documents (its masked-LM, as for any model); the shards load into an
    index that records the table query side, and a text search there is a table lookup."""
    from spladekit import SpladeEncoder
    from spladekit.encode.idf import build_idf_table
    from spladekit.encode.st_folder import save_inference_free
    from spladekit.index import Index
    from spladekit.scale.load import index_shards

    recs = rows(8)
    write_jsonl(tmp_path / "corpus.jsonl", recs)
    full = [(r["title"] + " " + r["text"]).strip() for r in recs]
    table, _ = build_idf_table(encoder, texts=full)
    folder = save_inference_free(encoder, table, tmp_path / "idf-model")
    manifest = encode_with_ray(
        tmp_path / "corpus.jsonl",
        tmp_path / "shards",
        model=str(folder),
        shard_size=4,
        num_workers=1,
        verbose=False,
    )
    assert manifest["complete"] and manifest["model"]["query_side"]["kind"] == "table"
    got = SparseVectors.concat([v for _, v in read_shards(tmp_path / "shards")])
    np.testing.assert_allclose(got.to_dense(), encoder.encode_documents(full).to_dense(), rtol=0, atol=1e-5)
    with Index.create(tmp_path / "idx", str(folder)) as idx:
        index_shards(idx, tmp_path / "shards")
        idx.commit()
        model = SpladeEncoder.load(folder)
        q = full[3].split()[0] + " " + full[3].split()[-1]
        assert idx.model["query_side"]["kind"] == "table"
        assert [h.id for h in idx.search(q, k=3)] == [
            h.id for h in idx.search(model.encode_queries([q]), k=3)
        ]
