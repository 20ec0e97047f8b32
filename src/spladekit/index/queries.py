"""Query parsing shared by every index backend: text, 1-row SparseVectors or {token: weight} -> (term ids, weights)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..sparse import SparseVectors


class QueryInput:
    """Mixin for index classes that have ``dim``, ``vocab``, ``model`` and a lazily loaded ``encoder``."""

    _encoder = None
    _query_encoder = None
    _query_encoder_lock = threading.Lock()

    @property
    def query_encoder(self):
        """The encoder for text queries: the document encoder when it is loaded already, else the light numpy
        encoder of the same model (no torch or transformers, so a cold search starts in about a second; equal to
        the torch encoder within 1e-4), else the full encoder when the light one cannot run the model. An
        inference-free model's queries are table lookups in either (no torch runs for them)."""
        if self._encoder is not None:
            return self._encoder
        if self._query_encoder is None:
            with self._query_encoder_lock:
                if self._query_encoder is None:
                    from ..encode.choose import light_query_encoder

                    self._query_encoder = light_query_encoder(self.model) or self.encoder
        return self._query_encoder

    def _check_vectors(self, v: SparseVectors, what: str) -> None:
        """Refuse vectors of another model: a different dimension or vocabulary than this index's."""
        if not isinstance(v, SparseVectors):
            raise InputError(f"{what} must be SparseVectors, got {type(v).__name__}")
        if v.dim != self.dim:
            raise InputError(
                f"{what} have dimension {v.dim} but this index's model ({self.model.get('name')}) "
                f"has {self.dim}: they were encoded by a different model"
            )
        mine = self.vocab
        if v.vocab is not None and v.vocab is not mine and not same_vocab(v.vocab, mine):
            raise InputError(
                f"{what} use a different vocabulary than this index's model: encoded by a different model"
            )

    def _query(self, query) -> tuple[np.ndarray, np.ndarray]:
        """One query (text, ``{token: weight}``, or a 1-row SparseVectors / scipy / torch sparse vector) as
        contiguous (int32 term ids, float32 weights)."""
        if isinstance(query, str):
            v = self.query_encoder.encode_queries([query])
        elif isinstance(query, Mapping):
            v = SparseVectors.from_dicts([query], self.vocab, self.dim)
        else:
            v = self._query_vectors(query, "query")
            if len(v) != 1:
                raise InputError(f"a query must be one vector, got {len(v)} (use search_batch for many)")
        t, w = v.row(0)
        return np.ascontiguousarray(t, np.int32), np.ascontiguousarray(w, np.float32)

    def _query_vectors(self, vectors, what: str) -> SparseVectors:
        """Query vectors in any sparse form, checked against this index's model."""
        try:
            v = SparseVectors.coerce(vectors, what)
        except InputError:
            raise InputError(
                f"{what} must be a string, a {{token: weight}} dict, or sparse vectors (SparseVectors, scipy or "
                f"torch sparse), got {type(vectors).__name__}"
            ) from None
        self._check_vectors(v, f"{what} vectors")
        return v

    def _queries(self, queries) -> list[tuple[np.ndarray, np.ndarray]]:
        """Many queries: sparse vectors (one row each), or a list of texts / dicts / 1-row vectors; the texts
        among them are encoded in one batch."""
        if isinstance(queries, str) or isinstance(queries, Mapping):
            raise InputError(
                "queries must be a list of strings / dicts, or sparse vectors (one row per query)"
            )
        if not isinstance(queries, Sequence):
            v = self._query_vectors(queries, "queries")
            rows = [v.row(i) for i in range(len(v))]
        else:
            queries = list(queries)
            rows: list = [None] * len(queries)
            texts = [i for i, q in enumerate(queries) if isinstance(q, str)]
            if texts:
                enc = self.query_encoder.encode_queries([queries[i] for i in texts])
                for j, i in enumerate(texts):
                    rows[i] = enc.row(j)
            for i, q in enumerate(queries):
                if rows[i] is None:
                    rows[i] = self._query(q)
        return [(np.ascontiguousarray(t, np.int32), np.ascontiguousarray(w, np.float32)) for t, w in rows]


_VOCAB_CHECKED: dict[int, tuple[object, bool]] = {}


def same_vocab(a, b) -> bool:
    """Compare vocabularies once per vocabulary object (queries reuse the encoder's list)."""
    hit = _VOCAB_CHECKED.get(id(a))
    if hit is not None and hit[0] is a:
        return hit[1]
    same = len(a) == len(b) and list(a) == list(b)
    if len(_VOCAB_CHECKED) < 64:
        _VOCAB_CHECKED[id(a)] = (a, same)  # holding a keeps its id from being reused
    return same
