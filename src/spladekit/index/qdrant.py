"""`QdrantIndex`: the index contract over a Qdrant collection, for corpora that outgrow one machine.

The index folder keeps only ``qdrant.json`` (where the collection lives, its name, the model) and, in embedded
mode, the local Qdrant storage; the vectors live in Qdrant as a named sparse vector (``splade``) scored by dot
product, exactly what the embedded index computes. Point ids are uuid5 of the document id; the original id, text
and metadata ride in the payload, and metadata filters become Qdrant payload filters on ``metadata.<field>``.

Pointing it at a cluster is a configuration change: ``Index.create(path, backend="qdrant", url="http://host:6333")``
(API key from ``api_key=`` or ``QDRANT_API_KEY``). Without ``url`` it uses qdrant-client's embedded local mode
(``<path>/qdrant_data``), which scans every point per query: good for tests and small data only.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..encode.choose import model_record, resolve_model
from ..errors import DataFormatError, InputError, SpladekitError, first_line
from ..io import atomic_write
from ..sparse import SparseVectors
from .base import ITER_BATCH, Index
from .qdrant_convert import (
    VECTOR,
    check_field_name,
    collection_name,
    connect,
    point_id,
    points_to_hits,
    qdrant_sparse,
    to_qdrant_filter,
)
from .types import DocumentBatch, SearchHit
from .validate import check_ids, decode_record

CONFIG = "qdrant.json"
_UPLOAD = 256  # points per upsert request
_QUERIES = 64  # queries per batch request


class QdrantIndex(Index):
    """The index contract backed by a Qdrant collection.

    Writes go to Qdrant at once and are acknowledged (``wait=True``), so ``commit()`` and ``refresh()`` have
    nothing left to do. ``optimize()`` waits until Qdrant's own optimizer has finished (it merges segments itself).
    """

    backend = "qdrant"

    def __init__(self, path: Path, config: dict, client, *, owns_client: bool = True) -> None:
        self.path = Path(path)
        self._config = config
        self.client = client
        self.collection: str = config["collection"]
        self._owns_client = owns_client
        # qdrant-client's embedded mode is not thread-safe; a remote client is (HTTP connection pool).
        self._local = type(getattr(client, "_client", None)).__name__ == "QdrantLocal"
        self._lock = threading.RLock()
        self._vocab: list[str] | None = None
        self._init_model()

    # ------------------------------------------------------------------ create / open
    @classmethod
    def _create(
        cls,
        path: Path,
        encoder=None,
        *,
        url: str | None = None,
        client=None,
        collection: str | None = None,
        api_key: str | None = None,
        on_disk: bool = False,
        long_docs=None,
    ) -> QdrantIndex:
        """New collection bound to ``encoder``; ``path`` records where it lives (``qdrant.json``).

        ``url``: a Qdrant server or cluster (``http://host:6333``); ``client``: a ready ``QdrantClient`` (e.g.
        ``QdrantClient(":memory:")``); neither: embedded local storage under ``path/qdrant_data``.
        """
        from qdrant_client import models

        if url is not None and client is not None:
            raise InputError("pass either url= or client=, not both")
        full, light = resolve_model(encoder)
        enc = full or light
        name = collection or collection_name(path)
        config = {
            "backend": "qdrant",
            "format": 1,
            "url": url,
            "local_path": "qdrant_data" if url is None and client is None else None,
            "external_client": client is not None,
            "collection": name,
            "vector": VECTOR,
            "model": model_record(enc, long_docs),
            "dim": int(enc.vocab_size),
        }
        made_folder = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
        owns = client is None
        try:
            if client is None:
                client = connect(path, config, api_key)
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
                raise
            except Exception as e:  # noqa: BLE001 - connection errors come in many types
                raise InputError(f"cannot create Qdrant collection {name!r} ({first_line(e)})") from None
            atomic_write(path / CONFIG, json.dumps(config, indent=1))
        except BaseException:
            if owns and client is not None:
                client.close()
            if made_folder:  # a failed create leaves nothing behind
                shutil.rmtree(path, ignore_errors=True)
            raise
        idx = cls(path, config, client, owns_client=owns)
        idx._encoder, idx._query_encoder = full, light
        return idx

    @classmethod
    def _open(cls, path: Path, *, client=None, api_key: str | None = None) -> QdrantIndex:
        """Open the collection recorded in ``path/qdrant.json`` (pass ``client=`` if it was created with one)."""
        cfg_path = path / CONFIG
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataFormatError(str(cfg_path), e.lineno, f"invalid JSON ({e.msg})") from None
        if not isinstance(config, dict) or "collection" not in config or "model" not in config:
            raise DataFormatError(str(cfg_path), None, "missing 'collection' or 'model'")
        owns = client is None
        if client is None:
            if config.get("external_client"):
                raise InputError(
                    f"{path}: this Qdrant index was created with its own client (e.g. in-memory): "
                    "pass client= to Index.open"
                )
            client = connect(path, config, api_key)
        try:
            exists = client.collection_exists(config["collection"])
        except Exception as e:  # noqa: BLE001
            raise InputError(f"cannot reach Qdrant at {config.get('url')} ({first_line(e)})") from None
        if not exists:
            raise InputError(f"Qdrant collection {config['collection']!r} does not exist (any more)")
        return cls(path, config, client, owns_client=owns)

    # ------------------------------------------------------------------ model
    @property
    def model(self) -> dict:
        return dict(self._config["model"])

    @property
    def dim(self) -> int:
        return int(self._config["dim"])

    @property
    def vocab(self) -> list[str]:
        if self._vocab is None:
            self._vocab = list((self._encoder or self.query_encoder).vocab)
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
            raise SpladekitError(f"Qdrant request failed ({first_line(e)})") from None

    # ------------------------------------------------------------------ writing
    def _present(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for s in range(0, len(ids), 1024):
            part = ids[s : s + 1024]
            recs = self._call(
                self.client.retrieve, self.collection, ids=[point_id(x) for x in part], with_payload=["_id"]
            )
            found.update(r.payload.get("_id") for r in recs if r.payload)
        return {x for x in ids if x in found}

    def _apply(
        self, ids: list[str], vectors: SparseVectors, records: list[bytes | None], upsert: bool
    ) -> None:
        from qdrant_client import models

        points = []
        for i, doc_id in enumerate(ids):
            payload: dict[str, Any] = {"_id": doc_id}
            text, meta = decode_record(records[i])
            if text is not None:
                payload["text"] = text
            if meta is not None:
                payload["metadata"] = meta
            idx, val = vectors.row(i)
            points.append(
                models.PointStruct(
                    id=point_id(doc_id), vector={VECTOR: qdrant_sparse(idx, val)}, payload=payload
                )
            )
        for s in range(0, len(points), _UPLOAD):
            self._call(self.client.upsert, self.collection, points=points[s : s + _UPLOAD], wait=True)

    def delete(self, ids) -> None:
        """Delete documents by id; unknown ids are an error and nothing is deleted."""
        from qdrant_client import models

        ids = check_ids(ids)
        present = self._present(ids)
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
        """Nothing to do: each write was acknowledged by Qdrant, and Qdrant's optimizer merges its segments
        itself, so ``merge=False`` cannot be honoured and is refused."""
        if not merge:
            raise InputError(
                "the qdrant backend merges its segments itself (Qdrant's optimizer): merge=False"
            )

    def refresh(self) -> bool:
        """Nothing to do: Qdrant always serves its latest state."""
        return False

    def optimize(self, timeout: float = 600.0) -> None:
        """Wait until Qdrant's optimizer has finished with the collection (status green)."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            status = str(self._call(self.client.get_collection, self.collection).status).lower()
            if "green" in status or time.monotonic() > deadline:
                return
            time.sleep(0.2)

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
        check_field_name(name)
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

    def get(self, doc_id: str) -> dict | None:
        """The document ``{"id", "text", "metadata"}``, or None."""
        if not isinstance(doc_id, str):
            raise InputError(f"ids must be strings, got {type(doc_id).__name__}")
        recs = self._call(self.client.retrieve, self.collection, ids=[point_id(doc_id)], with_payload=True)
        if not recs:
            return None
        p = recs[0].payload or {}
        return {"id": p.get("_id", doc_id), "text": p.get("text"), "metadata": p.get("metadata")}

    def vectors(self, ids) -> SparseVectors:
        """Stored vectors, in the order of ``ids``; an unknown id is an error."""
        ids = check_ids(ids)
        rows: dict[str, tuple] = {}
        for s in range(0, len(ids), 1024):
            part = ids[s : s + 1024]
            recs = self._call(
                self.client.retrieve,
                self.collection,
                ids=[point_id(x) for x in part],
                with_payload=["_id"],
                with_vectors=[VECTOR],
            )
            for r in recs:
                sv = (r.vector or {}).get(VECTOR)
                rows[(r.payload or {}).get("_id")] = (sv.indices, sv.values) if sv is not None else ([], [])
        missing = [x for x in ids if x not in rows]
        if missing:
            raise InputError(f"{len(missing)} unknown id(s) (first: {missing[0]!r})")
        return SparseVectors.from_rows([rows[x] for x in ids], self.dim, self.vocab)

    def ids(self) -> list[str]:
        """Ids of every document (scrolls the whole collection)."""
        return [x for b in self._scroll(ITER_BATCH, with_vectors=False, with_payload=["_id"]) for x in b.ids]

    def iter_documents(self, batch: int = ITER_BATCH) -> Iterator[DocumentBatch]:
        """Every document in batches (ids, vectors, texts, metadata), via Qdrant's scroll."""
        return self._scroll(batch, with_vectors=True, with_payload=True)

    def _scroll(self, batch: int, with_vectors: bool, with_payload) -> Iterator[DocumentBatch]:
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
                yield DocumentBatch(
                    [p.get("_id", str(r.id)) for p, r in zip(payloads, recs)],
                    SparseVectors.from_rows(rows, self.dim, self._vocab),
                    [p.get("text") for p in payloads],
                    [p.get("metadata") for p in payloads],
                )
            if offset is None:
                break

    # ------------------------------------------------------------------ search
    def _prepare_filter(self, filter: Mapping | None):
        return to_qdrant_filter(filter)

    def _search(
        self, qs, k: int, flt, explain: bool, with_text: bool, threads: int, plan=None
    ) -> list[list[SearchHit]]:
        from qdrant_client import models

        payload: Any = True if with_text else ["_id"]
        requests = [
            models.QueryRequest(
                query=qdrant_sparse(t, w),
                using=VECTOR,
                filter=flt,
                limit=k,
                with_payload=payload,
                with_vector=[VECTOR] if explain else False,
            )
            for t, w in qs
        ]
        chunks = [requests[s : s + _QUERIES] for s in range(0, len(requests), _QUERIES)]

        def run(chunk):
            return self._call(self.client.query_batch_points, self.collection, requests=chunk)

        if threads > 1 and len(chunks) > 1 and not self._local:
            with ThreadPoolExecutor(min(threads, len(chunks))) as pool:
                responses = [r for part in pool.map(run, chunks) for r in part]
        else:
            responses = [r for chunk in chunks for r in run(chunk)]
        vocab = self.vocab if explain else None
        return [points_to_hits(resp.points, t, w, vocab, with_text) for (t, w), resp in zip(qs, responses)]

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

    def __repr__(self) -> str:
        return f"QdrantIndex({str(self.path)!r}, collection={self.collection!r})"
