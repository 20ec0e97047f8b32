"""Write faults (ENOSPC, EIO) at every write-side OS call of a commit and of a merge, and SIGKILL during merges.

A fault at call N of a clean run must surface as one OSError carrying the injected errno; the folder must reopen at
its last good commit (every committed document present and searchable, the new batch all there or not at all), and
the next writer must be able to carry on.
"""

from __future__ import annotations

import builtins
import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from spladekit.index import Index
from spladekit.index.local import writing
from spladekit.sparse import SparseVectors

DIM = 30522  # the bundled model's vocabulary
UNIQUE = 5000  # document number i owns term UNIQUE + i, so its own vector finds it first


def _vectors(first: int, n: int) -> SparseVectors:
    """Documents ``first .. first+n-1``: a heavy term of their own plus 12 random shared terms (seeded by number)."""
    rows = []
    for i in range(first, first + n):
        rng = np.random.default_rng(i)
        shared = np.sort(rng.choice(np.arange(2000, 2300), size=12, replace=False))
        w = (rng.random(12) + 0.1).astype(np.float32)
        rows.append((np.append(shared, UNIQUE + i), np.append(w, np.float32(10.0))))
    return SparseVectors.from_rows(rows, DIM)


def _ids(first: int, n: int) -> list[str]:
    return [f"d{i}" for i in range(first, first + n)]


def _add(idx, first: int, n: int) -> None:
    ids = _ids(first, n)
    idx.add_vectors(ids, _vectors(first, n), texts=ids, metadata=[{"n": i} for i in range(first, first + n)])


def _check(path: Path, must: list[tuple[int, int]], either: list[tuple[int, int]] = ()) -> set[str]:
    """Reopen ``path``: every batch in ``must`` is present, each batch in ``either`` wholly present or wholly
    absent, nothing else; every present document has its exact vector, text and metadata and is its own top hit."""
    idx = Index.open(path)
    try:
        got = set(idx.ids())
        want: set[str] = set()
        for first, n in must:
            want |= set(_ids(first, n))
        for first, n in either:
            batch = set(_ids(first, n))
            inside = batch & got
            assert inside in (set(), batch), f"half a batch visible: {len(inside)} of {len(batch)}"
            want |= inside
        assert got == want, f"missing {sorted(want - got)[:5]}, extra {sorted(got - want)[:5]}"
        assert len(idx) == len(want)
        order = sorted(want, key=lambda x: int(x[1:]))
        nums = [int(x[1:]) for x in order]
        vecs = idx.vectors(order)
        expect = SparseVectors.concat([_vectors(i, 1) for i in nums])
        for r in range(len(nums)):
            got_t, got_w = vecs.row(r)
            exp_t, exp_w = expect.row(r)
            np.testing.assert_array_equal(got_t, exp_t)
            np.testing.assert_array_equal(got_w, exp_w)
        hits = idx.search_batch(expect, k=1)
        assert [h[0].id for h in hits] == order, "a document is not its own top hit"
        for x in order[:: max(1, len(order) // 7)]:
            assert idx.get(x) == {"id": x, "text": x, "metadata": {"n": int(x[1:])}}
        return got
    finally:
        idx.close()


# ---------------------------------------------------------------------------------------------- fault injection
class Injector:
    """Counts the write-side OS calls made under ``root``, and makes call number ``fail_at`` raise ``OSError``.

    Wrapped: ``open``/``os.fdopen`` for writing (the open itself, then ``write``, ``flush``, ``truncate`` and
    ``close`` of the file object), ``tempfile.mkstemp``, ``os.mkdir``, ``os.fsync``, ``os.replace`` and
    ``os.rename``. Errors from a call that names a path carry it (as the kernel's would); ``write``/``fsync``
    errors do not. ``fsync`` is counted, then passed on (the test makes it a no-op: power loss is not what runs here).
    """

    def __init__(self, root: Path, fail_at: int = 0, err: int = errno.ENOSPC) -> None:
        self.root, self.fail_at, self.err = str(root), fail_at, err
        self.calls: list[str] = []
        self.fired: str | None = None
        self.error: OSError | None = None
        self.active = True

    def hit(self, what: str, path: str | None = None) -> None:
        if not self.active:
            return
        self.calls.append(what)
        if len(self.calls) == self.fail_at:
            self.fired = what
            args = (self.err, os.strerror(self.err)) + (() if path is None else (path,))
            self.error = OSError(*args)
            raise self.error

    def mine(self, path) -> bool:
        return isinstance(path, (str, os.PathLike)) and os.fspath(path).startswith(self.root)

    def install(self, mp: pytest.MonkeyPatch) -> None:
        real_open, real_fdopen, real_mkstemp = builtins.open, os.fdopen, tempfile.mkstemp
        real_mkdir, real_replace, real_rename = os.mkdir, os.replace, os.rename
        inj = self

        class File:
            def __init__(self, f, name: str) -> None:
                self._f, self._name = f, name

            def write(self, data):
                inj.hit(f"write {self._name}")
                return self._f.write(data)

            def flush(self):
                inj.hit(f"flush {self._name}")
                return self._f.flush()

            def truncate(self, *a):
                inj.hit(f"truncate {self._name}")
                return self._f.truncate(*a)

            def close(self):
                if self._f.closed:
                    return
                try:
                    inj.hit(f"close {self._name}")
                finally:
                    self._f.close()  # a failed close still frees the descriptor

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.close()

            def __getattr__(self, name):
                return getattr(self._f, name)

        def writes(mode) -> bool:
            return isinstance(mode, str) and any(c in mode for c in "wax+")

        def fake_open(file, mode="r", *a, **kw):
            if not (self.mine(file) and writes(mode)):
                return real_open(file, mode, *a, **kw)
            name = Path(file).name
            self.hit(f"open {name}", os.fspath(file))
            return File(real_open(file, mode, *a, **kw), name)

        def fake_fdopen(fd, mode="r", *a, **kw):
            f = real_fdopen(fd, mode, *a, **kw)
            return File(f, "fd") if writes(mode) else f

        def fake_mkstemp(*a, dir=None, **kw):
            if self.mine(dir):
                self.hit("mkstemp", os.fspath(dir))
            return real_mkstemp(*a, dir=dir, **kw)

        def fake_mkdir(path, *a, **kw):
            if self.mine(path) and not os.path.exists(path):  # an existing folder fails EEXIST, not ENOSPC
                self.hit(f"mkdir {Path(path).name}", os.fspath(path))
            return real_mkdir(path, *a, **kw)

        real_fsync = os.fsync

        def fake_fsync(fd):
            self.hit("fsync")
            real_fsync(fd)

        def fake_replace(src, dst, *a, **kw):
            if self.mine(dst):
                self.hit(f"replace {Path(dst).name}", os.fspath(src))
            return real_replace(src, dst, *a, **kw)

        def fake_rename(src, dst, *a, **kw):
            if self.mine(dst):
                self.hit(f"rename {Path(dst).name}", os.fspath(src))
            return real_rename(src, dst, *a, **kw)

        mp.setattr(builtins, "open", fake_open)
        mp.setattr(os, "fdopen", fake_fdopen)
        mp.setattr(tempfile, "mkstemp", fake_mkstemp)
        mp.setattr(os, "mkdir", fake_mkdir)
        mp.setattr(os, "fsync", fake_fsync)
        mp.setattr(os, "replace", fake_replace)
        mp.setattr(os, "rename", fake_rename)


A = (0, 30)  # committed before the fault
B = (100, 20)  # the batch whose commit fails (in the merge-only phase: committed before it too)
C = (200, 7)  # what the next writer adds


def _link_or_copy(src: str, dst: str) -> None:
    """Segment files are never changed in place (new files, renames), so runs can share them; the rest is copied."""
    if Path(src).parent.name.startswith("seg_"):
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


def _template(tmp: Path, segments: int, with_b: bool) -> Path:
    """An index with batch A committed in ``segments`` segments (each commit without merging), then B if asked."""
    path = tmp / "template"
    idx = Index.create(path)
    first, n = A
    step = -(-n // segments)
    for s in range(first, first + n, step):
        _add(idx, s, min(step, first + n - s))
        idx.commit(merge=False)
    if with_b:
        _add(idx, *B)
        idx.commit(merge=False)
    idx.close()
    return path


def _add_and_commit(idx, retry: bool = False) -> None:
    if not (retry and (idx.has_changes or _ids(*B)[0] in idx)):  # a retry repeats the add if the add failed
        _add(idx, *B)
    idx.commit()


def _optimize(idx, retry: bool = False) -> None:
    idx.optimize()


MAX_SEGMENTS = 2  # writing.MAX_SEGMENTS during these tests: the same merge code, fewer segments to read back

# phase: (segments of A in the template, B committed in the template, what runs under the fault)
PHASES = {
    "add+commit": (1, False, _add_and_commit),
    # A in MAX_SEGMENTS segments: B's segment is one too many, the commit merges right after committing B
    "add+commit that merges": (MAX_SEGMENTS, False, _add_and_commit),
    "optimize": (1, True, _optimize),  # a merge alone: A's segment and B's fold into one
}


def _run(template: Path, work: Path, phase, fail_at: int, err: int, after: str, b_committed: bool) -> str:
    """One scenario on a fresh copy of ``template``; returns the call the fault hit."""
    shutil.copytree(template, work, copy_function=_link_or_copy)
    idx = Index.open(work)
    inj = Injector(work, fail_at, err)
    with pytest.MonkeyPatch.context() as mp:
        inj.install(mp)
        try:
            phase(idx)
            raised = None
        except BaseException as e:  # the assertions below say what was expected
            raised = e
        inj.active = False
    assert inj.fired is not None, f"call {fail_at} was not reached"
    assert raised is inj.error, f"fault at call {fail_at} ({inj.fired}) surfaced as {raised!r}, not as itself"
    # one clear error: it names the file (write and fsync errors name none of their own) and, in a commit or a
    # merge, the index and what became of the last commit
    assert raised.filename and os.fspath(raised.filename).startswith(str(work)), (inj.fired, raised)
    notes = getattr(raised, "__notes__", [])
    assert not notes or (str(work) in notes[0] and ("intact" in notes[0] or "in place" in notes[0])), notes
    # reopened by a reader, while the failed writer still holds the lock: the last good commit
    present = _check(work, [A, B] if b_committed else [A], [] if b_committed else [B])
    b_in = set(_ids(*B)) <= present
    if after == "retry":  # the same writer tries again once the disk is fine: nothing of B may be lost
        phase(idx, retry=True)
        b_in = True
    else:  # the writer gives up: discard and close, as `writing()` does on a failed commit
        idx.rollback()
    idx.close()
    # ``raised`` (and its traceback) stays alive on purpose: resources must not depend on it being dropped
    nxt = Index.open(work)  # the next writer carries on
    _add(nxt, *C)
    nxt.commit()
    nxt.close()
    _check(work, [A, C] + ([B] if b_in else []))
    assert raised is not None
    return inj.fired


# ENOSPC at every call of every phase; EIO (the retrying path) at every call of add+commit, which writes the
# same kinds of file as a merge: the full cross product would double the suite's slowest test for no new path.
FAULT_CASES = [(phase, errno.ENOSPC) for phase in PHASES] + [("add+commit", errno.EIO)]


@pytest.mark.slow
@pytest.mark.parametrize(
    "phase, err", FAULT_CASES, ids=[f"{p}-{'ENOSPC' if e == errno.ENOSPC else 'EIO'}" for p, e in FAULT_CASES]
)
def test_write_fault_at_every_call(phase, err, tmp_path, monkeypatch, capsys):
    """ENOSPC runs give up (rollback + close), EIO runs retry with the same writer; then a next writer adds C."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # no real syncs (speed); the injector counts its own
    monkeypatch.setattr(writing, "MAX_SEGMENTS", MAX_SEGMENTS)
    segments, b_committed, run_phase = PHASES[phase]
    template = _template(tmp_path, segments, b_committed)
    clean = Injector(tmp_path / "count")
    shutil.copytree(template, tmp_path / "count")
    idx = Index.open(tmp_path / "count")
    with pytest.MonkeyPatch.context() as mp:
        clean.install(mp)
        run_phase(idx)
        clean.active = False
    idx.close()
    _check(tmp_path / "count", [A, B])
    count = len(clean.calls)
    assert count > 20, clean.calls
    merges = sum(c.startswith("replace manifest") for c in clean.calls)
    assert merges == (1 if phase == "add+commit" else 2 if b_committed is False else 1)
    after = "rollback" if err == errno.ENOSPC else "retry"
    t0 = time.monotonic()
    fired = []
    for n in range(1, count + 1):
        fired.append(_run(template, tmp_path / f"run{n}", run_phase, n, err, after, b_committed))
        shutil.rmtree(tmp_path / f"run{n}")
    assert fired == clean.calls  # each run failed exactly the call it aimed at
    kinds: dict[str, int] = {}
    for c in clean.calls:
        kinds[c.split()[0]] = kinds.get(c.split()[0], 0) + 1
    with capsys.disabled():
        print(
            f"\n[faults] {phase} {errno.errorcode[err]}: {count} calls {kinds}; {count} runs passed "
            f"in {time.monotonic() - t0:.1f}s"
        )


def test_failed_folder_sync_after_the_manifest_rename(tmp_path, monkeypatch):
    """The one fault after the point of no return: manifest.json is renamed into place, then syncing the folder
    fails. The commit is what readers see, so ``writing()``'s rollback must not delete its segment, and the
    writer's next commit must get a new generation (readers compare generations)."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    path = _template(tmp_path, 1, False)
    idx = Index.open(path)
    inj = Injector(path, 0, errno.EIO)  # a clean run first: which call is the fsync right after the rename
    with pytest.MonkeyPatch.context() as mp:
        inj.install(mp)
        with idx.writing():
            _add(idx, *B)
        inj.active = False
    after = inj.calls.index("replace manifest.json") + 2
    assert inj.calls[after - 1] == "fsync"
    idx.close()
    shutil.rmtree(path)
    path = _template(tmp_path, 1, False)
    idx = Index.open(path)
    gen = idx.info()["generation"]
    inj = Injector(path, after, errno.EIO)
    with pytest.MonkeyPatch.context() as mp:
        inj.install(mp)
        with pytest.raises(OSError) as e, idx.writing():
            _add(idx, *B)
        inj.active = False
    assert e.value.errno == errno.EIO and inj.fired == "fsync"
    assert not idx.holds_lock and not idx.has_changes
    assert idx.info()["generation"] == gen + 1  # the writer knows its commit landed
    _check(path, [A, B])
    with idx.writing():
        _add(idx, *C)
    reader = Index.open(path)
    assert reader.info()["generation"] == gen + 2
    reader.close()
    idx.close()
    _check(path, [A, B, C])


def test_cli_full_disk_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    """`spladekit delete` on a full disk: exit 1 and one line with the OS error, the file it hit (a write error
    names none of its own) and what became of the index; the index keeps every document."""
    from spladekit.cli import main

    monkeypatch.setattr(os, "fsync", lambda fd: None)
    path = _template(tmp_path, 1, False)
    argv = ["spladekit", "delete", "d0", "d1", "--index", str(path)]
    count = Injector(path)  # a clean run on a copy: which call writes the tombstones
    shutil.copytree(path, tmp_path / "count")
    count.root = str(tmp_path / "count")
    with pytest.MonkeyPatch.context() as mp:
        count.install(mp)
        mp.setattr(sys, "argv", [*argv[:-1], str(tmp_path / "count")])
        with pytest.raises(SystemExit) as done:
            main()
        count.active = False
    assert done.value.code in (0, None), capsys.readouterr()
    fail_at = next(i for i, c in enumerate(count.calls, 1) if c.startswith("write deleted"))
    capsys.readouterr()
    inj = Injector(path, fail_at, errno.ENOSPC)
    with pytest.MonkeyPatch.context() as mp:
        inj.install(mp)
        mp.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as done:
            main()
        inj.active = False
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert done.value.code == 1 and len(lines) == 1, err
    assert "No space left on device" in lines[0] and str(path / "seg_") in lines[0], lines[0]
    assert "the last commit is intact" in lines[0] and "Traceback" not in err, lines[0]
    _check(path, [A])


# ---------------------------------------------------------------------------------------------- SIGKILL in merges
KA = (0, 120)  # committed as 24 segments of 5 documents before each kill
KX = (300, 5)  # the batch of a commit that merges
KC = (400, 1)  # what the next writer adds
_CHECKING = threading.Lock()

# The child opens the index, says "ready", then runs one merge: ``optimize`` folds all 24 segments, ``commit`` adds
# batch KX and commits (25 segments > MAX_SEGMENTS: the smallest fold into one). "done" when it returns.
KILL_CHILD = r"""
import sys
sys.path.insert(0, sys.argv[3])
import test_faults as t
from spladekit.index import Index
idx = Index.open(sys.argv[1])
if sys.argv[2] == "commit":
    t._add(idx, *t.KX)
import time
print("ready", flush=True)
t0 = time.monotonic()
idx.optimize() if sys.argv[2] == "optimize" else idx.commit()
print("done", time.monotonic() - t0, flush=True)
"""


def _kill_run(template: Path, work: Path, mode: str, delay: float | None) -> tuple[bool, float | None]:
    """Copy the template, start a child merging it, SIGKILL it ``delay`` s after "ready" (None: let it finish),
    check the folder. Returns (whether the child finished, how long its optimize()/commit() took)."""
    shutil.copytree(template, work, copy_function=_link_or_copy)
    p = subprocess.Popen(
        [sys.executable, "-c", KILL_CHILD, str(work), mode, str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    line = p.stdout.readline()
    assert line.startswith("ready"), p.stderr.read()
    if delay is not None:
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
    # not communicate(): it reads the raw pipe and misses what readline() above already buffered (a child that
    # finishes fast writes "ready" and "done" together; the run then looked neither finished nor killed)
    p.wait(timeout=120)
    out, err = p.stdout.read(), p.stderr.read()
    done = [float(x.split()[1]) for x in out.splitlines() if x.startswith("done")]
    finished = bool(done)
    assert finished or p.returncode == -signal.SIGKILL, err
    # one check at a time: numpy parses .npy headers with ast.literal_eval, which on CPython 3.11.7 in two threads at
    # once sometimes raised SystemError "AST constructor recursion depth mismatch" (see CPython gh-106905)
    with _CHECKING:
        _check(work, [KA, KX] if mode == "commit" and finished else [KA], [KX] if mode == "commit" else [])
        nxt = Index.open(work)  # the next writer: removes what the killed merge left, and commits
        _add(nxt, *KC)
        nxt.commit(merge=False)
        live = {e["name"] for e in nxt._manifest["segments"]}
        assert {q.name for q in work.glob("seg_*")} == live, "files of the killed merge were left behind"
        assert not list(work.glob("*.tmp")) and not list(work.glob(".*.tmp"))
        n = len(nxt)
        nxt.close()
        assert n in (KA[1] + KC[1], KA[1] + KX[1] + KC[1])
    shutil.rmtree(work)
    return finished, done[0] if done else None


@pytest.mark.slow
def test_sigkill_during_merge_50_times(tmp_path, capsys):
    """50 kills at seeded random moments of a merge of 24 small segments (by optimize() or by a commit), two
    folders at a time: every committed document survives, searchable, and the next writer carries on."""
    from concurrent.futures import ThreadPoolExecutor

    template = tmp_path / "template"
    idx = Index.create(template)
    for s in range(KA[0], KA[0] + KA[1], 5):
        _add(idx, s, 5)
        idx.commit(merge=False)
    idx.close()
    assert len(list(template.glob("seg_*"))) == 24
    # the first run of each mode is not killed: it compiles/caches the kernels and times the merge
    took = {m: _kill_run(template, tmp_path / f"warm-{m}", m, None)[1] for m in ("optimize", "commit")}
    rng = np.random.default_rng(16)
    plan = [(m, float(rng.uniform(0.0, 1.2 * took[m]))) for m in rng.choice(["optimize", "commit"], 50)]
    t0 = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        res = list(pool.map(lambda a: _kill_run(template, tmp_path / f"run{a[0]}", *a[1]), enumerate(plan)))
    during = sum(not f for f, _ in res)  # killed before optimize()/commit() returned
    with capsys.disabled():
        print(
            f"\n[sigkill merge] 50 runs passed, {during} killed mid-merge, {50 - during} after it; merge took "
            f"{took['optimize']:.2f}s (optimize) / {took['commit']:.2f}s (commit); {time.monotonic() - t0:.1f}s"
        )
    assert during >= 15, "too few kills landed inside the merge"
