"""Cold start: wall time of a fresh ``spladekit search`` and ``spladekit inspect`` process, median of N runs.

Run from the repository root, over any index folder (e.g. ``spladekit index ../shared/data/scifact -i /tmp/ix``)::

    python bench/cold_start.py -i /tmp/ix                      # this checkout
    python bench/cold_start.py -i /tmp/ix --reference OLD/src  # and another checkout's src/ in the same run

Each run is a new Python process (imports, model load, one query), as a user typing the command gets; the disk
cache is warm (the index and the model files were read before). The reference, when given, runs the same
commands with ``PYTHONPATH=OLD/src`` (its CLI took the index as a positional argument: pass ``--reference-old-cli``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUERY = "how do vaccines trigger an immune response"


def commands(index: str, old_cli: bool) -> dict[str, list[str]]:
    search = ["search", index, QUERY, "-k", "10"] if old_cli else ["search", QUERY, "-i", index, "-k", "10"]
    inspect = ["inspect", QUERY, "--top-k", "10"] if old_cli else ["inspect", QUERY, "-k", "10"]
    return {"search": search, "inspect": inspect}


def time_runs(args: list[str], src: Path, runs: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    code = "import sys; from spladekit.cli import main; sys.argv = ['spladekit', *sys.argv[1:]]; main()"
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
        out.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed with {src}:\n{r.stderr[-2000:]}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-i", "--index", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--reference", type=Path, default=None, help="another checkout's src/ folder")
    ap.add_argument("--reference-old-cli", action="store_true", help="the reference takes INDEX positionally")
    a = ap.parse_args()
    systems = [("spladekit", ROOT / "src", False)]
    if a.reference is not None:
        systems.append(("reference", a.reference.resolve(), a.reference_old_cli))
    for args in commands(a.index, False).values():
        time_runs(args, ROOT / "src", 1)  # warm the disk cache (and numba's on-disk kernel cache)
    medians: dict[tuple[str, str], float] = {}
    for system, src, old in systems:
        for cmd, args in commands(a.index, old).items():
            times = time_runs(args, src, a.runs)
            medians[(system, cmd)] = statistics.median(times)
            print(
                f"{system:>10} {cmd:<8} median {statistics.median(times):.2f} s  runs {[round(t, 2) for t in times]}"
            )
    if a.reference is not None:
        for cmd in ("search", "inspect"):
            print(
                f"{cmd}: reference / spladekit = {medians[('reference', cmd)] / medians[('spladekit', cmd)]:.1f}x"
            )


if __name__ == "__main__":
    main()
