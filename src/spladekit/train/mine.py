"""Hard-negative mining: retrieve with the current SPLADE model, drop judged positives, keep the top ``n``."""

from __future__ import annotations

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
    show_progress: bool = False,
    log=print,
) -> int:
    """Write one training row per judged (query, positive) pair of ``split`` with ``n`` hard negatives.

    Negatives are the best-ranked documents that are not judged relevant for that query (after skipping
    ``skip_top`` of them, a guard against unjudged positives). Retrieval uses the index in ``index_dir`` (built
    with ``model`` when absent) or, without one, exact brute-force search. Returns the number of rows written.
    """
    from ..encode import SpladeEncoder

    if n < 1:
        raise InputError("n (negatives per row) must be at least 1")
    if skip_top < 0:
        raise InputError("skip_top must be ≥ 0")
    col = load_beir(data_dir, split)
    corpus = col.corpus
    enc = SpladeEncoder.load(model)
    qids = [q for q, docs in col.qrels.items() if any(v > 0 for v in docs.values())]
    if not qids:
        raise InputError(f"{col.qrels_path}: no query with a relevant document")
    qtexts = [col.queries[q].text for q in qids]
    qvecs = enc.encode_queries(qtexts, batch_size=batch_size)
    depth = max(len(d) for d in col.qrels.values()) + n + skip_top + 10
    if index_dir is not None:
        idx = _open_or_build_index(Path(index_dir), enc, corpus, batch_size, show_progress, log)
        hits = [[h.id for h in hs] for hs in idx.search_batch(qvecs, k=depth)]
        idx.close()
    else:
        from ..eval import exact_search

        ids = list(corpus)
        dvecs = enc.encode_documents(
            [corpus[i].full_text for i in ids], batch_size=batch_size, show_progress=show_progress
        )
        hits = [[d for d, _ in r] for r in exact_search(qvecs, dvecs, ids, k=depth)]
    rows: list[TrainRow] = []
    short = 0
    for q, qtext, ranked in zip(qids, qtexts, hits):
        positives = [d for d, v in col.qrels[q].items() if v > 0]
        judged_pos = set(positives)
        negs = [d for d in ranked if d not in judged_pos][skip_top : skip_top + n]
        if len(negs) < n:
            short += 1
            continue
        for p in positives:
            rows.append(
                TrainRow(
                    qtext,
                    corpus[p].full_text,
                    [corpus[d].full_text for d in negs],
                    None,
                    {"query_id": q, "positive_id": p, "negative_ids": negs},
                )
            )
    if short:
        log(f"note: {short} queries had fewer than {n} retrievable negatives and were skipped")
    if not rows:
        raise InputError("no training rows mined (no query had enough retrieved negatives)")
    return write_rows(output, rows)
