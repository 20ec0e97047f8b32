"""Exactness on real splade-tiny vectors (scifact) and the index CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_index import assert_exact, brute
from typer.testing import CliRunner

from spladekit.cli import app
from spladekit.data import read_records
from spladekit.index import Index

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scifact(shared_data, encoder):
    """600 scifact documents and 60 test queries, encoded with the bundled model."""
    docs = list(read_records(shared_data / "scifact" / "corpus.jsonl"))[:600]
    queries = list(read_records(shared_data / "scifact" / "queries.jsonl", kind="query"))[:60]
    dv = encoder.encode_documents([d.full_text for d in docs], batch_size=32)
    qv = encoder.encode_queries([q.text for q in queries])
    return docs, dv, queries, qv


def test_exact_on_real_scifact_vectors(scifact, encoder, tmp_path):
    docs, dv, queries, qv = scifact
    ids = [d.id for d in docs]
    idx = Index.create(tmp_path / "sf", encoder)
    idx.add_vectors(ids[:300], dv[:300], texts=[d.full_text for d in docs[:300]])
    idx.commit()
    idx.add_vectors(ids[300:], dv[300:], texts=[d.full_text for d in docs[300:]])
    idx.commit()
    for k in (10, 100):
        batch = idx.search_batch(qv, k=k)
        for i in range(len(queries)):
            assert_exact(batch[i], brute(dv, qv[i]), ids, k)
    # a string query is encoded with the index's encoder: same result as the precomputed vector
    assert [h.id for h in idx.search(queries[0].text, k=5)] == [h.id for h in idx.search(qv[0], k=5)]
    # explanations sum to the score on real vectors too
    for h in idx.search(qv[1], k=3, explain=True):
        assert sum(p for *_, p in h.explanation) == pytest.approx(h.score, rel=1e-4)


def test_approx_and_compact_report_recall_on_real_vectors(scifact, encoder, tmp_path):
    docs, dv, queries, qv = scifact
    ids = [d.id for d in docs]
    idx = Index.create(tmp_path / "c", encoder, compact=True)
    idx.add_vectors(ids, dv)
    idx.commit()
    exact = Index.create(tmp_path / "e", encoder)
    exact.add_vectors(ids, dv)
    exact.commit()
    rec = np.mean(
        [
            len({h.id for h in a} & {h.id for h in b}) / 10
            for a, b in zip(idx.search_batch(qv, k=10), exact.search_batch(qv, k=10))
        ]
    )
    assert rec >= 0.9
    rep = exact.measure_approx(qv, k=10, approx=0.7, sample=60)
    assert 0.5 <= rep["recall"] < 1.0 or rep["recall"] == 1.0


def test_cli_index_search_info_and_reindex(tmp_path, shared_data):
    runner = CliRunner()
    src = tmp_path / "docs"
    (src / "notes").mkdir(parents=True)
    (src / "cat.txt").write_text("The cat sat on the mat and purred.")
    (src / "notes" / "soup.md").write_text("# Soup\nA recipe for tomato soup with basil.")
    (src / "markets.txt").write_text("Stock markets fell sharply on Monday.")
    ix = tmp_path / "ix"
    r = runner.invoke(app, ["index", str(src), "--index", str(ix)])
    assert r.exit_code == 0, r.output
    assert "3 added" in r.output
    r = runner.invoke(app, ["search", "tomato soup recipe", "-i", str(ix), "-k", "2", "--json", "--explain"])
    hits = json.loads(r.output)
    assert hits[0]["id"] == "notes/soup.md" and hits[0]["metadata"]["type"] == "md"
    assert sum(e["product"] for e in hits[0]["explanation"]) == pytest.approx(hits[0]["score"], rel=1e-4)
    r = runner.invoke(app, ["search", "tomato soup recipe", "-i", str(ix), "--filter", "type=txt", "--json"])
    assert all(h["metadata"]["type"] == "txt" for h in json.loads(r.output))
    r = runner.invoke(app, ["search", "cat", "-i", str(ix), "-k", "3"])
    assert r.exit_code == 0 and "cat.txt" in r.output
    # re-running updates changed documents and adds new ones; unchanged ones are not re-encoded
    (src / "markets.txt").write_text("Stock markets rose on Tuesday.")
    (src / "new.txt").write_text("Penguins live in Antarctica.")
    r = runner.invoke(app, ["index", str(src), "--index", str(ix)])
    assert "1 added, 1 updated, 2 unchanged" in r.output, r.output
    idx = Index.open(ix)
    assert len(idx) == 4 and idx.get("markets.txt")["text"] == "Stock markets rose on Tuesday."
    r = runner.invoke(app, ["info", "-i", str(ix), "--json"])
    info = json.loads(r.output)
    assert info["documents"] == 4 and info["model"]["name"] and info["postings"] > 0
    # a JSONL source
    jl = tmp_path / "c.jsonl"
    lines = [
        json.dumps({"id": f"j{i}", "text": t, "metadata": {"n": i}})
        for i, t in enumerate(["alpha beta", "gamma"])
    ]
    jl.write_text("\n".join(lines))
    r = runner.invoke(app, ["index", str(jl), "--index", str(tmp_path / "j")])
    assert "2 added" in r.output
    r = runner.invoke(app, ["search", "gamma", "-i", str(tmp_path / "j"), "--filter", "n=1", "--json"])
    assert [h["id"] for h in json.loads(r.output)] == ["j1"]


def test_cli_errors_are_one_line(tmp_path):
    from spladekit.errors import SpladekitError

    runner = CliRunner()
    r = runner.invoke(app, ["search", "q", "-i", str(tmp_path / "missing")])
    assert isinstance(r.exception, SpladekitError) and "no index here" in str(r.exception)
    r = runner.invoke(app, ["index", str(tmp_path / "nothing"), "--index", str(tmp_path / "x")])
    assert isinstance(r.exception, SpladekitError) and "no such file" in str(r.exception)
