"""LiteEncoder (numpy forward pass, no torch): parity with SpladeEncoder fp32, config handling, errors, no torch."""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spladekit import InputError, ModelLoadError, SparseVectors
from spladekit.encode import lite_bert
from spladekit.encode.lite import load_lite

# float results against a reference: CI runs these again on torch's AVX2 kernels
pytestmark = pytest.mark.numerics

from _parity import ATOL, assert_parity  # noqa: E402

WORDS = (
    "protein cell gene expression cancer patients treatment risk study results clinical trial mutation vaccine "
    "virus infection immune response dose effect model data analysis increased reduced levels fermentation yeast "
    "sugar alcohol what is how does the of in and why are DNA RNA COVID-19 p53 IL-6 10% 2.5mg (n=120) Müller's "
    "café"
).split()

UNICODE_TEXTS = [
    "Café naïve résumé — coöperate façade",
    "東京は日本の首都です。",
    "Привет, как дела? Это тест.",
    "emoji 🧬🔬 protein folding 🧪",
    "Ünïcödé ßtraße Ωmega ∑ summation ≤ bound",
    "tab\tseparated\nnew line\r\ncarriage",
    "  leading and trailing spaces  ",
]


def _sentences(n: int, seed: int = 0, lengths=(2, 4, 6, 9, 14, 20)) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.choice(lengths))]
        if rng.random() < 0.3:
            words[0] = words[0].capitalize()
        out.append(" ".join(words) + ("?" if i % 3 == 0 else ""))
    return out


def _documents(seed: int = 1) -> list[str]:
    """A few longer texts, one far past 512 tokens (truncation), plus unicode and empty ones."""
    rng = random.Random(seed)
    docs = [" ".join(rng.choice(WORDS) for _ in range(n)) for n in (40, 120, 300, 900)]
    return docs + UNICODE_TEXTS + ["", "   "]


@pytest.fixture(scope="module")
def ref():
    from spladekit import SpladeEncoder

    return SpladeEncoder.load(mode="fp32")


@pytest.fixture(scope="module")
def lite_enc():
    return load_lite()


# ------------------------------------------------------------------------------------------ numerics
def test_erf_matches_math_erf():
    x = np.linspace(-9.0, 9.0, 360_001)
    ref = np.array([math.erf(v) for v in x])
    assert np.abs(lite_bert.erf(x) - ref).max() < 1e-10
    assert lite_bert.erf(np.array([np.inf, -np.inf, 0.0])).tolist() == pytest.approx(
        [1.0, -1.0, 0.0], abs=1e-10
    )


# ------------------------------------------------------------------------------------------ bundled model
def test_same_model_identity_as_torch_encoder(ref, lite_enc):
    # both fp32: name, path, weights hash, max length, pooling, ...; only the compute path differs
    assert lite_enc.identity() == ref.identity()
    assert lite_enc.vocab == ref.vocab
    assert lite_enc.vocab_size == ref.vocab_size == 30522
    assert (lite_enc.name, lite_enc.max_length) == (ref.name, ref.max_length)
    assert lite_enc.spec.do_lower_case == ref.spec.do_lower_case
    assert lite_enc.weights_hash == ref.weights_hash


@pytest.mark.parametrize("kind", ["query", "document"])
def test_parity_on_generated_sentences(ref, lite_enc, kind):
    """200 generated sentences (no shared data needed), encoded as queries and as documents."""
    texts = _sentences(200)
    diff = assert_parity(lite_enc.encode(texts, kind=kind), ref.encode(texts, kind=kind))
    assert vars(lite_enc.last_report) == vars(ref.last_report)
    print(f"generated, kind={kind}: max |Δw| {diff:.2e}")


def test_parity_on_long_documents_with_truncation(ref, lite_enc):
    docs = _documents()
    ours = lite_enc.encode_documents(docs, long_docs="truncate")
    assert_parity(ours, ref.encode_documents(docs, long_docs="truncate"))
    assert vars(lite_enc.last_report) == vars(ref.last_report)
    assert lite_enc.last_report.truncated == 1 and lite_enc.last_report.empty == 2
    assert ours.active_dims()[-2:].tolist() == [0, 0]
    # the default, max over windows: the same windows and vectors in both encoders
    assert_parity(lite_enc.encode_documents(docs), ref.encode_documents(docs))
    assert vars(lite_enc.last_report) == vars(ref.last_report) and lite_enc.last_report.windowed == 1


@pytest.mark.slow
def test_parity_on_scifact(ref, lite_enc, shared_data):
    """400 scifact queries as queries, 200 as documents; corpus texts as documents, one past 512 tokens."""
    queries = [json.loads(line)["text"] for line in open(shared_data / "scifact" / "queries.jsonl")][:400]
    assert len(queries) == 400
    diffs = [assert_parity(lite_enc.encode_queries(queries), ref.encode_queries(queries))]
    diffs.append(assert_parity(lite_enc.encode_documents(queries[:200]), ref.encode_documents(queries[:200])))
    docs = []
    with open(shared_data / "scifact" / "corpus.jsonl") as f:
        for line in f:
            o = json.loads(line)
            docs.append((o["title"] + " " + o["text"]).strip())
            if len(docs) == 40:
                break
    docs.append(" ".join(docs[:8]))  # ~1,800 words: past 512 tokens
    truncate = "truncate"
    diffs.append(
        assert_parity(
            lite_enc.encode_documents(docs, long_docs=truncate),
            ref.encode_documents(docs, long_docs=truncate),
        )
    )
    assert vars(lite_enc.last_report) == vars(ref.last_report) and lite_enc.last_report.truncated >= 1
    diffs.append(assert_parity(lite_enc.encode_documents(docs), ref.encode_documents(docs)))
    assert vars(lite_enc.last_report) == vars(ref.last_report) and lite_enc.last_report.windowed >= 1
    print(f"scifact: max |Δw| {max(diffs):.2e}")


def test_pruning_options_match(ref, lite_enc):
    texts = _sentences(12, seed=5)
    assert_parity(lite_enc.encode_queries(texts, threshold=0.3), ref.encode_queries(texts, threshold=0.3))
    ours = lite_enc.encode_queries(texts, max_active_dims=7)
    theirs = ref.encode_queries(texts, max_active_dims=7)
    full = lite_enc.encode_queries(texts)
    for i in range(len(texts)):
        (idx, val), (_, ref_val), (f_idx, f_val) = ours.row(i), theirs.row(i), full.row(i)
        assert len(idx) == min(7, len(f_idx))
        assert np.all(np.isin(idx, f_idx)) and val.min() >= np.sort(f_val)[-len(idx)]
        # ties at the cut may pick different terms: compare the kept weights, not the ids
        np.testing.assert_allclose(np.sort(val), np.sort(ref_val), atol=ATOL, rtol=0)


def test_empty_texts_and_inspect(ref, lite_enc):
    v = lite_enc.encode_queries(["", "  ", "what is fermentation"])
    assert v.active_dims()[:2].tolist() == [0, 0] and v.active_dims()[2] > 0
    assert lite_enc.last_report.empty == 2 and lite_enc.last_report.texts == 3
    terms = dict(lite_enc.inspect("what is fermentation", query=True, top_k=10))
    assert terms.keys() == dict(ref.inspect("what is fermentation", query=True, top_k=10)).keys()
    assert lite_enc.token_ids(["yeast"]) == ref.token_ids(["yeast"])


@pytest.mark.parametrize("bad", [[], ["ok", 3], [None], 42, None])
def test_bad_texts_same_errors_as_torch_encoder(ref, lite_enc, bad):
    with pytest.raises(InputError) as theirs:
        ref.encode_documents(bad)
    with pytest.raises(InputError) as ours:
        lite_enc.encode_documents(bad)
    assert str(ours.value) == str(theirs.value)


def test_threads_and_max_length(lite_enc):
    """Concurrent callers (the server) get the same vectors; truncation follows ``spec.max_length``."""
    from concurrent.futures import ThreadPoolExecutor

    texts = _sentences(40, seed=9)
    alone = lite_enc.encode_queries(texts)
    with ThreadPoolExecutor(4) as pool:
        rows = list(pool.map(lambda t: lite_enc.encode_queries([t]), texts))
    assert SparseVectors.concat(rows).allclose(alone, atol=1e-6)
    short = load_lite(max_length=8)
    long_text = " ".join(WORDS)
    short.encode_documents([long_text], long_docs="truncate")
    assert (short.last_report.tokens, short.last_report.truncated) == (8, 1)
    short.spec.max_length = 16
    short.encode_documents([long_text], long_docs="truncate")
    assert short.last_report.tokens == 16 and short.max_length == 16


def test_fast_mode_is_refused(lite_enc):
    with pytest.raises(InputError, match="fp32"):
        lite_enc.encode_queries(["x"], mode="fast")


def test_no_torch_or_transformers_imported():
    code = (
        "import sys, json; import spladekit.encode.lite as m; e = m.load_lite(); "
        "e.encode_queries(['what is fermentation']); e.inspect('yeast'); e.info(); "
        "print(json.dumps([k for k in ('torch', 'transformers', 'sentence_transformers') if k in sys.modules]))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []


# ------------------------------------------------------------------------------------------ other models
def _save_random(path: Path, model) -> Path:
    """Save a random masked-LM with the bundled tokenizer; a negative-mean bias keeps vectors sparse, non-empty."""
    import torch
    from transformers import AutoTokenizer

    from spladekit.encode.loading import bundled_model_path

    with torch.no_grad():
        model.get_output_embeddings().bias.normal_(-2.0, 1.0)
    model.save_pretrained(str(path))
    AutoTokenizer.from_pretrained(str(bundled_model_path())).save_pretrained(str(path))
    return path


def _bert(path: Path, **cfg) -> Path:
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(1)
    base = dict(vocab_size=30522, hidden_size=48, num_hidden_layers=2, num_attention_heads=4)
    config = BertConfig(**{**base, "intermediate_size": 96, "max_position_embeddings": 96, **cfg})
    return _save_random(path, BertForMaskedLM(config))


def _distilbert(path: Path, **cfg) -> Path:
    import torch
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    torch.manual_seed(2)
    base = dict(vocab_size=30522, dim=48, n_layers=2, n_heads=3, hidden_dim=80, max_position_embeddings=96)
    return _save_random(path, DistilBertForMaskedLM(DistilBertConfig(**{**base, **cfg})))


def _check_folder(folder: Path) -> float:
    from spladekit import SpladeEncoder

    theirs = SpladeEncoder.load(folder, mode="fp32")
    ours = load_lite(folder)
    assert ours.identity() == theirs.identity()
    texts = _sentences(40, seed=7) + _documents()  # past the 96 positions too: truncation
    diffs = []
    for kind in ("query", "document"):
        diffs.append(assert_parity(ours.encode(texts, kind=kind), theirs.encode(texts, kind=kind)))
        assert vars(ours.last_report) == vars(theirs.last_report)
    assert ours.encode_documents(texts).nnz > 0
    print(f"{folder.name}: max |Δw| {max(diffs):.2e}")
    return max(diffs)


def test_tiny_random_bert(tiny_mlm):
    """conftest's 1-layer, hidden-32, 2-head BERT."""
    _check_folder(tiny_mlm)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(
            lambda p: _bert(p, hidden_act="gelu_new", layer_norm_eps=1e-5), id="bert-gelu_new-eps1e-5"
        ),
        pytest.param(
            lambda p: _bert(p, hidden_act="relu", num_attention_heads=1),
            id="bert-relu-1head",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            lambda p: _bert(p, tie_word_embeddings=False), id="bert-untied-decoder", marks=pytest.mark.slow
        ),
        pytest.param(lambda p: _distilbert(p), id="distilbert-gelu"),
        pytest.param(
            lambda p: _distilbert(p, activation="relu", n_heads=6),
            id="distilbert-relu",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_config_variants(tmp_path, build):
    _check_folder(build(tmp_path / "model"))


@pytest.mark.parametrize(
    "pooling, activation", [("max", "log1p_relu"), pytest.param("sum", "relu", marks=pytest.mark.slow)]
)
def test_sentence_transformers_folder(tiny_mlm, tmp_path, pooling, activation):
    """SparseEncoder folder: prompts, max_seq_length, pooling strategy and activation come from its configs."""
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling

    st = SparseEncoder(
        modules=[
            MLMTransformer(str(tiny_mlm)),
            SpladePooling(pooling_strategy=pooling, activation_function=activation),
        ],
        device="cpu",
    )
    st.max_seq_length = 24
    st.prompts = {"query": "query: ", "document": ""}
    st.save(str(tmp_path / "st"))
    ours = load_lite(tmp_path / "st")
    assert ours.max_length == 24 and ours.spec.prompts == {"query": "query: "}
    assert (ours.spec.pooling_strategy, ours.spec.activation) == (pooling, activation)
    _check_folder(tmp_path / "st")


@pytest.mark.slow
def test_bf16_weights(tiny_mlm, tmp_path):
    """numpy has no bfloat16: the lite reader widens bf16 tensors itself, as torch's upcast does."""
    import torch
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "bf16"
    shutil.copytree(tiny_mlm, folder)
    tensors = load_file(str(folder / "model.safetensors"))
    save_file({k: v.to(torch.bfloat16) for k, v in tensors.items()}, str(folder / "model.safetensors"))
    _check_folder(folder)


# ------------------------------------------------------------------------------------------ errors
def _folder(tmp_path: Path, src: Path, config: dict | None = None, drop=(), extra=()) -> Path:
    out = tmp_path / "m"
    shutil.copytree(src, out)
    if config is not None:
        cfg = json.loads((out / "config.json").read_text())
        cfg.update(config)
        (out / "config.json").write_text(json.dumps(cfg))
    for name in drop:
        (out / name).unlink()
    for name in extra:
        (out / name).write_bytes(b"")
    return out


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(config={"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}), "GPT2LMHeadModel"),
        (
            dict(config={"architectures": ["RobertaForMaskedLM"], "model_type": "roberta"}),
            "RobertaForMaskedLM is not supported by the lite encoder",
        ),
        (
            dict(config={"architectures": [], "model_type": "roberta"}),
            "model_type 'roberta' is not supported",
        ),
        (dict(drop=["tokenizer.json"]), "no tokenizer.json"),
        (dict(drop=["model.safetensors"], extra=["pytorch_model.bin"]), "only pytorch_model.bin"),
        (dict(config={"hidden_act": "mish"}), "activation 'mish' is not supported"),
        (dict(config={"position_embedding_type": "relative_key"}), "position_embedding_type 'relative_key'"),
        (dict(config={"num_attention_heads": 3}), "not a multiple of 3 attention heads"),
        (dict(config={"hidden_size": 64}), "inconsistent shapes"),
    ],
)
def test_unsupported_folders_give_one_line_errors(tiny_mlm, tmp_path, change, message):
    folder = _folder(tmp_path, tiny_mlm, **change)
    with pytest.raises(ModelLoadError, match=message) as err:
        load_lite(folder)
    assert "\n" not in str(err.value)


def test_missing_tensor_and_broken_file(tiny_mlm, tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = _folder(tmp_path, tiny_mlm)
    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["bert.encoder.layer.0.attention.self.key.weight"]
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="no tensor bert.encoder.layer.0.attention.self.key.weight"):
        load_lite(folder)
    tensors["bert.encoder.layer.0.attention.self.key.weight"] = np.zeros((32, 32), np.float32)
    tensors["bert.encoder.layer.0.output.dense.weight"] = np.zeros((32, 48), np.float32)  # intermediate is 64
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="cannot run these weights"):
        load_lite(folder)
    (folder / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ModelLoadError, match="cannot read weights"):
        load_lite(folder)


def test_hub_id_offline_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="Offline\\?.*local folder"):
        load_lite("rasyosef/splade-mini-does-not-exist")
