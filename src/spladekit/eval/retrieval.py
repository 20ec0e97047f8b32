"""Retrieval for evaluation: exact brute-force SPLADE search and a BM25 baseline (bm25s). Fusion lives in
``index.fusion``, shared with the index's hybrid search."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from ..index import lexical
from ..sparse import SparseVectors

Ranking = list[tuple[str, float]]


def rank_order(ids: Sequence[str], scores: np.ndarray) -> np.ndarray:
    """Positions sorted by score descending, ties by id ascending (the order sentence-transformers uses)."""
    return np.asarray(sorted(range(len(scores)), key=lambda i: (-float(scores[i]), ids[i])), dtype=np.int64)


def exact_search(
    queries: SparseVectors,
    docs: SparseVectors,
    doc_ids: Sequence[str],
    k: int = 1000,
    chunk: int = 256,
    owner: np.ndarray | None = None,
) -> list[Ranking]:
    """Exact top-``k`` by dot product (scipy sparse product + argpartition): the reference the index is checked
    against. Documents scoring 0 are not returned; ties are ordered by id. ``owner``: ``docs`` are passages and
    passage i belongs to document ``owner[i]`` (ascending); a document scores as its best passage."""
    if queries.dim != docs.dim:
        raise InputError(f"query dimension {queries.dim} differs from document dimension {docs.dim}")
    if len(doc_ids) != (len(docs) if owner is None else int(owner[-1]) + 1 if len(owner) else 0):
        raise InputError(f"{len(doc_ids)} document ids for {len(docs)} document vectors")
    d_t = docs.to_scipy().T.tocsr().astype(np.float32)
    starts = None if owner is None else np.flatnonzero(np.diff(owner, prepend=-1))
    out: list[Ranking] = []
    for s in range(0, len(queries), chunk):
        block = (queries[s : s + chunk].to_scipy() @ d_t).toarray()
        if starts is not None:
            block = np.maximum.reduceat(block, starts, axis=1)
        for row in block:
            pos = np.flatnonzero(row > 0)
            if len(pos) > k:
                # keep everything tied with the k-th score so the id tie-break is exact
                kth = np.partition(row[pos], len(pos) - k)[len(pos) - k]
                pos = pos[row[pos] >= kth]
            order = pos[rank_order([doc_ids[i] for i in pos], row[pos])][:k]
            out.append([(doc_ids[i], float(row[i])) for i in order])
    return out


def hybrid_run(idx, texts: Sequence[str], k: int, hybrid) -> tuple[list[Ranking], list[float]]:
    """The index's hybrid search of each text, the very call a user makes (``Index.search(text, k, hybrid=)``:
    query encoding, both runs, ``index.fusion``), and the seconds each took."""
    import time

    out, seconds = [], []
    for text in texts:
        t0 = time.perf_counter()
        hits = idx.search(text, k=k, hybrid=hybrid)
        seconds.append(time.perf_counter() - t0)
        out.append([(h.id, h.score) for h in hits])
    return out, seconds


class BM25Baseline:
    """BM25 over the same documents with bm25s (Lucene variant, k1=1.2, b=0.75, English stopwords, Snowball
    stemmer when PyStemmer is installed), as close as bm25s gets to the Anserini / Elasticsearch runs BEIR reports.
    Text is analysed by ``index.lexical.analyze``, as the index's BM25 view analyses it."""

    def __init__(self, k1: float = lexical.K1, b: float = lexical.B, method: str = lexical.METHOD) -> None:
        self.k1, self.b, self.method = k1, b, method
        self.stemmer = lexical.stemmer()
        self._retriever = None
        self._ids: list[str] = []

    def settings(self) -> dict:
        import bm25s

        return {
            "library": f"bm25s {bm25s.__version__}",
            "method": self.method,
            "k1": self.k1,
            "b": self.b,
            "stopwords": lexical.STOPWORDS,
            "stemmer": "PyStemmer english (Snowball)"
            if self.stemmer is not None
            else "none (PyStemmer not installed)",
        }

    def index(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        import bm25s

        if not ids:
            raise InputError("BM25 needs at least one document")
        tokens = lexical.analyze(texts, ids=True)
        self._retriever = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        self._retriever.index(tokens, show_progress=False)
        self._ids = list(ids)

    def search(self, texts: Sequence[str], k: int = 1000) -> list[Ranking]:
        if self._retriever is None:
            raise InputError("BM25Baseline.search called before index()")
        k = min(k, len(self._ids))
        if not texts:
            return []
        q_tokens = lexical.analyze(texts)
        docs, scores = self._retriever.retrieve(q_tokens, k=k, show_progress=False, n_threads=1)
        out: list[Ranking] = []
        for drow, srow in zip(docs, scores):
            keep = srow > 0
            drow, srow = drow[keep], srow[keep]
            ids = [self._ids[int(i)] for i in drow]
            order = rank_order(ids, srow)
            out.append([(ids[i], float(srow[i])) for i in order])
        return out
