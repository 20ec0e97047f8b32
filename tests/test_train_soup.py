"""Weight averaging of checkpoints (``spladekit soup`` / ``average_checkpoints``)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import make_tiny_mlm
from typer.testing import CliRunner

from spladekit.errors import InputError
from spladekit.train import average_checkpoints, save_sparse_encoder

TEXTS = ["sparse retrieval with learned term weights", "the cat sat on the mat"]


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """Two SparseEncoder folders of the same architecture with different weights."""
    from spladekit import SpladeEncoder

    root = tmp_path_factory.mktemp("soup")
    out = []
    for seed in (0, 1):
        mlm = make_tiny_mlm(root / f"mlm{seed}", seed=seed)
        out.append(save_sparse_encoder(SpladeEncoder.load(mlm, mode="fp32"), root / f"ckpt{seed}"))
    return out


def _params(path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForMaskedLM

    return {k: v.double() for k, v in AutoModelForMaskedLM.from_pretrained(str(path)).state_dict().items()}


def test_weighted_average_of_every_parameter(two_checkpoints, tmp_path):
    a, b = two_checkpoints
    out = average_checkpoints([a, b], tmp_path / "soup", weights=[1, 3])
    pa, pb, ps = _params(a), _params(b), _params(out)
    assert ps.keys() == pa.keys()
    moved = 0
    for name, t in ps.items():
        if t.is_floating_point():
            torch.testing.assert_close(t, 0.25 * pa[name] + 0.75 * pb[name], atol=1e-6, rtol=0)
            moved += int(not torch.equal(pa[name], pb[name]))
    assert moved > 5  # the inputs really differ, so the check above is not vacuous
    assert (out / "modules.json").is_file() and (out / "1_SpladePooling" / "config.json").is_file()
    saved = json.loads((out / "spladekit_train.json").read_text())
    assert saved["soup"]["weights"] == [0.25, 0.75]


def test_soup_of_one_model_with_itself_encodes_identically(two_checkpoints, tmp_path):
    from spladekit import SpladeEncoder

    a, _ = two_checkpoints
    out = average_checkpoints([a, a], tmp_path / "same")
    ours = SpladeEncoder.load(out, mode="fp32").encode_documents(TEXTS).to_dense()
    ref = SpladeEncoder.load(a, mode="fp32").encode_documents(TEXTS).to_dense()
    assert (ref > 0).sum() > 10
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_soup_rejects_mismatches(two_checkpoints, tmp_path):
    a, b = two_checkpoints
    with pytest.raises(InputError, match="at least two"):
        average_checkpoints([a], tmp_path / "x")
    with pytest.raises(InputError, match="2 weights for 3"):
        average_checkpoints([a, b, a], tmp_path / "x", weights=[1, 1])
    with pytest.raises(InputError, match="positive"):
        average_checkpoints([a, b], tmp_path / "x", weights=[1, 0])
    with pytest.raises(InputError, match="one of the inputs"):
        average_checkpoints([a, b], a)
    with pytest.raises(InputError, match="no model.safetensors"):
        average_checkpoints([a, tmp_path], tmp_path / "x")
    other = tmp_path / "other"
    shutil.copytree(b, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["num_attention_heads"] = 4
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="config.json differs"):
        average_checkpoints([a, other], tmp_path / "x")
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_cli_soup(two_checkpoints, tmp_path):
    from spladekit.cli import app

    a, b = two_checkpoints
    r = CliRunner().invoke(app, ["soup", str(a), str(b), "-o", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    assert "averaged 2 checkpoints" in r.output
    pa, pb, ps = _params(a), _params(b), _params(tmp_path / "s")
    name = "bert.embeddings.word_embeddings.weight"
    torch.testing.assert_close(ps[name], (pa[name] + pb[name]) / 2, atol=1e-6, rtol=0)
