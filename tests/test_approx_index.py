"""Approximate search (Seismic-style blocks per segment): real documents with exact scores, the recall target
held on held-out queries after tuning and after edits, the structure kept by commits, merges and reopening,
damage caught by ``check``, bad input refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from spladekit.cli import app
from spladekit.errors import InputError
from spladekit.index import Index, Plan
from spladekit.index.local.approx_build import BuildSettings
from spladekit.index.local.approx_files import FILES
from spladekit.sparse import SparseVectors

N = 4000


def topic_vectors(rng, n: int, dim: int, nnz: int = 40, topics: int = 40) -> SparseVectors:
    """Documents of topics (each favours its own terms, weighted up) over power-law background terms: term
    co-occurrence, as real SPLADE vectors have, is what clustering exploits."""
    p = 1.0 / np.arange(1, dim + 1) ** 1.1
    p /= p.sum()
    own = [rng.choice(dim, 30, replace=False) for _ in range(topics)]
    rows = []
    for _ in range(n):
        a = rng.choice(own[rng.integers(topics)], size=nnz // 3, replace=False)
        b = rng.choice(dim, size=rng.poisson(2 * nnz // 3) + 1, p=p)
        t = np.unique(np.concatenate([a, b]))
        w = rng.gamma(1.5, 0.6, len(t)).astype(np.float32)
        w[np.isin(t, a)] *= 2
        rows.append((t, w))
    return SparseVectors.from_rows(rows, dim)


def brute(docs: SparseVectors, q: SparseVectors) -> np.ndarray:
    return (q.to_scipy() @ docs.to_scipy().T).toarray().astype(np.float32)[0]


def recall(idx, qs: SparseVectors, approx, k: int = 10) -> float:
    exact = idx.search_batch(qs, k=k, threads=1)
    appr = idx.search_batch(qs, k=k, threads=1, approx=approx)
    return float(
        np.mean([len({h.id for h in a} & {h.id for h in e}) / len(e) for a, e in zip(appr, exact) if e])
    )


@pytest.fixture(scope="module")
def corpus(light_encoder):
    rng = np.random.default_rng(11)
    return topic_vectors(rng, N + 1600, light_encoder.vocab_size)


@pytest.fixture(scope="module")
def tuned(light_encoder, tmp_path_factory, corpus):
    """An index of N documents in two segments, tuned on its own documents; held-out queries come after N."""
    path = tmp_path_factory.mktemp("approx") / "idx"
    idx = Index.create(path, encoder=light_encoder)
    ids = [f"d{i}" for i in range(N)]
    half = N // 2
    idx.add_vectors(ids[:half], corpus[np.arange(half)], metadata=[{"g": i % 2} for i in range(half)])
    idx.commit()
    idx.add_vectors(ids[half:], corpus[np.arange(half, N)], metadata=[{"g": i % 2} for i in range(half, N)])
    idx.commit()
    rep = idx.tune(sample=200, exact_if_faster=False)  # approximate rows even where exact is faster
    yield idx, rep
    idx.close()


def held_out(corpus, lo=N, n=300) -> SparseVectors:
    return corpus[np.arange(lo, lo + n)]


def test_hits_are_real_documents_with_exact_scores(tuned, corpus):
    idx, _ = tuned
    docs = corpus[np.arange(N)]
    qs = held_out(corpus, n=40)
    for i in range(len(qs)):
        hits = idx.search(qs[i], k=10, approx=0.9)
        scores = brute(docs, qs[i])
        assert len({h.id for h in hits}) == len(hits) == 10
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        for h in hits:
            assert h.score == pytest.approx(float(scores[int(h.id[1:])]), rel=1e-5)


def test_approximate_path_really_prunes(tuned, corpus):
    """The cheapest knobs read far fewer entries than the whole lists and lose some recall: the approximate
    kernel runs (a test that could not fail if search fell back to exact)."""
    idx, _ = tuned
    segs, allowed = idx._prepare_filter(None)
    qs = held_out(corpus, n=50)
    lost, work, full = 0, 0, 0
    for i in range(len(qs)):
        t, w = qs.row(i)
        exact = {(si, d) for _, si, d in idx._top_k(segs, allowed, t, w, 10)}
        raw, got = idx._approx_top_k(segs, allowed, t, w, 10, Plan(1, 0.5))
        lost += len(exact - {(si, d) for _, si, d in raw})
        work += got
        full += sum(int(s.term_ptr[0, x + 1] - s.term_ptr[0, x]) for s in segs for x in t)
    assert lost > 0 and work < full


def test_tune_stores_a_row_per_target_and_recall_holds_on_held_out_queries(tuned, corpus):
    idx, rep = tuned
    table = {r["recall"]: r for r in rep["table"]}
    assert {0.9, 0.95} <= set(table) and rep["grid"][0]["query_terms"] is None  # row 0: exact search
    assert all(idx._approx_plan(t) is not None for t in (0.9, 0.95))
    assert table[0.9]["work"] <= table[0.95]["work"]
    again = Index.open(idx.path)  # the table is stored in the index
    assert again._manifest["approx"]["table"] == rep["table"]
    again.close()
    qs = held_out(corpus)
    for target in (0.9, 0.95, 0.99):
        got = recall(idx, qs, target)
        assert got >= target, (target, got)
        m = idx.measure_approx(qs, approx=target, sample=300)
        assert m["recall"] == pytest.approx(got) and m["target"] == target


def test_adds_and_deletes_after_tuning_keep_recall(light_encoder, tmp_path, corpus):
    idx = Index.create(tmp_path / "idx", encoder=light_encoder)
    idx.add_vectors([f"d{i}" for i in range(N)], corpus[np.arange(N)])
    idx.commit()
    idx.tune(sample=200, exact_if_faster=False)
    idx.add_vectors([f"d{i}" for i in range(N, N + 1000)], corpus[np.arange(N, N + 1000)])
    dead = [f"d{i}" for i in range(0, N, 5)]
    idx.delete(dead)
    idx.commit()
    qs = held_out(corpus, lo=N + 1000, n=300)
    dead_set = set(dead)
    for i in range(len(qs)):
        assert not dead_set & {h.id for h in idx.search(qs[i], k=10, approx=0.9)}
    for target in (0.9, 0.95):
        assert recall(idx, qs, target) >= target
    idx.close()


def test_commit_merge_and_reopen_keep_the_structure(light_encoder, tmp_path, corpus):
    idx = Index.create(tmp_path / "idx", encoder=light_encoder)
    for s in range(0, 1500, 500):
        idx.add_vectors([f"d{i}" for i in range(s, s + 500)], corpus[np.arange(s, s + 500)])
        idx.commit()
    assert len(idx._segments) == 3 and all(seg.ax is not None for seg in idx._segments)
    qs = held_out(corpus, n=30)
    plan = Plan(8, 1.0)
    before = [idx._approx_top_k(*idx._prepare_filter(None), *qs.row(i), 10, plan)[0] for i in range(30)]
    idx.delete(["d3"])
    idx.optimize()
    assert len(idx._segments) == 1 and idx._segments[0].ax is not None
    assert idx._segments[0].meta["approx"]["kept"] > 0
    merged = [[h.id for h in idx.search(qs[i], k=10, approx=0.95)] for i in range(30)]
    idx.close()
    again = Index.open(tmp_path / "idx")
    assert again._segments[0].ax is not None
    assert [[h.id for h in again.search(qs[i], k=10, approx=0.95)] for i in range(30)] == merged
    assert all("d3" not in ids for ids in merged)
    assert all(len(r) == 10 for r in before)
    again.close()


def test_tune_leaves_targets_exact_when_exact_search_is_faster(tuned):
    from spladekit.index.local.tuning import choose

    grid = [
        {"query_terms": None, "heap_factor": None, "recall": 1.0, "work": None, "ms": 1.0},
        {"query_terms": 8, "heap_factor": 1.0, "recall": 0.93, "lower": 0.92, "work": 100.0, "ms": 0.5},
        {"query_terms": 16, "heap_factor": 2.0, "recall": 0.97, "lower": 0.96, "work": 300.0, "ms": 1.5},
    ]
    assert [(r["recall"], r["query_terms"]) for r in choose(grid, (0.9, 0.95, 0.99))] == [(0.9, 8)]
    slow = [(r["recall"], r["query_terms"]) for r in choose(grid, (0.9, 0.95, 0.99), exact_if_faster=False)]
    assert slow == [(0.9, 8), (0.95, 16)]
    idx, _ = tuned
    assert idx._approx_plan(0.999) is None  # above every stored row: exact


def test_filter_falls_back_to_exact(tuned, corpus):
    idx, _ = tuned
    qs = held_out(corpus, n=20)
    for i in range(len(qs)):
        a = idx.search(qs[i], k=10, filter={"g": 1}, approx=0.9)
        e = idx.search(qs[i], k=10, filter={"g": 1})
        assert [h.id for h in a] == [h.id for h in e]


def test_index_without_the_structure_searches_exactly(light_encoder, tmp_path, corpus):
    idx = Index.create(tmp_path / "idx", encoder=light_encoder, approx=False)
    idx.add_vectors([f"d{i}" for i in range(500)], corpus[np.arange(500)])
    idx.commit()
    assert not any(f.name.startswith("ax_") for f in idx._segments[0].files())
    q = held_out(corpus, n=1)
    assert [h.id for h in idx.search(q, approx=0.9)] == [h.id for h in idx.search(q)]
    with pytest.raises(InputError, match="no segment has an approximate structure"):
        idx.tune()
    idx.close()
    small = Index.create(tmp_path / "custom", encoder=light_encoder, approx=BuildSettings(block=8, alpha=0.3))
    small.add_vectors([f"d{i}" for i in range(300)], corpus[np.arange(300)])
    small.commit()
    assert small._segments[0].meta["approx"]["block"] == 8
    small.close()


@pytest.mark.parametrize("bad", [1.5, 0, -0.2, "0.95", float("nan")])
def test_bad_approx_is_one_line(tuned, corpus, bad):
    idx, _ = tuned
    with pytest.raises(InputError, match="approx must be a recall target") as e:
        idx.search(held_out(corpus, n=1), approx=bad)
    assert "\n" not in str(e.value)


def test_bad_tune_arguments(tuned):
    idx, _ = tuned
    with pytest.raises(InputError, match="recall must be a target"):
        idx.tune(recall=1.5)
    with pytest.raises(InputError, match="sample must be"):
        idx.tune(sample=0)


@pytest.mark.parametrize("name", ["ax_cq.npy", "ax_bdocs.npy"])
def test_check_catches_a_damaged_approx_file(light_encoder, tmp_path, corpus, name):
    assert name in FILES
    path = tmp_path / "idx"
    idx = Index.create(path, encoder=light_encoder)
    idx.add_vectors([f"d{i}" for i in range(400)], corpus[np.arange(400)])
    idx.commit()
    folder = idx._segments[0].folder
    idx.close()
    assert Index.open(path).check(deep=True).ok
    f = folder / name
    raw = bytearray(f.read_bytes())
    raw[-3] ^= 0xFF
    f.write_bytes(bytes(raw))
    rep = Index.open(path).check(deep=True)
    assert not rep.ok and any(name in p for p in rep.problems)
    r = CliRunner().invoke(app, ["check", "-i", str(path), "--deep"])
    assert r.exit_code == 1 and name in r.output


def test_cli_tune(light_encoder, tmp_path, corpus):
    path = tmp_path / "idx"
    idx = Index.create(path, encoder=light_encoder)
    idx.add_vectors([f"d{i}" for i in range(600)], corpus[np.arange(600)])
    idx.commit()
    idx.close()
    r = CliRunner().invoke(app, ["tune", "-i", str(path), "--recall", "0.97", "--sample", "50"])
    assert r.exit_code == 0, r.output
    assert "recall >= 0.97" in r.output
    table = Index.open(path)._manifest["approx"]["table"]
    assert 0.97 in {row["recall"] for row in table} or "searches at that target are exact" in r.output
    r = CliRunner().invoke(app, ["tune", "-i", str(path), "--sample", "50", "--always-approx"])
    assert r.exit_code == 0, r.output
    rows = Index.open(path)._manifest["approx"]["table"]
    assert all(f"{row['lower']:.4f}" in r.output and row["lower"] >= row["recall"] for row in rows)
    assert rows or "no setting reached it" in r.output
    bad = CliRunner().invoke(app, ["tune", "-i", str(path), "--recall", "1.5"])
    assert isinstance(bad.exception, InputError) and "--recall must be in (0, 1)" in str(bad.exception)
