"""Training end to end on a tiny random MLM; rows, config, checkpoints, CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from spladekit.errors import DataFormatError, InputError
from spladekit.train import (
    TrainConfig,
    load_config,
    read_rows,
    save_sparse_encoder,
    train,
    write_rows,
)

WORDS = (
    "protein cell gene virus cancer insulin glucose vaccine fever brain neuron heart blood lung liver kidney "
    "bone muscle skin immune tumor drug dose trial mouse human disease therapy signal receptor enzyme"
).split()


def _rows(n: int, seed: int = 0, negatives: int = 3) -> list[dict]:
    """Synthetic rows: the positive shares the query's words, negatives do not (learnable by a tiny model)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        topic = rng.sample(WORDS, 3)
        rest = [w for w in WORDS if w not in topic]
        rows.append(
            {
                "query": " ".join(topic),
                "positive": " ".join(topic + rng.sample(rest, 4)),
                "negatives": [" ".join(rng.sample(rest, 7)) for _ in range(negatives)],
                "scores": [0.9] + [round(rng.uniform(0.0, 0.3), 3) for _ in range(negatives)],
            }
        )
    return rows


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _st_vectors(path: Path, texts: list[str]) -> np.ndarray:
    from sentence_transformers import SparseEncoder

    st = SparseEncoder(str(path), device="cpu")
    return st.encode_document(texts, convert_to_tensor=True).to_dense().float().numpy()


TEXTS = ["protein folding in the cell", "insulin lowers blood glucose", "a vaccine trial in mice"]


@pytest.mark.slow
def test_training_lowers_loss_and_checkpoint_loads_in_sentence_transformers(tiny_mlm, tmp_path):
    from spladekit import SpladeEncoder

    data = _write_jsonl(tmp_path / "rows.jsonl", _rows(32))
    cfg = TrainConfig(
        train_data=str(data),
        model=str(tiny_mlm),
        output_dir=str(tmp_path / "run"),
        epochs=3,
        batch_size=8,
        learning_rate=2e-3,
        warmup_ratio=0.0,
        loss="margin_mse+infonce",
        teacher_scale=10.0,
        max_doc_length=32,
        precision="fp32",
    )
    res = train(cfg, show_progress=False, log=lambda _m: None)
    assert res.steps == 12
    base = [r["base"] for r in res.step_log]  # margin-MSE + InfoNCE (the FLOPS weight ramps up from 0)
    first, last = np.mean(base[:3]), np.mean(base[-3:])
    assert last < 0.7 * first, base
    assert all(r["d_dims"] > 0 and r["q_dims"] > 0 for r in res.step_log)
    ckpt = res.best_checkpoint
    assert ckpt is not None and (ckpt / "modules.json").is_file() and (ckpt / "1_SpladePooling").is_dir()
    ours = SpladeEncoder.load(ckpt, mode="fp32").encode_documents(TEXTS).to_dense()
    theirs = _st_vectors(ckpt, TEXTS)
    assert (theirs > 0).sum() > 10
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    # the trained weights differ from the start model (something was learnt and saved)
    start = SpladeEncoder.load(tiny_mlm, mode="fp32").encode_documents(TEXTS).to_dense()
    assert np.abs(start - ours).max() > 1e-2


def test_save_sparse_encoder_roundtrip_bundled(encoder, tmp_path):
    """The bundled model saved by spladekit loads in ST and in spladekit with the same vectors (decoder bias too)."""
    from spladekit import SpladeEncoder

    path = save_sparse_encoder(encoder, tmp_path / "ckpt")
    modules = json.loads((path / "modules.json").read_text())
    assert [m["path"] for m in modules] == ["", "1_SpladePooling"]
    again = SpladeEncoder.load(path, mode="fp32")
    assert torch.equal(again.head_bias, encoder.head_bias)
    ours = again.encode_documents(TEXTS).to_dense()
    np.testing.assert_allclose(ours, encoder.encode_documents(TEXTS, mode="fp32").to_dense(), atol=1e-5)
    np.testing.assert_allclose(ours, _st_vectors(path, TEXTS), atol=1e-4)


@pytest.mark.slow
def test_resume_continues_where_it_stopped(tiny_mlm, tmp_path):
    data = _write_jsonl(tmp_path / "rows.jsonl", _rows(16, seed=1))
    base = dict(
        train_data=str(data),
        model=str(tiny_mlm),
        epochs=2,
        batch_size=8,
        learning_rate=1e-3,
        max_doc_length=24,
        precision="fp32",
        teacher_scale=10.0,
    )
    full = train(
        TrainConfig(**base, output_dir=str(tmp_path / "full")), show_progress=False, log=lambda _m: None
    )
    part = train(
        TrainConfig(**base, output_dir=str(tmp_path / "part"), max_steps=2),
        show_progress=False,
        log=lambda _m: None,
    )
    assert part.steps == 2
    resumed = train(
        TrainConfig(
            **base, output_dir=str(tmp_path / "part"), resume_from=str(tmp_path / "part" / "epoch-1")
        ),
        show_progress=False,
        log=lambda _m: None,
    )
    assert resumed.steps == 4
    np.testing.assert_allclose(resumed.losses, full.losses[2:], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "line, problem",
    [
        ('{"query": "q", "positive": "p", "negatives": [], "scores": [1.0]}', "'negatives' is empty"),
        ('{"query": "q", "positive": "p", "negatives": ["n"], "scores": [1.0]}', "'scores' has 1 values"),
        ('{"query": "q", "positive": "p", "negatives": ["n"], "scores": [1.0, 2.0', "invalid JSON"),
        ('{"query": "", "positive": "p", "negatives": ["n"]}', "'query' must be a non-empty string"),
        ('{"query": "q", "positive": "p", "negatives": "n"}', "must be a list"),
    ],
)
def test_malformed_rows_name_the_line(tmp_path, line, problem):
    good = json.dumps(_rows(1)[0])
    path = _write_jsonl(tmp_path / "bad.jsonl", [good, good, line])
    with pytest.raises(DataFormatError) as e:
        read_rows(path)
    assert e.value.line == 3 and problem in str(e.value)


def test_rows_without_scores_need_infonce(tmp_path, tiny_mlm):
    rows = _rows(4)
    for r in rows:
        del r["scores"]
    path = _write_jsonl(tmp_path / "rows.jsonl", rows)
    with pytest.raises(DataFormatError, match="no 'scores'"):
        train(TrainConfig(train_data=str(path), model=str(tiny_mlm)), show_progress=False)
    assert len(read_rows(path)) == 4
    assert write_rows(tmp_path / "copy.jsonl", read_rows(path)) == 4


def test_config_toml_yaml_and_errors(tmp_path):
    (tmp_path / "a.toml").write_text('train_data = "x.jsonl"\n[optim]\nepochs = 2\nlearning_rate = 1e-4\n')
    cfg = load_config(tmp_path / "a.toml")
    assert (cfg.epochs, cfg.learning_rate, cfg.batch_size, cfg.seed) == (2, 1e-4, 48, 42)
    (tmp_path / "a.yaml").write_text("train_data: x.jsonl\nloss: infonce\n")
    assert load_config(tmp_path / "a.yaml").loss == "infonce"
    (tmp_path / "typo.toml").write_text('train_data = "x"\nlearnig_rate = 1e-4\n')
    with pytest.raises(InputError, match="unknown setting.*learnig_rate"):
        load_config(tmp_path / "typo.toml")
    (tmp_path / "bad.toml").write_text("epochs = [\n")
    with pytest.raises(InputError, match="cannot parse"):
        load_config(tmp_path / "bad.toml")
    with pytest.raises(InputError, match="unknown loss"):
        TrainConfig(train_data="x", loss="mse").validate()
    with pytest.raises(InputError, match="holdout_queries needs eval_data"):
        TrainConfig(train_data="x", holdout_queries=10).validate()
    with pytest.raises(InputError, match="teacher_scale must be"):
        TrainConfig(train_data="x", teacher_scale="fit").validate()


def test_shipped_configs_load():
    """Every config in configs/ parses and validates (a renamed setting must not break the documented runs)."""
    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))
    assert len(configs) >= 2
    for path in configs:
        load_config(path)
    distill = load_config(path.parent / "scifact-tiny-distill.toml")
    assert distill.holdout_queries > 0 and distill.teacher_scale == "auto"


def test_default_config_is_the_model_card_recipe():
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "default.toml")
    assert (cfg.batch_size, cfg.learning_rate, cfg.epochs, cfg.scheduler) == (48, 8e-5, 6, "cosine")
    assert (cfg.warmup_ratio, cfg.seed, cfg.loss) == (0.025, 42, "margin_mse")
    assert (cfg.query_regularizer_weight, cfg.document_regularizer_weight) == (0.5, 0.3)


def test_trainer_keeps_the_names_it_had_before_the_split():
    """Code written against ``spladekit.train.trainer`` before it was split into modules still imports."""
    from spladekit.train import batching, holdout, rows, teacher_scale, trainer

    assert (
        trainer._Batcher is batching._Batcher and trainer.encode_for_training is batching.encode_for_training
    )
    assert trainer.autocast_dtype is batching.autocast_dtype
    assert trainer.fit_teacher_scale is teacher_scale.fit_teacher_scale
    assert trainer.SCALE_ROWS == teacher_scale.SCALE_ROWS
    assert trainer.split_holdout is holdout.split_holdout
    assert trainer.evaluate_checkpoint is holdout.evaluate_checkpoint
    assert trainer._prepare_rows is rows.prepare_rows
