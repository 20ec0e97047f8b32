"""Score checkpoints on a training config's held-out queries, exactly as `spladekit train` scores each epoch.

    python bench/train_holdout_eval.py CONFIG CHECKPOINT [CHECKPOINT ...]

The held-out queries are drawn from the config's training rows with its `split_seed`, and judged against the same
document sample (`eval_corpus_sample`, `eval_max_doc_length`) as the per-epoch curve, so a checkpoint made outside
the run (a weight average of several runs, say) can be compared with the run's own epochs without touching the
test split.
"""

from __future__ import annotations

import argparse

from spladekit.encode import SpladeEncoder
from spladekit.train import load_config
from spladekit.train.holdout import evaluate_checkpoint, split_holdout
from spladekit.train.rows import prepare_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("checkpoints", nargs="+")
    args = ap.parse_args()
    cfg = load_config(args.config)
    if not cfg.holdout_queries:
        raise SystemExit(f"{args.config}: sets no holdout_queries")
    rows, _ = prepare_rows(cfg)
    _, held = split_holdout(rows, cfg.holdout_queries, cfg.split_seed)
    cache: dict = {}
    print("| checkpoint | held-out nDCG@10 | MRR@10 | doc / query dims |")
    print("|---|---|---|---|")
    for ckpt in args.checkpoints:
        m = evaluate_checkpoint(
            SpladeEncoder.load(ckpt, mode="fp32"), cfg, cache, held
        )  # as the trainer does
        print(
            f"| {ckpt} | {m['ndcg@10']:.4f} | {m['mrr@10']:.4f} | "
            f"{m['doc_active_dims']:.1f} / {m['query_active_dims']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
