"""``spladekit eval --approx``: the index's approximate search evaluated next to exact search, tuned on the index's
own documents when it never was, with its knobs and recall against exact in metrics.json and report.md."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from test_eval import DOCS, _write_collection

from spladekit.errors import InputError
from spladekit.eval import evaluate
from spladekit.index import Index

TOPICS = ["bone density", "influenza vaccine", "lung cancer", "cholesterol", "sleep", "memory", "malaria"]
FILLER = [(f"f{i}", "", f"Note {i} on {TOPICS[i % len(TOPICS)]} and study {i % 5}.") for i in range(40)]


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    return _write_collection(tmp_path_factory.mktemp("approx-eval"), docs=DOCS + FILLER)


def test_eval_approx_tunes_an_untuned_index_and_reports_against_exact(collection, encoder, tmp_path):
    out = tmp_path / "out"
    res = evaluate(
        collection, encoder=encoder, index_dir=tmp_path / "idx", output_dir=out, k=5, bm25=False, approx=0.9
    )
    rep = json.loads((out / "metrics.json").read_text())
    assert list(rep["systems"]) == ["splade", "approx"]
    a = rep["approx"]
    assert a["target"] == 0.9 and a["tuning"]["queries"] == "documents"  # never the evaluated queries
    assert rep["index"]["approx"]["tuning"]["table"] == a["tuning"]["table"]
    assert set(a["recall_vs_exact"]) == {"top10_of_run", "top5_of_run", "searching_k10"}
    assert all(0 <= v <= 1 for v in a["recall_vs_exact"].values())
    if a["plan"] is None:  # exact search was faster at this size: the target is searched exactly
        assert res.runs["approx"] == res.runs["splade"] and a["recall_vs_exact"]["top5_of_run"] == 1
    assert (
        "SPLADE approx" in (out / "report.md").read_text()
        and "recall@10 against exact" in (out / "report.md").read_text()
    )
    assert (out / "run.approx.trec").exists()
    # an index tuned with approximate rows is searched with them
    with Index.open(tmp_path / "idx") as idx:
        idx.tune(sample=40, exact_if_faster=False)
        table = idx.info()["approx"]["tuning"]["table"]
    again = evaluate(collection, encoder=encoder, index_dir=tmp_path / "idx", k=5, bm25=False, approx=0.9)
    row = min((r for r in table if r["recall"] >= 0.9), key=lambda r: r["recall"])
    assert again.report["approx"]["plan"] == {k: row[k] for k in ("query_terms", "heap_factor")}


def test_eval_approx_refusals(collection, encoder, capsys):
    with pytest.raises(InputError, match="needs the index retriever"):
        evaluate(collection, encoder=encoder, retriever="exact", approx=0.9)
    with pytest.raises(InputError, match=r"approx must be a recall target in \(0, 1\]"):
        evaluate(collection, encoder=encoder, approx=1.5)
    from spladekit.cli import main

    for argv, message in (
        (["--approx", "0"], "approx must be a recall target in (0, 1]"),
        (["--approx", "0.9", "--exact"], "leave --exact out"),
    ):
        old = sys.argv
        sys.argv = ["spladekit", "eval", str(collection), *argv]
        try:
            with pytest.raises((SystemExit, InputError)) as e:
                main()
        finally:
            sys.argv = old
        err = capsys.readouterr().err + str(e.value)
        assert message in err
