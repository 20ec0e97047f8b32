"""Teacher ensembles (issue 17): per-row normalisation, weighted combination, weights fitted on held-out queries, the
teacher report's figures, the model-backed scorers (SPLADE dot product, a tiny cross-encoder), BM25 as a scorer and
as a second mining retriever, and the `teacher` / `mine` commands end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from _toy_beir import DOCS, QRELS, QUERIES, write_beir
from typer.testing import CliRunner

from spladekit.errors import DataFormatError, InputError, SpladekitError
from spladekit.train import mine_negatives, read_rows
from spladekit.train.ensemble import ScoreTable, combine, normalise, parse_weights
from spladekit.train.ensemble_fit import fit_weights, weight_grid
from spladekit.train.ensemble_run import score_with_ensemble
from spladekit.train.mine import merge_negatives
from spladekit.train.rows import TrainRow, write_rows
from spladekit.train.scorers import BM25Teacher, parse_scorers
from spladekit.train.teacher_report import (
    build_report,
    candidate_gains,
    format_report,
    ndcg_per_row,
    pairwise_counts,
)


@pytest.fixture
def beir(tmp_path) -> Path:
    return write_beir(tmp_path / "beir")


def _table(**scores) -> ScoreTable:
    return ScoreTable.from_lists(scores)


# --- normalisation and combination -------------------------------------------------------------------------------


def test_normalisation_maths_per_row_with_ragged_rows():
    s = np.array([[1.0, 2.0, 3.0, 6.0], [5.0, 5.0, np.nan, np.nan], [0.0, 10.0, 4.0, np.nan]])
    z = normalise(s, "zscore")
    row = np.array([1.0, 2.0, 3.0, 6.0])
    assert z[0] == pytest.approx((row - 3.0) / math.sqrt(3.5))  # mean 3, population variance (4+1+0+9)/4
    assert z[1, :2].tolist() == [0.0, 0.0]  # all equal: 0, not NaN
    assert np.isnan(z[1, 2:]).all() and np.isnan(z[2, 3])  # pads stay pads
    third = np.array([0.0, 10.0, 4.0])
    assert z[2, :3] == pytest.approx((third - third.mean()) / third.std())
    mm = normalise(s, "minmax")
    assert mm[0].tolist() == pytest.approx([0.0, 0.2, 0.4, 1.0])
    assert mm[1, :2].tolist() == [0.0, 0.0]
    assert mm[2, :3].tolist() == pytest.approx([0.0, 1.0, 0.4])
    none = normalise(s, "none")
    assert np.array_equal(none[~np.isnan(s)], s[~np.isnan(s)])
    with pytest.raises(InputError, match="unknown normalisation 'l2'"):
        normalise(s, "l2")


def test_weights_change_the_ranking():
    # scorer a prefers candidate 1, scorer b candidate 0 (the positive)
    t = _table(a=[[0.0, 1.0, 0.5]], b=[[10.0, 0.0, 5.0]])
    only_a = combine(t, [1, 0], "zscore")[0]
    only_b = combine(t, [0, 1], "zscore")[0]
    assert int(np.argmax(only_a)) == 1 and int(np.argmax(only_b)) == 0
    # z-scores of a = [-1.2247, 1.2247, 0], of b = [1.2247, -1.2247, 0]; 1·a + 2·b puts the positive first
    mixed = combine(t, [1, 2], "zscore")[0]
    assert mixed == pytest.approx([1.2247449, -1.2247449, 0.0], abs=1e-6)
    assert parse_weights("1, 0.5", ["a", "b"]).tolist() == [1.0, 0.5]
    with pytest.raises(InputError, match="3 weights for 2 scorers"):
        parse_weights("1,1,1", ["a", "b"])
    with pytest.raises(InputError, match="comma-separated numbers"):
        parse_weights("1;2", ["a", "b"])
    with pytest.raises(InputError, match="every weight is 0"):
        parse_weights("0,0", ["a", "b"])
    with pytest.raises(InputError, match="'b' must be a finite number ≥ 0"):
        parse_weights("1,-1", ["a", "b"])


# --- the report's figures ----------------------------------------------------------------------------------------


def test_report_figures_on_a_hand_checkable_case():
    mask = np.array([[True, True, True], [True, True, True], [True, True, False]])
    gains = np.array([[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]])
    # row 0: positive first; row 1: positive third; row 2: positive tied with the one negative
    scores = np.array([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 1.0, np.nan]])
    nd = ndcg_per_row(scores, gains, mask)
    assert nd[0] == pytest.approx(1.0)
    assert nd[1] == pytest.approx(1 / math.log2(4))  # rank 3: 0.5
    assert nd[2] == pytest.approx((1 + 1 / math.log2(3)) / 2)  # tie of places 1-2: mean discount
    right, pairs = pairwise_counts(scores, gains, mask)
    assert pairs == 5 and right == pytest.approx(2 + 0 + 0.5)
    # graded gains: the ideal order is 2, 1, 0
    g2 = np.array([[1.0, 2.0, 0.0]])
    nd2 = ndcg_per_row(np.array([[3.0, 2.0, 1.0]]), g2, np.ones((1, 3), bool))
    ideal = 2 + 1 / math.log2(3)
    assert nd2[0] == pytest.approx((1 + 2 / math.log2(3)) / ideal)
    assert pairwise_counts(np.array([[3.0, 2.0, 1.0]]), g2, np.ones((1, 3), bool)) == (2.0, 3)

    t = ScoreTable(["a", "b"], {"a": scores, "b": -np.nan_to_num(scores)}, mask)
    b_scores = np.where(mask, -np.nan_to_num(scores), np.nan)
    t.scores["b"] = b_scores
    rep = build_report(t, gains, [1.0, 0.0], "none", queries=3)
    assert rep["systems"]["a"]["ndcg@10"] == pytest.approx(float(nd.mean()))
    assert rep["systems"]["a"]["pairwise_accuracy"] == pytest.approx(2.5 / 5)
    assert rep["systems"]["ensemble"] == rep["systems"]["a"]  # weight 0 on b
    assert rep["systems"]["b"]["pairwise_accuracy"] == pytest.approx(2.5 / 5)  # reversed: 0 + 2 + 0.5
    text = format_report(rep)
    assert "| a | " in text and "| ensemble |" in text and "3 held-out queries" in text


def test_gains_from_qrels_and_rows_without_ids():
    rows = [
        TrainRow(
            "q",
            "p",
            ["n1", "n2"],
            extra={"query_id": "q1", "positive_id": "d1", "negative_ids": ["d2", "d3"]},
        )
    ]
    g = candidate_gains(rows, 3, {"q1": {"d1": 1, "d3": 2}})
    assert g.tolist() == [[1.0, 0.0, 2.0]]
    assert candidate_gains(rows).tolist() == [[1.0, 0.0, 0.0]]
    with pytest.raises(InputError, match="query 'q1' has no judgements"):
        candidate_gains(rows, 3, {"q9": {}})
    with pytest.raises(InputError, match="row 1: judging by qrels needs query_id"):
        candidate_gains([TrainRow("q", "p", ["n"])], 2, {"q1": {}})


# --- fitting -----------------------------------------------------------------------------------------------------


def test_weight_grid_is_distinct_directions_equal_first():
    g = weight_grid(2, 2)
    assert g[0] == (1.0, 1.0)
    assert set(g) == {(1.0, 1.0), (0.0, 1.0), (1.0, 0.0), (0.5, 1.0), (1.0, 0.5)}


def test_fitted_weights_beat_every_single_scorer_on_a_constructed_case():
    # a is right on rows 0-3, b on rows 4-7; each is wrong on the others by a small margin, so together (z-scored,
    # equal weights) they put every positive first and neither alone does
    right, slightly_wrong = [1.0, 0.0, 0.5], [0.4, 0.5, 0.0]
    t = _table(a=[right] * 4 + [slightly_wrong] * 4, b=[slightly_wrong] * 4 + [right] * 4)
    gains = candidate_gains([TrainRow("q", "p", ["n1", "n2"])] * 8)
    report = build_report(t, gains, [1, 1], "zscore", queries=8)["systems"]
    singles = [report[n]["ndcg@10"] for n in "ab"]
    assert singles == pytest.approx([(1 + 1 / math.log2(3)) / 2] * 2)  # half first, half second
    w, m = fit_weights(t, gains, "zscore")
    assert m["ndcg@10"] == pytest.approx(1.0) and m["ndcg@10"] > max(singles) and w == (1.0, 1.0)
    assert m["pairwise_accuracy"] == pytest.approx(1.0)
    # when one scorer is simply better, the fit keeps it alone (a grid point) rather than diluting it
    t2 = _table(a=[right] * 8, b=[slightly_wrong] * 8)
    w2, m2 = fit_weights(t2, gains, "zscore", metric="pairwise_accuracy")
    assert m2["pairwise_accuracy"] == pytest.approx(1.0) and w2[0] == 1.0


# --- scorers -----------------------------------------------------------------------------------------------------


def test_bm25_scorer_equals_the_eval_baseline():
    from spladekit.eval import BM25Baseline

    texts = list(DOCS.values())
    bm = BM25Teacher(texts)
    base = BM25Baseline()
    base.index(list(DOCS), texts)
    for q in QUERIES.values():
        ranked = dict(base.search([q], k=len(texts))[0])
        got = bm.score([q] * len(texts), texts)
        want = [ranked.get(d, 0.0) for d in DOCS]
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    # a passage outside the collection joins it; a query with no known word scores 0
    assert bm.score(["zebra"], ["a new passage"]) == [0.0] and len(bm) == len(texts) + 1


def test_parse_scorers_names_and_errors(tmp_path):
    (tmp_path / "ce").mkdir()
    specs = parse_scorers(["MiniLM", "bm25", str(tmp_path / "ce"), "owner/ce"])
    assert [s.name for s in specs] == ["minilm", "bm25", "ce", "ce-2"]
    assert specs[2].kind == "model" and specs[3].source == "owner/ce"
    with pytest.raises(InputError, match="unknown scorer 'minlm'"):
        parse_scorers(["minlm"])
    with pytest.raises(InputError, match="scorer 'bm25' given twice"):
        parse_scorers(["bm25", "BM25"])


def _tiny_cross_encoder(path: Path, tokenizer_from: Path):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=30522,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            num_labels=1,
        )
    )
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(str(tokenizer_from)).save_pretrained(path)
    return model.eval()


def test_ensemble_with_a_cross_encoder_splade_and_bm25(beir, tmp_path, tiny_mlm):
    import torch
    from transformers import AutoTokenizer

    from spladekit.encode import SpladeEncoder, bundled_model_path

    ce = tmp_path / "ce"
    model = _tiny_cross_encoder(ce, bundled_model_path())
    rows = tmp_path / "rows.jsonl"
    mine_negatives(beir, rows, model=tiny_mlm, n=2, log=lambda _m: None)
    out = tmp_path / "scored.jsonl"
    res = score_with_ensemble(
        rows, out, [str(ce), "bm25", "splade"], weights=[1, 0.5, 0.5], model=tiny_mlm, log=lambda _m: None
    )
    assert res.rows_written == 4 and res.scorers == ["ce", "bm25", "splade"] and res.normalise == "zscore"
    scored = read_rows(out, require_scores=True)
    r = scored[0]
    each = r.extra["teacher_scores"]
    tok = AutoTokenizer.from_pretrained(str(ce))
    with torch.no_grad():
        logit = model(**tok([r.query], [r.positive], return_tensors="pt")).logits[0, 0]
    assert each["ce"][0] == pytest.approx(float(logit), abs=1e-5)  # the cross-encoder's own logit
    enc = SpladeEncoder.load(tiny_mlm)
    q = enc.encode_queries([r.query]).to_scipy()
    d = enc.encode_documents([r.positive]).to_scipy()
    assert each["splade"][0] == pytest.approx(float(q.multiply(d).sum()), rel=1e-5)
    z = {k: normalise(np.array([v]), "zscore")[0] for k, v in each.items()}
    want = z["ce"] + 0.5 * z["bm25"] + 0.5 * z["splade"]
    # the written per-scorer scores carry 7 significant digits: enough for the random cross-encoder's 1e-5 spread
    assert r.scores == pytest.approx(want.tolist(), abs=1e-3)


# --- mining with BM25 --------------------------------------------------------------------------------------------


def test_merge_negatives_interleaves_dedupes_and_skips_positives():
    a = ["p", "x", "y", "z"]
    b = ["y", "p", "w", "x"]
    assert merge_negatives([a, b], {"p"}, 4, 0) == ["x", "y", "w", "z"]
    assert merge_negatives([a, b], {"p"}, 2, 1) == ["y", "w"]  # after skipping each list's first non-positive
    assert merge_negatives([a], {"p"}, 10, 0) == ["x", "y", "z"]


def test_bm25_mining_excludes_positives(beir, tmp_path, tiny_mlm):
    out = tmp_path / "bm25.jsonl"
    assert mine_negatives(beir, out, retrievers=["bm25"], n=1, log=lambda _m: None) == 4
    for r in read_rows(out):
        q = r.extra["query_id"]
        assert not set(r.extra["negative_ids"]) & set(QRELS[q])
        assert "negative_retrievers" not in r.extra
    # BM25 ranks only documents sharing a word with the query: q2 has one such non-positive (d5), so asking for
    # two skips it, said
    log: list[str] = []
    assert mine_negatives(beir, out, retrievers=["bm25"], n=2, log=log.append) == 2
    assert {r.extra["query_id"] for r in read_rows(out)} == {"q1", "q3"}
    assert any("1 queries had fewer than 2" in m for m in log)
    both = tmp_path / "both.jsonl"
    mine_negatives(beir, both, model=tiny_mlm, retrievers=["splade", "bm25"], n=4, log=lambda _m: None)
    for r in read_rows(both):
        ids = r.extra["negative_ids"]
        assert len(set(ids)) == 4 and not set(ids) & set(QRELS[r.extra["query_id"]])
        assert all(found and set(found) <= {"splade", "bm25"} for found in r.extra["negative_retrievers"])
    with pytest.raises(InputError, match="unknown retriever 'dense'"):
        mine_negatives(beir, out, retrievers=["dense"])


# --- the commands ------------------------------------------------------------------------------------------------


def test_cli_mine_bm25_then_teacher_ensemble_report(beir, tmp_path, tiny_mlm):
    from spladekit.cli import app

    runner = CliRunner()
    mined, scored = tmp_path / "m.jsonl", tmp_path / "s.jsonl"
    r = runner.invoke(
        app,
        [
            "mine",
            str(beir),
            "-n",
            "2",
            "-o",
            str(mined),
            "-m",
            str(tiny_mlm),
            "--retriever",
            "splade",
            "--retriever",
            "bm25",
        ],
    )
    assert r.exit_code == 0, r.output
    args = ["teacher", str(mined), "--scorer", "bm25", "--scorer", "splade", "-m", str(tiny_mlm)]
    small = ["--holdout-queries", "1", "--fit-queries", "1", "--corpus", str(beir)]
    r = runner.invoke(app, [*args, *small, "--fit-weights", "--json", "-o", str(scored)])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert set(rep["systems"]) == {"bm25", "splade", "ensemble"} and rep["held_out_queries"] == 1
    assert rep["fitted"]["queries"] == 1 and rep["normalise"] == "zscore"
    for m in rep["systems"].values():
        assert 0 <= m["ndcg@10"] <= 1 and 0 <= m["pairwise_accuracy"] <= 1
    rows = read_rows(scored, require_scores=True)
    assert len(rows) == 4 and all(set(x.extra["teacher_scores"]) == {"bm25", "splade"} for x in rows)
    # a report alone (no output) prints the table and scores only the held-out rows
    r = runner.invoke(app, [*args, *small, "--weights", "1,0", "--report"])
    assert r.exit_code == 0, r.output
    assert "| ensemble |" in r.stdout and "| bm25 |" in r.stdout
    # one teacher, no new options: raw scores as before
    one = tmp_path / "one.jsonl"
    r = runner.invoke(app, ["teacher", str(mined), "--scorer", "bm25", "-o", str(one)])
    assert r.exit_code == 0, r.output
    raw = read_rows(one, require_scores=True)
    assert "teacher_scores" not in raw[0].extra and max(raw[0].scores) > 1  # BM25, not z-scores


def test_bad_teacher_input_names_the_problem(beir, tmp_path):
    from spladekit.cli import app

    runner = CliRunner()
    rows = tmp_path / "rows.jsonl"
    write_rows(rows, [TrainRow(f"query {i}", "a positive", ["a negative"]) for i in range(3)])

    def fails(*args) -> str:
        r = runner.invoke(app, ["teacher", str(rows), *args])
        assert isinstance(r.exception, SpladekitError), r.output
        return str(r.exception)

    assert "unknown scorer 'bm2'" in fails("--scorer", "bm2", "-o", str(tmp_path / "o.jsonl"))
    assert "2 weights for 1 scorers" in fails(
        "--scorer", "bm25", "--weights", "1,2", "-o", str(tmp_path / "o")
    )
    assert "--teacher and --scorer" in fails(
        "--scorer", "bm25", "-t", str(tmp_path), "-o", str(tmp_path / "o")
    )
    assert "nothing to do" in fails("--scorer", "bm25")
    assert "needs two or more scorers" in fails(
        "--scorer", "bm25", "--fit-weights", "-o", str(tmp_path / "o")
    )
    assert "weights or fit them" in fails(
        "--scorer", "bm25", "--scorer", "splade", "--fit-weights", "--weights", "1,1", "--report"
    )
    assert "unknown normalisation" in fails(
        "--scorer", "bm25", "--normalise", "l1", "-o", str(tmp_path / "o")
    )
    assert "holdout_queries=5: the training data has only 3 queries" in fails(
        "--scorer", "bm25", "--report", "--holdout-queries", "5"
    )
    assert "judging by qrels needs query_id" in fails(
        "--scorer", "bm25", "--report", "--holdout-queries", "1", "--qrels", str(beir / "qrels" / "train.tsv")
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "positive": "p", "negatives": ["n"]}\n{"query": "q", "positive": "p"}\n')
    r = runner.invoke(app, ["teacher", str(bad), "--scorer", "bm25", "-o", str(tmp_path / "o")])
    assert isinstance(r.exception, DataFormatError) and ":2:" in str(r.exception)
