"""The index contract: one abstract ``Index`` that every backend implements completely, and the one entry
(``Index.create`` / ``Index.open``) that picks the backend.

What is the same for every backend lives here once: validation of ids, texts, metadata and vectors, the model
check, encoding of texts, query parsing, the recall target of ``approx`` and ``measure_approx``. A backend implements
the storage: ``_apply`` (write encoded documents), ``delete``, ``commit``, reading, and ``_search`` over parsed
queries. ``eval``, ``serve``, ``scale`` and the CLI use only this contract.
"""

from __future__ import annotations

import abc
import inspect
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..encode.choose import resolve_model
from ..encode.loading import check_same_model, model_source
from ..encode.windows import LongDocs
from ..errors import InputError
from ..sparse import SparseVectors
from .approx import Plan, check_approx, measure_recall
from .backends import MARKERS, backend_class, backend_of, is_index_folder
from .fusion import check_hybrid
from .hybrid import LexicalDefaults, hybrid_search, query_texts
from .queries import QueryInput
from .types import DocumentBatch, SearchHit
from .validate import check_ids, check_k, check_texts, encode_records

# Documents per batch of ``iter_documents``, for every backend.
ITER_BATCH = 4096


class Index(QueryInput, LexicalDefaults, abc.ABC):
    """A SPLADE index: add / upsert / delete documents, commit, search with filters and explanations.

    ``Index.create(path, encoder=None, backend="local" | "qdrant", **options)`` makes one and
    ``Index.open(path, encoder=None, **options)`` opens one of either backend.
    """

    backend: str = ""
    path: Path

    # ------------------------------------------------------------------ the one entry
    @classmethod
    def create(cls, path: str | os.PathLike, encoder=None, *, backend: str | None = None, **options) -> Index:
        """A new index in ``path`` bound to ``encoder`` (a SpladeEncoder, a model name or path, or None for the
        bundled model). ``long_docs``: how documents longer than the model's window are encoded, recorded and used
        by every later add: ``"max"`` (default), ``"passages"``, ``"truncate"``, or a ``LongDocs`` with a window
        and stride. Other options belong to the backend (local: ``compact``; qdrant: ``url``, ``client``,
        ``collection``, ``api_key``, ``on_disk``); one it does not know is refused."""
        if cls is Index:
            cls = backend_class(backend or "local")
        elif backend is not None and backend != cls.backend:
            raise InputError(f"{cls.__name__} is the {cls.backend} backend, not {backend!r}")
        path = Path(path)
        if is_index_folder(path):
            raise InputError(f"{path} already holds an index: use Index.open")
        if path.exists() and not path.is_dir():
            raise InputError(f"{path} exists and is not a folder")
        unknown = set(options) - set(inspect.signature(cls._create).parameters)
        if unknown:
            raise InputError(f"the {cls.backend} backend does not take {', '.join(sorted(unknown))}")
        if isinstance(options.get("long_docs"), str):
            options["long_docs"] = LongDocs(options["long_docs"])  # checked against the model by the backend
        return _with_passages(cls._create(path, encoder, **options))

    @classmethod
    def open(cls, path: str | os.PathLike, encoder=None, **options) -> Index:
        """Open the index in ``path`` (any backend); ``encoder``, when given, must be the model that built it."""
        path = Path(path)
        found = backend_of(path)
        if found is None:
            raise InputError(f"{path}: no index here (missing {' or '.join(MARKERS.values())})")
        impl = backend_class(found) if cls is Index else cls
        if impl.backend != found:
            raise InputError(f"{path} holds a {found} index, not a {impl.backend} one")
        idx = impl._open(path, **options)
        if encoder is not None:
            idx.bind_encoder(encoder)
        return _with_passages(idx)

    @classmethod
    @abc.abstractmethod
    def _create(cls, path: Path, encoder, **options) -> Index: ...

    @classmethod
    @abc.abstractmethod
    def _open(cls, path: Path, **options) -> Index: ...

    def _init_model(self) -> None:
        self._encoder = None
        self._query_encoder = None
        self._encoder_lock = threading.Lock()

    # ------------------------------------------------------------------ model
    @property
    @abc.abstractmethod
    def model(self) -> dict:
        """The recorded model: name, path, weights_sha256, max_length, pooling, activation, vocab_size, mode."""

    @property
    def dim(self) -> int:
        return int(self.model["vocab_size"])

    @property
    def long_docs(self) -> LongDocs:
        """How this index encodes documents longer than one window (``truncate`` for indexes made before)."""
        return LongDocs.from_record(self.model.get("long_docs"))

    @property
    @abc.abstractmethod
    def vocab(self) -> list[str]: ...

    @property
    def encoder(self):
        """The document encoder (torch SpladeEncoder) of the recorded model, loaded on first use."""
        if self._encoder is None:
            with self._encoder_lock:  # concurrent first writes or searches load it once
                if self._encoder is None:
                    from ..encode import SpladeEncoder

                    enc = SpladeEncoder.load(model_source(self.model))
                    check_same_model(self.model, enc.info(), str(self.path))
                    self._encoder = enc
        return self._encoder

    def bind_encoder(self, encoder) -> None:
        """Use ``encoder`` (an object, a name or a path) for this index, after checking it is the recorded model."""
        full, light = resolve_model(encoder)
        check_same_model(self.model, (full or light).info(), str(self.path))
        if full is not None:
            self._encoder = full
        self._query_encoder = light

    # ------------------------------------------------------------------ writing
    def add(self, ids, texts, metadata=None, batch_size: int = 32, show_progress: bool = False) -> None:
        """Encode ``texts`` with the index's model and add them; an id already present is an error (use
        ``upsert``). Visible after ``commit()``."""
        self._write(ids, None, texts, metadata, False, batch_size, show_progress)

    def add_vectors(self, ids, vectors, texts=None, metadata=None) -> None:
        """Add precomputed vectors of this index's model: SparseVectors, a scipy sparse matrix or a torch sparse
        tensor (rows in the order of ``ids``)."""
        self._write(ids, vectors, texts, metadata, False)

    def upsert(self, ids, texts, metadata=None, batch_size: int = 32, show_progress: bool = False) -> None:
        """Add documents, replacing any with the same id."""
        self._write(ids, None, texts, metadata, True, batch_size, show_progress)

    def upsert_vectors(self, ids, vectors, texts=None, metadata=None) -> None:
        """``add_vectors`` that replaces documents with the same id."""
        self._write(ids, vectors, texts, metadata, True)

    def _write(self, ids, vectors, texts, metadata, upsert: bool, batch_size=32, show_progress=False) -> None:
        ids = check_ids(ids)
        if vectors is None:
            texts = check_texts(texts, len(ids))
        else:
            vectors = SparseVectors.coerce(vectors, "vectors")
            self._check_vectors(vectors, "vectors")
            if len(vectors) != len(ids):
                raise InputError(f"{len(ids)} ids but {len(vectors)} vectors")
            self._check_weights(vectors)
        records = encode_records(ids, texts, metadata)
        if not ids:
            return
        self._begin_write()
        if not upsert:
            clash = self._present(ids)
            if clash:
                first = next(x for x in ids if x in clash)
                raise InputError(
                    f"{len(clash)} id(s) already in the index (first: {first!r}); use upsert to replace them"
                )
        if vectors is None:
            vectors = self.encoder.encode_documents(
                list(texts), batch_size=batch_size, show_progress=show_progress, long_docs=self.long_docs
            )
        self._apply(ids, vectors, records, upsert)

    def _begin_write(self) -> None:
        """Called before a write checks ids (the local backend takes its write lock here)."""

    def _check_weights(self, vectors: SparseVectors) -> None:
        """Backend limits on weights (the local compact format holds non-negative weights only)."""

    @abc.abstractmethod
    def _present(self, ids: list[str]) -> set[str]:
        """The ids among ``ids`` that the index holds (pending writes included)."""

    @abc.abstractmethod
    def _apply(
        self, ids: list[str], vectors: SparseVectors, records: list[bytes | None], upsert: bool
    ) -> None:
        """Store validated, encoded documents (``records`` from ``validate.encode_records``)."""

    @abc.abstractmethod
    def delete(self, ids) -> None:
        """Delete documents by id; unknown ids are an error and nothing is deleted."""

    @abc.abstractmethod
    def commit(self, merge: bool = True) -> None:
        """Make every change since the last commit durable and visible."""

    @abc.abstractmethod
    def refresh(self) -> bool:
        """See the latest commit of other writers; True if it changed."""

    @abc.abstractmethod
    def optimize(self) -> None:
        """Commit, then bring the index into its fastest shape for search."""

    @property
    @abc.abstractmethod
    def has_changes(self) -> bool: ...

    # For long-lived processes that write now and then (``spladekit serve``). A backend without a write lock or
    # pending state (Qdrant applies each write at once) keeps these defaults.
    @property
    def holds_lock(self) -> bool:
        """Whether this object holds the index's write lock now."""
        return False

    def writing(self, wait: float = 0.0):
        """A context manager for one batch of writes: committed at the end of the block; where the backend has
        a write lock, it is held only for the block (waiting up to ``wait`` seconds for another writer)."""
        import contextlib

        @contextlib.contextmanager
        def block():
            yield self
            self.commit()

        return block()

    def release_lock(self) -> None:
        """Let other writers in (no-op where the backend has no write lock)."""

    def rollback(self) -> None:
        """Discard uncommitted changes (no-op where every write is applied at once)."""

    def refresh_if_changed(self) -> bool:
        """``refresh()`` when another writer committed since the last look; cheap enough for every request."""
        return self.refresh()

    # ------------------------------------------------------------------ reading
    @abc.abstractmethod
    def __len__(self) -> int: ...

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and bool(doc_id) and bool(self._committed([doc_id]))

    def _committed(self, ids: list[str]) -> set[str]:
        """The ids among ``ids`` of committed documents (default: ``_present``)."""
        return self._present(ids)

    @abc.abstractmethod
    def get(self, doc_id: str) -> dict | None:
        """The committed document ``{"id", "text", "metadata"}``, or None."""

    @abc.abstractmethod
    def ids(self) -> list[str]:
        """Ids of every committed document."""

    @abc.abstractmethod
    def vectors(self, ids) -> SparseVectors:
        """Stored vectors of committed documents, in the order of ``ids``; an unknown id is an error."""

    def vector(self, doc_id: str) -> SparseVectors | None:
        """The stored vector of one document, or None."""
        return self.vectors([doc_id]) if doc_id in self else None

    @abc.abstractmethod
    def iter_documents(self, batch: int = ITER_BATCH) -> Iterator[DocumentBatch]:
        """Every committed document in batches of ids, vectors, texts and metadata."""

    # ------------------------------------------------------------------ search
    def search(
        self,
        query,
        k: int = 10,
        filter: Mapping | None = None,
        explain: bool = False,
        with_text: bool = False,
        approx: bool | float = False,
        highlight: bool = False,
        hybrid=None,
    ) -> list[SearchHit]:
        """Top-``k`` documents by dot product with ``query`` (text, a 1-row vector, or ``{token: weight}``),
        best first; exact unless ``approx``.

        ``filter``: ``{"field": value}`` or ``{"field": {"$in": [...]}}`` on metadata, applied inside the search, so
        ``k`` hits come back whenever ``k`` matching documents score above zero. ``approx``: a recall@k target in
        (0, 1] against exact search (True = 0.95), met through the index's tuning table (``tune``); returned
        scores are exact; with a filter the search is exact. See ``measure_approx``.
        ``highlight``: each hit carries, per matching term, the word of the document that gave it its weight,
        and a snippet around the densest match (``SearchHit.highlights``; None for a document stored without text).
        ``hybrid``: fuse with the index's BM25 ranking of the same text query (``"rrf"``, ``"convex"``, a dict
        such as ``{"method": "convex", "weight": 0.5}`` or a ``Hybrid``: see ``fusion``); the filter applies to
        both; ``score`` is the fused score, ``SearchHit.hybrid`` each run's rank and score. Documents stored
        without text have no lexical view (BM25 scores them 0)."""
        k = check_k(k)
        h = check_hybrid(hybrid)
        texts = query_texts([query]) if h is not None else None
        plan = self._approx_plan(check_approx(approx), filter)
        flt = self._prepare_filter(filter)  # a bad filter fails before the query is encoded
        qs = [self._query(query)]
        return self._search_hits(qs, k, flt, explain, with_text, 1, highlight, h, texts, plan)[0]

    def search_batch(
        self,
        queries,
        k: int = 10,
        filter: Mapping | None = None,
        threads: int | None = None,
        explain: bool = False,
        with_text: bool = False,
        approx: bool | float = False,
        highlight: bool = False,
        hybrid=None,
    ) -> list[list[SearchHit]]:
        """``search`` for many queries (texts encoded in one batch, SparseVectors rows or dicts), ``threads`` at
        a time (default: every core); ``hybrid`` as in ``search`` (every query a text)."""
        k = check_k(k)
        h = check_hybrid(hybrid)
        texts = query_texts(queries) if h is not None else None
        plan = self._approx_plan(check_approx(approx), filter)
        flt = self._prepare_filter(filter)
        qs = self._queries(queries)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise InputError(f"threads must be a positive integer, got {threads!r}")
        threads = threads or os.cpu_count() or 1
        return self._search_hits(qs, k, flt, explain, with_text, threads, highlight, h, texts, plan)

    def _search_hits(
        self, qs, k, flt, explain, with_text, threads, highlight, hybrid=None, texts=None, plan=None
    ):
        """The hits of parsed queries (``hybrid``: a checked ``Hybrid``, with the query ``texts``; ``plan``: the
        approximate knobs, None for exact; hybrid runs are exact)."""
        if hybrid is not None:
            return hybrid_search(self, qs, texts, k, flt, hybrid, explain, with_text, threads, highlight)
        if not highlight:
            return self._search(qs, k, flt, explain, with_text, threads, plan)
        from .highlight_hits import add_highlights

        results = self._search(qs, k, flt, True, True, threads, plan)
        for (terms, weights), hits in zip(qs, results):
            add_highlights(self, hits, terms, weights, keep_text=with_text, keep_explanation=explain)
        return results

    @abc.abstractmethod
    def _prepare_filter(self, filter: Mapping | None) -> Any:
        """The backend's form of a filter, validated (``filters.parse_filter``)."""

    @abc.abstractmethod
    def _search(
        self,
        qs: list[tuple[np.ndarray, np.ndarray]],
        k: int,
        flt: Any,
        explain: bool,
        with_text: bool,
        threads: int,
        plan: Plan | None = None,
    ) -> list[list[SearchHit]]: ...

    def _approx_plan(self, target: float | None, filter=None) -> Plan | None:
        """The knobs that meet a recall ``target`` (None: search exactly, as a backend without an approximate
        structure always does)."""
        return None

    def tune(
        self, recall: float = 0.95, queries=None, sample: int = 200, exact_if_faster: bool = True
    ) -> dict:
        """Measure recall@10 against exact search for a grid of approximate knobs, on ``sample`` documents of
        the index used as queries (or on ``queries``), and store the cheapest setting reaching each target."""
        raise InputError(
            f"the {self.backend} backend has no approximate structure to tune (it searches exactly)"
        )

    def measure_approx(self, queries, k: int = 10, approx: bool | float = True, sample: int = 100) -> dict:
        """Recall@k of approximate search against exact search on (a sample of) ``queries``, and both timings."""
        return measure_recall(self, queries, k, approx, sample)

    # ------------------------------------------------------------------ info / lifecycle
    @abc.abstractmethod
    def info(self) -> dict:
        """Documents, storage, bytes on disk and the model."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _with_passages(idx: Index) -> Index:
    """An index whose documents are stored as passages is used through ``PassageIndex`` (ids, k and hits count
    documents)."""
    if idx.long_docs.strategy != "passages":
        return idx
    from .passages import PassageIndex

    return PassageIndex(idx)
