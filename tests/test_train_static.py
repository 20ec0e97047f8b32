"""Training an inference-free model: a static query table trained jointly with the document encoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import _rows, _write_jsonl

from spladekit.errors import InputError
from spladekit.train import TrainConfig, train

QUERIES = ["protein cell gene", "insulin glucose insulin", "vaccine trial mouse", ""]
DOCS = ["protein folding in the cell", "insulin lowers blood glucose", "a vaccine trial in mice"]


def _cfg(tmp_path: Path, tiny_mlm: Path, **kw) -> TrainConfig:
    data = _write_jsonl(tmp_path / "rows.jsonl", _rows(16, seed=3))
    base = dict(
        train_data=str(data),
        model=None,  # the bundled splade-tiny: a random MLM never activates the queries' tokens in documents
        output_dir=str(tmp_path / "run"),
        epochs=2,
        batch_size=8,
        learning_rate=1e-3,
        warmup_ratio=0.0,
        scheduler="constant",
        max_doc_length=24,
        precision="fp32",
        teacher_scale=10.0,
        query_side="idf",
        query_table_learning_rate=0.05,
        query_regularizer_weight=0.5,
        document_regularizer_weight=0.3,
        regularizer_warmup_ratio=0.01,
    )
    base.update(kw)
    return TrainConfig(**base)


def _table(folder: Path) -> np.ndarray:
    from safetensors.numpy import load_file

    return load_file(str(folder / "query_0_SparseStaticEmbedding" / "model.safetensors"))["weight"]


@pytest.fixture(scope="module")
def table_run(tiny_mlm, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("static")
    logs: list[str] = []
    res = train(_cfg(tmp, tiny_mlm), show_progress=False, log=logs.append)
    return tmp, res, logs


def test_table_trains_with_its_own_lr_and_flops_on_documents_only(table_run, tiny_mlm):
    from spladekit import SpladeEncoder
    from spladekit.encode.idf import build_idf_table
    from spladekit.train.rows import read_rows

    tmp, res, logs = table_run
    assert res.steps == 4
    assert all(r["lr_table"] == 0.05 and r["lr"] == 1e-3 for r in res.step_log)
    assert all(r["flops_q"] == 0.0 and r["w_q"] == 0.0 for r in res.step_log)  # queries: no FLOPS term
    assert all(r["flops_d"] > 0 and r["w_d"] > 0 for r in res.step_log[1:])
    assert any("FLOPS on documents only" in m and "ignored" in m for m in logs)
    # started from IDF over the rows' documents, and moved from it
    enc = SpladeEncoder.load(None, mode="fp32")
    rows = read_rows(tmp / "rows.jsonl")
    texts = list(dict.fromkeys(t for r in rows for t in (r.positive, *r.negatives)))
    idf = build_idf_table(enc, texts=texts)[0].weights
    trained = _table(res.last_checkpoint)
    assert trained.min() >= 0.0  # clamped as the ReLU scored it
    moved = np.abs(trained - np.maximum(idf, 0))
    assert moved.max() > 0.05 and moved.max() <= 4 * 0.05 + 1e-6  # Adam moves ≤ ~lr per step
    untouched = np.setdiff1d(np.arange(len(idf)), np.nonzero(moved)[0])
    assert len(untouched) > 0.9 * len(idf)  # only the queries' tokens learn


def test_checkpoint_is_a_router_folder_equal_in_sentence_transformers(table_run):
    from sentence_transformers import SparseEncoder

    from spladekit import SpladeEncoder

    _tmp, res, _ = table_run
    ckpt = res.best_checkpoint
    modules = json.loads((ckpt / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Router"]
    assert (ckpt / "trainer_state.pt").is_file() and (ckpt / "spladekit_train.json").is_file()
    ours = SpladeEncoder.load(ckpt, mode="fp32")
    assert ours.info()["query_side"]["kind"] == "table"
    st = SparseEncoder(str(ckpt), device="cpu")
    for mine, theirs in (
        (ours.encode_queries(QUERIES).to_dense(), st.encode_query(QUERIES, convert_to_tensor=True)),
        (ours.encode_documents(DOCS).to_dense(), st.encode_document(DOCS, convert_to_tensor=True)),
    ):
        theirs = theirs.to_dense().float().numpy()
        assert (theirs > 0).sum() > 5
        np.testing.assert_array_equal(mine > 0, theirs > 0)
        np.testing.assert_allclose(mine, theirs, atol=1e-4)
    # repeated tokens count once, and the query vector is the trained table's weights
    one = ours.encode_queries(["insulin insulin"])
    assert one.nnz == 1 and one.row(0)[1][0] == pytest.approx(float(_table(ckpt)[one.row(0)[0][0]]))


def test_resume_continues_the_table(table_run, tiny_mlm, tmp_path):
    _tmp, full, _ = table_run
    part = train(_cfg(tmp_path, tiny_mlm, max_steps=2), show_progress=False, log=lambda _m: None)
    assert part.steps == 2
    state = torch.load(part.last_checkpoint / "trainer_state.pt", weights_only=False)
    assert len(state["optimizer"]["param_groups"]) == 3  # decay, no decay, the table
    resumed = train(
        _cfg(tmp_path, tiny_mlm, resume_from=str(part.last_checkpoint)),
        show_progress=False,
        log=lambda _m: None,
    )
    assert resumed.steps == 4
    np.testing.assert_allclose(resumed.losses, full.losses[2:], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(_table(resumed.last_checkpoint), _table(full.last_checkpoint), atol=1e-5)


def test_table_side_continues_a_saved_table(table_run, tiny_mlm, tmp_path):
    _tmp, full, _ = table_run
    res = train(
        _cfg(tmp_path, tiny_mlm, model=str(full.last_checkpoint), query_side="auto", max_steps=1),
        show_progress=False,
        log=lambda _m: None,
    )
    assert "lr_table" in res.step_log[0]
    with pytest.raises(InputError, match="has no query table"):
        train(_cfg(tmp_path, tiny_mlm, query_side="table"), show_progress=False, log=lambda _m: None)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(query_side="static"), "unknown query_side 'static'"),
        (dict(query_side="mlm", query_table_learning_rate=0.01), "needs a table query side"),
        (dict(query_side="idf", query_table_learning_rate=0), "must be a positive number"),
        (dict(query_side="idf", query_table_learning_rate="fast"), "must be a positive number"),
    ],
)
def test_config_errors(kw, match):
    with pytest.raises(InputError, match=match):
        TrainConfig(train_data="x.jsonl", **kw).validate()
