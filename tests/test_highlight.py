"""Match provenance (``encode.provenance.term_sources``) and highlights (``index.highlight``): over real hits (scifact
queries against 200 scifact documents, brute-force top 3), every span lies in the text, the word covers the arg-max
token, the token is the term's own piece where that piece is what set the weight, recomputed weights equal the
encoder's within 1e-4; long texts find their arg-max in later windows; passages; torch and numpy agree; snippets."""

from __future__ import annotations

import json
import unicodedata

import numpy as np
import pytest

from spladekit import InputError
from spladekit.encode.provenance import TermSource, _units, term_sources
from spladekit.encode.windows import TRUNCATE, LongDocs
from spladekit.index.highlight import highlight, marked_text, render_snippet, snippet

ATOL = 1e-4
MAX = LongDocs("max")

PARAGRAPH = (
    "Cancer cells express high levels of the p53 protein, and yeast fermentation converts sugar into alcohol. "
    "Clinical trials of the new vaccine measured antibody responses in elderly patients over two winters. "
)
TAIL = "Zebrafish embryos regenerate heart muscle after cryoinjury."


def _plain(s: str) -> str:
    """Lower-cased, accents stripped: what an uncased BERT tokenizer reads."""
    return "".join(c for c in unicodedata.normalize("NFD", s.lower()) if unicodedata.category(c) != "Mn")


def _check_sources(enc, text: str, terms, weights, sources, long_docs=MAX) -> dict:
    """The invariants of one document's sources; returns counts for the caller's totals."""
    units = _units(enc, text, long_docs)
    counts = {"own": 0, "elsewhere": 0, "special": 0}
    for t, w, s in zip(np.asarray(terms).tolist(), np.asarray(weights).tolist(), sources):
        assert s is not None and s.term == t
        assert abs(s.weight - w) <= ATOL, (enc.vocab[t], s.weight, w)
        u = units[s.unit]
        assert 0 <= s.position < len(u.ids)
        if s.token is None:
            assert s.word is None
            counts["special"] += 1
            continue
        (ts, te), (ws, we) = s.token, s.word
        assert 0 <= ws <= ts < te <= we <= len(text), (s, len(text))
        assert u.span[0] <= ts and te <= u.span[1]
        piece = enc.vocab[t]
        if t in u.ids and not piece.startswith("["):
            if u.ids[s.position] == t:  # the term's own piece set the weight: the token's text is that piece
                assert _plain(text[ts:te]) == piece.removeprefix("##"), (piece, text[ts:te])
                counts["own"] += 1
            else:  # the piece occurs, but another token expanded to a higher logit
                counts["elsewhere"] += 1
    return counts


# ----------------------------------------------------------------------------------------- real hits
@pytest.fixture(scope="module")
def scifact(shared_data, encoder):
    """200 scifact documents encoded by the torch encoder (exact, as an index stores them), 40 test queries."""
    texts = []
    with open(shared_data / "scifact" / "corpus.jsonl") as f:
        for line in f:
            o = json.loads(line)
            texts.append((o["title"] + " " + o["text"]).strip())
            if len(texts) == 200:
                break
    queries = [json.loads(line)["text"] for line in open(shared_data / "scifact" / "queries.jsonl")][:40]
    return texts, encoder.encode_documents(texts), queries


def _hits(light_encoder, docs, queries, k=3):
    """(query terms, query weights, doc row) of each brute-force top-k hit, matched terms only."""
    qv = light_encoder.encode_queries(queries)
    dense_docs = docs.to_scipy().tocsr()
    scores = (qv.to_scipy() @ dense_docs.T).toarray()
    for qi in range(len(queries)):
        qt, qw = qv.row(qi)
        for d in np.argsort(-scores[qi], kind="stable")[:k]:
            dt, dw = docs.row(int(d))
            common, qa, da = np.intersect1d(qt, dt, return_indices=True)
            if len(common):
                yield int(d), common, qw[qa], dw[da]


def test_sources_of_real_hits(scifact, light_encoder):
    texts, docs, queries = scifact
    totals = {"own": 0, "elsewhere": 0, "special": 0}
    n = 0
    for d, terms, qw, dw in _hits(light_encoder, docs, queries):
        sources = term_sources(light_encoder, texts[d], terms, MAX)
        for k, v in _check_sources(light_encoder, texts[d], terms, dw, sources).items():
            totals[k] += v
        h = highlight(texts[d], terms, qw, sources, light_encoder.vocab)
        json.dumps(h)
        scores = [x["score"] for x in h["terms"]]
        assert scores == sorted(scores, reverse=True) and len(h["terms"]) == len(terms)
        sn = h["snippet"]
        assert texts[d][sn["start"] : sn["end"]] == sn["text"] and sn["marks"]
        words = {x["word"] for x in h["terms"] if x["word"]}
        for s, e in sn["marks"]:
            assert 0 <= s < e <= len(sn["text"])
            assert any(w.lower() in sn["text"][s:e].lower() for w in words)  # every occurrence, any case
        n += 1
    assert n >= 100
    # nearly always the term's own piece is its source where the document contains it
    assert totals["own"] >= 0.9 * (totals["own"] + totals["elsewhere"]), totals
    print(f"{n} hits: {totals}")


def test_torch_and_numpy_agree(scifact, encoder, light_encoder):
    """Same weights (1e-4) and the same source token, except where two tokens' logits tie within 1e-4."""
    texts, docs, queries = scifact
    same = 0
    for d, terms, _, _ in list(_hits(light_encoder, docs, queries[:15])):
        a = term_sources(encoder, texts[d], terms, MAX)
        b = term_sources(light_encoder, texts[d], terms, MAX)
        unit = _units(encoder, texts[d], MAX)
        for x, y in zip(a, b):
            assert abs(x.weight - y.weight) <= ATOL
            if (x.unit, x.position) == (y.unit, y.position):
                assert (x.token, x.word) == (y.token, y.word)
                same += 1
            else:  # a near-tie: torch's logit at numpy's token is within 1e-4 of its max
                logits = encoder.token_logits(unit[y.unit].ids, np.array([x.term]))
                assert abs(float(logits[y.position, 0]) - float(logits[:, 0].max())) <= ATOL
    assert same > 0


# ----------------------------------------------------------------------------------------- long texts
@pytest.fixture(scope="module")
def long_text() -> str:
    """About 900 tokens (two windows of 512): a word that appears only in the last sentence."""
    return PARAGRAPH * 20 + TAIL


def test_long_text_source_in_a_later_window(encoder, light_encoder, long_text):
    vec = encoder.encode_documents([long_text], long_docs=MAX)
    assert encoder.last_report.windowed == 1
    terms, weights = vec.row(0)
    sources = term_sources(light_encoder, long_text, terms, MAX)
    _check_sources(light_encoder, long_text, terms, weights, sources)
    tail = long_text.index(TAIL)
    late = [s for s in sources if s.token and s.token[0] >= tail]
    assert late and all(s.unit > 0 for s in late)
    zebra = [s for s in late if light_encoder.vocab[s.term] in ("zebra", "##fish", "embryos", "heart")]
    assert zebra, [light_encoder.vocab[s.term] for s in late]


def test_truncate_uses_the_first_window_only(encoder, light_encoder, long_text):
    vec = encoder.encode_documents([long_text], long_docs="truncate")
    terms, weights = vec.row(0)
    sources = term_sources(light_encoder, long_text, terms, TRUNCATE)
    _check_sources(light_encoder, long_text, terms, weights, sources, TRUNCATE)
    (unit,) = _units(light_encoder, long_text, TRUNCATE)
    assert unit.ids == light_encoder._tokenize([long_text], "document")[0][0]  # exactly truncation's tokens
    assert all(s.unit == 0 and (s.token is None or s.token[1] <= unit.span[1]) for s in sources)
    zebra = light_encoder.token_ids(["zebra"])
    assert term_sources(light_encoder, long_text, zebra, TRUNCATE)[0] is None  # beyond the window: weight 0
    assert term_sources(light_encoder, long_text, zebra, MAX)[0] is not None


def test_passages_use_the_ranked_window(light_encoder, long_text):
    ld = LongDocs("passages", 128, 32)
    p = light_encoder.encode_passages([long_text], long_docs=ld)
    assert len(p.spans) > 3
    for i in (0, len(p.spans) - 1):
        terms, weights = p.vectors.row(i)
        sources = term_sources(light_encoder, long_text, terms, ld, span=p.spans[i])
        assert all(s.unit == i for s in sources)
        for s, w in zip(sources, weights):
            assert abs(s.weight - w) <= ATOL
            assert s.token is None or p.spans[i][0] <= s.token[0] < s.token[1] <= p.spans[i][1]
    with pytest.raises(InputError, match="no window of this text has the span"):
        term_sources(light_encoder, long_text, terms, ld, span=(1, 2))


def test_short_text_and_edges(light_encoder):
    text = "Café naïve 東京 p53 IL-6 10% (n=120) [bold]markup[/bold]"
    vec = light_encoder.encode_documents([text])
    terms, weights = vec.row(0)
    sources = term_sources(light_encoder, text, terms, MAX)
    _check_sources(light_encoder, text, terms, weights, sources)
    assert term_sources(light_encoder, text, terms, TRUNCATE) == sources  # one window: the same tokens
    assert term_sources(light_encoder, "   ", terms[:3], MAX) == [None] * 3
    assert term_sources(light_encoder, text, [], MAX) == []
    with pytest.raises(InputError, match="term ids"):
        term_sources(light_encoder, text, [light_encoder.vocab_size], MAX)


def test_encoder_without_token_logits_is_refused(light_encoder):
    from spladekit.encode.onnx_encoder import OnnxEncoder

    onnx_like = object.__new__(OnnxEncoder)  # the ONNX graph returns pooled vectors only
    with pytest.raises(InputError, match="highlights need the torch or numpy encoder"):
        term_sources(onnx_like, "some text", [2000], MAX)


# ----------------------------------------------------------------------------------------- snippets
def _src(term: int, weight: float, word: tuple[int, int] | None) -> TermSource:
    return TermSource(term, weight, word, word, 0, 1)


def test_snippet_picks_the_densest_window():
    filler = " ".join(f"filler{i}" for i in range(200))
    text = f"alpha {filler} beta gamma delta {filler} epsilon"
    at = {w: (text.index(f" {w}") + 1, text.index(f" {w}") + 1 + len(w)) for w in ("beta", "gamma", "delta")}
    at["alpha"] = (0, 5)
    at["epsilon"] = (text.rindex("epsilon"), len(text))
    vocab = [f"t{i}" for i in range(10)]
    names = ["alpha", "beta", "gamma", "delta", "epsilon"]
    sources = [_src(i, 1.0, at[w]) for i, w in enumerate(names)]
    weights = [1.5, 1.0, 1.0, 1.0, 0.5]  # alpha alone (1.5) < beta+gamma+delta (3.0)
    h = highlight(text, list(range(5)), weights, sources, vocab, snippet_chars=120)
    sn = h["snippet"]
    assert [x["word"] for x in h["terms"]][0] == "alpha"
    assert sn["start"] < at["beta"][0] and at["delta"][1] <= sn["end"]
    assert len(sn["text"]) <= 120 and sn["text"] == text[sn["start"] : sn["end"]]
    assert [sn["text"][s:e] for s, e in sn["marks"]] == ["beta", "gamma", "delta"]
    # cut at word boundaries, no surrounding whitespace
    assert text[sn["start"] - 1] == " " and text[sn["end"]] == " " and sn["text"] == sn["text"].strip()
    assert marked_text(sn).startswith("…") and marked_text(sn).endswith("…")
    assert "<em>gamma</em>" in marked_text(sn) and "<b>gamma</b>" in marked_text(sn, "<b>", "</b>")


def test_snippet_marks_merge_and_renders_escaped():
    text = "[red]not markup[/red] well-known results \\"
    i = text.index("well")
    sources = [_src(0, 1.0, (i, i + 10)), _src(1, 1.0, (i, i + 4)), None, _src(3, 0.5, (i + 5, i + 10))]
    h = highlight(text, [0, 1, 2, 3], [1.0, 1.0, 1.0, 1.0], sources, ["x", "y", "z", "w"])
    sn = h["snippet"]
    assert sn["start"] == 0 and sn["end"] == len(text) and sn["marks"] == [[i, i + 10]]
    assert [x["term"] for x in h["terms"]] == ["x", "y", "w"]
    rendered = render_snippet(sn)
    assert rendered.startswith("\\[red]not markup\\[/red] [bold yellow]well-known[/]")
    from rich.text import Text

    assert Text.from_markup(rendered).plain == text  # the document's own brackets survive as text
    assert marked_text(sn, ellipsis="") == text[:i] + "<em>well-known</em>" + text[i + 10 :]
    for doc in ("a\\\\b\\ c [x]\\", "b\\\\"):  # backslashes before a mark, at the end, before an ellipsis
        j = doc.index("b")
        for sn in (
            snippet(doc, [{"start": j, "end": j + 1, "score": 1.0}], 100),
            snippet(doc + " d" * 200, [], 5),
        ):
            assert Text.from_markup(render_snippet(sn)).plain.strip("…") == sn["text"], (
                doc,
                render_snippet(sn),
            )


def test_snippet_without_located_terms():
    text = "  " + "word " * 100
    h = highlight(text, [5], [1.0], [_src(5, 0.7, None)], ["t"] * 6, snippet_chars=50)
    assert h["terms"][0]["start"] is None and h["terms"][0]["word"] is None
    sn = h["snippet"]
    assert sn["start"] == 2 and sn["marks"] == [] and len(sn["text"]) <= 50
    assert sn["text"].endswith("word")
    assert snippet("", [], 10) == {"text": "", "start": 0, "end": 0, "doc_chars": 0, "marks": []}
