"""Where the encoder runs: the device check, CUDA pooling against the CPU, the bf16 override, the reported path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spladekit import InputError, SpladeEncoder
from spladekit.encode.device import BF16_ENV, cpu_supports_bf16, resolve_device

pytestmark = pytest.mark.numerics


def _texts(shared_data, n: int) -> list[str]:
    out = []
    with (shared_data / "scifact" / "corpus.jsonl").open() as f:
        for line in f:
            o = json.loads(line)
            out.append((o["title"] + " " + o["text"]).strip())
            if len(out) == n:
                return out
    return out


def test_device_names_are_checked():
    assert resolve_device(None).type == "cpu"
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="device must be cpu, cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA device"):
            SpladeEncoder.load(device="cuda")


def test_bf16_detection_can_be_overridden(monkeypatch, encoder):
    """SPLADEKIT_BF16=0 gives an AVX-512 machine the path of a CPU without bf16 (how CI checks it); the path an
    encoder reports follows."""
    monkeypatch.setenv(BF16_ENV, "0")
    assert not cpu_supports_bf16()
    assert "exact = fp32" in encoder.compute_path("exact")
    monkeypatch.setenv(BF16_ENV, "1")
    assert cpu_supports_bf16()
    assert "bf16 screen" in encoder.compute_path("exact")


def test_info_reports_the_path_but_an_index_does_not_record_it(encoder, tmp_path):
    from spladekit.index import Index

    assert encoder.info()["compute"] == encoder.compute_path()
    with Index.create(tmp_path / "idx", encoder=encoder) as idx:
        assert "compute" not in idx.model


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
@pytest.mark.parametrize("mode", ["exact", "fp32", "fast"])
def test_cuda_pooling_equals_cpu(shared_data, mode):
    """On a GPU the masked-LM and the max pooling run on the device; the vectors equal the CPU's within 1e-4."""
    texts = _texts(shared_data, 200) + ["", "a", "x " * 600]
    cpu = SpladeEncoder.load(mode=mode)
    gpu = SpladeEncoder.load(mode=mode, device="cuda")
    assert gpu.device.type == "cuda" and "cuda" in gpu.compute_path()
    a = cpu.encode_documents(texts).to_dense()
    b = gpu.encode_documents(texts).to_dense()
    assert np.abs(a - b).max() < 1e-4
    # a term is active on both or has a weight below the tolerance on the side that has it
    assert np.all(((a > 0) == (b > 0)) | (np.maximum(a, b) < 1e-4))
    q = ["vitamin d and bone loss", "what causes cancer"]
    assert np.abs(cpu.encode_queries(q).to_dense() - gpu.encode_queries(q).to_dense()).max() < 1e-4
