"""Hard-negative mining: retrieve with the current SPLADE model and / or BM25, drop judged positives, keep the top
``n`` (several retrievers' lists interleaved, each document once)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..data import load_beir
from ..encode.loading import check_same_model
from ..errors import InputError
from .rows import TrainRow, write_rows


def _open_or_build_index(index_dir: Path, enc, corpus, batch_size: int, show_progress: bool, log):
    from ..index import Index

    if index_dir.is_dir() and any(index_dir.iterdir()):
        idx = Index.open(index_dir)
        check_same_model(
            idx.model,
            enc.info(),
            str(index_dir),
            "; mine with the model that built it or pass a new --index folder",
        )
        idx.bind_encoder(enc)
        if len(idx) != len(corpus):
            raise InputError(f"{index_dir}: index holds {len(idx)} documents, the corpus {len(corpus)}")
        log(f"reusing index {index_dir} ({len(idx)} documents)")
        return idx
    log(f"building index {index_dir} over {len(corpus)} documents")
    idx = Index.create(index_dir, enc)
    ids = list(corpus)
    vecs = enc.encode_documents(
        [corpus[i].full_text for i in ids], batch_size=batch_size, show_progress=show_progress
    )
    idx.add_vectors(ids, vecs)
    idx.commit()
    return idx


RETRIEVERS = ("splade", "bm25")


def check_retrievers(retrievers: Sequence[str]) -> list[str]:
    """The retrievers named (splade, bm25), each once, in the order given."""
    out = [str(r).strip().lower() for r in retrievers]
    if not out:
        raise InputError("no retriever given: use splade, bm25 or both")
    for r in out:
        if r not in RETRIEVERS:
            raise InputError(f"unknown retriever {r!r}: use {' or '.join(RETRIEVERS)}")
    if len(set(out)) != len(out):
        raise InputError("a retriever is named twice")
    return out


def _splade_ranked(
    corpus, qtexts, model, index_dir, depth, batch_size, show_progress, log
) -> list[list[str]]:
    from ..encode import SpladeEncoder

    enc = SpladeEncoder.load(model)
    qvecs = enc.encode_queries(qtexts, batch_size=batch_size)
    if index_dir is not None:
        idx = _open_or_build_index(Path(index_dir), enc, corpus, batch_size, show_progress, log)
        hits = [[h.id for h in hs] for hs in idx.search_batch(qvecs, k=depth)]
        idx.close()
        return hits
    from ..eval import exact_search

    ids = list(corpus)
    dvecs = enc.encode_documents(
        [corpus[i].full_text for i in ids], batch_size=batch_size, show_progress=show_progress
    )
    return [[d for d, _ in r] for r in exact_search(qvecs, dvecs, ids, k=depth)]


def _bm25_ranked(corpus, qtexts, depth) -> list[list[str]]:
    """BM25 (bm25s, as eval's baseline and the index's BM25 view analyse text) over the whole corpus."""
    from ..eval import BM25Baseline

    bm25 = BM25Baseline()
    ids = list(corpus)
    bm25.index(ids, [corpus[i].full_text for i in ids])
    return [[d for d, _ in r] for r in bm25.search(qtexts, k=depth)]


def merge_negatives(
    rankings: Sequence[Sequence[str]], positives: set[str], n: int, skip_top: int
) -> list[str]:
    """Up to ``n`` negatives from several rankings of one query: each ranking without the judged positives and
    its first ``skip_top`` documents, then taken in turn (first of each, second of each, …), each document once."""
    lists = [[d for d in r if d not in positives][skip_top:] for r in rankings]
    out: list[str] = []
    seen: set[str] = set()
    for rank in range(max((len(x) for x in lists), default=0)):
        for x in lists:
            if rank < len(x) and x[rank] not in seen:
                seen.add(x[rank])
                out.append(x[rank])
                if len(out) == n:
                    return out
    return out


def mine_negatives(
    data_dir: str | Path,
    output: str | Path,
    *,
    split: str = "train",
    model: str | Path | None = None,
    index_dir: str | Path | None = None,
    n: int = 4,
    skip_top: int = 0,
    batch_size: int = 32,
    retrievers: Sequence[str] = ("splade",),
    show_progress: bool = False,
    log=print,
) -> int:
    """Write one training row per judged (query, positive) pair of ``split`` with ``n`` hard negatives.

    Negatives are the best-ranked documents that are not judged relevant for that query (after skipping
    ``skip_top`` of them, a guard against unjudged positives). ``retrievers``: ``splade`` uses the index in
    ``index_dir`` (built with ``model`` when absent) or, without one, exact brute-force search; ``bm25`` uses bm25s
    over the corpus; with both, their lists are interleaved (``merge_negatives``) and each row records which
    retrievers ranked each negative (``negative_retrievers``). Returns the number of rows written.
    """
    if n < 1:
        raise InputError("n (negatives per row) must be at least 1")
    if skip_top < 0:
        raise InputError("skip_top must be ≥ 0")
    which = check_retrievers(retrievers)
    col = load_beir(data_dir, split)
    corpus = col.corpus
    qids = [q for q, docs in col.qrels.items() if any(v > 0 for v in docs.values())]
    if not qids:
        raise InputError(f"{col.qrels_path}: no query with a relevant document")
    qtexts = [col.queries[q].text for q in qids]
    depth = max(len(d) for d in col.qrels.values()) + n + skip_top + 10
    ranked = {}
    for r in which:
        if r == "splade":
            ranked[r] = _splade_ranked(
                corpus, qtexts, model, index_dir, depth, batch_size, show_progress, log
            )
        else:
            ranked[r] = _bm25_ranked(corpus, qtexts, depth)
    rows: list[TrainRow] = []
    short = 0
    for qi, (q, qtext) in enumerate(zip(qids, qtexts)):
        positives = [d for d, v in col.qrels[q].items() if v > 0]
        lists = [ranked[r][qi] for r in which]
        negs = merge_negatives(lists, set(positives), n, skip_top)
        if len(negs) < n:
            short += 1
            continue
        found = {}
        if len(which) > 1:  # which retrievers ranked each negative (within the mined depth)
            found = {"negative_retrievers": [[r for r, x in zip(which, lists) if d in x] for d in negs]}
        for p in positives:
            extra = {"query_id": q, "positive_id": p, "negative_ids": negs, **found}
            rows.append(
                TrainRow(qtext, corpus[p].full_text, [corpus[d].full_text for d in negs], None, extra)
            )
    if short:
        log(f"note: {short} queries had fewer than {n} retrievable negatives and were skipped")
    if not rows:
        raise InputError("no training rows mined (no query had enough retrieved negatives)")
    return write_rows(output, rows)
