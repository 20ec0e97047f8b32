"""A writer killed with SIGKILL at random moments during add + commit always reopens to its last commit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spladekit.index import Index
from spladekit.sparse import SparseVectors

# The child adds batch b (ids "b<b>-<j>", text = id, metadata {"b": b}) and deletes "b<b-3>-0", then commits,
# forever. After commit b the index therefore holds exactly expected(b); batch sizes vary so segments get merged.
CHILD = r"""
import sys, numpy as np
from spladekit.index import Index
from spladekit.sparse import SparseVectors
from spladekit.sparse import SparseVectors
idx = Index.open(sys.argv[1])
idx.flush_postings = 3000  # flush mid-batch too, so uncommitted segment files exist when the kill lands
b = max([int(x.split("-")[0][1:]) for x in idx.ids()], default=-1) + 1
print("ready", b, flush=True)
while True:
    n = 5 + (b * 7) % 40
    rng = np.random.default_rng(b)
    rows = [(np.unique(rng.integers(0, 2000, 30)), rng.random(30).astype(np.float32) + 0.1) for _ in range(n)]
    rows = [(t, w[: len(t)]) for t, w in rows]
    ids = [f"b{b}-{j}" for j in range(n)]
    idx.add_vectors(ids, SparseVectors.from_rows(rows, int(sys.argv[2])), texts=ids, metadata=[{"b": b}] * n)
    if b >= 3:
        idx.delete([f"b{b - 3}-0"])
    idx.commit()
    print("committed", b, flush=True)
    b += 1
"""


def expected(last: int) -> set[str]:
    out = set()
    for b in range(last + 1):
        out.update(f"b{b}-{j}" for j in range(5 + (b * 7) % 40))
        if b >= 3:
            out.discard(f"b{b - 3}-0")
    return out


def check(path: Path, at_least: int) -> int:
    idx = Index.open(path)
    ids = set(idx.ids())
    last = max((int(x.split("-")[0][1:]) for x in ids), default=-1)
    assert last >= at_least, f"lost a commit: index at batch {last}, child had reported {at_least}"
    assert ids == expected(last), "partial or extra documents visible"
    assert len(idx) == len(ids)
    order = sorted(ids)
    vecs = idx.vectors(order)
    made: dict[int, list] = {}
    for r, x in enumerate(order):
        doc = idx.get(x)
        b, j = (int(p) for p in x[1:].split("-"))
        assert doc["text"] == x and doc["metadata"] == {"b": b}
        if b not in made:  # the document's vector is complete: recompute the batch as the child made it
            g = np.random.default_rng(b)
            n = 5 + (b * 7) % 40
            made[b] = [
                (np.unique(g.integers(0, 2000, 30)), g.random(30).astype(np.float32) + 0.1) for _ in range(n)
            ]
        t, w = made[b][j]
        got_t, got_w = vecs.row(r)
        np.testing.assert_array_equal(got_t, t)
        np.testing.assert_array_equal(got_w, w[: len(t)])
    manifest = json.loads((path / "manifest.json").read_text())
    assert len(manifest["segments"]) == idx.info()["segments"]
    idx.close()
    return last


def _kill_loop(path: Path, dim: int, kills: int, seed: int) -> int:
    """Start the child, kill it at a random moment, check the folder; ``kills`` times. Returns the last batch."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rng = np.random.default_rng(seed)
    reported = -1
    first = None
    for _ in range(kills):
        p = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(dim)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        line = p.stdout.readline()
        assert line.startswith("ready"), p.stderr.read()
        t_ready = time.monotonic()
        if first is None:  # learn how long a fresh process takes to its first commit (load-dependent)
            line = p.stdout.readline()
            assert line.startswith("committed"), p.stderr.read()
            first = time.monotonic() - t_ready
        # kill anywhere from before the first commit to a few dozen commits later
        time.sleep(max(0.0, float(rng.uniform(0.0, 2.5 * first)) - (time.monotonic() - t_ready)))
        p.send_signal(signal.SIGKILL)
        out, _ = p.communicate()
        done = [int(x.split()[1]) for x in out.splitlines() if x.startswith("committed")]
        if done:
            reported = max(reported, done[-1])
        reported = max(reported, check(path, reported))
    return reported


@pytest.mark.slow
def test_sigkill_during_add_and_commit_50_times(encoder, tmp_path):
    """Two folders, 25 kills each, in parallel (the machine has two cores): 50 kills in total."""
    from concurrent.futures import ThreadPoolExecutor

    paths = [tmp_path / "crash0", tmp_path / "crash1"]
    for p in paths:
        Index.create(p, encoder).close()
    # compile (and cache on disk) every kernel the children use, so no child is killed while compiling
    warm = Index.create(tmp_path / "warm", encoder)
    warm.add_vectors(["w"], SparseVectors.from_rows([([1, 2], [0.5, 1.0])], encoder.vocab_size))
    warm.commit()
    warm.vectors(["w"])
    warm.search({"[unused1]": 1.0})
    warm.close()
    t0 = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        last = list(pool.map(lambda i: _kill_loop(paths[i], encoder.vocab_size, 25, i), range(2)))
    assert min(last) >= 10, "the child should have committed many batches across its runs"
    assert time.monotonic() - t0 < 240
