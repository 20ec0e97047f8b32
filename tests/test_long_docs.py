"""Long documents: windows (cut rule, spans), ``max`` over windows, identity with ``truncate`` for documents that fit
in one window (bit for bit, every mode), and the same setting honoured by the index, the CLI and evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spladekit.encode import LongDocs, check_long_docs
from spladekit.encode.windows import TRUNCATE, cut_points
from spladekit.errors import InputError

WORDS = (
    "fermentation yeast converts sugar into ethanol and carbon dioxide under anaerobic conditions while "
    "bacteria in the gut produce short chain fatty acids that regulate inflammation and metabolism"
).split()


def _long_text(n_words: int, needle: str | None = None, at: int = 0) -> str:
    words = [WORDS[i % len(WORDS)] for i in range(n_words)]
    if needle is not None:
        words[at] = needle
    return " ".join(words)


def _scifact(shared_data, n: int | None = None) -> list[str]:
    texts = []
    with open(shared_data / "scifact" / "corpus.jsonl") as f:
        for line in f:
            o = json.loads(line)
            texts.append((o["title"] + " " + o["text"]).strip())
            if n is not None and len(texts) == n:
                break
    return texts


# ---------------------------------------------------------------------- settings and the cut rule
def test_settings_are_checked():
    assert check_long_docs("passages", 128, 16) == LongDocs("passages", 128, 16)
    assert LongDocs.from_record(None) == TRUNCATE  # an index made before windows truncates
    for bad, why in [
        (("halves",), "unknown long-document strategy"),
        (("max", 4), "at least"),
        (("max", 1024, None, 512), "longer than the model's max_length"),
        (("max", 128, 100), "more than half the window"),
        (("max", 128, -1), "0 or more"),
        (("max", "128"), "must be an integer"),
    ]:
        with pytest.raises(InputError, match=why):
            check_long_docs(*bad)


def test_cut_points_keep_words_whole_and_cover_everything():
    # word ids of 1,000 tokens: words of 1-4 pieces
    rng = np.random.default_rng(0)
    wids, w = [], 0
    while len(wids) < 1000:
        wids += [w] * int(rng.integers(1, 5))
        w += 1
    wids = wids[:1000]
    cuts = cut_points(wids, 100, 16)
    assert cuts[0][0] == 0 and cuts[-1][1] == len(wids)
    for (_s, e), (s2, _) in zip(cuts, cuts[1:]):
        assert s2 < e, "neighbouring windows overlap"
        assert e - s2 >= 16 - 3, "the overlap is about the stride (moved back to a word start)"
    for s, e in cuts:
        assert e - s <= 100
        assert s == 0 or wids[s] != wids[s - 1], "a window starts at a word's first piece"
        assert e == len(wids) or wids[e] != wids[e - 1], "a window ends at a word's last piece"
    assert cut_points(wids[:50], 100, 16) == [(0, 50)]


def test_a_word_longer_than_a_window_is_the_only_split():
    wids = [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]
    cuts = cut_points(wids, 4, 1)
    assert cuts[-1][1] == len(wids) and all(e - s <= 4 for s, e in cuts)


# ---------------------------------------------------------------------- the encoder
def test_windows_carry_spans_and_find_text_past_the_limit(encoder):
    text = _long_text(1500, needle="volcano", at=1200)  # far past token 512
    units = encoder.plan_units([text], "document", LongDocs("max"))
    assert units.counts[0] > 2 and all(len(x) <= encoder.max_length for x in units.ids)
    for (s, e), offs in zip(units.spans, units.offsets):
        assert 0 <= s < e <= len(text)
        assert text[s - 1] == " " if s else True, "a window starts at a word"
        assert (offs[:, 0] >= s).all() and (offs[:, 1] <= e).all()
    assert units.spans[-1][1] == len(text)
    term = encoder.token_to_id["volcano"]
    vec_max = encoder.encode_documents([text])
    vec_cut = encoder.encode_documents([text], long_docs="truncate")
    assert encoder.last_report.truncated == 1
    assert term in vec_max.indices and term not in vec_cut.indices
    # max over windows = per-term max of the passages
    p = encoder.encode_passages([text])
    assert len(p.vectors) == units.counts[0] and p.spans == units.spans
    assert vec_max.allclose(p.document_vectors(), atol=0.0)


def test_only_empty_texts_give_empty_vectors_under_every_strategy(encoder, light_encoder):
    for enc in (encoder, light_encoder):
        for strategy in ("truncate", "max", "passages"):
            v = enc.encode_documents(["", "   "], long_docs=strategy)
            assert len(v) == 2 and v.nnz == 0 and enc.last_report.empty == 2
        assert enc.encode_queries([""]).nnz == 0


def test_spans_map_back_through_lower_casing_that_changes_lengths(light_encoder):
    text = "İstanbul " * 300 + "Café naïve 東京"
    units = light_encoder.plan_units([text], "document", LongDocs("max", 64, 8))
    for (s, e), words in zip(units.spans, units.words):
        assert 0 <= s < e <= len(text)
        for ws, we in words.tolist():
            assert text[ws:we].strip() == text[ws:we] and text[ws:we], "a word span is a word of the text"
    assert text[units.words[-1][-1][0] : units.words[-1][-1][1]] == "京"


def test_encoders_agree_on_windows(encoder, light_encoder):
    texts = [_long_text(900), "short text", "", _long_text(2000)]
    a = encoder.encode_documents(texts, mode="fp32")
    b = light_encoder.encode_documents(texts)
    assert a.allclose(b, atol=1e-4)
    assert encoder.last_report.windowed == light_encoder.last_report.windowed == 2


@pytest.mark.slow
def test_fitting_documents_plan_the_same_batches_over_all_of_scifact(encoder, shared_data):
    """Every scifact document that fits in one window gets truncation's tokens, in the same batches."""
    texts = _scifact(shared_data)
    cut = encoder.plan_units(texts, "document", TRUNCATE)
    win = encoder.plan_units(texts, "document", LongDocs("max"))
    fits = np.flatnonzero(win.counts == 1)
    assert len(fits) == len(texts) - cut.truncated, (
        "a text fits in one window exactly when it is not truncated"
    )
    first = np.concatenate([[0], np.cumsum(win.counts)[:-1]])
    for t in fits.tolist():
        assert win.ids[first[t]] == cut.ids[t]
    for bs in (16, 32):
        fit_cut = [[cut.ids[i] for i in b] for b in cut.batches(bs) if cut.fits[b[0]]]
        fit_win = [[win.ids[i] for i in b] for b in win.batches(bs) if win.fits[b[0]]]
        assert fit_cut == fit_win


@pytest.mark.slow
@pytest.mark.numerics
@pytest.mark.parametrize("mode", ["exact", "fp32", "fast"])
def test_fitting_documents_get_bit_identical_vectors(encoder, shared_data, mode):
    texts = _scifact(shared_data, 300)  # all 5,183: /work note, bench/long_docs_results.md
    a = encoder.encode_documents(texts, long_docs="truncate", mode=mode)
    assert encoder.last_report.truncated >= 10
    b = encoder.encode_documents(texts, long_docs="max", mode=mode)
    c = encoder.encode_passages(texts, mode=mode)
    fits = np.flatnonzero(c.counts == 1)
    first = np.concatenate([[0], np.cumsum(c.counts)[:-1]])
    for t in fits.tolist():
        ia, va = a.row(t)
        for ib, vb in (b.row(t), c.vectors.row(int(first[t]))):
            assert np.array_equal(ia, ib) and np.array_equal(va, vb), f"text {t} differs"


# ---------------------------------------------------------------------- the index
@pytest.fixture
def passages_index(tmp_path, light_encoder):
    from spladekit.index import Index

    idx = Index.create(tmp_path / "p", long_docs=LongDocs("passages", 48, 8))
    return idx


def test_passages_index_ranks_documents_by_their_best_passage(passages_index):
    idx = passages_index
    long = _long_text(400, needle="thermodynamics", at=300)
    texts = {"a": long, "b": "yeast fermentation makes ethanol", "c": "thermodynamics of heat engines"}
    idx.add(list(texts), list(texts.values()), metadata=[{"lang": "en"}, {"lang": "fr"}, {"lang": "en"}])
    idx.commit()
    assert len(idx) == 3 and sorted(idx.ids()) == ["a", "b", "c"] and idx.info()["passages"] > 3
    spans = idx.passages("a")
    assert len(spans) > 3 and spans[0][0] == 0 and spans[-1][1] == len(long)
    hits = idx.search("thermodynamics", k=2, with_text=True)
    assert {h.id for h in hits} == {"a", "c"} and len(hits) == 2, "k counts documents"
    ha = next(h for h in hits if h.id == "a")
    s, e = ha.passage
    assert "thermodynamics" in long[s:e] and ha.text == long
    assert idx.get("a")["metadata"] == {"lang": "en"}
    assert {h.id for h in idx.search("thermodynamics", k=5, filter={"lang": "fr"})} <= {"b"}
    # the document vector is the max over its passages
    v = idx.vectors(["a"])
    enc = idx.encoder.encode_documents([long], long_docs=idx.long_docs)
    assert v.allclose(enc, atol=1e-5)
    assert sum(len(b.ids) for b in idx.iter_documents(2)) == 3
    # upsert with fewer passages removes the rest; delete removes all of them
    n_before = idx.info()["passages"]
    idx.upsert(["a"], ["short now"])
    idx.commit()
    assert idx.passages("a") == [(0, 9)] and idx.info()["passages"] == n_before - len(spans) + 1
    idx.delete(["a"])
    idx.commit()
    assert "a" not in idx and idx.info()["passages"] == 2 and len(idx) == 2


def test_passages_index_reopens_and_checks_ids(passages_index, tmp_path):
    from spladekit.index import Index

    passages_index.add(["x"], [_long_text(200)])
    passages_index.commit()
    passages_index.close()
    idx = Index.open(tmp_path / "p")
    assert idx.long_docs == LongDocs("passages", 48, 8) and len(idx) == 1
    with pytest.raises(InputError, match="reserves"):
        idx.add(["bad\x1fid"], ["text"])
    with pytest.raises(InputError, match="already in the index"):
        idx.add(["x"], ["again"])
    with pytest.raises(InputError, match="unknown id"):
        idx.delete(["nope"])
    with pytest.raises(InputError, match="reserved"):
        idx.add(["y"], ["t"], metadata=[{"_passage": 1}])


def test_max_index_records_and_uses_its_setting(tmp_path, encoder):
    from spladekit.index import Index

    idx = Index.create(tmp_path / "m", encoder, long_docs=LongDocs("max", 64, 16))
    text = _long_text(300)
    idx.add(["d"], [text])
    idx.commit()
    assert encoder.last_report.windowed == 1
    assert idx.vectors(["d"]).allclose(
        encoder.encode_documents([text], long_docs=LongDocs("max", 64, 16)), 1e-6
    )
    idx.close()
    assert Index.open(tmp_path / "m").long_docs == LongDocs("max", 64, 16)
    with pytest.raises(InputError, match="max_length"):
        Index.create(tmp_path / "bad", encoder, long_docs=LongDocs("max", 4096))
    with pytest.raises(InputError, match="unknown long-document strategy"):
        Index.create(tmp_path / "bad2", encoder, long_docs="halves")
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad2").exists()


# ---------------------------------------------------------------------- CLI and evaluation
def test_cli_index_search_info_with_passages(tmp_path):
    from typer.testing import CliRunner

    from spladekit.cli import app

    runner = CliRunner()
    src = tmp_path / "docs"
    src.mkdir()
    (src / "long.txt").write_text(_long_text(500, needle="thermodynamics", at=420))
    (src / "short.txt").write_text("yeast fermentation")
    ix = tmp_path / "ix"
    r = runner.invoke(app, ["index", str(src), "-i", str(ix), "--long-docs", "passages", "--window", "64"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["info", "-i", str(ix), "--json"])
    info = json.loads(r.stdout)
    assert info["documents"] == 2 and info["long_docs"]["strategy"] == "passages"
    assert info["long_docs"]["windows_per_document"] > 2
    r = runner.invoke(app, ["info", "-i", str(ix)])
    assert "passages over windows of 64 tokens" in r.stdout and "windows per document" in r.stdout
    r = runner.invoke(app, ["search", "thermodynamics", "-i", str(ix), "--json", "--highlight", "-k", "1"])
    assert r.exit_code == 0, r.output
    [hit] = json.loads(r.stdout)
    text = (src / "long.txt").read_text()
    assert (
        hit["id"] == "long.txt" and "thermodynamics" in text[hit["passage"]["start"] : hit["passage"]["end"]]
    )
    words = {t["word"] for t in hit["highlights"]["terms"]}
    assert "thermodynamics" in words
    r = runner.invoke(app, ["search", "thermodynamics", "-i", str(ix), "--highlight"])
    assert r.exit_code == 0 and "thermodynamics" in r.stdout
    r = runner.invoke(app, ["index", str(src), "-i", str(ix), "--long-docs", "max"])
    assert isinstance(r.exception, InputError) and "chosen when an index is created" in str(r.exception)


def test_eval_reports_long_documents_and_passages_match_exact(tmp_path):
    from spladekit.eval import evaluate

    data = tmp_path / "beir"
    (data / "qrels").mkdir(parents=True)
    docs = {
        "d1": _long_text(700, needle="thermodynamics", at=600),
        "d2": "yeast fermentation makes ethanol",
        "d3": "heat engines and entropy",
    }
    with open(data / "corpus.jsonl", "w") as f:
        for k, v in docs.items():
            f.write(json.dumps({"_id": k, "title": "", "text": v}) + "\n")
    with open(data / "queries.jsonl", "w") as f:
        f.write(json.dumps({"_id": "q1", "text": "thermodynamics"}) + "\n")
        f.write(json.dumps({"_id": "q2", "text": "yeast ethanol"}) + "\n")
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    runs = {}
    for strategy in ("truncate", "max", "passages"):
        for retriever in ("index", "exact"):
            res = evaluate(data, bm25=False, long_docs=strategy, retriever=retriever, k=3)
            runs[strategy, retriever] = res.runs["splade"]
            assert res.report["long_docs"]["strategy"] == strategy
        assert res.report["long_docs"]["documents_windowed"] == (0 if strategy == "truncate" else 1)
        for q in runs[strategy, "index"]:
            a, b = runs[strategy, "index"][q], runs[strategy, "exact"][q]
            assert [x for x, _ in a] == [x for x, _ in b]
            assert np.allclose([s for _, s in a], [s for _, s in b], atol=1e-4)
    assert runs["max", "exact"]["q1"][0][0] == "d1"


def test_server_highlights_and_passages(passages_index):
    from fastapi.testclient import TestClient

    from spladekit.serve import create_app

    idx = passages_index
    long = _long_text(400, needle="thermodynamics", at=300)
    idx.add(["a", "b"], [long, "yeast fermentation makes ethanol"])
    idx.commit()
    c = TestClient(create_app(idx))
    r = c.post("/search", json={"query": "thermodynamics", "k": 1, "highlight": True})
    assert r.status_code == 200, r.text
    [hit] = r.json()["hits"]
    s, e = hit["passage"]["start"], hit["passage"]["end"]
    assert hit["id"] == "a" and "thermodynamics" in long[s:e] and "text" not in hit
    terms = hit["highlights"]["terms"]
    top = next(
        t for t in terms if t["word"] == "thermodynamics"
    )  # a word of several pieces (##rm, ##od, ...)
    assert long[top["start"] : top["end"]] == "thermodynamics" and top["score"] > 0
    sn = hit["highlights"]["snippet"]
    assert long[sn["start"] : sn["end"]] == sn["text"]
    assert any(sn["text"][a:b] == "thermodynamics" for a, b in sn["marks"])
    r = c.post("/search/batch", json={"queries": [{"query": "yeast"}], "k": 1, "highlight": True})
    assert r.status_code == 200 and r.json()["results"][0][0]["highlights"]["terms"]
    assert "highlights" not in c.post("/search", json={"query": "yeast", "k": 1}).json()["hits"][0]
