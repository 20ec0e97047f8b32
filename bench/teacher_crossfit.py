"""A cross-fitted in-domain teacher: all-MiniLM-L6-v2 fine-tuned on the training rows' own queries in K folds,
each row scored by a fold model that never saw its query, then combined with the other scorers as
`spladekit teacher` combines them (per-row z-scores, weights fitted on held-out queries).

    python bench/teacher_crossfit.py runs/scifact/mined-mix.jsonl --corpus ../shared/data/scifact \
        --work runs/scifact/crossfit -o runs/scifact/scored-crossfit.jsonl [--folds 2] [--epochs 1] [--json F]

Why: a student cannot learn more than its teacher knows, and the bundled MiniLM was never trained on SciFact
(its nDCG@10 there is ~0.645). Fine-tuning it on the training queries would make it a better teacher, but a teacher
that has seen a row's positive scores that row too confidently; cross-fitting avoids that.

Which queries each model sees: the report's queries (drawn as a training config with ``holdout_queries`` and
``split_seed`` draws them, i.e. the queries the student's hold-out evaluation uses) are never used to fine-tune
any fold model, nor are they in the weight fitting; the other queries are split into K folds (seeded), model f is
fine-tuned on every fold but f, and scores fold f's rows. The report's rows are scored by model 0 (a model that
did not see them, as every other row's). Fine-tuning: sentence-transformers' MultipleNegativesRankingLoss on
(query, positive, one mined negative) triplets, in-batch negatives, no duplicate texts in a batch.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

from spladekit.train.ensemble import ScoreTable, parse_weights, score_rows
from spladekit.train.ensemble_fit import fit_weights
from spladekit.train.ensemble_run import _write, bm25_collection, held_out_queries, score_table
from spladekit.train.holdout import query_key
from spladekit.train.rows import read_rows
from spladekit.train.scorers import parse_scorers
from spladekit.train.teacher import BiEncoderTeacher, bundled_minilm_path
from spladekit.train.teacher_report import build_report, candidate_gains, format_report


def fine_tune(rows, out: Path, epochs: int, batch: int, lr: float, seed: int) -> float:
    """MiniLM fine-tuned on ``rows`` (query, positive, the row's first negative); returns seconds taken."""
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.training_args import BatchSamplers, SentenceTransformerTrainingArguments

    if (out / "config.json").exists():
        print(f"{out}: already trained, reused")
        return 0.0
    torch.manual_seed(seed)
    model = SentenceTransformer(str(bundled_minilm_path()), device="cpu")
    model.max_seq_length = 256
    data = Dataset.from_dict(
        {
            "anchor": [r.query for r in rows],
            "positive": [r.positive for r in rows],
            "negative": [r.negatives[0] for r in rows],
        }
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "tmp"),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch,
        learning_rate=lr,
        warmup_ratio=0.1,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no",
        logging_steps=10,
        seed=seed,
        report_to=[],
        use_cpu=True,
    )
    t0 = time.perf_counter()
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=data, loss=MultipleNegativesRankingLoss(model)
    )
    trainer.train()
    model.save(str(out))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rows")
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--work", required=True, help="folder for the fold models")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--holdout-queries", type=int, default=100)
    ap.add_argument("--fit-queries", type=int, default=100)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--scorer", action="append", default=None, help="scorers next to the fine-tuned one")
    ap.add_argument("--weights", help="fixed weights, fine-tuned model first (e.g. 1,0,0); default: fitted")
    ap.add_argument("--json")
    args = ap.parse_args()
    others = args.scorer or ["minilm", "bm25"]

    rows = read_rows(args.rows)
    keys = [query_key(r) for r in rows]
    report_keys, fit_keys = held_out_queries(rows, args.holdout_queries, args.fit_queries, args.seed)
    rest = [k for k in dict.fromkeys(keys) if k not in report_keys]
    random.Random(args.seed).shuffle(rest)
    fold_of = {k: i % args.folds for i, k in enumerate(rest)}
    fold_of.update({k: 0 for k in report_keys})
    work = Path(args.work)
    seconds = {}
    ft = np.zeros((len(rows), 1 + max(len(r.negatives) for r in rows)))
    mask = None
    for f in range(args.folds):
        train = [r for r, k in zip(rows, keys) if k not in report_keys and fold_of[k] != f]
        print(f"fold {f}: fine-tuning on {len({query_key(r) for r in train})} queries, {len(train)} rows")
        seconds[f"fine_tune_{f}"] = round(
            fine_tune(train, work / f"fold{f}", args.epochs, args.batch, args.lr, args.seed), 1
        )
        at = [i for i, k in enumerate(keys) if fold_of[k] == f]
        t0 = time.perf_counter()
        t = score_rows([rows[i] for i in at], {"ft": BiEncoderTeacher(work / f"fold{f}")})
        seconds[f"score_{f}"] = round(time.perf_counter() - t0, 1)
        ft[at] = t.scores["ft"]
        if mask is None:
            mask = np.zeros((len(rows), t.mask.shape[1]), bool)
        mask[at] = t.mask
    specs = parse_scorers(others)
    base = score_table(specs, rows, bm25_collection(args.corpus, rows), None, "cosine", 64, False, print)
    names = ["minilm-ft", *base.names]
    table = ScoreTable(names, {"minilm-ft": ft, **base.scores}, mask)
    gains = candidate_gains(rows, mask.shape[1])
    fit_at = [i for i, k in enumerate(keys) if k in fit_keys]
    rep_at = [i for i, k in enumerate(keys) if k in report_keys]
    best, m = fit_weights(table.subset(fit_at), gains[fit_at], "zscore", metric="ndcg@10")
    if args.weights:  # the fit is still reported, for comparison
        print(f"fitted (not used): {dict(zip(names, best))}")
        best = tuple(parse_weights(args.weights, names))
    print(f"weights {dict(zip(names, best))}; the fit on {len(fit_keys)} queries: {m}")
    report = build_report(
        table.subset(rep_at),
        gains[rep_at],
        np.asarray(best),
        "zscore",
        queries=len(report_keys),
        fitted=None
        if args.weights
        else {
            "queries": len(fit_keys),
            "rows": len(fit_at),
            "metric": "ndcg@10",
            "value": m["ndcg@10"],
            "figures": m,
        },
    )
    print(format_report(report))
    n = _write(args.output, rows, table, np.asarray(best), "zscore")
    print(f"wrote {n} rows to {args.output}; seconds {seconds}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"report": report, "weights": list(best), "seconds": seconds}, indent=1)
        )


if __name__ == "__main__":
    main()
