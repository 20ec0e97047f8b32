"""One writer at a time across processes: a second writer gets `IndexLockedError` naming the holder's pid, never a
corrupt index; a lock left by a dead writer (killed, or a bare pid in ``write.lock``) is taken over by the next."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from spladekit.index import Index, IndexLockedError
from spladekit.index.local.lock import LOCK
from spladekit.sparse import SparseVectors

DIM = 30522  # the bundled model's vocabulary

# A child writer: ``hold`` takes the lock (stages a batch), says "holding <pid>", then waits for a line on stdin
# (or a SIGKILL); ``try`` tries to write once and prints what happened as JSON; ``loop`` commits batches with
# ``writing(wait=...)``.
CHILD = r"""
import json, os, sys, numpy as np
from spladekit.index import Index, IndexLockedError
from spladekit.sparse import SparseVectors
DIM = 30522

def vecs(first, n):
    rows = []
    for i in range(first, first + n):
        g = np.random.default_rng(i)
        t = np.sort(g.choice(np.arange(2000, 2300), 12, replace=False))
        rows.append((np.append(t, 5000 + i), np.append(g.random(12).astype(np.float32) + 0.1, np.float32(10))))
    return SparseVectors.from_rows(rows, DIM)

mode, path = sys.argv[1], sys.argv[2]
idx = Index.open(path)
if mode == "hold":
    first, n = int(sys.argv[3]), int(sys.argv[4])
    idx.flush_postings = 1  # staged work reaches a segment folder before the commit
    idx.add_vectors([f"d{i}" for i in range(first, first + n)], vecs(first, n))
    print("holding", os.getpid(), flush=True)
    sys.stdin.readline()
    idx.commit()
    idx.close()
    print("committed", flush=True)
elif mode == "try":
    try:
        idx.add_vectors(["d9999"], vecs(9999, 1))
        idx.commit()
        print(json.dumps({"ok": True}), flush=True)
    except IndexLockedError as e:
        print(json.dumps({"ok": False, "error": str(e), "holder": e.holder, "pid": os.getpid()}), flush=True)
elif mode == "loop":
    first, batches, n = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    for b in range(batches):
        s = first + b * n
        with idx.writing(wait=30):
            idx.add_vectors([f"d{i}" for i in range(s, s + n)], vecs(s, n))
    idx.close()
    print("done", flush=True)
"""


def _vectors(first: int, n: int) -> SparseVectors:
    rows = []
    for i in range(first, first + n):
        g = np.random.default_rng(i)
        t = np.sort(g.choice(np.arange(2000, 2300), 12, replace=False))
        rows.append(
            (np.append(t, 5000 + i), np.append(g.random(12).astype(np.float32) + 0.1, np.float32(10)))
        )
    return SparseVectors.from_rows(rows, DIM)


def _ids(first: int, n: int) -> list[str]:
    return [f"d{i}" for i in range(first, first + n)]


def _child(*args, stdin=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *map(str, args)],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _holding(p: subprocess.Popen) -> int:
    line = p.stdout.readline()
    assert line.startswith("holding"), p.stderr.read()
    return int(line.split()[1])


def _check(path: Path, want: set[str]) -> None:
    """Reopen: exactly ``want``, each document with its exact vector and its own top hit."""
    idx = Index.open(path)
    try:
        assert set(idx.ids()) == want
        order = sorted(want, key=lambda x: int(x[1:]))
        if not order:
            return
        expect = SparseVectors.concat([_vectors(int(x[1:]), 1) for x in order])
        got = idx.vectors(order)
        for r in range(len(order)):
            np.testing.assert_array_equal(got.row(r)[0], expect.row(r)[0])
            np.testing.assert_array_equal(got.row(r)[1], expect.row(r)[1])
        assert [h[0].id for h in idx.search_batch(expect, k=1)] == order
    finally:
        idx.close()


@pytest.fixture()
def index(tmp_path) -> Path:
    """An index with d0..d9 committed."""
    path = tmp_path / "idx"
    idx = Index.create(path)
    idx.add_vectors(_ids(0, 10), _vectors(0, 10))
    idx.commit()
    idx.close()
    return path


def _flock_free(path: Path) -> bool:
    with open(path / LOCK) as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return True


def test_second_process_is_refused_with_the_holders_pid(index):
    """A child holds the lock: this process is refused (pid named); this process holds it: a child is refused."""
    holder = _child("hold", index, 100, 5, stdin=subprocess.PIPE)
    try:
        pid = _holding(holder)
        assert (index / LOCK).read_text() == str(pid)
        assert not _flock_free(index)
        idx = Index.open(index)  # reading is fine while another process writes
        assert len(idx) == 10
        with pytest.raises(IndexLockedError) as e:
            idx.add_vectors(["x"], _vectors(500, 1))
        assert f"being written by another writer (pid {pid})" in str(e.value)
        assert e.value.holder == str(pid)
        with pytest.raises(IndexLockedError, match=f"pid {pid}.*after waiting 0.2 s"):
            with idx.writing(wait=0.2):
                pass
        assert not idx.holds_lock and not idx.has_changes
        out, err = holder.communicate("go\n", timeout=60)
        assert "committed" in out, err
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    # now the roles change: this process writes, a child is refused
    idx.add_vectors(_ids(200, 3), _vectors(200, 3))
    assert (index / LOCK).read_text() == str(os.getpid())
    tried = _child("try", index)
    out, err = tried.communicate(timeout=60)
    assert out.strip(), err
    res = json.loads(out.strip().splitlines()[-1])
    assert res["ok"] is False, err
    assert res["holder"] == str(os.getpid())
    assert (
        f"{index} is being written by another writer (pid {os.getpid()}); one writer at a time"
        == res["error"]
    )
    idx.commit()
    idx.close()
    _check(index, set(_ids(0, 10)) | set(_ids(100, 5)) | set(_ids(200, 3)))


def test_two_processes_writing_in_turns_lose_nothing(index):
    """Two child processes commit 8 batches each through ``writing(wait=30)`` at the same time: all 16 land."""
    a = _child("loop", index, 1000, 8, 6)
    b = _child("loop", index, 2000, 8, 6)
    for p in (a, b):
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and "done" in out, err
    want = set(_ids(0, 10)) | set(_ids(1000, 48)) | set(_ids(2000, 48))
    _check(index, want)


def test_lock_of_a_killed_writer_is_taken_over(index):
    """SIGKILL a writer holding the lock with staged (and flushed) work: the kernel drops its flock, its pid stays
    in write.lock, the next writer takes over, and the uncommitted work is gone."""
    holder = _child("hold", index, 300, 5, stdin=subprocess.PIPE)
    pid = _holding(holder)
    live = {e["name"] for e in json.loads((index / "manifest.json").read_text())["segments"]}
    orphans = {p.name for p in index.glob("seg_*")} - live
    assert orphans  # the staged batch was flushed to a segment folder no commit names
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=60)
    assert holder.returncode == -signal.SIGKILL
    assert (index / LOCK).read_text() == str(pid)  # the stale pid is still there ...
    assert _flock_free(index)  # ... but the kernel released the flock with the process
    idx = Index.open(index)
    idx.add_vectors(_ids(400, 4), _vectors(400, 4))
    assert idx.holds_lock
    assert (index / LOCK).read_text() == str(os.getpid())
    assert not orphans & {p.name for p in index.glob("seg_*")}  # the killed writer's files are cleaned up
    idx.commit()
    idx.close()
    _check(index, set(_ids(0, 10)) | set(_ids(400, 4)))


def test_lock_file_with_a_dead_pid_and_no_flock(index):
    """write.lock names a process that is gone (and holds no flock), or holds junk, or is empty or missing: the
    next writer takes over and leaves exactly its own pid in the file."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = [str(gone.pid), "12345678901234567890 junk\nmore junk\n", "", None]
    for k, content in enumerate(stale):
        if content is None:
            (index / LOCK).unlink()
        else:
            (index / LOCK).write_text(content)
            assert _flock_free(index)
        idx = Index.open(index)
        idx.add_vectors(_ids(50 + k, 1), _vectors(50 + k, 1))
        assert (index / LOCK).read_text() == str(os.getpid())
        idx.commit()
        idx.close()
    _check(index, set(_ids(0, 10)) | set(_ids(50, len(stale))))


def test_two_writers_in_one_process_and_waiting(index):
    """Two index objects in one process exclude each other too (flock is per open file); ``writing(wait=)``
    gets in once the other lets go; closing releases the lock."""
    first = Index.open(index)
    first.add_vectors(["n1"], _vectors(600, 1))
    second = Index.open(index)
    with pytest.raises(IndexLockedError, match=f"pid {os.getpid()}"):
        second.add_vectors(["n2"], _vectors(601, 1))

    def finish():
        time.sleep(0.3)
        first.commit()
        first.close()

    t = threading.Thread(target=finish)
    t.start()
    t0 = time.monotonic()
    with second.writing(wait=20):
        second.upsert_vectors(["n1"], _vectors(600, 1))  # the first writer's commit is visible: an upsert
        second.add_vectors(["n2"], _vectors(601, 1))
    t.join()
    assert 0.2 < time.monotonic() - t0 < 20
    assert not second.holds_lock  # writing() took the lock only for the block
    assert set(second.ids()) == set(_ids(0, 10)) | {"n1", "n2"}
    second.close()
    assert _flock_free(index)
