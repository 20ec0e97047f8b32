"""``spladekit serve --workers 2``: a write through one worker is seen at once by the other, writes from both go
one at a time, no worker holds the index's lock while idle, shutdown is clean; worker counts the index cannot
take are refused in one line."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from spladekit.index import Index

CLI = [sys.executable, "-c", "from spladekit.cli import main; main()"]
from conftest import SERVE_DOCS as DOCS  # noqa: E402


# ----------------------------------------------------------------------------- worker processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(index_path, *args: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cmd = [*CLI, "serve", "-i", str(index_path), "--port", str(port), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"server did not start: {proc.communicate()[0][-2000:]}")
        time.sleep(0.1)


def _clients_per_worker(base: str, n: int, timeout: float = 120) -> dict[int, httpx.Client]:
    """A keep-alive client per worker: new connections until ``n`` different worker pids answered."""
    found: dict[int, httpx.Client] = {}
    deadline = time.monotonic() + timeout
    while len(found) < n:
        assert time.monotonic() < deadline, f"only workers {sorted(found)} answered"
        c = httpx.Client(base_url=base, timeout=60)
        pid = c.get("/stats").json()["pid"]
        if pid in found:
            c.close()
        else:
            found[pid] = c
        time.sleep(0.05)
    return found


@pytest.mark.slow
def test_two_workers_share_the_index(index_path):
    """A write acknowledged by one worker is found by the next request to the other; writes from both workers
    at once all land (they take the index's lock in turn); idle workers hold no lock; SIGTERM stops all."""
    proc, base = _start(index_path, "--workers", "2")
    clients: dict[int, httpx.Client] = {}
    try:
        clients = _clients_per_worker(base, 2)
        (pa, a), (pb, b) = clients.items()
        assert pa != pb and pa != proc.pid and pb != proc.pid

        r = a.post(
            "/documents", json={"documents": [{"id": "w1", "text": "Zebrafish regenerate their heart."}]}
        )
        assert r.status_code == 200, r.text
        assert b.get("/documents/w1").json()["text"] == "Zebrafish regenerate their heart."  # no wait at all
        hits = b.post("/search", json={"query": "zebrafish heart", "k": 1}).json()["hits"]
        assert hits[0]["id"] == "w1"
        assert b.delete("/documents/w1").status_code == 200
        assert a.get("/documents/w1").status_code == 404

        errors: list[str] = []

        def writer(c: httpx.Client, tag: str) -> None:
            for i in range(6):
                doc = {"id": f"{tag}{i}", "text": f"Document {i} written through worker {tag}."}
                r = c.post("/documents", json={"documents": [doc]})
                if r.status_code != 200:
                    errors.append(r.text)

        threads = [threading.Thread(target=writer, args=(c, t)) for c, t in ((a, "a"), (b, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        assert a.get("/stats").json()["index"]["documents"] == len(DOCS) + 12
        assert b.get("/stats").json()["index"]["documents"] == len(DOCS) + 12

        with Index.open(index_path) as other, other.writing(wait=0):  # no worker holds the lock while idle
            other.delete(["a0"])
        assert b.get("/documents/a0").status_code == 404 and a.get("/documents/a0").status_code == 404
    finally:
        for c in clients.values():
            c.close()
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out[-2000:]
    assert "Traceback" not in out and "leaked" not in out, out[-2000:]
    for pid in clients:  # every worker is gone with the parent
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with Index.open(index_path) as idx:
        assert len(idx) == len(DOCS) + 11 and idx.check(deep=True).ok


def test_workers_refused_in_one_line(index_path, tmp_path, encoder):
    """A worker count the index cannot take fails before anything starts, in one line."""
    from qdrant_client import QdrantClient  # noqa: F401 - the embedded backend must be importable

    embedded = tmp_path / "q"
    Index.create(embedded, encoder=encoder, backend="qdrant").close()
    for path, workers, words in ((index_path, "0", "at least 1"), (embedded, "2", "--workers 1")):
        r = subprocess.run(
            [*CLI, "serve", "-i", str(path), "--port", "0", "--workers", workers],
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and words in lines[0], r.stderr
    shutil.rmtree(embedded)
