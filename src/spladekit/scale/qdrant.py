"""`QdrantIndex`: the `Index` API over a Qdrant collection, for corpora that outgrow one machine.

The index folder keeps only ``qdrant.json`` (where the collection lives, its name, the model) and, in embedded
mode, the local Qdrant storage; the vectors live in Qdrant as a named sparse vector (``splade``) scored by dot
product, exactly what the embedded index computes. Point ids are uuid5 of the document id (Qdrant accepts only
integers and UUIDs); the original id, text and metadata ride in the payload, and metadata filters become Qdrant
payload filters on ``metadata.<field>``.

Pointing it at a cluster is a configuration change: ``Index.create(path, backend="qdrant", url="http://host:6333")``
(API key from ``api_key=`` or ``QDRANT_API_KEY``). Without ``url`` it uses qdrant-client's embedded local mode
(``<path>/qdrant_data``), which scans every point per query: good for tests and small data only.
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataFormatError, InputError, SpladekitError
from ..index.queries import QueryInput
from ..sparse import SparseVectors

CONFIG = "qdrant.json"
VECTOR = "splade"
_NS = uuid.UUID("6b0c7c43-5f0e-4b1c-9d56-2b7a4c1e8f10")  # fixed namespace: the same id maps to the same point
_UPLOAD = 256


def point_id(doc_id: str) -> str:
    """The Qdrant point id (a UUID) of a document id."""
    return str(uuid.uuid5(_NS, doc_id))


def _sparse(indices: np.ndarray, values: np.ndarray):
    """A Qdrant sparse vector with term ids sorted and unique (Qdrant keeps duplicates silently) and float32 weights."""
    from qdrant_client import models

    idx = np.asarray(indices, np.int64)
    val = np.asarray(values, np.float32)
    if len(idx) and np.any(np.diff(idx) <= 0):
        uniq, inv = np.unique(idx, return_inverse=True)
        summed = np.zeros(len(uniq), np.float32)
        np.add.at(summed, inv, val)
        idx, val = uniq, summed
    keep = val != 0
    return models.SparseVector(indices=idx[keep].tolist(), values=val[keep].tolist())


def _condition(name: str, value: Any):
    from qdrant_client import models

    key = f"metadata.{name}"
    if isinstance(value, bool) or isinstance(value, (str, int)):
        return models.FieldCondition(key=key, match=models.MatchValue(value=value))
    if isinstance(value, float):
        return models.FieldCondition(key=key, range=models.Range(gte=value, lte=value))
    raise InputError(f"filter on {name!r}: the qdrant backend filters on strings, numbers and booleans only")


def to_qdrant_filter(filter: Mapping | None):
    """``{"field": value}`` / ``{"field": {"$in": [...]}}`` (ANDed) as a Qdrant ``Filter`` on ``metadata.<field>``."""
    from qdrant_client import models

    if filter is None:
        return None
    if not isinstance(filter, Mapping):
        raise InputError('filter must be a dict like {"field": value} or {"field": {"$in": [v1, v2]}}')
    must = []
    for name, cond in filter.items():
        if not isinstance(name, str) or not name or re.search(r"[.\[\]\"]", name):
            raise InputError(
                f"filter field {name!r}: field names must be non-empty strings without . [ ] or quotes"
            )
        if isinstance(cond, Mapping):
            if set(cond) != {"$in"}:
                raise InputError(
                    f"filter on {name!r}: only equality and {{'$in': [...]}} are supported, got {dict(cond)}"
                )
            vals = cond["$in"]
            if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence):
                raise InputError(f"filter on {name!r}: '$in' needs a list of values")
            vals = list(vals)
            if vals and all(isinstance(v, str) for v in vals):
                must.append(models.FieldCondition(key=f"metadata.{name}", match=models.MatchAny(any=vals)))
            elif vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
                must.append(models.FieldCondition(key=f"metadata.{name}", match=models.MatchAny(any=vals)))
            else:
                # Mixed types (or none): any one of the equalities; an empty list matches nothing.
                should = [_condition(name, v) for v in vals]
                must.append(models.Filter(should=should) if should else models.HasIdCondition(has_id=[]))
        else:
            must.append(_condition(name, cond))
    return models.Filter(must=must)


def _load_encoder(info: Mapping):
    from ..encode import SpladeEncoder

    src = info.get("path") if info.get("path") and Path(info["path"]).exists() else info.get("name")
    enc = SpladeEncoder.load(src)
    if info.get("weights_sha256") and enc.weights_hash != info["weights_sha256"]:
        raise InputError(
            f"model mismatch: this index was built with {info.get('name')} "
            f"(weights {str(info['weights_sha256'])[:12]}), but {src} has weights {enc.weights_hash[:12]}"
        )
    return enc


class QdrantIndex(QueryInput):
    """The `Index` API (add / upsert / delete / get / search / filter) backed by a Qdrant collection.

    Writes go to Qdrant at once and are acknowledged (``wait=True``), so ``commit()`` and ``refresh()`` have
    nothing left to do; they exist so code written for the embedded index runs unchanged.
    """

    def __init__(self, path: Path, config: dict, client, *, encoder=None, owns_client: bool = True) -> None:
        self.path = Path(path)
        self._config = config
        self.client = client
        self.collection: str = config["collection"]
        self._encoder = encoder
        self._owns_client = owns_client
        # qdrant-client's embedded mode is not thread-safe; a remote client is (HTTP connection pool).
        self._local = type(getattr(client, "_client", None)).__name__ == "QdrantLocal"
        self._lock = threading.RLock()
        self._vocab: list[str] | None = None

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        encoder=None,
        *,
        url: str | None = None,
        client=None,
        collection: str | None = None,
        api_key: str | None = None,
        on_disk: bool = False,
    ) -> QdrantIndex:
        """New collection bound to ``encoder``; ``path`` records where it lives (``qdrant.json``).

        ``url``: a Qdrant server or cluster (``http://host:6333``); ``client``: a ready ``QdrantClient`` (e.g.
        ``QdrantClient(":memory:")``); neither: embedded local storage under ``path/qdrant_data``.
        """
        from qdrant_client import models

        from ..index.core import _resolve_encoder

        path = Path(path)
        if (path / CONFIG).exists() or (path / "manifest.json").exists():
            raise InputError(f"{path} already holds an index: use Index.open")
        if path.exists() and not path.is_dir():
            raise InputError(f"{path} exists and is not a folder")
        if url is not None and client is not None:
            raise InputError("pass either url= or client=, not both")
        enc = _resolve_encoder(encoder)
        name = collection or _collection_name(path)
        config = {
            "backend": "qdrant",
            "format": 1,
            "url": url,
            "local_path": "qdrant_data" if url is None and client is None else None,
            "external_client": client is not None,
            "collection": name,
            "vector": VECTOR,
            "model": enc.info(),
            "dim": int(enc.vocab_size),
        }
        path.mkdir(parents=True, exist_ok=True)
        owns = client is None
        if client is None:
            client = _connect(path, config, api_key)
        try:
            if client.collection_exists(name):
                raise InputError(
                    f"Qdrant collection {name!r} already exists: pick another collection= or open it"
                )
            client.create_collection(
                name,
                vectors_config={},
                sparse_vectors_config={
                    VECTOR: models.SparseVectorParams(index=models.SparseIndexParams(on_disk=on_disk))
                },
            )
        except SpladekitError:
            if owns:
                client.close()
            raise
        except Exception as e:  # noqa: BLE001 - connection errors come in many types
            if owns:
                client.close()
            raise InputError(f"cannot create Qdrant collection {name!r} ({_first_line(e)})") from None
        tmp = path / (CONFIG + ".tmp")
        tmp.write_text(json.dumps(config, indent=1), encoding="utf-8")
        os.replace(tmp, path / CONFIG)
        return cls(path, config, client, encoder=enc, owns_client=owns)

    @classmethod
    def open(
        cls, path: str | os.PathLike, encoder=None, *, client=None, api_key: str | None = None
    ) -> QdrantIndex:
        """Open the collection recorded in ``path/qdrant.json`` (pass ``client=`` if it was created with one)."""
        path = Path(path)
        cfg_path = path / CONFIG
        if not cfg_path.is_file():
            raise InputError(f"{path}: no Qdrant index here (missing {CONFIG})")
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataFormatError(str(cfg_path), e.lineno, f"invalid JSON ({e.msg})") from None
        if not isinstance(config, dict) or "collection" not in config:
            raise DataFormatError(str(cfg_path), None, "missing 'collection'")
        owns = client is None
        if client is None:
            if config.get("external_client"):
                raise InputError(
                    f"{path}: this Qdrant index was created with its own client (e.g. in-memory): "
                    "pass client= to QdrantIndex.open"
                )
            client = _connect(path, config, api_key)
        try:
            exists = client.collection_exists(config["collection"])
        except Exception as e:  # noqa: BLE001
            raise InputError(f"cannot reach Qdrant at {config.get('url')} ({_first_line(e)})") from None
        if not exists:
            raise InputError(f"Qdrant collection {config['collection']!r} does not exist (any more)")
        idx = cls(path, config, client, owns_client=owns)
        if encoder is not None:
            from ..index.core import _resolve_encoder

            enc = _resolve_encoder(encoder)
            if enc.info().get("weights_sha256") != config["model"].get("weights_sha256"):
                raise InputError(f"model mismatch: this index was built with {config['model'].get('name')}")
            idx._encoder = enc
        return idx

    # ------------------------------------------------------------------ model
    @property
    def model(self) -> dict:
        return dict(self._config["model"])

    @property
    def dim(self) -> int:
        return int(self._config["dim"])

    @property
    def encoder(self):
        """The SpladeEncoder that built this index, loaded on first use from the recorded model."""
        if self._encoder is None:
            self._encoder = _load_encoder(self._config["model"])
        return self._encoder

    @property
    def vocab(self) -> list[str]:
        if self._vocab is None:
            self._vocab = list(self.encoder.vocab)
        return self._vocab

    def _call(self, fn, *args, **kwargs):
        """One client call: serialised in embedded mode; transport errors become one-line SpladekitErrors."""
        try:
            if self._local:
                with self._lock:
                    return fn(*args, **kwargs)
            return fn(*args, **kwargs)
        except SpladekitError:
            raise
        except Exception as e:  # noqa: BLE001
            raise SpladekitError(f"Qdrant request failed ({_first_line(e)})") from None

    # ------------------------------------------------------------------ writing
    def add(self, ids, texts, metadata=None, batch_size: int = 32, show_progress: bool = False) -> None:
        """Encode ``texts`` and add them; ids already present are an error (use upsert)."""
        ids = _check_ids(ids)
        texts = _check_texts(texts, len(ids))
        self._check_absent(ids)
        vectors = self.encoder.encode_documents(
            list(texts), batch_size=batch_size, show_progress=show_progress
        )
        self._upload(ids, vectors, texts, metadata)

    def add_vectors(self, ids, vectors: SparseVectors, texts=None, metadata=None) -> None:
        """Add precomputed vectors (from this index's model); ids already present are an error."""
        ids = _check_ids(ids)
        self._check_vectors(vectors, "vectors")
        self._check_absent(ids)
        self._upload(ids, vectors, texts, metadata)

    def upsert(self, ids, texts, metadata=None, batch_size: int = 32, show_progress: bool = False) -> None:
        """Add documents, replacing any with the same id."""
        ids = _check_ids(ids)
        texts = _check_texts(texts, len(ids))
        vectors = self.encoder.encode_documents(
            list(texts), batch_size=batch_size, show_progress=show_progress
        )
        self._upload(ids, vectors, texts, metadata)

    def upsert_vectors(self, ids, vectors: SparseVectors, texts=None, metadata=None) -> None:
        ids = _check_ids(ids)
        self._check_vectors(vectors, "vectors")
        self._upload(ids, vectors, texts, metadata)

    def _check_absent(self, ids: list[str]) -> None:
        present = self._existing(ids)
        if present:
            raise InputError(
                f"{len(present)} id(s) already in the index (first: {present[0]!r}); use upsert to replace them"
            )

    def _existing(self, ids: list[str]) -> list[str]:
        found: set[str] = set()
        for s in range(0, len(ids), 1024):
            part = ids[s : s + 1024]
            recs = self._call(
                self.client.retrieve, self.collection, ids=[point_id(x) for x in part], with_payload=["_id"]
            )
            found.update(r.payload.get("_id") for r in recs if r.payload)
        return [x for x in ids if x in found]

    def _upload(self, ids: list[str], vectors: SparseVectors, texts, metadata) -> None:
        from qdrant_client import models

        n = len(ids)
        if len(vectors) != n:
            raise InputError(f"{n} ids but {len(vectors)} vectors")
        if texts is not None and (isinstance(texts, str) or len(texts) != n):
            raise InputError(f"texts must be a list of {n} strings (one per id)")
        if metadata is not None and (isinstance(metadata, Mapping) or len(metadata) != n):
            raise InputError(f"metadata must be a list of {n} dicts (one per id)")
        points = []
        for i, doc_id in enumerate(ids):
            payload: dict[str, Any] = {"_id": doc_id}
            t = texts[i] if texts is not None else None
            m = metadata[i] if metadata is not None else None
            if t is not None:
                if not isinstance(t, str):
                    raise InputError(f"text of id {doc_id!r} must be a string, got {type(t).__name__}")
                payload["text"] = t
            if m is not None:
                if not isinstance(m, Mapping):
                    raise InputError(f"metadata of id {doc_id!r} must be a dict, got {type(m).__name__}")
                try:
                    payload["metadata"] = json.loads(json.dumps(dict(m), allow_nan=False))
                except (TypeError, ValueError) as e:
                    raise InputError(f"metadata of id {doc_id!r} is not JSON: {e}") from None
            idx, val = vectors.row(i)
            points.append(
                models.PointStruct(id=point_id(doc_id), vector={VECTOR: _sparse(idx, val)}, payload=payload)
            )
        for s in range(0, n, _UPLOAD):
            self._call(self.client.upsert, self.collection, points=points[s : s + _UPLOAD], wait=True)

    def delete(self, ids) -> None:
        """Delete documents by id; unknown ids are an error and nothing is deleted."""
        from qdrant_client import models

        ids = _check_ids(ids)
        present = set(self._existing(ids))
        missing = [x for x in ids if x not in present]
        if missing:
            raise InputError(f"{len(missing)} unknown id(s), nothing deleted (first: {missing[0]!r})")
        self._call(
            self.client.delete,
            self.collection,
            points_selector=models.PointIdsList(points=[point_id(x) for x in ids]),
            wait=True,
        )

    def commit(self, merge: bool = True) -> None:
        """Nothing to do: each write was acknowledged by Qdrant (kept for API parity with `Index`)."""

    def refresh(self) -> bool:
        """Nothing to do: Qdrant always serves its latest state (kept for API parity)."""
        return False

    @property
    def has_changes(self) -> bool:
        return False

    def index_field(self, name: str, kind: str = "keyword") -> None:
        """Ask Qdrant to index ``metadata.<name>`` (``keyword`` | ``integer`` | ``float`` | ``bool``).

        Filters work without it; on a large cluster collection a payload index makes filtered search fast.
        """
        from qdrant_client import models

        kinds = {
            "keyword": models.PayloadSchemaType.KEYWORD,
            "integer": models.PayloadSchemaType.INTEGER,
            "float": models.PayloadSchemaType.FLOAT,
            "bool": models.PayloadSchemaType.BOOL,
        }
        if kind not in kinds:
            raise InputError(f"unknown field kind {kind!r}: choose one of {', '.join(kinds)}")
        to_qdrant_filter({name: 0})  # the same field-name rules as filters
        self._call(
            self.client.create_payload_index,
            self.collection,
            f"metadata.{name}",
            field_schema=kinds[kind],
            wait=True,
        )

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return int(self._call(self.client.count, self.collection, exact=True).count)

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and bool(doc_id) and bool(self._existing([doc_id]))

    def get(self, doc_id: str) -> dict | None:
        """The document ``{"id", "text", "metadata"}``, or None."""
        if not isinstance(doc_id, str):
            raise InputError(f"ids must be strings, got {type(doc_id).__name__}")
        recs = self._call(self.client.retrieve, self.collection, ids=[point_id(doc_id)], with_payload=True)
        if not recs:
            return None
        p = recs[0].payload or {}
        return {"id": p.get("_id", doc_id), "text": p.get("text"), "metadata": p.get("metadata")}

    def vector(self, doc_id: str) -> SparseVectors | None:
        """The stored vector of one document."""
        recs = self._call(
            self.client.retrieve, self.collection, ids=[point_id(doc_id)], with_vectors=[VECTOR]
        )
        if not recs:
            return None
        sv = (recs[0].vector or {}).get(VECTOR)
        rows = [(sv.indices, sv.values)] if sv is not None else [([], [])]
        return SparseVectors.from_rows(rows, self.dim, self._vocab)

    def ids(self) -> list[str]:
        """Ids of every document (scrolls the whole collection)."""
        return [x for b in self.iter_documents(with_vectors=False, with_payload=["_id"]) for x in b.ids]

    def iter_documents(self, batch: int = 1000, with_vectors: bool = True, with_payload=True) -> Iterator:
        """Every document in batches (``ShardBatch``: ids, vectors, texts, metadata), via Qdrant's scroll."""
        from .shards import ShardBatch

        offset = None
        while True:
            recs, offset = self._call(
                self.client.scroll,
                self.collection,
                limit=batch,
                offset=offset,
                with_payload=with_payload,
                with_vectors=[VECTOR] if with_vectors else False,
            )
            if recs:
                rows = []
                for r in recs:
                    sv = (r.vector or {}).get(VECTOR) if with_vectors else None
                    rows.append((sv.indices, sv.values) if sv is not None else ([], []))
                payloads = [r.payload or {} for r in recs]
                yield ShardBatch(
                    [p.get("_id", str(r.id)) for p, r in zip(payloads, recs)],
                    SparseVectors.from_rows(rows, self.dim, self._vocab),
                    [p.get("text") for p in payloads],
                    [p.get("metadata") for p in payloads],
                )
            if offset is None:
                break

    def search(
        self,
        query,
        k: int = 10,
        filter: Mapping | None = None,
        explain: bool = False,
        with_text: bool = False,
        approx: bool | float = False,
    ) -> list:
        """Top-``k`` documents by dot product (Qdrant's exact sparse search), best first; same hits as `Index`."""
        return self._search_rows([self._query(query)], k, filter, explain, with_text, approx)[0]

    def search_batch(
        self,
        queries,
        k: int = 10,
        filter: Mapping | None = None,
        threads: int | None = None,
        explain: bool = False,
        with_text: bool = False,
        approx: bool | float = False,
    ) -> list[list]:
        """``search`` for many queries in one Qdrant batch request."""
        return self._search_rows(self._queries(queries), k, filter, explain, with_text, approx)

    def _search_rows(
        self, qs: list, k, filter, explain: bool, with_text: bool, approx: bool | float
    ) -> list[list]:
        from qdrant_client import models

        from ..index.core import _check_k, approximate_query

        k = _check_k(k)
        if approx:
            qs = [
                approximate_query(np.asarray(t), np.asarray(w), 0.8 if approx is True else float(approx))
                for t, w in qs
            ]
        qfilter = to_qdrant_filter(filter)
        payload: Any = True if with_text else ["_id"]
        requests = [
            models.QueryRequest(
                query=_sparse(t, w),
                using=VECTOR,
                filter=qfilter,
                limit=k,
                with_payload=payload,
                with_vector=[VECTOR] if explain else False,
            )
            for t, w in qs
        ]
        out = []
        responses = []
        for s in range(0, len(requests), 64):
            responses.extend(
                self._call(self.client.query_batch_points, self.collection, requests=requests[s : s + 64])
            )
        for (t, w), resp in zip(qs, responses):
            out.append(self._hits(resp.points, t, w, with_text, explain))
        return out

    def _hits(self, points, q_terms, q_weights, with_text: bool, explain: bool) -> list:
        from ..index import SearchHit

        hits = []
        for p in points:
            if p.score <= 0:  # like the embedded index: only documents sharing a term with the query
                continue
            payload = p.payload or {}
            hit = SearchHit(payload.get("_id", str(p.id)), float(p.score))
            if with_text:
                hit.text, hit.metadata = payload.get("text"), payload.get("metadata")
            if explain:
                sv = (p.vector or {}).get(VECTOR)
                dw = dict(zip(sv.indices, sv.values)) if sv is not None else {}
                rows = [
                    (
                        self.vocab[int(t)],
                        float(q),
                        float(dw[int(t)]),
                        float(np.float32(q) * np.float32(dw[int(t)])),
                    )
                    for t, q in zip(q_terms, q_weights)
                    if int(t) in dw
                ]
                hit.explanation = sorted(rows, key=lambda r: -r[3])
            hits.append(hit)
        return hits

    # ------------------------------------------------------------------ info / lifecycle
    def info(self) -> dict:
        """Documents, where the collection lives and the model."""
        local = self._config.get("local_path")
        size = None
        if local:
            folder = self.path / local
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.exists() else 0
        return {
            "path": str(self.path),
            "backend": "qdrant",
            "url": self._config.get("url"),
            "collection": self.collection,
            "documents": len(self),
            "bytes_on_disk": size,
            "model": self.model,
        }

    def close(self) -> None:
        """Close the client if this index opened it."""
        if self._owns_client and self.client is not None:
            try:
                self.client.close()
            finally:
                self.client = None

    def __enter__(self) -> QdrantIndex:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"QdrantIndex({str(self.path)!r}, collection={self.collection!r})"


def _connect(path: Path, config: dict, api_key: str | None):
    from qdrant_client import QdrantClient

    try:
        if config.get("url"):
            return QdrantClient(url=config["url"], api_key=api_key or os.environ.get("QDRANT_API_KEY"))
        return QdrantClient(path=str(path / (config.get("local_path") or "qdrant_data")))
    except Exception as e:  # noqa: BLE001 - e.g. the local storage is locked by another process
        where = config.get("url") or path / (config.get("local_path") or "qdrant_data")
        raise InputError(f"cannot open Qdrant at {where} ({_first_line(e)})") from None


def _collection_name(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", path.resolve().name).strip("_") or "index"
    return f"spladekit_{name}"


def _check_ids(ids) -> list[str]:
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise InputError("ids must be a list of strings")
    seen = set()
    for i, x in enumerate(ids):
        if not isinstance(x, str) or not x:
            raise InputError(f"ids must be non-empty strings: item {i} is {x!r}")
        if x in seen:
            raise InputError(f"duplicate id {x!r} in one call")
        seen.add(x)
    return list(ids)


def _check_texts(texts, n: int) -> list[str]:
    if texts is None or isinstance(texts, str) or len(texts) != n:
        raise InputError(f"texts must be a list of {n} strings (one per id)")
    if any(not isinstance(t, str) for t in texts):
        raise InputError("texts must be strings")
    return list(texts)


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0][:300] if s else type(e).__name__
