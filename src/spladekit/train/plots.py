"""The training curve of a run: the evaluation metric and mean active dims per epoch (``curve.png``)."""

from __future__ import annotations

from pathlib import Path


def plot_history(history: list[dict], metric: str, path: Path) -> None:
    """Plot ``metric`` and mean doc/query active dims against the epoch to ``path`` (nothing without the metric)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [h for h in history if metric in h]
    if not pts:
        return
    ep = [h["epoch"] for h in pts]
    fig, ax1 = plt.subplots(figsize=(6, 3.6))
    ax1.plot(ep, [h[metric] for h in pts], "o-", color="tab:blue", label=metric)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel(metric, color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(ep, [h["doc_active_dims"] for h in pts], "s--", color="tab:red", label="doc active dims")
    ax2.plot(ep, [h["query_active_dims"] for h in pts], "^:", color="tab:orange", label="query active dims")
    ax2.set_ylabel("mean active dims", color="tab:red")
    fig.legend(loc="lower right", fontsize=8)
    ax1.set_title("training curve (epoch 0 = start model)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
