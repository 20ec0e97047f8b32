"""Serving and indexing together: the server holds the index's write lock only while it writes, waits a bounded
time for another writer, and sees other writers' commits; the Index API behind it (writing, release_lock,
rollback, refresh_if_changed); ``spladekit serve`` on a busy port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from spladekit.index import Index, IndexLockedError
from spladekit.serve import create_app
from spladekit.sparse import SparseVectors

CLI = [sys.executable, "-c", "from spladekit.cli import main; main()"]
DOCS = [
    ("d0", "Vitamin D deficiency is linked to bone loss in older adults."),
    ("d1", "Protein folding is guided by hydrophobic interactions in the cell."),
    ("d2", "Smoking raises the risk of lung cancer."),
]


def random_vectors(n: int, dim: int, seed: int) -> SparseVectors:
    rng = np.random.default_rng(seed)
    rows = [
        (np.sort(rng.choice(dim, 20, replace=False)), rng.random(20).astype(np.float32)) for _ in range(n)
    ]
    return SparseVectors.from_rows(rows, dim)


@pytest.fixture()
def index_path(tmp_path, encoder):
    path = tmp_path / "idx"
    with Index.create(path, encoder=encoder) as idx:
        idx.add([d[0] for d in DOCS], [d[1] for d in DOCS])
        idx.commit()
    return path


# ----------------------------------------------------------------------------- the Index API
def test_writing_commits_releases_and_rolls_back(index_path, encoder):
    idx = Index.open(index_path, encoder=encoder)
    other = Index.open(index_path, encoder=encoder)
    try:
        v = random_vectors(2, idx.dim, 0)
        with idx.writing():
            assert idx.holds_lock
            idx.add_vectors(["r0", "r1"], v, ["zero", "one"])
        assert not idx.holds_lock and "r0" in idx  # committed, lock let go
        # another writer can write now, and the first sees its commit on refresh_if_changed
        assert not idx.refresh_if_changed()
        with other.writing():
            other.delete(["r0"])
        assert idx.refresh_if_changed() and "r0" not in idx
        assert not idx.refresh_if_changed()

        # a failing block leaves nothing behind and lets the lock go
        with pytest.raises(RuntimeError):
            with idx.writing():
                idx.add_vectors(["r2"], v[[0]], ["two"])
                raise RuntimeError("boom")
        assert not idx.holds_lock and not idx.has_changes and "r2" not in idx

        # release_lock refuses uncommitted changes; rollback drops them
        idx.add_vectors(["r3"], v[[1]])
        with pytest.raises(ValueError, match="uncommitted"):
            idx.release_lock()
        idx.rollback()
        idx.release_lock()
        assert not idx.holds_lock
        with other.writing():  # the lock really is free
            other.add_vectors(["r4"], v[[1]])
    finally:
        idx.close()
        other.close()
    with Index.open(index_path) as fresh:
        assert set(fresh.ids()) == {"d0", "d1", "d2", "r1", "r4"}


def test_writing_waits_for_another_writer(index_path, encoder):
    holder = Index.open(index_path, encoder=encoder)
    waiter = Index.open(index_path, encoder=encoder)
    try:
        holder.delete(["d0"])  # takes the lock and keeps it
        t0 = time.monotonic()
        with pytest.raises(IndexLockedError, match=f"pid {os.getpid()}") as e:
            with waiter.writing(wait=0.3):
                pass
        assert 0.25 < time.monotonic() - t0 < 2 and e.value.holder == str(os.getpid())

        timer = threading.Timer(0.3, lambda: (holder.commit(), holder.release_lock()))
        timer.start()
        with waiter.writing(wait=10):  # gets the lock once the holder lets go, starting from its commit
            assert "d0" not in waiter
            waiter.delete(["d1"])
        timer.join()
    finally:
        holder.close()
        waiter.close()


# ----------------------------------------------------------------------------- the app
def test_app_writes_take_the_lock_only_while_writing(index_path, encoder):
    served = Index.open(index_path, encoder=encoder)
    other = Index.open(index_path, encoder=encoder)
    c = TestClient(create_app(served, lock_wait=0.3))
    try:
        doc = {"documents": [{"id": "s1", "text": "Served write."}]}
        assert c.post("/documents", json=doc).status_code == 200
        assert not served.holds_lock

        other.add_vectors(["o1"], random_vectors(1, other.dim, 1), ["written elsewhere"])  # lock taken
        r = c.post("/documents", json={"documents": [{"id": "s2", "text": "Second."}]})
        assert r.status_code == 503, r.text
        assert f"pid {os.getpid()}" in r.json()["detail"] and "retry" in r.json()["detail"]
        assert r.headers["retry-after"] == "1"
        assert c.delete("/documents/d0").status_code == 503
        assert c.get("/documents/o1").status_code == 404  # not committed yet

        other.commit()
        other.release_lock()
        time.sleep(0.06)  # past the server's refresh interval
        assert c.get("/documents/o1").json()["text"] == "written elsewhere"
        assert c.get("/stats").json()["index"]["documents"] == len(DOCS) + 2
        r = c.post("/documents", json={"documents": [{"id": "s2", "text": "Second."}]})
        assert r.status_code == 200 and r.json()["documents"] == len(DOCS) + 3
        assert c.delete("/documents/o1").json() == {"deleted": "o1"}
        assert not served.holds_lock

        # writes queued behind this server's own earlier writes wait the same bounded time
        svc = c.app.state.service
        with svc.write_lock:
            r = c.post("/documents", json={"documents": [{"id": "s3", "text": "Third."}]})
        assert r.status_code == 503 and "earlier write requests" in r.json()["detail"]
    finally:
        c.close()
        served.close()
        other.close()


def test_app_create_lets_the_lock_go(tmp_path):
    path = tmp_path / "new"
    with TestClient(create_app(path, create=True)) as c:
        with Index.open(path) as other, other.writing():  # the fresh index is free for other writers
            other.add_vectors(["o1"], random_vectors(1, other.dim, 2), ["from another writer"])
        time.sleep(0.06)
        assert c.get("/documents/o1").json()["text"] == "from another writer"
        assert c.post("/documents", json={"documents": [{"id": "s1", "text": "served"}]}).status_code == 200


# ----------------------------------------------------------------------------- real processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(proc: subprocess.Popen, base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.stdout.read() if proc.poll() is not None else ""
            pytest.fail(f"server did not start: {out[-2000:]}")
        time.sleep(0.1)


@pytest.mark.slow
def test_serve_and_index_cli_share_an_index(index_path, tmp_path):
    """``spladekit index`` adds to an index that ``spladekit serve`` serves; the server shows the new documents
    at once and can still write afterwards."""
    new = {f"n{i}": f"Zebrafish number {i} regenerates its heart muscle after injury." for i in range(3)}
    source = tmp_path / "more.jsonl"
    # the source holds the served documents too: ``spladekit index`` keeps an index in sync with its source
    records = [*DOCS, *new.items()]
    source.write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in records))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*CLI, "serve", "-i", str(index_path), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_healthy(server, base)
        with httpx.Client(base_url=base, timeout=30) as h:
            hits = h.post("/search", json={"query": "zebrafish heart", "k": 3}).json()["hits"]
            assert not {x["id"] for x in hits} & set(new)
            cli = subprocess.run(
                [*CLI, "index", str(source), "--index", str(index_path)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert cli.returncode == 0, cli.stderr[-2000:]
            done = time.monotonic()
            while True:  # the server sees the CLI's commit within 2 s
                hits = h.post("/search", json={"query": "zebrafish heart", "k": 3}).json()["hits"]
                if {x["id"] for x in hits} == set(new):
                    break
                assert time.monotonic() - done < 2, hits
                time.sleep(0.05)
            assert h.get("/documents/n1").json()["text"] == new["n1"]
            # both let the lock go: the server writes, and another process could too
            r = h.post("/documents", json={"documents": [{"id": "after", "text": "Written after the CLI."}]})
            assert r.status_code == 200, r.text
            assert r.json()["documents"] == len(DOCS) + len(new) + 1
        with Index.open(index_path) as idx, idx.writing():
            idx.delete(["after"])
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_busy_port_is_one_line(index_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run(
            [*CLI, "serve", "-i", str(index_path), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {port}" in lines[0] and "in use" in lines[0], r.stderr
    assert "serving" not in r.stderr and "Traceback" not in r.stderr
