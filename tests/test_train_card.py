"""The model card's run: its data layout (negative_1 … negative_n + label margins, JSONL / parquet / dataset id),
configs/splade-mini-card.toml end to end on a small offline fixture, gradient accumulation, fp16 loss scaling."""

from __future__ import annotations

import json
import random
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from spladekit.errors import DataFormatError, InputError
from spladekit.train import TrainConfig, load_config, read_rows, train

CARD = Path(__file__).resolve().parents[1] / "configs" / "splade-mini-card.toml"
WORDS = (
    "river bank loan mortgage interest rate fish boat water city bridge tax salary engine car road train "
    "station coffee tea sugar bread flour oven recipe garden flower seed soil rain cloud storm"
).split()


def _card_rows(n: int, negatives: int = 4, seed: int = 0) -> list[dict]:
    """Rows in the card's published layout: the positive shares the query's words; label = teacher margins."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        topic = rng.sample(WORDS, 3)
        rest = [w for w in WORDS if w not in topic]
        row = {"query": " ".join(topic), "positive": " ".join(topic + rng.sample(rest, 5))}
        for j in range(1, negatives + 1):
            row[f"negative_{j}"] = " ".join(rng.sample(rest, 8))
        row["label"] = [round(rng.uniform(2.0, 9.0), 4) for _ in range(negatives)]
        rows.append(row)
    return rows


def _parquet(path: Path, rows: list[dict]) -> Path:
    """Rows as one parquet table: every column of any row, null where a row has none (as a real table has)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = list(dict.fromkeys(k for r in rows for k in r))
    pq.write_table(pa.Table.from_pydict({k: [r.get(k) for r in rows] for k in keys}), path)
    return path


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_card_rows_from_parquet_and_jsonl(tmp_path):
    """The card's layout reads the same from parquet and JSONL: margins kept as margins, nothing invented."""
    rows = _card_rows(5)
    from_pq = read_rows(_parquet(tmp_path / "rows.parquet", rows), require_scores=True)
    from_js = read_rows(_jsonl(tmp_path / "rows.jsonl", rows), require_scores=True)
    assert [r.to_json() for r in from_pq] == [r.to_json() for r in from_js]
    r = from_pq[0]
    assert r.negatives == [rows[0][f"negative_{j}"] for j in range(1, 5)]
    assert r.scores is None and r.margins == rows[0]["label"] and r.extra == {}
    assert r.teacher_margins(2) == rows[0]["label"][:2]
    # n + 1 values are scores (as sentence-transformers reads them); one negative may carry a bare number
    scored = dict(query="q", positive="p", negative_1="a", negative_2="b", label=[5.0, 1.0, 2.0])
    single = dict(query="q", positive="p", negative_1="a", label=3.5, source="x")
    a, b = read_rows(_jsonl(tmp_path / "forms.jsonl", [scored, single]))
    assert a.scores == [5.0, 1.0, 2.0] and a.teacher_margins(2) == [4.0, 3.0]
    assert b.margins == [3.5] and b.extra == {"source": "x"}


@pytest.mark.parametrize(
    "row, problem",
    [
        (dict(query="q", positive="p", negative_1="a", negative_3="c", label=[1, 2]), "no gap"),
        (dict(query="q", positive="p", negatives=["a"], negative_1="a", label=[1]), "both 'negatives'"),
        (dict(query="q", positive="p", negative_1="a", negative_2="b", label=[1.0]), "'label' has 1 values"),
        (
            dict(query="q", positive="p", negative_1="a", label=[1.0], scores=[2, 1]),
            "both 'scores' and 'label'",
        ),
        (
            dict(query="q", positive="p", negative_1="", label=[1.0]),
            "'negative_1' must be a non-empty string",
        ),
        (
            dict(query="q", positive="p", negative_1="a", label=["x"]),
            "'label' must be a list of finite numbers",
        ),
        (dict(query="q", positive="p", negative_1="a"), "no 'scores' or 'label'"),
    ],
)
def test_bad_card_rows_name_the_row(tmp_path, row, problem):
    import pyarrow as pa

    good = _card_rows(1, negatives=1)[0]
    paths = [_jsonl(tmp_path / "bad.jsonl", [good, row])]
    try:
        paths.append(_parquet(tmp_path / "bad.parquet", [good, row]))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        assert problem.startswith("'label' must be")  # a typed column cannot mix strings into numbers
    for path in paths:
        with pytest.raises(DataFormatError) as e:
            read_rows(path, require_scores=True)
        assert e.value.line == 2 and problem in str(e.value), str(e.value)


def test_dataset_id_reads_through_datasets_and_says_what_to_install(monkeypatch, tmp_path):
    """A dataset id goes to ``datasets.load_dataset(id, split=...)`` (stubbed here: offline); without the package
    the error names it. A missing file that only looks like ``owner/name`` stays "no such file"."""
    rows = _card_rows(3)
    calls = []

    def load_dataset(name, split):
        calls.append((name, split))
        return rows

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    got = read_rows("yosefw/msmarco-train-distil-v2", require_scores=True, split="train")
    assert calls == [("yosefw/msmarco-train-distil-v2", "train")]
    assert [r.margins for r in got] == [r["label"] for r in rows]
    bad = [*rows[:1], {**rows[1], "label": [1.0]}]
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=lambda name, split: bad))
    with pytest.raises(DataFormatError, match=r"msmarco-train-distil-v2\[train\]:2: 'label' has 1 values"):
        read_rows("yosefw/msmarco-train-distil-v2")
    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed
    with pytest.raises(InputError, match="pip install datasets"):
        read_rows("yosefw/msmarco-train-distil-v2")
    with pytest.raises(InputError, match="no such file"):
        read_rows("runs/rows.jsonl")


def test_card_config_runs_end_to_end_and_resumes(tiny_mlm, tmp_path):
    """configs/splade-mini-card.toml unchanged but for the model (a tiny BERT), the data (the card's layout, as
    parquet) and a few steps: it trains on margins alone, checkpoints, and resumes where it stopped."""
    data = _parquet(tmp_path / "card.parquet", _card_rows(96))
    over = dict(model=str(tiny_mlm), train_data=str(data), output_dir=str(tmp_path / "run"))
    cfg = load_config(CARD, {**over, "max_steps": 3})  # 2 steps an epoch: stops inside the second
    assert (cfg.batch_size, cfg.learning_rate, cfg.epochs, cfg.loss) == (48, 8e-5, 6, "margin_mse")
    assert (cfg.query_regularizer_weight, cfg.document_regularizer_weight) == (0.5, 0.3)
    assert (cfg.device, cfg.precision, cfg.gradient_accumulation) == ("auto", "auto", 1)
    first = train(cfg, show_progress=False, log=lambda _m: None)
    assert first.steps == 3 and all(r["margin_mse"] > 0 for r in first.step_log)
    assert (tmp_path / "run" / "epoch-1" / "modules.json").is_file()
    last = tmp_path / "run" / "last"
    assert (last / "modules.json").is_file() and (last / "trainer_state.pt").is_file()
    saved = json.loads((last / "spladekit_train.json").read_text())
    assert saved["config"]["model"] == str(tiny_mlm) and saved["step"] == 3
    resumed = train(
        load_config(CARD, {**over, "max_steps": 4, "resume_from": str(last)}),
        show_progress=False,
        log=lambda _m: None,
    )
    assert resumed.steps == 4 and len(resumed.step_log) == 1


def test_listwise_kl_trains_on_margin_rows(tiny_mlm, tmp_path):
    """loss = "margin_mse+kl" on the card's rows: both terms, each finite and positive, in every step's record."""
    data = _jsonl(tmp_path / "card.jsonl", _card_rows(16))
    cfg = TrainConfig(
        train_data=str(data),
        model=str(tiny_mlm),
        output_dir=str(tmp_path / "run"),
        loss="margin_mse+kl",
        kl_weight=0.5,
        batch_size=8,
        max_steps=2,
        max_doc_length=32,
        precision="fp32",
    )
    res = train(cfg, show_progress=False, log=lambda _m: None)
    assert res.steps == 2
    for r in res.step_log:
        assert r["kl"] > 0 and r["margin_mse"] > 0
        assert r["base"] == pytest.approx(r["kl"] + r["margin_mse"])
    with pytest.raises(InputError, match="kl_temperature must be a positive number"):
        TrainConfig(train_data="x", loss="kl", kl_temperature=0).validate()


def _step_gradients(tiny_mlm, data: Path, accumulation: int) -> dict[str, torch.Tensor]:
    """The gradient one training step computes (the optimiser is not stepped), without dropout."""
    from spladekit.train.trainer import _setup, _train_step

    cfg = TrainConfig(
        train_data=str(data),
        model=str(tiny_mlm),
        output_dir=str(data.parent / f"run{accumulation}"),
        loss="margin_mse+kl",
        batch_size=8,
        gradient_accumulation=accumulation,
        query_regularizer_weight=0.0,
        document_regularizer_weight=0.0,
        max_grad_norm=0.0,
        max_doc_length=32,
        precision="fp32",
    ).validate()
    run = _setup(cfg, lambda _m: None, time.perf_counter())
    run.enc.mlm.eval()
    run.optimizer.step = lambda *a, **k: None
    _train_step(run, run.rows[:8])
    return {n: p.grad.clone() for n, p in run.enc.mlm.named_parameters() if p.grad is not None}


def test_gradient_accumulation_is_the_same_step(tiny_mlm, tmp_path):
    """Micro-batches of 4 + 4 and 3 + 3 + 2 rows give the gradient of the whole batch of 8 (margin-MSE and KL are
    means over rows, each micro-batch weighted by its share): equal to float32 summation order."""
    data = _jsonl(tmp_path / "card.jsonl", _card_rows(8))
    whole = _step_gradients(tiny_mlm, data, 1)
    flat = torch.cat([g.flatten() for g in whole.values()])
    assert float(flat.abs().max()) > 0
    for k in (2, 3):
        parts = _step_gradients(tiny_mlm, data, k)
        assert parts.keys() == whole.keys()
        diff = torch.cat([(parts[n] - g).flatten() for n, g in whole.items()])
        # relative to the whole gradient: some entries (the attention key bias) are zero up to rounding
        assert float(diff.abs().max()) <= 1e-4 * float(flat.abs().max()), k
        assert float(diff.norm()) <= 1e-5 * float(flat.norm()), k


def test_fp16_runs_with_loss_scaling_and_resumes(tiny_mlm, tmp_path):
    """precision = "fp16" scales the loss (GradScaler) and a checkpoint keeps the scaler's state for resuming."""
    data = _jsonl(tmp_path / "card.jsonl", _card_rows(16))
    base = dict(
        train_data=str(data),
        model=str(tiny_mlm),
        output_dir=str(tmp_path / "run"),
        batch_size=8,
        max_doc_length=32,
        precision="fp16",
        device="cpu",
    )
    res = train(TrainConfig(**base, max_steps=1), show_progress=False, log=lambda _m: None)
    assert res.steps == 1 and res.step_log[0]["margin_mse"] > 0
    state = torch.load(tmp_path / "run" / "last" / "trainer_state.pt", weights_only=False)
    assert state["scaler"] and state["scaler"]["scale"] > 0
    again = TrainConfig(**base, max_steps=2, resume_from=str(tmp_path / "run" / "last"))
    assert train(again, show_progress=False, log=lambda _m: None).steps == 2
