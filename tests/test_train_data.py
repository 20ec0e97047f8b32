"""Building training rows: hard-negative mining (exact and through the Index) and teacher scores; the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _toy_beir import QRELS, write_beir
from typer.testing import CliRunner

from spladekit.errors import DataFormatError, ModelLoadError
from spladekit.train import mine_negatives, read_rows, score_with_teacher


@pytest.fixture
def beir(tmp_path) -> Path:
    return write_beir(tmp_path / "beir")


def test_mine_excludes_positives_and_index_matches_exact(beir, tmp_path, tiny_mlm):
    exact = tmp_path / "exact.jsonl"
    via_index = tmp_path / "index.jsonl"
    log = []
    assert mine_negatives(beir, exact, model=tiny_mlm, n=3, log=log.append) == 4
    assert (
        mine_negatives(beir, via_index, model=tiny_mlm, n=3, index_dir=tmp_path / "idx", log=log.append) == 4
    )
    # second call reuses the index it built
    assert (
        mine_negatives(beir, via_index, model=tiny_mlm, n=3, index_dir=tmp_path / "idx", log=log.append) == 4
    )
    assert any("reusing index" in m for m in log)
    rows = read_rows(exact)
    for r in rows:
        q = r.extra["query_id"]
        assert r.extra["positive_id"] in QRELS[q]
        assert not set(r.extra["negative_ids"]) & set(QRELS[q])
        assert len(r.negatives) == 3 and r.scores is None
    assert [r.extra["negative_ids"] for r in read_rows(via_index)] == [r.extra["negative_ids"] for r in rows]


def test_teacher_bi_encoder_scores_relevant_higher(beir, tmp_path, tiny_mlm):
    rows = tmp_path / "rows.jsonl"
    mine_negatives(beir, rows, model=tiny_mlm, n=2, log=lambda _m: None)
    out = tmp_path / "scored.jsonl"
    assert score_with_teacher(rows, out) == 4  # default teacher: the installed all-MiniLM-L6-v2 (cosine)
    scored = read_rows(out, require_scores=True)
    for r in scored:
        assert len(r.scores) == 3 and all(-1.0001 <= s <= 1.0001 for s in r.scores)
    # MiniLM ranks the judged positive above both negatives for most rows
    assert sum(r.scores[0] > max(r.scores[1:]) for r in scored) >= 3


def test_teacher_cross_encoder_folder(beir, tmp_path, tiny_mlm):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    ce = tmp_path / "ce"
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
    model.save_pretrained(ce)
    AutoTokenizer.from_pretrained(str(tiny_mlm)).save_pretrained(ce)
    rows = tmp_path / "rows.jsonl"
    mine_negatives(beir, rows, model=tiny_mlm, n=2, log=lambda _m: None)
    out = tmp_path / "scored.jsonl"
    score_with_teacher(rows, out, ce)
    scored = read_rows(out, require_scores=True)
    # the scores are the model's logits for (query, passage) pairs
    tok = AutoTokenizer.from_pretrained(str(ce))
    r = scored[0]
    with torch.no_grad():
        logit = model.eval()(**tok([r.query], [r.positive], return_tensors="pt")).logits[0, 0]
    assert r.scores[0] == pytest.approx(float(logit), abs=1e-5)


def test_teacher_rejects_non_model_folder(tmp_path):
    (tmp_path / "rows.jsonl").write_text(
        json.dumps({"query": "q", "positive": "p", "negatives": ["n"]}) + "\n"
    )
    (tmp_path / "nomodel").mkdir()
    with pytest.raises(ModelLoadError, match="not a teacher folder"):
        score_with_teacher(tmp_path / "rows.jsonl", tmp_path / "o.jsonl", tmp_path / "nomodel")


def test_cli_mine_teacher_train(beir, tmp_path, tiny_mlm):
    from spladekit.cli import app

    runner = CliRunner()
    mined, scored = tmp_path / "m.jsonl", tmp_path / "s.jsonl"
    r = runner.invoke(
        app, ["mine", str(beir), "--split", "train", "-n", "2", "-o", str(mined), "--model", str(tiny_mlm)]
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["teacher", str(mined), "-o", str(scored)])
    assert r.exit_code == 0, r.output
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"train_data: {scored}\nmodel: {tiny_mlm}\noutput_dir: {tmp_path / 'run'}\nepochs: 1\n"
        "batch_size: 2\nteacher_scale: auto\nmax_doc_length: 32\n"
    )
    r = runner.invoke(app, ["train", "--config", str(cfg), "--quiet", "--seed", "7"])
    assert r.exit_code == 0, r.output
    assert "trained 2 steps" in r.output
    assert (tmp_path / "run" / "best" / "modules.json").is_file()
    saved = json.loads((tmp_path / "run" / "best" / "spladekit_train.json").read_text())
    assert saved["config"]["seed"] == 7  # the command-line override reached the run
    # a malformed row is one clear error naming file and line
    bad = tmp_path / "bad.jsonl"
    bad.write_text(mined.read_text() + '{"query": "q", "positive": "p", "negatives": []}\n')
    r = runner.invoke(app, ["teacher", str(bad), "-o", str(tmp_path / "x.jsonl")])
    assert isinstance(r.exception, DataFormatError) and ":5:" in str(r.exception)


@pytest.mark.slow
def test_per_epoch_evaluation_curve_and_best(beir, tmp_path, tiny_mlm):
    """eval_data makes train() evaluate the start model and every epoch, plot the curve, keep the best."""
    from spladekit.train import TrainConfig, train

    rows = tmp_path / "rows.jsonl"
    mine_negatives(beir, rows, model=tiny_mlm, n=2, log=lambda _m: None)
    score_with_teacher(rows, tmp_path / "s.jsonl")
    out = tmp_path / "run"
    res = train(
        TrainConfig(
            train_data=str(tmp_path / "s.jsonl"),
            model=str(tiny_mlm),
            output_dir=str(out),
            epochs=2,
            batch_size=2,
            teacher_scale=20.0,
            max_doc_length=32,
            eval_data=str(beir),
            eval_split="train",
        ),
        show_progress=False,
        log=lambda _m: None,
    )
    assert [h["epoch"] for h in res.history] == [0, 1, 2]
    for h in res.history:
        assert 0.0 <= h["ndcg@10"] <= 1.0 and h["doc_active_dims"] > 0 and h["query_active_dims"] > 0
    best_epoch = max(res.history[1:], key=lambda h: h["ndcg@10"])["epoch"]
    saved = json.loads((res.best_checkpoint / "spladekit_train.json").read_text())
    assert saved["metrics"]["epoch"] == best_epoch
    assert (out / "curve.png").stat().st_size > 1000
    assert json.loads((out / "history.json").read_text()) == res.history


@pytest.mark.slow
def test_holdout_queries_leave_training_and_choose_the_best(beir, tmp_path, tiny_mlm):
    """holdout_queries moves whole queries out of training; the per-epoch evaluation judges only them."""
    from spladekit.train import TrainConfig, train
    from spladekit.train.holdout import split_holdout

    rows_path = tmp_path / "rows.jsonl"
    mine_negatives(beir, rows_path, model=tiny_mlm, n=2, log=lambda _m: None)
    score_with_teacher(rows_path, tmp_path / "s.jsonl")
    rows = read_rows(tmp_path / "s.jsonl")
    kept, held = split_holdout(rows, 1, seed=42)
    assert len(held) == 1 and held[0] in QRELS
    assert all(r.extra["query_id"] != held[0] for r in kept)
    assert len(kept) == len(rows) - len(QRELS[held[0]])  # every row of the held-out query left
    with pytest.raises(Exception, match="only 3 queries"):
        split_holdout(rows, 3, seed=42)
    log: list[str] = []
    common = dict(
        train_data=str(tmp_path / "s.jsonl"),
        model=str(tiny_mlm),
        epochs=1,
        batch_size=2,
        teacher_scale="auto",
        max_doc_length=32,
        eval_data=str(beir),
        eval_split="test",  # absent in this folder: the holdout must not touch it
        holdout_queries=1,
    )
    res = train(TrainConfig(**common, output_dir=str(tmp_path / "run")), show_progress=False, log=log.append)
    assert any("held out 1 training queries" in m for m in log)
    assert [h["eval_queries"] for h in res.history] == [1, 1]
    assert json.loads((tmp_path / "run" / "holdout_queries.json").read_text()) == held
    # another training seed draws the same held-out queries (split_seed), so repeat runs are comparable
    run7 = TrainConfig(**common, output_dir=str(tmp_path / "run7"), seed=7, eval_at_start=False)
    train(run7, show_progress=False, log=lambda _m: None)
    assert json.loads((tmp_path / "run7" / "holdout_queries.json").read_text()) == held
    # the draw does depend on the seed
    assert len({tuple(split_holdout(rows, 1, seed=s)[1]) for s in range(10)}) > 1


def test_holdout_draws_only_judged_queries_and_the_same_ones_with_pseudo_query_rows(beir):
    """Rows of queries the hold-out split does not judge (pseudo-queries such as titles) always train, and adding
    them after the judged rows leaves the draw as it was, so runs with and without them are compared on the same
    held-out queries; the judged set is read from the config's eval_data before training starts."""
    from spladekit.train import TrainConfig
    from spladekit.train.holdout import judged_queries, split_holdout
    from spladekit.train.rows import TrainRow

    judged = judged_queries(TrainConfig(train_data="x.jsonl", eval_data=str(beir)))
    assert set(QRELS) <= judged
    real = [TrainRow(f"q{i}", "p", ["n"], extra={"query_id": q}) for i, q in enumerate(QRELS)]
    titles = [TrainRow(f"title {i}", "p", ["n"], extra={"query_id": f"t{i}"}) for i in range(50)]
    _, before = split_holdout(real, 1, seed=3, eligible=judged)
    kept, held = split_holdout(real + titles, 1, seed=3, eligible=judged)
    assert held == before and held[0] in QRELS
    assert all(r in kept for r in titles)
    for seed in range(20):  # never a title, whatever the seed
        assert split_holdout(real + titles, 2, seed=seed, eligible=judged)[1][0] in QRELS
    with pytest.raises(Exception, match=f"only {len(QRELS)} judged queries"):
        split_holdout(real + titles, len(QRELS), seed=3, eligible=judged)


def test_evaluate_checkpoint_truncates_documents_without_touching_the_encoder(beir, tiny_mlm):
    """eval_max_doc_length shortens the evaluated documents only; the encoder's own max length and mode stay."""
    from spladekit.encode import SpladeEncoder
    from spladekit.train import TrainConfig
    from spladekit.train.holdout import evaluate_checkpoint

    enc = SpladeEncoder.load(tiny_mlm, mode="fp32")
    enc.mlm.train()
    before = enc.spec.max_length
    base = dict(train_data="x", eval_data=str(beir), eval_split="train")
    full = evaluate_checkpoint(enc, TrainConfig(**base))
    short = evaluate_checkpoint(enc, TrainConfig(**base, eval_max_doc_length=4))
    assert enc.spec.max_length == before and enc.mlm.training  # no process state left changed
    assert short["doc_active_dims"] < full["doc_active_dims"]
    assert short["query_active_dims"] == full["query_active_dims"]  # queries keep the model's max length


def test_teacher_scale_auto_matches_the_student_margin_spread(beir, tmp_path, tiny_mlm):
    """'auto' scales teacher margins to the initial student's spread; 'lsq' is the least-squares factor.

    The student runs in float64 and the reference is the dense SPLADE computation from its hidden states, in
    float64 too, so they agree to rounding whatever order a CPU's kernels add in. The student's margins cancel
    (their spread is ~2 while the dot products reach ~150), so the bound scales with what each margin adds up,
    s_pos + s_neg (non-negative vectors: a dot product cannot cancel), not with the factor itself.
    """
    import numpy as np
    import torch

    from spladekit.encode import SpladeEncoder
    from spladekit.train import TrainConfig, naive_max_pool
    from spladekit.train.batching import _Batcher
    from spladekit.train.teacher_scale import fit_teacher_scale

    mine_negatives(beir, tmp_path / "rows.jsonl", model=tiny_mlm, n=2, log=lambda _m: None)
    score_with_teacher(tmp_path / "rows.jsonl", tmp_path / "s.jsonl")
    rows = read_rows(tmp_path / "s.jsonl")
    enc = SpladeEncoder.load(tiny_mlm, mode="fp32")
    enc.mlm.to(torch.float64).eval()
    cfg = TrainConfig(train_data="x", max_doc_length=64)
    batcher = _Batcher(enc, torch.device("cpu"))
    auto = fit_teacher_scale(enc, batcher, rows, 2, cfg, None, False, "auto")
    lsq = fit_teacher_scale(enc, batcher, rows, 2, cfg, None, False, "lsq")

    def dense(texts: list[str]) -> np.ndarray:
        tok = enc.tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
        with torch.no_grad():
            hidden = enc.hidden_states(tok["input_ids"], tok["attention_mask"])
            return naive_max_pool(
                hidden, tok["attention_mask"].bool(), enc.head_weight, enc.head_bias
            ).numpy()

    q = dense([r.query for r in rows])
    d = dense([t for r in rows for t in [r.positive, *r.negatives]])
    assert q.dtype == d.dtype == np.float64
    s = np.einsum("bv,bkv->bk", q, d.reshape(len(rows), 3, -1))
    student = (s[:, :1] - s[:, 1:]).ravel()
    summed = (s[:, :1] + s[:, 1:]).ravel()  # what each margin adds up
    t = np.array([r.scores for r in rows])
    teacher = (t[:, :1] - t[:, 1:]).ravel()
    ref_auto = student.std(ddof=1) / teacher.std(ddof=1)
    ref_lsq = (student * teacher).sum() / (teacher * teacher).sum()
    rtol = 1e-12  # float64; measured ≤ 1e-15 of these bounds with AVX-512 and with AVX2 kernels
    bound_auto = rtol * (summed.max() / teacher.std(ddof=1) + abs(ref_auto))
    bound_lsq = rtol * ((summed * np.abs(teacher)).sum() / (teacher * teacher).sum() + abs(ref_lsq))
    assert abs(auto - ref_auto) <= bound_auto, (auto, ref_auto, bound_auto)
    assert abs(lsq - ref_lsq) <= bound_lsq, (lsq, ref_lsq, bound_lsq)
