"""Measuring one benchmark method in its child process: latencies, memory, batch throughput (``bench/search.py``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

K = 10  # top-k of every search


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    """Peak resident memory of this process image: VmHWM. (On Linux ru_maxrss is carried across exec from the
    forking parent, so a fresh child would report at least the parent's peak.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM line in /proc/self/status")


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _cpu_jiffies() -> tuple[int, int]:
    """(busy jiffies of the whole machine, jiffies of this process, its threads included)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    with open("/proc/self/stat") as f:
        own = f.read().rsplit(")", 1)[1].split()
    return sum(v) - v[3] - v[4], int(own[11]) + int(own[12])


def batch_qps(search_batch, qv, threads: list[int], rounds: int) -> dict:
    """Queries/s of ``search_batch(qv, t)`` per thread count t (median of ``rounds`` alternating rounds), and the
    share of the machine's CPU that other processes used during each count's rounds (0: they were idle)."""
    search_batch(qv, max(threads))  # warm: every thread's first call
    got: dict[int, list[float]] = {t: [] for t in threads}
    others: dict[int, list[float]] = {t: [] for t in threads}
    ticks = os.sysconf("SC_CLK_TCK")
    for _ in range(rounds):
        for t in threads:
            b0, o0 = _cpu_jiffies()
            t0 = time.perf_counter()
            search_batch(qv, t)
            wall = time.perf_counter() - t0
            b1, o1 = _cpu_jiffies()
            got[t].append(len(qv) / wall)
            others[t].append(max(0.0, (b1 - b0) - (o1 - o0)) / ticks / wall / (os.cpu_count() or 1))
    return {
        "qps": {str(t): float(np.median(v)) for t, v in got.items()},
        "rounds": {str(t): v for t, v in got.items()},
        "others": {str(t): float(np.mean(v)) for t, v in others.items()},
    }


def timed(fn, qrows, warm: int = 20):
    """Latencies (ms) of fn(q) for each query, after ``warm`` untimed calls; returns (ms array, top-k ids)."""
    for q in qrows[:warm]:
        fn(q)
    lat = np.empty(len(qrows))
    top = np.full((len(qrows), K), -1, np.int64)
    for i, q in enumerate(qrows):
        t0 = time.perf_counter()
        ids = fn(q)
        lat[i] = 1000 * (time.perf_counter() - t0)
        top[i, : len(ids)] = ids
    return lat, top


def measured(lat, top, **fields) -> dict:
    """One method's result row: ``fields`` (build_s, bytes, postings, note, ...) with its latencies, top-k ids and
    this process's peak and current memory."""
    return {
        **fields,
        "lat": lat.tolist(),
        "top": top.tolist(),
        "peak_rss": peak_rss(),
        "search_rss": rss_now(),
    }
