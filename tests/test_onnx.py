"""ONNX export with SPLADE pooling in the graph (``spladekit export-model``) and ``OnnxEncoder``: parity with the
torch encoder on real texts, the folder and graph it writes, loading through ``SpladeEncoder.load``, the CLI,
and one-line errors (no onnxruntime, a corrupt model.onnx, an unsupported pooling)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from spladekit import InputError, ModelLoadError

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[dev]')")
pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[dev]')")

from _parity import ATOL, assert_parity  # noqa: E402

from spladekit.encode.onnx_encoder import MARKER, MODEL_FILE, OnnxEncoder, load_onnx  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """The bundled splade-tiny exported once for the module."""
    from spladekit.encode.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "splade-tiny-onnx"
    export_onnx(None, out)
    return out


@pytest.fixture(scope="module")
def onnx_enc(exported) -> OnnxEncoder:
    return load_onnx(exported)


def _long_text() -> str:
    words = "fermentation yeast sugar alcohol protein cell gene expression cancer clinical trial".split()
    return " ".join(words[i % len(words)] for i in range(900))  # ~900 tokens: truncated at 512


# ------------------------------------------------------------------------------------------ parity
@pytest.mark.numerics
@pytest.mark.slow
def test_parity_on_scifact(onnx_enc, encoder, shared_data):
    """The first 200 scifact documents as documents, 300 queries as queries: every weight within 1e-4."""
    docs = []
    with open(shared_data / "scifact" / "corpus.jsonl") as f:
        for line in f:
            o = json.loads(line)
            docs.append((o["title"] + " " + o["text"]).strip())
            if len(docs) == 200:
                break
    queries = [json.loads(line)["text"] for line in open(shared_data / "scifact" / "queries.jsonl")][:300]
    assert len(docs) == 200 and len(queries) == 300
    d_docs = assert_parity(onnx_enc.encode_documents(docs), encoder.encode_documents(docs, mode="fp32"))
    assert vars(onnx_enc.last_report) == vars(encoder.last_report)
    d_q = assert_parity(onnx_enc.encode_queries(queries), encoder.encode_queries(queries, mode="fp32"))
    assert vars(onnx_enc.last_report) == vars(encoder.last_report)
    print(f"scifact: max |Δw| documents {d_docs:.2e}, queries {d_q:.2e}")


@pytest.mark.numerics
def test_parity_on_edge_texts(onnx_enc, encoder):
    texts = ["", "   ", "fermentation", "a", _long_text(), "Café naïve 東京 🧬 p53 IL-6 10% (n=120)"]
    for kind in ("query", "document"):
        ours = onnx_enc.encode(texts, kind=kind, long_docs="truncate")
        assert_parity(ours, encoder.encode(texts, kind=kind, mode="fp32", long_docs="truncate"))
        assert vars(onnx_enc.last_report) == vars(encoder.last_report)
        assert onnx_enc.last_report.truncated == 1 and onnx_enc.last_report.empty == 2
        assert ours.active_dims()[:2].tolist() == [0, 0] and all(ours.active_dims()[2:] > 0)
    # documents' default: max over windows, the same in both
    assert_parity(onnx_enc.encode_documents(texts), encoder.encode_documents(texts, mode="fp32"))
    assert vars(onnx_enc.last_report) == vars(encoder.last_report) and encoder.last_report.windowed == 1


@pytest.mark.numerics
def test_token_budget_and_options(onnx_enc, encoder):
    """Small runs (one text each, a tiny token budget) give the same vectors; pruning options match torch's."""
    texts = [
        "what is fermentation",
        _long_text(),
        "yeast is a fungus",
        "a much longer sentence about cells " * 5,
    ]
    full = onnx_enc.encode_documents(texts)
    small = onnx_enc.encode_documents(texts, batch_size=1, token_budget=8)
    assert np.abs(full.to_dense() - small.to_dense()).max() <= 1e-5
    ours = onnx_enc.encode_documents(texts, max_active_dims=7, threshold=0.3)
    ref = encoder.encode_documents(texts, max_active_dims=7, threshold=0.3, mode="fp32")
    assert ours.active_dims().tolist() == ref.active_dims().tolist() and max(ours.active_dims()) == 7
    assert_parity(ours, ref)
    assert (
        onnx_enc.inspect("fermentation of sugar", top_k=3)[0][0]
        == encoder.inspect("fermentation of sugar")[0][0]
    )


# ------------------------------------------------------------------------------------------ folder and graph
def test_folder_marker_and_graph(exported, onnx_enc, encoder):
    import onnx

    names = {p.name for p in exported.iterdir()}
    assert {MODEL_FILE, MARKER, "tokenizer.json", "tokenizer_config.json", "config.json"} <= names
    assert not any(n.endswith((".safetensors", ".bin", ".pt")) for n in names)  # no torch weights shipped
    meta = json.loads((exported / MARKER).read_text())
    assert meta["source"]["weights_sha256"] == encoder.weights_hash
    assert (meta["pooling"], meta["activation"], meta["max_length"]) == ("max", "relu", 512)
    assert meta["vocab_size"] == 30522 and meta["opset"] >= 14 and meta["check_max_abs_diff"] <= ATOL
    assert {"torch", "onnx", "onnxruntime", "spladekit"} <= set(meta["versions"])
    # the same identity as the torch encoder: an index built by one is searched with the other
    info, ref = onnx_enc.identity(), encoder.identity()
    assert {k: v for k, v in info.items() if k != "path"} == {k: v for k, v in ref.items() if k != "path"}
    assert info["path"] == str(exported) and onnx_enc.vocab == encoder.vocab
    # the graph: int64 inputs with dynamic batch and length; 1-d COO outputs, never B × L × V logits
    graph = onnx.load(str(exported / MODEL_FILE)).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]
    for i in graph.input:
        assert i.type.tensor_type.elem_type == onnx.TensorProto.INT64
        dims = i.type.tensor_type.shape.dim
        assert len(dims) == 2 and all(d.dim_param and not d.dim_value for d in dims)
    assert meta["optimized"] is None and {n.domain for n in graph.node} == {""}  # standard ONNX ops only
    outs = {o.name: o.type.tensor_type for o in graph.output}
    assert list(outs) == ["rows", "terms", "weights"]
    assert [outs[n].elem_type for n in outs] == [onnx.TensorProto.INT64] * 2 + [onnx.TensorProto.FLOAT]
    assert all(len(t.shape.dim) == 1 for t in outs.values())


def test_spladeencoder_load_dispatches_to_onnx(exported):
    from spladekit import SpladeEncoder
    from spladekit.encode.choose import light_or_full

    enc = SpladeEncoder.load(exported, threads=1)
    assert isinstance(enc, OnnxEncoder) and isinstance(light_or_full(str(exported)), OnnxEncoder)
    vec = enc.encode_queries(["what is fermentation"])
    assert vec.decode(1)[0][0][0] in enc.vocab and enc.last_report.tokens > 0
    assert SpladeEncoder.load(exported, max_length=16).max_length == 16
    with pytest.raises(InputError, match="max_length must be in"):
        SpladeEncoder.load(exported, max_length=4096)
    with pytest.raises(InputError, match="'fast' is not available"):
        SpladeEncoder.load(exported, mode="fast")


def test_cli_export_model(tmp_path):
    from spladekit.cli import app

    runner = CliRunner()
    out = tmp_path / "exp"
    r = runner.invoke(app, ["export-model", "--format", "onnx", "-o", str(out), "--optimize"])
    assert r.exit_code == 0, r.output
    assert "splade-tiny as ONNX" in r.output and (out / MODEL_FILE).is_file()
    assert json.loads((out / MARKER).read_text())["optimized"] == "ort-extended"
    r = runner.invoke(app, ["inspect", "fermentation", "-m", str(out), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["active_dims"] > 0, r.output
    for args, message in [
        (["export-model", "-o", str(out)], "not empty (pass --overwrite"),
        (["export-model", "--format", "tflite", "-o", str(tmp_path / "x")], "unknown --format 'tflite'"),
        (["export-model", str(out), "-o", str(tmp_path / "y")], "already an exported ONNX model"),
        (["export-model", "a", "-m", "b", "-o", str(tmp_path / "z")], "two models given"),
    ]:
        r = runner.invoke(app, args)
        assert isinstance(r.exception, InputError) and message in str(r.exception), (args, r.output)


# ------------------------------------------------------------------------------------------ errors
def test_missing_onnxruntime_is_one_line(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    with pytest.raises(ModelLoadError, match="pip install onnxruntime") as err:
        load_onnx(exported)
    assert "\n" not in str(err.value) and MODEL_FILE in str(err.value)
    from spladekit.encode.onnx_export import export_onnx

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(
        ModelLoadError, match="exporting to ONNX needs onnx, onnxruntime: pip install onnx onnxruntime"
    ):
        export_onnx(None, exported.parent / "never")
    assert not (exported.parent / "never").exists()


def test_corrupt_or_missing_model_file(exported, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(exported, folder)
    model = folder / MODEL_FILE
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match="checksum differs") as err:
        load_onnx(folder)
    assert str(model) in str(err.value) and "\n" not in str(err.value)
    # a file that matches its recorded checksum but is not a model: onnxruntime's refusal, in one line
    from spladekit.encode.onnx_encoder import file_sha256

    meta = json.loads((folder / MARKER).read_text())
    meta["model_sha256"] = file_sha256(model)
    (folder / MARKER).write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load it") as err:
        load_onnx(folder)
    assert str(model) in str(err.value) and "\n" not in str(err.value)
    model.unlink()
    with pytest.raises(ModelLoadError, match="missing"):
        load_onnx(folder)
    (folder / MARKER).write_text("{not json")
    with pytest.raises(ModelLoadError, match=f"{MARKER}: unreadable"):
        load_onnx(folder)


# ------------------------------------------------------------------------------------------ other models
def _st_folder(tiny_mlm: Path, out: Path, pooling: str, activation: str) -> Path:
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling

    st = SparseEncoder(
        modules=[
            MLMTransformer(str(tiny_mlm)),
            SpladePooling(pooling_strategy=pooling, activation_function=activation),
        ],
        device="cpu",
    )
    st.max_seq_length = 48
    st.prompts = {"query": "query: ", "document": ""}
    st.save(str(out))
    return out


@pytest.mark.numerics
@pytest.mark.parametrize(
    "pooling, activation", [("max", "log1p_relu"), pytest.param("sum", "relu", marks=pytest.mark.slow)]
)
def test_sentence_transformers_folder(tiny_mlm, tmp_path, pooling, activation):
    """A SparseEncoder folder: pooling, activation, prompts and max_seq_length travel into the export."""
    from spladekit import SpladeEncoder
    from spladekit.encode.onnx_export import export_onnx

    src = _st_folder(tiny_mlm, tmp_path / "st", pooling, activation)
    meta = export_onnx(src, tmp_path / "onnx")
    assert (meta["pooling"], meta["activation"], meta["max_length"]) == (pooling, activation, 48)
    ours, ref = load_onnx(tmp_path / "onnx"), SpladeEncoder.load(src, mode="fp32")
    assert ours.spec.prompts == {"query": "query: "} and ours.weights_hash == ref.weights_hash
    texts = ["what is fermentation", "yeast", _long_text(), "", "cells divide; genes are expressed in cells"]
    for kind in ("query", "document"):
        assert_parity(ours.encode(texts, kind=kind), ref.encode(texts, kind=kind))
        assert vars(ours.last_report) == vars(ref.last_report)


def test_unsupported_pooling_is_refused(tiny_mlm, tmp_path):
    from spladekit.encode.onnx_export import export_onnx

    src = _st_folder(tiny_mlm, tmp_path / "st", "max", "relu")
    cfg_file = next(src.glob("*SpladePooling/config.json"))
    cfg = json.loads(cfg_file.read_text())
    cfg["pooling_strategy"] = "mean"
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="pooling 'mean' cannot be exported"):
        export_onnx(src, tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists() and not (tmp_path / "onnx.partial").exists()
