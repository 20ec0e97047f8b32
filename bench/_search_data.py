"""Real splade-tiny vectors for the search benchmark, encoded once and cached under ``bench/.cache/``.

Run directly (``python bench/_search_data.py``) to fill the cache ahead of ``bench/search.py``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from spladekit.data import read_records
from spladekit.sparse import SparseVectors

DATA = Path("../shared/data")
CACHE = Path(__file__).resolve().parent / ".cache"
CORPORA = ("scifact", "cranfield", "cisi", "msmarco-trecdl2019-pool")
# Encode only a uniform sample (seed 0) of this many documents per collection (0: all of them), for machines where
# encoding all 22,624 documents on the CPU takes too long; the synthetic corpus then draws its statistics from it.
REAL_DOCS = int(os.environ.get("SPLADEKIT_BENCH_REAL_DOCS", "0"))


def _cache_dir() -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    ignore = CACHE / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    return CACHE


def _save(path: Path, v: SparseVectors) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, indptr=v.indptr, indices=v.indices, data=v.data, dim=np.int64(v.dim))
    tmp.replace(path)


def _load(path: Path) -> SparseVectors:
    z = np.load(path)
    return SparseVectors(z["indptr"], z["indices"], z["data"], int(z["dim"]))


def encoded(name: str, kind: str, encoder=None) -> SparseVectors:
    """Vectors of every document (kind="corpus") or query (kind="queries") of one shared collection."""
    cap = REAL_DOCS if kind == "corpus" else 0
    path = _cache_dir() / (f"{name}.{kind}.npz" if not cap else f"{name}.{kind}-{cap}.npz")
    if path.exists():
        return _load(path)
    if encoder is None:
        from spladekit import SpladeEncoder

        encoder = SpladeEncoder.load()
    src = DATA / name / ("corpus.jsonl" if kind == "corpus" else "queries.jsonl")
    texts = [r.full_text for r in read_records(src)]
    if cap and cap < len(texts):
        keep = np.sort(np.random.default_rng(0).choice(len(texts), size=cap, replace=False))
        texts = [texts[i] for i in keep]
    t0 = time.perf_counter()
    if kind == "corpus":
        v = encoder.encode_documents(texts, batch_size=32, show_progress=True)
    else:
        v = encoder.encode_queries(texts, batch_size=64)
    print(f"encoded {len(texts)} {name} {kind} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    _save(path, v)
    return v


def main() -> None:
    from spladekit import SpladeEncoder

    enc = SpladeEncoder.load()
    for name in CORPORA:
        encoded(name, "queries", enc)
    for name in CORPORA:
        encoded(name, "corpus", enc)


if __name__ == "__main__":
    main()
