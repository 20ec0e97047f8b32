"""Plot training curves (nDCG@10 and mean active dims per epoch) of one or more `spladekit train` runs.

    python bench/train_curve.py OUT.png LABEL=RUN_DIR [LABEL=RUN_DIR ...]

Reads RUN_DIR/history.json (written by `spladekit train`); a run without an epoch-0 point borrows the first
run's (the same start model evaluated on the same data).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1])
    runs = [a.split("=", 1) for a in sys.argv[2:]]
    hist = {label: json.loads((Path(d) / "history.json").read_text()) for label, d in runs}
    start = next((h[0] for h in hist.values() if h and h[0]["epoch"] == 0), None)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for label, h in hist.items():
        if start is not None and (not h or h[0]["epoch"] != 0):
            h = [start, *h]
        ep = [p["epoch"] for p in h]
        ax1.plot(ep, [p["ndcg@10"] for p in h], "o-", label=label)
        ax2.plot(ep, [p["doc_active_dims"] for p in h], "s-", label=f"{label}: documents")
        ax2.plot(ep, [p["query_active_dims"] for p in h], "^:", label=f"{label}: queries")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("nDCG@10 (judged + 1,000 sampled docs)")
    ax1.set_title("SciFact test, per-epoch evaluation")
    ax1.legend(fontsize=8)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("mean active dims")
    ax2.set_title("sparsity")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
