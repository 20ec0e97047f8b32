"""Inference-free models: sentence-transformers Router folders and OpenSearch idf.json folders load with the same
vectors as their reference implementations; IDF query sides built from a collection; queries never touch torch."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spladekit.encode import bundled_model_path
from spladekit.errors import ModelLoadError, SpladekitError

WORDS = (
    "protein cell cancer vaccine immune response gene expression mouse patients risk therapy tumor blood "
    "brain neuron insulin glucose diabetes heart virus infection antibody receptor signaling pathway dna rna "
    "the of and in is what how does why which with without a an to for on at by"
).split()


def _texts(n: int, seed: int, lengths=(1, 3, 5, 8, 13, 30)) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.choice(lengths))]
        if i % 4 == 0:  # repeated tokens count once
            words += words[:2]
        out.append(" ".join(words) + ("?" if i % 3 == 0 else "."))
    return out


QUERIES = _texts(220, seed=1)
DOCS = _texts(200, seed=2, lengths=(20, 40, 60))


def _dense(st_tensor) -> np.ndarray:
    return st_tensor.to_dense().cpu().numpy() if st_tensor.is_sparse else st_tensor.cpu().numpy()


@pytest.fixture(scope="module")
def st_router(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A Router model built with sentence-transformers' own classes: bundled splade-tiny documents and an IDF-like
    table (random positive weights, some zero) for queries."""
    import torch
    from sentence_transformers import SparseEncoder
    from sentence_transformers.models import Router
    from sentence_transformers.sparse_encoder.models import (
        MLMTransformer,
        SparseStaticEmbedding,
        SpladePooling,
    )

    mlm = MLMTransformer(str(bundled_model_path()))
    g = torch.Generator().manual_seed(0)
    w = torch.rand(mlm.auto_model.config.vocab_size, generator=g) * 5
    w[torch.rand(w.shape, generator=g) < 0.1] = 0.0
    static = SparseStaticEmbedding(mlm.tokenizer, weight=w.clone())
    router = Router.for_query_document(
        query_modules=[static], document_modules=[mlm, SpladePooling(pooling_strategy="max")]
    )
    out = tmp_path_factory.mktemp("router") / "model"
    SparseEncoder(modules=[router], device="cpu").save(str(out))
    return out, w.numpy()


def _reference(folder: Path):
    from sentence_transformers import SparseEncoder

    return SparseEncoder(str(folder), device="cpu")


def _assert_equal_vectors(ref: np.ndarray, mine: np.ndarray, atol: float = 1e-4) -> None:
    assert ref.shape == mine.shape
    np.testing.assert_array_equal(ref > 0, mine > 0)  # same active terms
    assert float(np.abs(ref - mine).max()) <= atol


@pytest.mark.slow
@pytest.mark.numerics
def test_router_folder_matches_sentence_transformers(st_router):
    from spladekit import SpladeEncoder
    from spladekit.encode.lite import load_lite

    folder, _ = st_router
    ref = _reference(folder)
    q_ref = _dense(ref.encode_query(QUERIES, convert_to_sparse_tensor=True))
    d_ref = _dense(ref.encode_document(DOCS, convert_to_sparse_tensor=True))
    for enc in (SpladeEncoder.load(folder), load_lite(folder)):
        assert enc.info()["query_side"]["kind"] == "table"
        _assert_equal_vectors(q_ref, enc.encode_queries(QUERIES).to_dense(), atol=0.0)  # a lookup: exact
        _assert_equal_vectors(d_ref, enc.encode_documents(DOCS).to_dense())
    # repeated tokens count once: the weight of a term is the table's, never a multiple of it
    enc = load_lite(folder)
    one = enc.encode_queries(["vaccine vaccine vaccine"])
    assert one.nnz == 1 and one.row(0)[1][0] == pytest.approx(float(st_router[1][one.row(0)[0][0]]))


@pytest.mark.slow
def test_idf_folder_written_by_spladekit_loads_in_sentence_transformers(tmp_path, encoder):
    from spladekit import SpladeEncoder
    from spladekit.encode.idf import build_idf_table
    from spladekit.encode.st_folder import save_inference_free

    table, summary = build_idf_table(encoder, texts=DOCS)
    assert summary == {"source": "tokens", "documents": len(DOCS), "terms_seen": summary["terms_seen"]}
    out = save_inference_free(encoder, table, tmp_path / "idf-model")
    ref = _reference(out)
    mine = SpladeEncoder.load(out)
    _assert_equal_vectors(
        _dense(ref.encode_query(QUERIES, convert_to_sparse_tensor=True)),
        mine.encode_queries(QUERIES).to_dense(),
        0.0,
    )
    _assert_equal_vectors(
        _dense(ref.encode_document(DOCS[:50], convert_to_sparse_tensor=True)),
        mine.encode_documents(DOCS[:50]).to_dense(),
    )
    with pytest.raises(SpladekitError, match="not an empty folder"):
        save_inference_free(encoder, table, out)


def test_idf_counts_document_frequencies(light_encoder):
    from spladekit.encode.idf import build_idf_table, idf, vector_document_frequencies

    docs = ["vaccine vaccine trial", "vaccine risk", "cell"]
    table, summary = build_idf_table(light_encoder, texts=docs)
    tid = light_encoder.token_to_id
    expect = idf(
        np.array([2, 1, 1, 0]), 3
    )  # vaccine in 2 documents (twice in one), trial 1, cell 1, unseen 0
    got = table.weights[[tid["vaccine"], tid["trial"], tid["cell"], tid["protein"]]]
    np.testing.assert_allclose(got, expect, rtol=1e-6)
    assert summary["documents"] == 3 and summary["terms_seen"] == 4
    assert expect[0] < expect[1] < expect[3] and (table.weights > 0).all()
    vecs = light_encoder.encode_documents(docs)
    df, n = vector_document_frequencies([vecs[:2], vecs[2:]], light_encoder.vocab_size)
    assert n == 3 and df.max() <= 3 and df[vecs.row(2)[0]].min() >= 1


def _opensearch_folder(tmp_path: Path, weights: dict[str, float]) -> Path:
    folder = tmp_path / "opensearch"
    shutil.copytree(bundled_model_path(), folder)
    (folder / "idf.json").write_text(json.dumps(weights))
    return folder


@pytest.mark.slow
def test_opensearch_doc_only_layout(tmp_path, light_encoder):
    """OpenSearch's rule (its model card's code): the default tokenizer call with [CLS]/[SEP], each token once,
    ``vector = presence * idf``; documents with the special tokens zeroed."""
    import torch
    from transformers import AutoTokenizer

    from spladekit import SpladeEncoder

    vocab = light_encoder.vocab
    rng = np.random.default_rng(0)
    picked = rng.choice(len(vocab), 8000, replace=False)
    weights = {vocab[i]: float(rng.uniform(0.1, 6)) for i in picked} | {
        "[CLS]": 0.5,
        "[SEP]": 0.0,
        "vaccine": 3.0,
    }
    folder = _opensearch_folder(tmp_path, weights)
    tok = AutoTokenizer.from_pretrained(str(folder))
    idf_vec = torch.zeros(tok.vocab_size)
    for t, w in weights.items():
        idf_vec[tok.convert_tokens_to_ids(t)] = w
    feats = tok(QUERIES, padding=True, truncation=True, return_tensors="pt", return_token_type_ids=False)
    presence = torch.zeros(len(QUERIES), tok.vocab_size, dtype=torch.int64)  # one query at a time: no padding
    presence.scatter_(1, feats["input_ids"], feats["attention_mask"])
    ref = (presence * idf_vec).numpy()
    enc = SpladeEncoder.load(folder)
    assert enc.info()["query_side"]["layout"] == "idf.json"
    _assert_equal_vectors(ref, enc.encode_queries(QUERIES).to_dense(), 0.0)
    assert enc.encode_queries(["vaccine"]).to_dicts()[0] == {"[CLS]": 0.5, "vaccine": 3.0}
    docs = enc.encode_documents(DOCS[:5]).to_dense()
    special = [enc.token_to_id[t] for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]")]
    assert not docs[:, special].any()
    plain = SpladeEncoder.load().encode_documents(DOCS[:5]).to_dense()
    plain[:, special] = 0
    np.testing.assert_array_equal(docs, plain)


@pytest.mark.parametrize(
    "router, match",
    [
        (
            {"structure": {"query": ["q"], "document": ["d0", "d1"]}, "types": {"q": "x.MLMTransformer"}},
            "query route",
        ),
        ({"structure": {"document": ["d0"]}, "types": {}}, "'query' and a 'document' route"),
    ],
)
def test_unsupported_router_is_a_clear_error(tmp_path, router, match):
    from spladekit.encode.loading import read_spec

    (tmp_path / "modules.json").write_text(
        json.dumps([{"path": "", "type": "sentence_transformers.models.Router"}])
    )
    router["types"] |= {"d0": "x.MLMTransformer", "d1": "x.SpladePooling"}
    (tmp_path / "router_config.json").write_text(json.dumps(router))
    shutil.copytree(bundled_model_path(), tmp_path / "d0")
    with pytest.raises(ModelLoadError, match=match):
        read_spec(tmp_path)


@pytest.mark.parametrize(
    "content, match", [("[1, 2]", "JSON object"), ('{"vaccine": "x"}', "not a number"), ("{", "unreadable")]
)
def test_bad_idf_json_is_a_clear_error(tmp_path, content, match):
    from spladekit.encode.lite import load_lite

    folder = _opensearch_folder(tmp_path, {})
    (folder / "idf.json").write_text(content)
    with pytest.raises(ModelLoadError, match=match):
        load_lite(folder).encode_queries(["vaccine"])


def test_table_queries_never_import_torch(tmp_path, light_encoder):
    """A search on an inference-free index, through the library and through the HTTP app, loads no torch."""
    from spladekit.encode.idf import build_idf_table
    from spladekit.encode.st_folder import save_inference_free
    from spladekit.index import Index

    table, _ = build_idf_table(light_encoder, texts=DOCS)
    model = save_inference_free(light_encoder, table, tmp_path / "model")
    with Index.create(tmp_path / "idx", str(model)) as idx:
        idx.add_vectors(
            [f"d{i}" for i in range(20)], light_encoder.encode_documents(DOCS[:20]), texts=DOCS[:20]
        )
        idx.commit()
    code = f"""
import sys, json
from spladekit.index import Index
from spladekit.serve import create_app
from fastapi.testclient import TestClient
idx = Index.open({str(tmp_path / "idx")!r})
hits = idx.search({DOCS[3]!r}, k=3)
client = TestClient(create_app(idx))
r = client.post("/search", json={{"query": {DOCS[5]!r}, "k": 3}})
h = client.post("/search", json={{"query": {DOCS[5]!r}, "k": 3, "hybrid": {{"method": "convex", "weight": 0.7}}}})
b = client.post("/search/batch", json={{"queries": [{{"query": {DOCS[5]!r}}}], "k": 3, "hybrid": "rrf"}})
e = client.post("/encode", json={{"texts": ["vaccine"], "kind": "query"}})
assert h.status_code == b.status_code == e.status_code == 200, (h.text, b.text, e.text)
assert h.json()["hits"][0]["hybrid"]["bm25"]["rank"] >= 1 and b.json()["results"][0][0]["hybrid"]["splade"]
print(json.dumps([hits[0].id, r.status_code, r.json()["hits"][0]["id"], idx.model["query_side"]["kind"],
                  [m for m in ("torch", "transformers") if m in sys.modules]]))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    top, status, http_top, kind, imported = json.loads(r.stdout.strip().splitlines()[-1])
    assert (top, status, http_top, kind, imported) == ("d3", 200, "d5", "table", [])


@pytest.mark.slow
def test_inference_free_model_in_local_and_qdrant_indexes(tmp_path, encoder):
    """The index (both backends) takes an inference-free folder as its model: documents through the masked-LM,
    text queries through the table, the same hits as searching with the table's vectors by hand."""
    from qdrant_client import QdrantClient

    from spladekit import SpladeEncoder
    from spladekit.encode.idf import build_idf_table
    from spladekit.encode.st_folder import save_inference_free
    from spladekit.index import Index

    table, _ = build_idf_table(encoder, texts=DOCS)
    folder = save_inference_free(encoder, table, tmp_path / "model")
    model = SpladeEncoder.load(folder)
    ids = [f"d{i}" for i in range(60)]
    local = Index.create(tmp_path / "local", model)
    local.add(ids, DOCS[:60])
    local.commit()
    remote = Index.create(tmp_path / "q", model, backend="qdrant", client=QdrantClient(":memory:"))
    remote.add(ids, DOCS[:60])
    assert local.model["query_side"]["kind"] == "table"
    for q in QUERIES[:10]:
        by_hand = local.search(model.encode_queries([q]), k=5)
        for idx in (local, remote):
            hits = idx.search(q, k=5)
            assert [h.id for h in hits] == [h.id for h in by_hand]
            assert [h.score for h in hits] == pytest.approx([h.score for h in by_hand], rel=1e-5, abs=1e-6)
    reopened = Index.open(tmp_path / "local")
    assert reopened.query_encoder.query_table is not None
    assert [h.id for h in reopened.search(QUERIES[0], k=5)] == [h.id for h in local.search(QUERIES[0], k=5)]
    for idx in (local, remote, reopened):
        idx.close()


@pytest.mark.slow
def test_cli_idf_from_a_corpus_and_from_an_index(tmp_path):
    """`spladekit idf` over a JSONL corpus (tokens) and over an index (its stored texts, or its vectors); the folder
    is a model every command takes; bad arguments are one-line errors."""
    from typer.testing import CliRunner

    from spladekit import SpladeEncoder
    from spladekit.cli import app
    from spladekit.encode.idf import build_idf_table

    runner = CliRunner()
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(DOCS[:40]))
    )
    r = runner.invoke(app, ["idf", str(corpus), "-o", str(tmp_path / "m1")])
    assert r.exit_code == 0, r.output
    assert "IDF queries over 40 documents (tokens" in r.output
    m1 = SpladeEncoder.load(tmp_path / "m1")
    want, _ = build_idf_table(SpladeEncoder.load(), texts=DOCS[:40])
    np.testing.assert_array_equal(m1.query_table.weights, want.weights)
    r = runner.invoke(app, ["index", str(corpus), "-i", str(tmp_path / "ix"), "-m", str(tmp_path / "m1")])
    assert r.exit_code == 0, r.output
    for df in ("tokens", "vectors"):
        r = runner.invoke(app, ["idf", str(tmp_path / "ix"), "-o", str(tmp_path / f"m-{df}"), "--df", df])
        assert r.exit_code == 0 and f"over 40 documents ({df}" in r.output, r.output
    np.testing.assert_array_equal(SpladeEncoder.load(tmp_path / "m-tokens").query_table.weights, want.weights)
    r = runner.invoke(app, ["search", "vaccine protein", "-i", str(tmp_path / "ix"), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)
    for args, words in (
        (["idf", str(corpus), "-o", str(tmp_path / "m1")], "not an empty folder"),
        (["idf", str(corpus), "-o", str(tmp_path / "m9"), "--df", "bm42"], "unknown --df"),
        (["idf", str(tmp_path / "nowhere"), "-o", str(tmp_path / "m9")], "no such file"),
    ):
        r = runner.invoke(app, args)
        assert r.exit_code != 0 and words in str(r.exception or r.output), (args, r.output, r.exception)
