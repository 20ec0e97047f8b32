"""Evaluation: metric definitions against sentence-transformers' formulas, graded thresholds, RRF, exact search,
BM25, the `spladekit eval` command end to end on a small collection, and its one-line errors."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from spladekit import DataFormatError, InputError, SparseVectors
from spladekit.eval import (
    BM25Baseline,
    compute_metrics,
    evaluate,
    exact_search,
    metric_names,
    per_query_metrics,
    reciprocal_rank_fusion,
)

# --------------------------------------------------------------------------- metric definitions


def _st_metrics(run, relevant):
    """sentence-transformers' own formulas on the same rankings."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    qids = list(relevant)
    ev = InformationRetrievalEvaluator(
        queries={q: q for q in qids},
        corpus={d: d for q in run for d, _ in run[q]},
        relevant_docs=relevant,
        precision_recall_at_k=[1, 3, 5, 10, 100, 1000],
        write_csv=False,
    )
    res = ev.compute_metrics([[{"corpus_id": d, "score": s} for d, s in run[q]] for q in ev.queries_ids])
    out = {f"accuracy@{k}": v for k, v in res["accuracy@k"].items()}
    out |= {f"precision@{k}": v for k, v in res["precision@k"].items()}
    out |= {f"recall@{k}": v for k, v in res["recall@k"].items()}
    out |= {"ndcg@10": res["ndcg@k"][10], "mrr@10": res["mrr@k"][10], "map@100": res["map@k"][100]}
    return out


def test_metrics_equal_sentence_transformers_formulas_on_random_rankings():
    rng = random.Random(7)
    docs = [f"d{i}" for i in range(400)]
    run, qrels = {}, {}
    for q in range(60):
        qid = f"q{q}"
        rel = rng.sample(docs, rng.choice([1, 2, 3, 7, 25]))
        qrels[qid] = dict.fromkeys(rel, 1) | dict.fromkeys(rng.sample(docs, 5), 0) | dict.fromkeys(rel, 1)
        ranked = rng.sample(docs, 300)
        # distinct descending scores, so both sides see the same order
        run[qid] = [(d, 1000.0 - i) for i, d in enumerate(ranked)]
    ours = compute_metrics(run, qrels)
    ref = _st_metrics(run, {q: {d for d, r in v.items() if r > 0} for q, v in qrels.items()})
    assert set(ours) == set(metric_names())
    for name in metric_names():
        assert ours[name] == pytest.approx(ref[name], abs=1e-9), name
    assert 0 < ours["ndcg@10"] < 1 and 0 < ours["recall@100"] < 1


def test_graded_qrels_threshold_and_graded_ndcg():
    qrels = {"q1": {"d1": 2, "d2": 1, "d3": 0}, "q2": {"d9": 1}}
    run = {"q1": [("d2", 3.0), ("d1", 2.0), ("d3", 1.0)], "q2": [("d3", 1.0)]}
    at2 = compute_metrics(run, qrels, threshold=2)
    # q2 has nothing at rel >= 2: only q1 is evaluated
    assert at2["precision@3"] == pytest.approx(1 / 3)
    assert at2["mrr@10"] == pytest.approx(0.5)
    assert at2["map@100"] == pytest.approx(0.5)
    assert at2["accuracy@1"] == 0.0 and at2["accuracy@3"] == 1.0
    # nDCG uses the graded values as gains: DCG (1 + 2/log2 3) over ideal (2 + 1/log2 3)
    ideal = 2 + 1 / np.log2(3)
    assert at2["ndcg@10"] == pytest.approx((1 + 2 / np.log2(3)) / ideal)
    at1 = compute_metrics(run, qrels, threshold=1)
    assert at1["accuracy@1"] == pytest.approx(0.5)  # q1 hit at rank 1, q2 missed
    assert at1["recall@3"] == pytest.approx(0.5)


def test_query_missing_from_run_counts_as_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    run = {"q1": [("a", 1.0)]}  # q2 returned nothing
    pq = per_query_metrics(run, qrels)
    assert pq["ndcg@10"] == {"q1": 1.0, "q2": 0.0}
    assert compute_metrics(run, qrels)["recall@10"] == 0.5


def test_run_order_is_used_for_ties():
    qrels = {"q": {"b": 1}}
    # equal scores: the given order decides (trec_eval alone would rank "b" first by reverse docno)
    assert compute_metrics({"q": [("a", 1.0), ("b", 1.0)]}, qrels)["mrr@10"] == 0.5
    assert compute_metrics({"q": [("b", 1.0), ("a", 1.0)]}, qrels)["mrr@10"] == 1.0


# --------------------------------------------------------------------------- fusion, exact search, BM25


def test_reciprocal_rank_fusion():
    a = {"q": [("x", 9.0), ("y", 8.0), ("z", 7.0)]}
    b = {"q": [("z", 3.0), ("x", 2.0)], "only_b": [("w", 1.0)]}
    fused = reciprocal_rank_fusion([a, b], c=60)
    scores = dict(fused["q"])
    assert scores["x"] == pytest.approx(1 / 61 + 1 / 62)
    assert scores["z"] == pytest.approx(1 / 63 + 1 / 61)
    assert scores["y"] == pytest.approx(1 / 62)
    assert [d for d, _ in fused["q"]] == ["x", "z", "y"]
    assert fused["only_b"] == [("w", pytest.approx(1 / 61))]
    assert len(reciprocal_rank_fusion([a, b], k=2)["q"]) == 2


def test_exact_search_matches_dense_ranking():
    rng = np.random.default_rng(0)
    dense_d = rng.random((50, 40)) * (rng.random((50, 40)) < 0.2)
    dense_q = rng.random((6, 40)) * (rng.random((6, 40)) < 0.3)
    dense_d[7] = dense_d[3]  # an exact tie: broken by id
    ids = [f"doc{i:02d}" for i in range(50)]
    hits = exact_search(SparseVectors.from_dense(dense_q), SparseVectors.from_dense(dense_d), ids, k=10)
    full = dense_q.astype(np.float32) @ dense_d.astype(np.float32).T
    for qi, ranking in enumerate(hits):
        expect = sorted((i for i in range(50) if full[qi, i] > 0), key=lambda i: (-full[qi, i], ids[i]))[:10]
        assert [d for d, _ in ranking] == [ids[i] for i in expect]
        assert [s for _, s in ranking] == pytest.approx([full[qi, i] for i in expect], rel=1e-5)
    with pytest.raises(InputError, match="document ids"):
        exact_search(SparseVectors.from_dense(dense_q), SparseVectors.from_dense(dense_d), ids[:3])


def test_bm25_ranks_the_matching_document_first():
    bm = BM25Baseline()
    bm.index(["a", "b", "c"], ["Cats are sitting on mats", "Dogs run in parks", "Stock markets fell sharply"])
    res = bm.search(["cat sits", "dog running", "zebra"], k=10)
    assert res[0][0][0] == "a" and res[1][0][0] == "b"
    assert res[2] == []  # no term in common: nothing, not zero-score filler
    assert "stemmer" in bm.settings()


# --------------------------------------------------------------------------- end to end on a small collection

DOCS = [
    ("d1", "Vitamin D", "Vitamin D supplements increase bone mineral density in elderly women."),
    ("d2", "Influenza", "Annual influenza vaccination reduces hospital admissions for pneumonia."),
    ("d3", "", "Smoking is the leading cause of lung cancer worldwide."),
    ("d4", "Statins", "Statins lower LDL cholesterol and reduce the risk of heart attack."),
    ("d5", "Sleep", "Short sleep duration is associated with obesity in children."),
    ("d6", "Exercise", "Aerobic exercise improves memory in older adults."),
    ("d7", "Malaria", "Bed nets treated with insecticide prevent malaria in Africa."),
    ("d8", "Antibiotics", "Overuse of antibiotics drives bacterial resistance."),
]
QUERIES = [
    ("q1", "does vitamin d help bones"),
    ("q2", "flu vaccine and pneumonia"),
    ("q3", "what causes lung cancer"),
    ("q4", "cholesterol drugs and heart attacks"),
    ("q5", "unjudged query about sleep"),
]
QRELS = [("q1", "d1", 1), ("q2", "d2", 2), ("q3", "d3", 1), ("q4", "d4", 1), ("q4", "d8", 0)]


def _write_collection(root: Path, qrels=QRELS, split="test", docs=DOCS) -> Path:
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    with open(root / "corpus.jsonl", "w") as f:
        for i, t, x in docs:
            f.write(json.dumps({"_id": i, "title": t, "text": x}) + "\n")
    with open(root / "queries.jsonl", "w") as f:
        for i, x in QUERIES:
            f.write(json.dumps({"_id": i, "text": x}) + "\n")
    with open(root / "qrels" / f"{split}.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, d, r in qrels:
            f.write(f"{q}\t{d}\t{r}\n")
    return root


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return _write_collection(tmp_path_factory.mktemp("small"))


def test_evaluate_writes_every_output_and_index_equals_exact(small, encoder, tmp_path):
    out = tmp_path / "out"
    res = evaluate(small, encoder=encoder, output_dir=out, k=5)
    exact = evaluate(small, encoder=encoder, retriever="exact", bm25=False, k=5)
    assert res.runs["splade"].keys() == exact.runs["splade"].keys()
    for q, hits in res.runs["splade"].items():
        assert [d for d, _ in hits] == [d for d, _ in exact.runs["splade"][q]]
        assert [s for _, s in hits] == pytest.approx([s for _, s in exact.runs["splade"][q]], rel=1e-5)
    assert res.metrics["splade"] == exact.metrics["splade"]
    rep = json.loads((out / "metrics.json").read_text())
    assert rep["dataset"]["queries_evaluated"] == 4  # q5 has no judgement
    assert set(rep["systems"]) == {"splade", "bm25", "rrf"}
    assert rep["systems"]["splade"]["metrics"]["accuracy@5"] > 0.5
    assert rep["model"]["weights_sha256"] == encoder.weights_hash and rep["model"]["max_length"] > 0
    for key in ("corpus_sha256", "queries_sha256", "qrels_sha256"):
        assert len(rep["dataset"][key]) == 64
    assert rep["environment"]["spladekit"]
    assert rep["sparsity"]["corpus_active_dims"] == pytest.approx(float(np.mean(res.doc_active_dims)))
    assert rep["index"]["bytes_on_disk"] > 0 and rep["timing"]["query_latency_p50_ms"] > 0
    assert rep["dataset"]["qrels_graded"] is True
    for name in ("run.splade.trec", "run.bm25.trec", "run.rrf.trec"):
        lines = (out / name).read_text().splitlines()
        q, q0, d, rank, score, tag = lines[0].split()
        assert q0 == "Q0" and rank == "1" and tag.startswith("spladekit-")
        assert len({ln.split()[0] for ln in lines}) == 4 and all(len(ln.split()) == 6 for ln in lines)
    for png in ("ndcg_per_query.png", "doc_active_dims.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "| ndcg@10 |" in md and encoder.weights_hash in md and rep["dataset"]["qrels_sha256"] in md
    assert "rel >= 1" in md
    assert not list(out.glob(".*"))  # no temporary files left behind


def _cli(argv, capsys):
    from spladekit.cli import main

    old = sys.argv
    sys.argv = ["spladekit", *map(str, argv)]
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code or 0
    finally:
        sys.argv = old
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_cli_json_index_reuse_and_threshold(small, tmp_path, capsys):
    index = tmp_path / "idx"
    code, out, err = _cli(["eval", small, "--index", index, "--output", tmp_path / "o1", "--json"], capsys)
    assert code == 0, err
    first = json.loads(out)
    assert first["timing"]["corpus_encode_s"] is not None and (index / "manifest.json").exists()
    code, out, err = _cli(
        [
            "eval",
            small,
            "--index",
            index,
            "--output",
            tmp_path / "o2",
            "--json",
            "--relevance-threshold",
            "2",
        ],
        capsys,
    )
    assert code == 0, err
    second = json.loads(out)
    assert second["timing"]["corpus_encode_s"] is None  # reused, not re-encoded
    assert second["relevance"]["binary_threshold"] == 2
    assert second["dataset"]["queries_evaluated"] == 1  # only q2 has rel >= 2
    code, out, err = _cli(["eval", small, "--index", index, "--output", tmp_path / "o3", "--no-bm25"], capsys)
    assert code == 0, err
    assert "SPLADE" in out and "BM25" not in out and "report:" in out


def test_cli_refuses_an_index_of_another_corpus(small, tmp_path, capsys):
    index = tmp_path / "idx"
    assert (
        _cli(["eval", small, "--index", index, "--output", tmp_path / "o", "--json", "--no-bm25"], capsys)[0]
        == 0
    )
    other = _write_collection(tmp_path / "other", docs=DOCS + [("d9", "", "An extra document.")])
    code, _, err = _cli(["eval", other, "--index", index, "--output", tmp_path / "o2"], capsys)
    assert code == 2 and "not the 9 of this corpus" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "qrels_text, where, message",
    [
        ("query-id\tcorpus-id\tscore\nq1\tnope\t1\n", ":2:", "document id 'nope' is not in corpus.jsonl"),
        (
            "query-id\tcorpus-id\tscore\nq1\td1\t1\nqX\td1\t1\n",
            ":3:",
            "query id 'qX' is not in queries.jsonl",
        ),
        ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2 d2 1\n", ":3:", "expected 3 tab-separated fields"),
        ("query-id\tcorpus-id\tscore\nq1\td1\thigh\n", ":2:", "is not a number"),
        ("query-id\tcorpus-id\tscore\nq1\td1\t0\n", "test.tsv", "no judged relevant document"),
    ],
)
def test_cli_bad_qrels_are_one_line_errors(small, tmp_path, capsys, qrels_text, where, message):
    root = _write_collection(tmp_path / "c")
    (root / "qrels" / "test.tsv").write_text(qrels_text)
    code, _, err = _cli(["eval", root, "--output", tmp_path / "o"], capsys)
    assert code == 2
    assert where in err and message in err and "test.tsv" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_cli_errors_for_threshold_without_judged_query_and_bad_corpus(small, tmp_path, capsys):
    code, _, err = _cli(["eval", small, "--relevance-threshold", "3", "--output", tmp_path / "o"], capsys)
    assert code == 2 and "test.tsv" in err and "no query has a document judged at relevance >= 3" in err
    root = _write_collection(tmp_path / "c")
    with open(root / "corpus.jsonl", "a") as f:
        f.write("{not json\n")
    code, _, err = _cli(["eval", root, "--output", tmp_path / "o"], capsys)
    assert code == 2 and f"corpus.jsonl:{len(DOCS) + 1}:" in err and "invalid JSON" in err
    code, _, err = _cli(["eval", small, "--split", "dev", "--output", tmp_path / "o"], capsys)
    assert code == 2 and "dev.tsv: no such file" in err
    code, _, err = _cli(["eval", small, "--relevance-threshold", "0", "--output", tmp_path / "o"], capsys)
    assert code == 2 and "relevance threshold" in err
    assert not (tmp_path / "o").exists()
    (tmp_path / "file").write_text("x")
    code, _, err = _cli(["eval", small, "--output", tmp_path / "file"], capsys)
    assert code == 2 and "exists and is not a folder" in err


def test_evaluate_rejects_misaligned_corpus_vectors(small, encoder):
    with pytest.raises(InputError, match="corpus_vectors has 2 rows for 8 documents"):
        evaluate(small, encoder=encoder, corpus_vectors=encoder.encode_documents(["a", "b"]))
    with pytest.raises(DataFormatError):
        bad = _write_collection(Path(small).parent / "bad_ids", qrels=[("q1", "zzz", 1)])
        evaluate(bad, encoder=encoder)


# --------------------------------------------------------------------------- published runs on TREC DL 2019

DL19_REFERENCE = {  # ../shared/data/msmarco-trecdl2019-pool/SOURCE.md, official qrels, trec_eval-equivalent
    "splade_p_p_ensemble_distil.top100.trec": {"ndcg@10": 0.7308, "mrr@10": 0.9186, "recall@100": 0.6390},
    "bm25.top100.trec": {"ndcg@10": 0.5058, "mrr@10": 0.7024, "recall@100": 0.4910},
}


@pytest.mark.parametrize("run_name", sorted(DL19_REFERENCE))
def test_published_dl19_runs_reproduce_their_reference_figures(shared_data, run_name):
    """nDCG graded, MRR@10 and R@100 at rel >= 2, as TREC DL reports them."""
    from spladekit.data import read_qrels
    from spladekit.eval import read_run

    root = shared_data / "msmarco-trecdl2019-pool"
    if not (root / "runs" / run_name).is_file():
        pytest.skip(f"{root / 'runs' / run_name} not present")
    got = compute_metrics(
        read_run(root / "runs" / run_name), read_qrels(root / "official_qrels" / "test.tsv"), 2
    )
    for name, want in DL19_REFERENCE[run_name].items():
        assert got[name] == pytest.approx(want, abs=1e-4), name


def test_read_run_errors_name_file_and_line(tmp_path):
    from spladekit.eval import read_run

    p = tmp_path / "bad.trec"
    p.write_text("q1 Q0 d1 1 2.5 tag\nq1 Q0 d2 two 1.0 tag\n")
    with pytest.raises(DataFormatError, match=r"bad.trec:2: rank must be an integer"):
        read_run(p)
    p.write_text("q1 Q0 d1 1 2.5\n")
    with pytest.raises(DataFormatError, match=r"bad.trec:1: expected 6 fields"):
        read_run(p)


def test_empty_index_left_by_an_interrupted_run_is_filled(small, encoder, tmp_path):
    from spladekit.index import Index

    Index.create(tmp_path / "idx", encoder).close()
    res = evaluate(small, encoder=encoder, index_dir=tmp_path / "idx", bm25=False, k=5)
    assert res.report["timing"]["index_build_s"] is not None and res.report["index"]["documents"] == len(DOCS)
    assert res.report["index"]["path"] == str(tmp_path / "idx")
