"""Encoder: parity with sentence-transformers' SparseEncoder, pooling identities, input errors, loading errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from spladekit import InputError, ModelLoadError, SparseVectors, SpladeEncoder
from spladekit.encode import pooling

# float results against a reference: CI runs these again on torch's AVX2 kernels
pytestmark = pytest.mark.numerics

UNICODE_TEXTS = [
    "Café naïve résumé — coöperate façade",
    "東京は日本の首都です。",
    "Привет, как дела? Это тест.",
    "مرحبا بالعالم",
    "emoji 🧬🔬 protein folding 🧪",
    "Ünïcödé ßtraße Ωmega ∑ summation ≤ bound",
    "tab\tseparated\nnew line\r\ncarriage",
    "x" * 3000,
    "  leading and trailing spaces  ",
    "ΑΒΓ δέλτα epsilon",
]


def _reference(path: str | None):
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling

    from spladekit.encode import bundled_model_path

    path = str(path or bundled_model_path())
    return SparseEncoder(modules=[MLMTransformer(path), SpladePooling(pooling_strategy="max")], device="cpu")


def _synthetic_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = (
        "protein cell gene expression cancer patients treatment risk study results clinical trial mutation "
        "vaccine virus infection immune response dose effect model data analysis increased reduced levels"
    ).split()
    out = []
    for i in range(n):
        length = rng.choice([3, 8, 40, 200, 700])  # 700 words run past 512 tokens
        out.append(" ".join(rng.choice(words) for _ in range(length)) + f" {i}")
    return out


def _compare(ours: SparseVectors, ref: torch.Tensor, texts: list[str]) -> None:
    ref = ref.to_dense().numpy() if ref.is_sparse else ref.numpy()
    for i, text in enumerate(texts):
        idx, val = ours.row(i)
        if not text.strip():
            assert len(idx) == 0, "empty text must give an empty vector"
            continue
        ref_idx = np.flatnonzero(ref[i] > 0)
        assert np.array_equal(idx, ref_idx), f"text {i}: active terms differ"
        np.testing.assert_allclose(val, ref[i, ref_idx], atol=1e-4, rtol=0, err_msg=f"text {i}")


@pytest.fixture(scope="module")
def parity_texts(shared_data):
    queries = [json.loads(line)["text"] for line in open(shared_data / "scifact" / "queries.jsonl")][:90]
    docs = []
    for line in open(shared_data / "scifact" / "corpus.jsonl"):
        o = json.loads(line)
        docs.append((o["title"] + " " + o["text"]).strip())
        if len(docs) == 90:
            break
    texts = queries + docs + UNICODE_TEXTS + ["", "   "] + _synthetic_texts(10)
    st = _reference(None)
    ref_docs = st.encode_document(texts, batch_size=16, convert_to_tensor=True)
    ref_queries = st.encode_query(queries[:20], convert_to_tensor=True)
    return texts, queries[:20], ref_docs, ref_queries


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["exact", "fp32"])
def test_parity_with_sentence_transformers_on_bundled_model(encoder, parity_texts, mode):
    """≥ 200 texts: short queries, long documents (past 512 tokens), unicode, empty — same terms, |Δ| ≤ 1e-4."""
    texts, queries, ref_docs, ref_queries = parity_texts
    assert len(texts) >= 200
    ours = encoder.encode_documents(texts, mode=mode, batch_size=16, long_docs="truncate")  # as ST does
    assert encoder.last_report.truncated > 0, "the set must include texts past the 512-token limit"
    _compare(ours, ref_docs, texts)
    _compare(encoder.encode_queries(queries, mode=mode), ref_queries, queries)


def test_parity_on_tiny_random_mlm(tiny_mlm):
    """Fast, data-free parity: a randomly initialised BERT MLM built by the test."""
    enc = SpladeEncoder.load(tiny_mlm)
    texts = _synthetic_texts(24, seed=3) + UNICODE_TEXTS[:4] + [""]
    for mode in ("exact", "fp32"):
        ours = enc.encode_documents(texts, mode=mode, batch_size=5, long_docs="truncate")
        ref = _reference(tiny_mlm).encode_document(texts, batch_size=5, convert_to_tensor=True)
        _compare(ours, ref, texts)


def test_max_before_activation_equals_activation_before_max():
    """The identity the chunked pooling rests on, checked on random logits with padding."""
    torch.manual_seed(0)
    hidden = torch.randn(3, 7, 16)
    weight = torch.randn(50, 16)
    bias = torch.randn(50)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = False
    mask[2, 1:] = False
    logits = hidden @ weight.T + bias
    naive = (torch.log1p(torch.relu(logits)) * mask.unsqueeze(-1)).amax(dim=1)
    chunked = pooling.activate(pooling.masked_max_logits(hidden, mask, weight, chunk_elems=64) + bias, "relu")
    torch.testing.assert_close(chunked, naive)
    screened = pooling.screened_max_logits(
        hidden, mask, weight, bias, weight.bfloat16(), weight.norm(dim=1), chunk_elems=64
    )
    torch.testing.assert_close(pooling.activate(screened, "relu"), naive)
    naive_sum = (torch.log1p(torch.relu(logits)) * mask.unsqueeze(-1)).sum(dim=1)
    torch.testing.assert_close(
        pooling.masked_sum_activated(hidden, mask, weight, bias, "relu", 64), naive_sum
    )


def test_per_text_path_equals_padded_batch_path():
    """The per-text (packed) max used for long texts gives the padded path's exact values, empty rows -inf."""
    torch.manual_seed(3)
    hidden = torch.randn(4, 80, 16)
    weight = torch.randn(5000, 16)
    mask = torch.zeros(4, 80, dtype=torch.bool)
    for i, n in enumerate([80, 70, 0, 75]):
        mask[i, :n] = True
    assert (
        float(mask.sum(1).float().mean()) >= pooling.PACKED_MIN_MEAN_LENGTH
    )  # max_logits takes the per-text path
    padded = pooling.masked_max_logits(hidden, mask, weight, chunk_elems=4096)
    packed = pooling.max_logits(hidden, mask, weight, weight.t().contiguous())
    torch.testing.assert_close(packed, padded, rtol=1e-6, atol=1e-5)
    lengths = mask.sum(1).tolist()
    per_text = pooling.packed_max_logits(hidden, lengths, weight.t().contiguous(), vocab_step=1024)
    torch.testing.assert_close(per_text, padded, rtol=1e-6, atol=1e-5)
    assert bool(torch.isinf(per_text[2]).all())
    vocab_major = pooling.vocab_major_max_logits(hidden, lengths, weight, vocab_step=1000)
    torch.testing.assert_close(vocab_major, padded, rtol=1e-6, atol=1e-5)
    assert bool(torch.isinf(vocab_major[2]).all())
    assert pooling.head_layout("cpu") in ("vocab-major", "token-major")
    wl = weight.bfloat16()
    screened_packed = pooling.screened_max_logits(
        hidden, mask, weight, torch.zeros(5000), wl, weight.norm(dim=1), weight_lowp_t=wl.t().contiguous()
    )
    screened_padded = pooling.screened_max_logits(
        hidden, mask, weight, torch.zeros(5000), wl, weight.norm(dim=1)
    )
    torch.testing.assert_close(screened_packed, screened_padded)


def test_bf16_screen_never_drops_an_active_term():
    """Adversarial case: logits just above zero must survive the bf16 screen (the error bound is safe)."""
    torch.manual_seed(1)
    hidden = torch.randn(4, 9, 64) * 30
    weight = torch.randn(300, 64) * 0.5
    exact = (hidden @ weight.T).amax(dim=1)
    bias = -exact[0] + 1e-3  # text 0: every term's max logit is +1e-3, far below bf16 resolution
    out = pooling.screened_max_logits(
        hidden, torch.ones(4, 9, dtype=torch.bool), weight, bias, weight.bfloat16(), weight.norm(dim=1)
    )
    assert bool((out[0] > 0).all())
    torch.testing.assert_close(out[0], exact[0] + bias, atol=1e-4, rtol=0)


def test_fast_mode_is_close(encoder):
    """Fast mode pools a subset of tokens exactly: no weight above exact's, top terms kept, and a text made only
    of skipped tokens (stopwords/punctuation) encodes exactly as in exact mode."""
    texts = _synthetic_texts(12, seed=5) + ["the of and to", "what is fermentation?"]
    exact = encoder.encode_documents(texts)
    fast = encoder.encode_documents(texts, mode="fast")
    de, df = exact.to_dense(), fast.to_dense()
    assert (df <= de + 1e-5).all()
    assert (df[:, de.sum(axis=0) == 0] == 0).all()  # no term appears that exact does not have
    for i in range(len(texts)):
        top_e = {t for t, _ in exact[i].decode(10)[0]}
        top_f = {t for t, _ in fast[i].decode(10)[0]}
        assert len(top_e & top_f) >= min(9, len(top_e))
    np.testing.assert_allclose(df[-2], de[-2], atol=1e-6)
    assert {t for t, _ in fast[-1].decode(3)[0]} & {"fermentation", "##entation", "fe"}


def test_sparse_vectors_api(encoder):
    vecs = encoder.encode_queries(["what is fermentation", "", "protein folding"])
    assert len(vecs) == 3 and vecs.dim == 30522
    assert vecs.active_dims()[1] == 0
    dicts = vecs.to_dicts()
    assert dicts[1] == {} and all(w > 0 for w in dicts[0].values())
    back = SparseVectors.from_dicts(dicts, encoder.vocab)
    assert back.allclose(vecs, atol=1e-6)
    dense = vecs.to_dense()
    np.testing.assert_allclose(vecs.to_scipy().toarray(), dense)
    np.testing.assert_allclose(vecs.to_torch().to_dense().numpy(), dense)
    top = vecs.decode(3)[0]
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]
    pruned = encoder.encode_queries(["what is fermentation", "protein folding"], max_active_dims=4)
    assert pruned.active_dims().max() <= 4
    thresholded = encoder.encode_queries(["protein folding"], threshold=0.5)
    assert thresholded.data.min() > 0.5
    stats = vecs.stats()
    assert 0 < stats["sparsity"] < 1 and stats["mean_active_dims"] == pytest.approx(vecs.active_dims().mean())
    assert vecs[[0, 2]].allclose(SparseVectors.concat([vecs[0], vecs[2]]))
    assert vecs.flops() > 0


def test_inspect_gives_sensible_terms(encoder):
    terms = dict(encoder.inspect("what is fermentation", top_k=20))
    assert "##entation" in terms or "fermentation" in terms


@pytest.mark.parametrize(
    "bad, message",
    [
        ([], "empty list"),
        (["ok", 3], "texts\\[1\\] is int"),
        ([None], "texts\\[0\\] is NoneType"),
        (42, "texts must be"),
    ],
)
def test_bad_texts_get_clear_errors(encoder, bad, message):
    with pytest.raises(InputError, match=message):
        encoder.encode_documents(bad)


def test_loading_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="no such model folder"):
        SpladeEncoder.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        SpladeEncoder.load(tmp_path / "empty")
    not_mlm = tmp_path / "notmlm"
    not_mlm.mkdir()
    (not_mlm / "config.json").write_text(json.dumps({"architectures": ["BertForSequenceClassification"]}))
    with pytest.raises(ModelLoadError, match="not a masked-LM"):
        SpladeEncoder.load(not_mlm)
    with pytest.raises(InputError, match="unknown mode"):
        SpladeEncoder.load(mode="turbo")


def test_broken_weights_file(tiny_mlm, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in Path(tiny_mlm).iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ModelLoadError, match=r"broken.*cannot load model weights"):
        SpladeEncoder.load(broken)


def test_hub_id_offline_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="Offline\\?.*local folder"):
        SpladeEncoder.load("rasyosef/splade-mini-does-not-exist")


def test_sentence_transformers_folder_settings(tiny_mlm, tmp_path):
    """A SparseEncoder folder: max_seq_length, prompts and pooling settings are read from its config files."""
    st = _reference(tiny_mlm)
    st.max_seq_length = 16
    st.prompts = {"query": "query: ", "document": ""}
    out = tmp_path / "st"
    st.save(str(out))
    enc = SpladeEncoder.load(out)
    assert enc.max_length == 16
    assert enc.spec.prompts == {"query": "query: "}
    texts = ["protein folding and gene expression in cancer cells over many words here"]
    reloaded = type(st)(str(out), device="cpu")
    _compare(enc.encode_queries(texts), reloaded.encode_query(texts, convert_to_tensor=True), texts)
    _compare(enc.encode_documents(texts), reloaded.encode_document(texts, convert_to_tensor=True), texts)


def test_compute_path_names_the_head_and_why(encoder):
    """The path a mode runs is reported: fp32 says so; exact names the bf16 screen or says why it is fp32 here."""
    from spladekit.encode import cpu_supports_bf16

    assert encoder.compute_path("fp32").startswith("fp32: fp32 head, ")
    exact = encoder.compute_path("exact")
    if cpu_supports_bf16():
        assert "bf16 screen" in exact
    else:
        assert "exact = fp32" in exact and pooling.head_layout() in exact
    assert "stopword" in encoder.compute_path("fast") or "bf16 screen" in encoder.compute_path("fast")
