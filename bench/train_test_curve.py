"""Test-split curve of one `spladekit train` run: every epoch checkpoint evaluated on the full corpus.

    python bench/train_test_curve.py RUN_DIR OUT.png [--data ../shared/data/scifact]

For the start model (epoch 0) and each RUN_DIR/epoch-N it runs `spladekit eval DATA --model ... --no-bm25` (full
corpus, documents up to the model's max length) unless RUN_DIR/test-eval/epoch-N/metrics.json exists, then plots
nDCG@10 on the test split next to the run's own per-epoch evaluation (history.json: held-out train queries when
the config sets holdout_queries) and the mean active dims of test queries and corpus documents. The test figures
are a report only: `train` never reads them to choose a checkpoint.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def evaluate(data: str, model: str | None, out: Path) -> dict:
    if not (out / "metrics.json").is_file():
        cmd = ["spladekit", "eval", data, "--output", str(out), "--no-bm25"]
        if model:
            cmd += ["--model", model]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    m = json.loads((out / "metrics.json").read_text())
    return {
        "ndcg@10": m["systems"]["splade"]["metrics"]["ndcg@10"],
        "doc_active_dims": m["sparsity"]["corpus_active_dims"],
        "query_active_dims": m["sparsity"]["query_active_dims"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", default="../shared/data/scifact")
    ap.add_argument("--label", help="name of the run in the plot title (default: the folder name)")
    args = ap.parse_args()
    history = json.loads((args.run_dir / "history.json").read_text())
    cfg = json.loads(next(args.run_dir.glob("epoch-*/spladekit_train.json")).read_text())["config"]
    epochs = sorted(
        int(m.group(1)) for p in args.run_dir.glob("epoch-*") if (m := re.fullmatch(r"epoch-(\d+)", p.name))
    )
    if not epochs:
        sys.exit(f"{args.run_dir}: no epoch-N checkpoints")
    test = {0: evaluate(args.data, cfg.get("model"), args.run_dir / "test-eval" / "epoch-0")}
    for e in epochs:
        test[e] = evaluate(
            args.data, str(args.run_dir / f"epoch-{e}"), args.run_dir / "test-eval" / f"epoch-{e}"
        )
    (args.run_dir / "test_curve.json").write_text(json.dumps(test, indent=2) + "\n")
    own = "held-out train queries" if cfg.get("holdout_queries") else f"{cfg.get('eval_split')} subset"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ep = sorted(test)
    ax1.plot(ep, [test[e]["ndcg@10"] for e in ep], "o-", label="test split, full corpus (spladekit eval)")
    h = [p for p in history if "ndcg@10" in p]
    ax1.plot([p["epoch"] for p in h], [p["ndcg@10"] for p in h], "s--", label=f"per-epoch eval: {own}")
    ax1.set_xlabel("epoch (0 = start model)")
    ax1.set_ylabel("nDCG@10")
    ax1.set_title(f"{args.label or args.run_dir.name}: nDCG@10 per epoch")
    ax1.legend(fontsize=8)
    ax2.plot(ep, [test[e]["doc_active_dims"] for e in ep], "o-", label="corpus documents")
    ax2.plot(ep, [test[e]["query_active_dims"] for e in ep], "^-", label="test queries")
    ax2.axhline(1.2 * test[0]["doc_active_dims"], color="grey", ls=":", label="documents: start model + 20%")
    ax2.set_xlabel("epoch (0 = start model)")
    ax2.set_ylabel("mean active dims")
    ax2.set_title("sparsity (test split)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    for e in ep:
        t = test[e]
        print(
            f"epoch {e}: test nDCG@10 {t['ndcg@10']:.4f}  doc dims {t['doc_active_dims']:.1f}  "
            f"query dims {t['query_active_dims']:.1f}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
