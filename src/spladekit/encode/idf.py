"""An IDF query side for any SPLADE model, from a user's own collection: no training, one pass over it.

Document frequencies are counted over the model's vocabulary, either on the documents' tokens (``tokens``:
what OpenSearch's ``idf.json`` files hold) or on the documents' SPLADE vectors (``vectors``: a term counts where
the model activated it, expansions included, which is what a query term is matched against). The weight is
BM25's idf, ``log(1 + (N - df + 0.5) / (df + 0.5))``: positive for every term, highest for rare ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

from ..errors import InputError
from ..sparse import SparseVectors
from .static_query import ST_LAYOUT, QueryTable, read_tokenizer, tokenizer_max_length

DfSource = Literal["tokens", "vectors"]
DF_SOURCES: tuple[str, ...] = ("tokens", "vectors")


def idf(df: np.ndarray, n_docs: int) -> np.ndarray:
    """BM25 idf of each term from its document frequency; a term no document has gets the largest weight."""
    if n_docs < 1:
        raise InputError("an IDF table needs at least one document")
    df = np.asarray(df, dtype=np.float64)
    return np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)


def token_document_frequencies(encoder, texts: Iterable[str], batch: int = 1024) -> tuple[np.ndarray, int]:
    """(df over the vocabulary, number of documents) counted on the documents' tokens, as a query is cut."""
    tok = _table_tokenizer(encoder)
    df = np.zeros(encoder.vocab_size, dtype=np.int64)
    n = 0
    chunk: list[str] = []
    for t in texts:
        if not isinstance(t, str):
            raise InputError(f"document {n + len(chunk)} is {type(t).__name__}, expected text")
        chunk.append(t)
        if len(chunk) >= batch:
            n += _count_tokens(encoder, tok, chunk, df)
            chunk = []
    if chunk:
        n += _count_tokens(encoder, tok, chunk, df)
    return df, n


def vector_document_frequencies(batches: Iterable[SparseVectors], vocab_size: int) -> tuple[np.ndarray, int]:
    """(df, number of documents) counted on SPLADE document vectors (an index's, or freshly encoded ones)."""
    df = np.zeros(vocab_size, dtype=np.int64)
    n = 0
    for vecs in batches:
        if vecs.dim != vocab_size:
            raise InputError(f"vectors of dimension {vecs.dim} for a model of vocabulary {vocab_size}")
        active = vecs.indices[vecs.data > 0]
        df += np.bincount(active, minlength=vocab_size)[:vocab_size]
        n += len(vecs)
    return df, n


def idf_table(encoder, df: np.ndarray, n_docs: int) -> QueryTable:
    """A sentence-transformers-rule query table (tokens without [CLS]/[SEP], each once) holding the IDF."""
    folder = encoder.spec.transformer_path
    return QueryTable(
        idf(df, n_docs),
        read_tokenizer(folder),
        False,
        tokenizer_max_length(folder, encoder.max_length),
        ST_LAYOUT,
        f"idf over {n_docs} documents",
    )


def build_idf_table(
    encoder,
    *,
    texts: Iterable[str] | None = None,
    vectors: Iterable[SparseVectors] | None = None,
    source: DfSource = "tokens",
) -> tuple[QueryTable, dict]:
    """The IDF query table of ``encoder``'s model over a collection, and a summary of how it was counted.

    ``source="tokens"`` needs ``texts``; ``"vectors"`` takes ``vectors`` (batches, e.g. an index's) or encodes
    ``texts`` with the model's document side first (slow: one full encoding pass)."""
    if source not in DF_SOURCES:
        raise InputError(
            f"unknown document-frequency source {source!r}: choose one of {', '.join(DF_SOURCES)}"
        )
    if source == "tokens":
        if texts is None:
            raise InputError("counting token document frequencies needs the documents' texts")
        df, n = token_document_frequencies(encoder, texts)
    else:
        if vectors is None:
            if texts is None:
                raise InputError("counting vector document frequencies needs vectors or texts to encode")
            vectors = _encoded(encoder, texts)
        df, n = vector_document_frequencies(vectors, encoder.vocab_size)
    if n == 0:
        raise InputError("no documents to count: the collection is empty")
    table = idf_table(encoder, df, n)
    return table, {"source": source, "documents": n, "terms_seen": int((df > 0).sum())}


def _table_tokenizer(encoder):
    tok = read_tokenizer(encoder.spec.transformer_path)
    tok.no_padding()
    tok.no_truncation()  # a document's every token counts, not only its first window's
    return tok


def _count_tokens(encoder, tok, texts: Sequence[str], df: np.ndarray) -> int:
    mtexts, non_empty = encoder.model_texts(list(texts), "document")
    encs = tok.encode_batch([mtexts[i] for i in non_empty], add_special_tokens=False)
    for e in encs:
        ids = np.unique(np.asarray(e.ids, dtype=np.int64))
        df[ids[ids < len(df)]] += 1
    return len(texts)


def _encoded(encoder, texts: Iterable[str], batch: int = 256):
    chunk: list[str] = []
    for t in texts:
        chunk.append(t)
        if len(chunk) >= batch:
            yield encoder.encode_documents(chunk)
            chunk = []
    if chunk:
        yield encoder.encode_documents(chunk)
