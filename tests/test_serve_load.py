"""Load held (issue 16, row 7), small: a real ``spladekit serve`` process answers searches from several clients
while HTTP writers and a writer in another process (this one) add documents; no request fails and, after the
server stops, every acknowledged write is in the reopened index. ``bench/serve.py --load 60`` is the full size."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

from spladekit.index import Index

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from _serve_load import free_port, run_load, server_log, start_server, verify  # noqa: E402

ANIMALS = ["zebrafish", "mouse", "yeast", "rat", "frog", "worm", "fly", "chicken", "pig", "cow"]
ORGANS = ["heart", "liver", "kidney", "retina", "lung", "brain", "skin", "bone", "gut", "muscle"]
EVENTS = [
    "regenerates",
    "ages",
    "inflames",
    "grows",
    "scars",
    "heals",
    "fails",
    "adapts",
    "shrinks",
    "recovers",
]


@pytest.mark.slow
def test_searches_and_writers_together_lose_nothing(tmp_path, encoder):
    texts = [f"The {a} {o} {e} after injury." for a, o, e in itertools.product(ANIMALS, ORGANS, EVENTS)]
    path = tmp_path / "idx"
    with Index.create(path, encoder=encoder) as idx:
        idx.add([f"seed{i}" for i in range(40)], texts[-40:])
        idx.commit()
    queries = [{"query": f"{a} {o}", "k": 10} for a, o in itertools.product(ANIMALS, ORGANS)]
    port = free_port()
    proc = start_server(path, port, 1)
    try:
        res = run_load(
            f"http://127.0.0.1:{port}",
            queries,
            texts,
            clients=4,
            http_writers=2,
            seconds=8,
            direct_index_path=path,
            encoder=encoder,
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    s = res.summary()
    assert s["search_errors"] == 0 and s["write_errors"] == 0, s["first_errors"]
    assert s["read_your_write_misses"] == 0, s["first_errors"]
    assert s["searches"] > 20
    kinds = {i.split("/")[1] for i in res.acked}
    assert {"http0", "http1", "direct"} <= kinds, kinds  # both kinds of writer got writes through
    assert "Traceback" not in server_log(proc)
    v = verify(path, res.acked, encoder)
    assert v["check_ok"], v["check_problems"]
    assert v["lost"] == 0 and v["wrong_text"] == 0, v["examples"]
    assert v["not_found_by_search"] == 0, v["examples"]
    assert v["documents"] == 40 + len(res.acked)
