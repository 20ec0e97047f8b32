"""Evaluation during training: held-out training queries, and a checkpoint's retrieval figures on an eval set."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import torch

from ..encode import SpladeEncoder
from ..encode.static_query import QueryTable
from ..errors import InputError
from .batching import eval_mode
from .config import TrainConfig
from .rows import TrainRow


def query_key(row: TrainRow) -> str:
    """What identifies a row's query: its ``query_id`` (written by ``spladekit mine``) or else the query text."""
    return str(row.extra.get("query_id", row.query))


def split_holdout(
    rows: list[TrainRow], n: int, seed: int, eligible: set[str] | None = None
) -> tuple[list[TrainRow], list[str]]:
    """Move every row of ``n`` randomly chosen queries (seeded) out of training; returns (rows, their query ids
    as ``query_key`` gives them). With ``eligible`` only those queries can be held out (the ones the hold-out
    split judges: rows of other queries, such as pseudo-queries, always train), drawn in the same order and with
    the same seed as without them."""
    key = [query_key(r) for r in rows]
    uniq = list(dict.fromkeys(key))
    pool = uniq if eligible is None else [k for k in uniq if k in eligible]
    if n >= len(pool):
        judged = "" if eligible is None else " judged"
        raise InputError(f"holdout_queries={n}: the training data has only {len(pool)}{judged} queries")
    held = set(random.Random(seed).sample(pool, n))
    return [r for r, k in zip(rows, key) if k not in held], [k for k in uniq if k in held]


def judged_queries(cfg: TrainConfig) -> set[str]:
    """The queries ``cfg.holdout_split`` of ``cfg.eval_data`` judges, by id and by text (a row names its query
    either way, ``query_key``): the only ones a hold-out evaluation can score."""
    from ..data import load_beir

    col = load_beir(cfg.eval_data, cfg.holdout_split)
    return set(col.qrels) | {q.text for qid, q in col.queries.items() if qid in col.qrels}


def _eval_set(cfg: TrainConfig, query_ids: list[str] | None) -> dict:
    """The evaluation collection, its (sampled) corpus ids, judged query ids and their texts (built once a run)."""
    from ..data import load_beir

    col = load_beir(cfg.eval_data, cfg.holdout_split if query_ids else cfg.eval_split)
    if query_ids:
        by_text = {q.text: qid for qid, q in col.queries.items()}
        wanted = [q if q in col.qrels else by_text.get(q, q) for q in query_ids]
        missing = [q for q in wanted if q not in col.qrels]
        if missing:
            raise InputError(
                f"holdout query {missing[0]!r} has no judgements in {col.qrels_path} "
                "(holdout_split must be the split the training rows were mined from)"
            )
        col.qrels = {q: col.qrels[q] for q in wanted}
    ids = list(col.corpus)
    if cfg.eval_corpus_sample is not None:
        judged = {d for docs in col.qrels.values() for d in docs}
        others = [i for i in ids if i not in judged]
        rng = random.Random(cfg.split_seed)
        keep = judged | set(rng.sample(others, min(cfg.eval_corpus_sample, len(others))))
        ids = [i for i in ids if i in keep]
    qids = list(col.qrels)
    return {
        "col": col,
        "ids": ids,
        "qids": qids,
        "docs": [col.corpus[i].full_text for i in ids],
        "queries": [col.queries[q].text for q in qids],
    }


def with_max_length(enc: SpladeEncoder, max_length: int | None) -> SpladeEncoder:
    """``enc``, or an encoder over the same model and tokenizer that truncates at ``max_length``; ``enc`` is left
    unchanged (building one puts the shared model in eval mode, as every ``SpladeEncoder`` does)."""
    if not max_length or max_length == enc.spec.max_length:
        return enc
    return SpladeEncoder(
        enc.mlm, enc.tokenizer, dataclasses.replace(enc.spec, max_length=int(max_length)), mode=enc.mode
    )


def evaluate_checkpoint(
    enc: SpladeEncoder,
    cfg: TrainConfig,
    _cache: dict | None = None,
    query_ids: list[str] | None = None,
    query_table: QueryTable | None = None,
) -> dict:
    """nDCG@10 etc. and active dims on ``cfg.eval_data`` (exact brute-force retrieval).

    With ``eval_corpus_sample`` the corpus is the split's judged documents plus that many other documents
    (seeded): a cheaper, optimistic but epoch-to-epoch comparable curve; the final figure should come from
    ``spladekit eval`` on the full corpus. ``query_ids`` (held-out training queries) replaces the split's
    queries; they are then judged by ``cfg.holdout_split``'s qrels. Documents are truncated at
    ``cfg.eval_max_doc_length`` when set (queries at the model's max length); ``enc`` itself is left as it was,
    except that ``query_table`` (a table run's current table) becomes its query side, as the saved model's is.
    """
    from ..eval import compute_metrics, exact_search

    if query_table is not None:
        enc.set_query_table(query_table)
    cache = _cache if _cache is not None else {}
    if "col" not in cache:
        cache.update(_eval_set(cfg, query_ids))
    col, ids, qids = cache["col"], cache["ids"], cache["qids"]
    with eval_mode(enc.mlm), torch.inference_mode():  # evaluation is never with dropout, whoever calls it
        # built once per encoder and length (building one sets eval mode); it holds ``enc``, so identity is safe
        held = cache.get("doc_encoder")
        if held is None or held[0] is not enc or held[1] != cfg.eval_max_doc_length:
            held = cache["doc_encoder"] = (
                enc,
                cfg.eval_max_doc_length,
                with_max_length(enc, cfg.eval_max_doc_length),
            )
        # a shortened length truncates (that is its point: speed); otherwise the documents' default, max
        cut = "truncate" if cfg.eval_max_doc_length else None
        dv = held[2].encode_documents(cache["docs"], batch_size=32, long_docs=cut)
        qv = enc.encode_queries(cache["queries"], batch_size=32)
    ranked = exact_search(qv, dv, ids, k=100)
    run = dict(zip(qids, ranked))
    m = {k: float(v) for k, v in compute_metrics(run, col.qrels).items()}
    m["query_active_dims"] = float(np.mean(qv.active_dims()))
    m["doc_active_dims"] = float(np.mean(dv.active_dims()))
    m["eval_docs"] = len(ids)
    m["eval_queries"] = len(qids)
    return m
