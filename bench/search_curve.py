"""Plot the recall/latency curve of a ``bench/search.py --json`` run.

    python bench/search_curve.py RESULTS.json [MORE.json ...] OUT.png

x: recall@10 against exact search; y: p50 latency of one query (ms, log scale). One line per approximate system
(pyseismic's (query_cut, heap_factor) settings, spladekit's ``approx=`` targets) through its Pareto-optimal points
(no other setting of it is both faster and at least as accurate); dominated settings are hollow markers. Every
point is labelled with its setting; an ``approx=`` target that tuning left exact is a separate marker. Horizontal
lines: the p50 of the exact methods present (spladekit exact, qdrant-edge, scipy-csc). Only figures the run saved
are plotted.

Further JSON files (e.g. a run that searched more pyseismic settings on the same saved build,
``--seismic-index``) add their approximate rows as series of their own, marked ``*``, ``**``, ... (another run:
other load, so its latencies are not on the first run's scale; the title compares the reference methods both runs
measured); the reference lines come from the first file.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

REFERENCES = (
    ("spladekit", "spladekit exact", "tab:blue"),
    ("qdrant-edge", "qdrant-edge (exact)", "tab:green"),
)


def curves(rows: dict) -> dict[str, list[tuple[float, float, str]]]:
    """(recall, p50, label) per point of each approximate system, sorted by recall; spladekit targets that tuning
    left exact go to their own series; rows of further files (``mark``: ``*``, ``**``, ...) to series of their
    own."""
    out: dict[str, list[tuple[float, float, str]]] = {}
    for name, r in rows.items():
        if "p50" not in r:
            continue
        name, mark = name.split("@")[0], r.get("mark", "")
        if name.startswith("seismic-"):
            qc, hf = name.removeprefix("seismic-").split("-")
            qc = "all" if int(qc[1:]) >= 1000 else qc[1:]
            series, label = "pyseismic", f"q{qc} hf{hf[2:]}"
        elif name.startswith("spladekit-q"):  # --approx-grid: explicit knobs
            qt, hf = name.removeprefix("spladekit-").split("-")
            qt = "all" if int(qt[1:]) >= 1000 else qt[1:]
            series, label = "spladekit approx", f"q{qt} hf{hf[2:]}"
        elif name.startswith("spladekit-") and name.removeprefix("spladekit-")[:1].isdigit():
            knobs = r.get("note", "").split(":", 1)[-1].split(";")[0].strip()
            target = name.removeprefix("spladekit-")
            if knobs == "exact":
                series, label = "spladekit approx= left exact", f"approx={target}"
            else:
                series, label = "spladekit approx", f"{target} ({knobs})"
        else:
            continue
        out.setdefault(f"{series} {mark}".strip(), []).append((r["recall"], r["p50"], label + mark))
    return {k: sorted(v) for k, v in out.items()}


def pareto(pts: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """The points no other point beats on both recall (>=) and p50 (<=, one of them strictly)."""
    return [
        p for p in pts if not any(q[0] >= p[0] and q[1] <= p[1] and (q[0] > p[0] or q[1] < p[1]) for q in pts)
    ]


def minor_label(v: float, _pos=None) -> str:
    """Label the 2x and 5x minor ticks of a log axis (the others stay blank)."""
    return f"{v:g}" if v > 0 and round(v / 10 ** math.floor(math.log10(v))) in (2, 5) else ""


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    srcs, dst = [Path(a) for a in sys.argv[1:-1]], Path(sys.argv[-1])
    res = json.loads(srcs[0].read_text())
    rows = dict(res["rows"])
    notes = []
    for i, more in enumerate(srcs[1:], 1):
        mark = "*" * i
        more_rows = json.loads(more.read_text())["rows"]
        for name, r in more_rows.items():
            if "p50" in r and (name.startswith("seismic-") or name[10:11].isdigit() or name[10:11] == "q"):
                rows[f"{name}@{i}"] = {**r, "mark": mark}
        refs = [
            m
            for m in ("scipy-csc", "spladekit")
            if "p50" in more_rows.get(m, {}) and "p50" in rows.get(m, {})
        ]
        same = ", ".join(
            f"{m} p50 {more_rows[m]['p50']:.1f} ms there, {rows[m]['p50']:.1f} ms here" for m in refs
        )
        notes.append(f"{mark} {more.name}: another run ({same or 'no common reference'})")
    fig, ax = plt.subplots(figsize=(9, 5.5))
    styles = {
        "pyseismic": ("o", "tab:red", "tab:orange"),
        "spladekit approx": ("s", "tab:purple", "tab:pink"),
        "spladekit approx= left exact": ("D", "tab:blue", "tab:cyan"),
    }
    for system, pts in curves(rows).items():
        base = system.rstrip("* ")
        marker, color, other = styles[base]
        color = other if system != base else color
        if base == "spladekit approx= left exact":
            ax.plot(
                [p[0] for p in pts], [p[1] for p in pts], marker, color=color, label=system, linestyle="none"
            )
        else:
            front = pareto(pts)
            ax.plot([p[0] for p in front], [p[1] for p in front], marker + "-", color=color, label=system)
            rest = [p for p in pts if p not in front]
            ax.plot(
                [p[0] for p in rest], [p[1] for p in rest], marker, color=color, mfc="none", linestyle="none"
            )
        for i, (x, y, label) in enumerate(pts):
            off = (4, -10) if i % 2 == 0 else (4, 5)
            ax.annotate(label, (x, y), textcoords="offset points", xytext=off, fontsize=7, color=color)
    for name, label, color in (*REFERENCES, ("scipy-csc", "scipy CSC (exact)", "tab:gray")):
        if "p50" in rows.get(name, {}):
            p50 = rows[name]["p50"]
            ax.axhline(p50, color=color, linestyle="--", linewidth=1.2, label=f"{label}: {p50:.2f} ms")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(minor_label))
    ax.set_xlabel(f"recall@{res.get('k', 10)} against exact search")
    ax.set_ylabel("p50 latency per query (ms, log scale)")
    load = "/".join(f"{x:.1f}" for x in res.get("load_before", [])[:1] + res.get("load_after", [])[:1])
    threads = res.get("seismic_threads", 1)
    ax.set_title(
        f"{res['docs']:,} synthetic documents, {res['queries']} real queries, top-{res.get('k', 10)}, one search "
        f"thread\n(pyseismic built with {threads} thread{'s' if threads > 1 else ''}; "
        f"load average before/after {load} on {res.get('cores', '?')} cores)"
        + "".join(f"\n{n}" for n in notes),
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(dst, dpi=120)
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
