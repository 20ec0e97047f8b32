"""Training speed: spladekit's trainer against sentence-transformers' SparseEncoderTrainer, same work.

Both train the bundled splade-tiny on the same rows (query, positive, N negatives, teacher scores) with the same
loss (SpladeLoss(SparseMarginMSELoss), query 0.5 / document 0.3), batch, learning rate, max length and torch
threads, for one epoch of full batches. Step end times are taken after every step (sentence-transformers: a
trainer callback; spladekit: each step's ``train_seconds``); after ``--warmup`` steps the rest are cut into windows
of ``--window`` steps and each side's samples/s is the median over its windows (a sample = one row).

    python bench/train_speed.py [--rows 200] [--batch 16] [--negatives 4] [--threads 1] [--max-length 256]

Rows come from ../shared/data/scifact (train split: each judged pair, negatives drawn at random from the corpus,
synthetic teacher scores: speed does not depend on them) when it is there, else from synthetic text. Needs the
`datasets` package (sentence-transformers' trainer takes a datasets.Dataset).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact"


def make_rows(n: int, negatives: int, seed: int = 0) -> tuple[list[dict], str]:
    """``n`` training rows (query, positive, negatives, scores) and where their text came from."""
    rng = random.Random(seed)
    if (SCIFACT / "corpus.jsonl").is_file():
        from spladekit.data import load_beir

        col = load_beir(SCIFACT, "train")
        docs = sorted(col.corpus)
        pairs = [(q, d) for q, ds in sorted(col.qrels.items()) for d, r in sorted(ds.items()) if r > 0]
        rng.shuffle(pairs)
        rows = []
        for q, d in (pairs * (n // len(pairs) + 1))[:n]:
            negs = [x for x in rng.sample(docs, negatives + 5) if x not in col.qrels[q]][:negatives]
            rows.append(
                {
                    "query": col.queries[q].full_text,
                    "positive": col.corpus[d].full_text,
                    "negatives": [col.corpus[x].full_text for x in negs],
                }
            )
        source = "scifact train pairs, random corpus negatives"
    else:
        words = [f"w{i}" for i in range(3000)]
        rows = [
            {
                "query": " ".join(rng.sample(words, 8)),
                "positive": " ".join(rng.choices(words, k=220)),
                "negatives": [" ".join(rng.choices(words, k=220)) for _ in range(negatives)],
            }
            for _ in range(n)
        ]
        source = "synthetic text (../shared/data/scifact not found)"
    for r in rows:
        r["scores"] = [round(rng.uniform(5, 10), 3)] + [round(rng.uniform(0, 6), 3) for _ in range(negatives)]
    return rows, source


def window_rates(ends: list[float], start: float, batch: int, warmup: int, window: int) -> list[float]:
    """Samples/s of each window of ``window`` steps after ``warmup`` steps; ``ends`` are step end times."""
    times = [start, *ends]
    return [
        batch * window / (times[i + window] - times[i])
        for i in range(warmup, len(times) - window, window)
        if i + window < len(times)
    ]


def run_spladekit(rows: list[dict], args, tmp: Path) -> list[float]:
    """Step end times (seconds since the run's start) of spladekit's trainer."""
    from spladekit.train import TrainConfig, train, write_rows

    data = tmp / "rows.jsonl"
    write_rows(data, rows)
    cfg = TrainConfig(
        train_data=str(data),
        model=None,  # bundled splade-tiny
        output_dir=str(tmp / "spladekit"),
        loss="margin_mse",
        teacher_scale=1.0,
        query_regularizer_weight=0.5,
        document_regularizer_weight=0.3,
        epochs=1,
        batch_size=args.batch,
        learning_rate=8e-5,
        max_query_length=args.max_length,
        max_doc_length=args.max_length,
        max_steps=len(rows) // args.batch,
        threads=args.threads,
        device="cpu",
        keep_best=False,
    )
    res = train(cfg, show_progress=False, log=lambda _m: None)
    return [r["train_seconds"] for r in res.step_log]


def run_sentence_transformers(rows: list[dict], args, tmp: Path) -> list[float]:
    """Step end times (seconds since the first step began) of sentence-transformers' SparseEncoderTrainer."""
    from datasets import Dataset
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder import (
        SparseEncoderTrainer,
        SparseEncoderTrainingArguments,
    )
    from sentence_transformers.sparse_encoder.losses import SparseMarginMSELoss, SpladeLoss
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling
    from transformers import TrainerCallback

    from spladekit.encode import bundled_model_path

    torch.set_num_threads(args.threads)
    model = SparseEncoder(
        modules=[
            MLMTransformer(str(bundled_model_path()), max_seq_length=args.max_length),
            SpladePooling(pooling_strategy="max"),
        ],
        device="cpu",
    )
    columns = {"query": [r["query"] for r in rows], "positive": [r["positive"] for r in rows]}
    for j in range(args.negatives):
        columns[f"negative_{j + 1}"] = [r["negatives"][j] for r in rows]
    columns["label"] = [r["scores"] for r in rows]
    loss = SpladeLoss(
        model, SparseMarginMSELoss(model), query_regularizer_weight=0.5, document_regularizer_weight=0.3
    )
    ends: list[float] = []
    start: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            if not start:
                start.append(time.perf_counter())

        def on_step_end(self, a, state, control, **kw):
            ends.append(time.perf_counter() - start[0])

    targs = SparseEncoderTrainingArguments(
        output_dir=str(tmp / "st"),
        num_train_epochs=1,
        per_device_train_batch_size=args.batch,
        learning_rate=8e-5,
        warmup_ratio=0.025,
        lr_scheduler_type="cosine",
        seed=42,
        save_strategy="no",
        report_to="none",
        logging_steps=10_000,
        disable_tqdm=True,
        dataloader_drop_last=True,
        use_cpu=True,
    )
    trainer = SparseEncoderTrainer(
        model=model, args=targs, train_dataset=Dataset.from_dict(columns), loss=loss, callbacks=[Clock()]
    )
    trainer.train()
    return ends


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--negatives", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=2, help="steps left out of the timing")
    ap.add_argument("--window", type=int, default=2, help="steps per timed window")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--only", choices=("spladekit", "sentence-transformers"), default=None)
    args = ap.parse_args()
    rows, source = make_rows(args.rows, args.negatives)
    skip = ("json", "only")
    out: dict = {
        "rows": len(rows),
        "source": source,
        **{k: v for k, v in vars(args).items() if k not in skip},
    }
    out["torch"] = torch.__version__
    out["machine"] = platform.processor() or platform.machine()
    with tempfile.TemporaryDirectory() as d:
        for name, fn in (("spladekit", run_spladekit), ("sentence-transformers", run_sentence_transformers)):
            if args.only not in (None, name):
                continue
            t0 = time.perf_counter()
            ends = fn(rows, args, Path(d))
            rates = window_rates(ends, 0.0, args.batch, args.warmup, args.window)
            out[name] = {
                "steps": len(ends),
                "samples_per_s": round(statistics.median(rates), 2),
                "windows": [round(r, 2) for r in rates],
                "wall_s": round(time.perf_counter() - t0, 1),
            }
            print(
                f"{name:>22}: {out[name]['samples_per_s']:8.2f} samples/s  (windows {out[name]['windows']})"
            )
            print(f"{'':>22}  step ends (s): {[round(e, 2) for e in ends]}", flush=True)
    if args.only:
        print(json.dumps(out))
        return
    ratio = out["spladekit"]["samples_per_s"] / out["sentence-transformers"]["samples_per_s"]
    out["ratio"] = round(ratio, 2)
    print(f"{'ratio':>22}: {ratio:8.2f}x  ({len(rows)} rows, batch {args.batch}, {args.threads} thread(s))")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
