"""Load held: searches from many clients while writers add documents, then a check that no acknowledged write
was lost. Used by ``bench/serve.py --load`` (16 clients, 60 s) and, small, by ``tests/test_serve_load.py``.

Two kinds of writer run at once: HTTP writers (``POST /documents``, each acknowledged batch is committed before
the answer) and, optionally, one writer in this process that opens the same index folder with the Python API and
commits through the cross-process write lock, so the server has to see and wait for another process's commits.
A write counts as acknowledged when the server answered 200 or ``commit()`` returned. Afterwards, with the
server stopped, the index is opened afresh: every acknowledged id must be there with its text, findable by a
search for that text, and ``check(deep=True)`` must pass.

Also the server processes of ``bench/serve.py``: ``start_server`` (this tree's or an earlier commit's server,
``baseline_src``) and ``wait_for_workers``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    index: Path, port: int, threads: int | None, workers: int | None = None, src: list[Path] | None = None
) -> subprocess.Popen:
    """``spladekit serve`` in a subprocess; its stderr goes to a file (a pipe nobody reads could fill and stall it).

    ``workers``: its ``--workers`` (None: its default); ``src``: folders put first on its PYTHONPATH, e.g. the
    ``src/`` of an earlier commit, so that its spladekit runs instead of the installed one (a same-run baseline).
    """
    cmd = [sys.executable, "-c", "from spladekit.cli import main; main()", "serve", "-i", str(index)]
    cmd += ["--port", str(port)] + (["--threads", str(threads)] if threads else [])
    cmd += ["--workers", str(workers)] if workers else []
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([*map(str, src), *filter(None, [env.get("PYTHONPATH")])])
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True, env=env)
    proc.log = log
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"server exited: {log.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not answer /health within 120 s")


def baseline_src(ref: str, cache: Path) -> list[Path]:
    """PYTHONPATH for the server of commit ``ref``: its ``src/``, exported once into the cache (no worktree,
    nothing written in .git), and, when that commit did not depend on them, a folder that hides the optional
    speed-ups uvicorn would otherwise pick up from this environment (httptools, uvloop): the baseline runs as
    an install of that commit would."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", ref], capture_output=True, text=True, check=True, cwd=HERE
    ).stdout.strip()
    out = (cache / f"serve-base-{sha}").resolve()
    if not (out / "src" / "spladekit" / "__init__.py").is_file():
        out.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha, "src"], capture_output=True, check=True, cwd=HERE)
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    deps = subprocess.run(
        ["git", "show", f"{sha}:pyproject.toml"], capture_output=True, text=True, check=True, cwd=HERE
    ).stdout
    hide = out / "hidden"
    hide.mkdir(exist_ok=True)
    for name in ("httptools", "uvloop"):
        if f'"{name}' not in deps:
            (hide / f"{name}.py").write_text(f"raise ImportError('{name}: not a dependency at {sha}')\n")
    return [out / "src", hide]


def wait_for_workers(port: int, n: int, timeout: float = 180) -> int:
    """Ask /stats on fresh connections until ``n`` different worker pids answered (or ``timeout``)."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < n and time.monotonic() < deadline:
        r = httpx.get(f"http://127.0.0.1:{port}/stats", timeout=30)
        seen.add(r.json().get("pid", 0))
        time.sleep(0.02)
    return len(seen)


def server_log(proc: subprocess.Popen) -> str:
    proc.log.seek(0)
    return proc.log.read()


@dataclass
class LoadResult:
    seconds: float = 0.0
    searches: int = 0
    search_latencies_ms: list[float] = field(default_factory=list)
    search_errors: list[str] = field(default_factory=list)
    write_latencies_ms: list[float] = field(default_factory=list)
    write_errors: list[str] = field(default_factory=list)
    acked: dict[str, str] = field(default_factory=dict)  # id -> text of every acknowledged write
    read_your_write_misses: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        lat = np.asarray(self.search_latencies_ms)
        wl = np.asarray(self.write_latencies_ms)
        pct = lambda a, q: float(np.percentile(a, q)) if len(a) else float("nan")  # noqa: E731
        return {
            "seconds": round(self.seconds, 1),
            "searches": self.searches,
            "search_rps": self.searches / self.seconds if self.seconds else 0.0,
            "search_p50_ms": pct(lat, 50),
            "search_p99_ms": pct(lat, 99),
            "search_errors": len(self.search_errors),
            "writes_acked": len(self.acked),
            "write_p50_ms": pct(wl, 50),
            "write_p99_ms": pct(wl, 99),
            "write_errors": len(self.write_errors),
            "read_your_write_misses": len(self.read_your_write_misses),
            "first_errors": (self.search_errors + self.write_errors + self.read_your_write_misses)[:3],
        }


def run_load(
    base: str,
    search_bodies: list[dict],
    write_texts: list[str],
    *,
    clients: int = 16,
    http_writers: int = 2,
    batch: int = 4,
    seconds: float = 60.0,
    direct_index_path=None,
    encoder=None,
    headers: dict | None = None,
) -> LoadResult:
    """Run ``clients`` search threads and the writers against the server at ``base`` for ``seconds``."""
    res = LoadResult()
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    counter = iter(range(10**9))

    def next_docs(tag: str) -> list[dict]:
        with lock:
            ns = [next(counter) for _ in range(batch)]
        return [
            {"id": f"load/{tag}/{n}", "text": f"{write_texts[n % len(write_texts)]} (load copy {n})"}
            for n in ns
        ]

    def searcher(i: int) -> None:
        with httpx.Client(base_url=base, timeout=60, headers=headers) as c:
            j = i
            while time.perf_counter() < stop:
                t = time.perf_counter()
                try:
                    r = c.post("/search", json=search_bodies[j % len(search_bodies)])
                except httpx.TransportError as e:
                    with lock:
                        res.search_errors.append(f"search: transport error {e!r}")
                    continue
                finally:
                    j += clients
                dt = (time.perf_counter() - t) * 1000
                with lock:
                    if r.status_code == 200:
                        res.searches += 1
                        res.search_latencies_ms.append(dt)
                    else:
                        res.search_errors.append(f"search: {r.status_code} {r.text[:200]}")

    def http_writer(w: int) -> None:
        with httpx.Client(base_url=base, timeout=60, headers=headers) as c:
            while time.perf_counter() < stop:
                docs = next_docs(f"http{w}")
                t = time.perf_counter()
                try:
                    r = c.post("/documents", json={"documents": docs})
                except httpx.TransportError as e:  # unknown outcome: not acknowledged, so not counted
                    with lock:
                        res.write_errors.append(f"write: transport error {e!r}")
                    continue
                dt = (time.perf_counter() - t) * 1000
                if r.status_code != 200:
                    with lock:
                        res.write_errors.append(f"write: {r.status_code} {r.text[:200]}")
                    continue
                with lock:
                    res.write_latencies_ms.append(dt)
                    res.acked.update((d["id"], d["text"]) for d in docs)
                # read your write: the server that acknowledged it serves it at once
                g = c.get(f"/documents/{docs[-1]['id']}")
                if g.status_code != 200 or g.json().get("text") != docs[-1]["text"]:
                    with lock:
                        res.read_your_write_misses.append(f"{docs[-1]['id']}: GET gave {g.status_code}")

    def direct_writer() -> None:
        from spladekit.index import Index

        with Index.open(direct_index_path, encoder) as idx:
            while time.perf_counter() < stop:
                docs = next_docs("direct")
                vectors = encoder.encode_documents([d["text"] for d in docs])
                t = time.perf_counter()
                try:
                    with idx.writing(wait=30):
                        idx.add_vectors([d["id"] for d in docs], vectors, [d["text"] for d in docs])
                except Exception as e:  # noqa: BLE001 - a load test records every failure
                    with lock:
                        res.write_errors.append(f"direct write: {type(e).__name__}: {e}")
                    continue
                with lock:
                    res.write_latencies_ms.append((time.perf_counter() - t) * 1000)
                    res.acked.update((d["id"], d["text"]) for d in docs)
                time.sleep(0.05)  # a batch writer, not a spin loop: let the HTTP writers in too

    threads = [threading.Thread(target=searcher, args=(i,)) for i in range(clients)]
    threads += [threading.Thread(target=http_writer, args=(w,)) for w in range(http_writers)]
    if direct_index_path is not None:
        threads.append(threading.Thread(target=direct_writer))
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    res.seconds = time.perf_counter() - t0
    return res


def verify(index_path, acked: dict[str, str], encoder=None, search_sample: int = 200, seed: int = 0) -> dict:
    """Open the index afresh (server stopped) and look for every acknowledged write."""
    from spladekit.index import Index
    from spladekit.index.local.integrity import check_index

    report = check_index(Path(index_path), deep=True)
    with Index.open(index_path, encoder) as idx:
        lost = [i for i in acked if i not in idx]
        wrong_text = [i for i in acked if i in idx and idx.get(i)["text"] != acked[i]]
        rng = np.random.default_rng(seed)
        ids = list(acked)
        sample = [ids[j] for j in rng.choice(len(ids), size=min(search_sample, len(ids)), replace=False)]
        not_found = []
        if sample:
            results = idx.search_batch([acked[i] for i in sample], k=10)
            not_found = [i for i, hits in zip(sample, results) if i not in {h.id for h in hits}]
        n_docs = len(idx)
    return {
        "documents": n_docs,
        "acked": len(acked),
        "lost": len(lost),
        "wrong_text": len(wrong_text),
        "searched": len(sample),
        "not_found_by_search": len(not_found),
        "check_ok": report.ok,
        "check_problems": [str(p) for p in report.problems][:5],
        "examples": (lost + wrong_text + not_found)[:5],
    }
