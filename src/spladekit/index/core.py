"""`Index`: an embedded, editable SPLADE index on disk with exact top-k search.

Layout of an index folder: ``manifest.json`` (the committed state), ``vocab.txt`` (the model's tokens),
``write.lock`` (held by the single writer) and one ``seg_NNNNNN/`` folder per immutable segment (see
``segment.py``). Writes are buffered in memory and become visible only through ``commit()``, which writes new
segment and tombstone files, syncs them, then writes ``manifest.json.tmp``, syncs it and renames it over
``manifest.json``: a crash at any moment leaves the previous commit readable and nothing half-written visible.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataFormatError, InputError, SpladekitError
from ..sparse import SparseVectors
from . import _kernels as K
from .queries import QueryInput
from .segment import Segment, canonical, fsync_dir, save_array, save_bytes, write_segment

MANIFEST = "manifest.json"
LOCK = "write.lock"
VOCAB = "vocab.txt"
MAX_SEGMENTS = 8
FLUSH_POSTINGS = 32_000_000


class IndexLockedError(SpladekitError):
    """A second writer tried to write an index that another writer holds."""


@dataclass
class SearchHit:
    """One search result; text, metadata and explanation are filled on request."""

    id: str
    score: float
    text: str | None = None
    metadata: dict | None = None
    explanation: list[tuple[str, float, float, float]] | None = None  # (token, query w, doc w, product)


@dataclass
class _Pending:
    ids: list[str]
    vectors: SparseVectors
    records: list[bytes | None]


def _resolve_encoder(encoder):
    from ..encode import SpladeEncoder

    if encoder is None or isinstance(encoder, (str, os.PathLike)):
        return SpladeEncoder.load(None if encoder is None else str(encoder))
    if not hasattr(encoder, "info") or not hasattr(encoder, "encode_queries"):
        raise InputError(
            f"encoder must be a SpladeEncoder, a model name or path, or None; got {type(encoder).__name__}"
        )
    return encoder


@dataclass
class DocumentBatch:
    """A batch of stored documents read back: ids, vectors and (when stored) texts and metadata."""

    ids: list[str]
    vectors: SparseVectors
    texts: list[str | None] | None = None
    metadata: list[dict | None] | None = None


class Index(QueryInput):
    """An embedded SPLADE index: immutable segments + tombstones, one writer, many readers, atomic commits."""

    def __init__(self, path: Path, manifest: dict, vocab: list[str], encoder=None) -> None:
        self.path = Path(path)
        self._manifest = manifest
        self._vocab = vocab
        self._encoder = encoder
        self._segments: tuple[Segment, ...] = ()
        self._id_map: tuple[tuple[Segment, ...], dict[str, tuple[int, int]]] | None = None
        self._encoder_lock = threading.Lock()
        self._lock_file = None
        self._wlock = threading.RLock()
        self._pending: list[_Pending] = []
        self._pending_ids: dict[str, tuple[int, int]] = {}
        self._pending_dropped: set[tuple[int, int]] = set()
        self._pending_deletes: dict[str, set[int]] = {}
        self._flushed: list[dict] = []
        self._closed = False
        self.flush_postings = FLUSH_POSTINGS
        self._load_segments(manifest)

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(
        cls, path: str | os.PathLike, encoder=None, *, backend: str = "local", compact: bool = False, **kwargs
    ):
        """Make a new index folder bound to ``encoder`` (a SpladeEncoder, model name/path, or None = bundled).

        ``compact=True`` stores 8-bit per-term quantised weights (about half the bytes; scores approximate).
        """
        if backend == "qdrant":
            from ..scale.qdrant import QdrantIndex

            return QdrantIndex.create(path, encoder=encoder, **kwargs)
        if backend != "local":
            raise InputError(f"unknown backend {backend!r}: use 'local' or 'qdrant'")
        if kwargs:
            raise InputError(f"unexpected options for the local backend: {', '.join(sorted(kwargs))}")
        path = Path(path)
        if (path / MANIFEST).exists():
            raise InputError(f"{path} already holds an index: use Index.open")
        if path.exists() and not path.is_dir():
            raise InputError(f"{path} exists and is not a folder")
        if path.is_dir() and any(path.iterdir()):
            raise InputError(f"{path} is not empty: create an index in a new or empty folder")
        enc = _resolve_encoder(encoder)
        path.mkdir(parents=True, exist_ok=True)
        vocab = list(enc.vocab)
        save_bytes(path / VOCAB, "\n".join(vocab).encode("utf-8"))
        manifest = {
            "format": 1,
            "backend": "local",
            "generation": 0,
            "model": enc.info(),
            "dim": int(enc.vocab_size),
            "compact": bool(compact),
            "next_segment": 1,
            "segments": [],
            "created": time.time(),
        }
        idx = cls(path, manifest, vocab, encoder=enc)
        idx._acquire_lock(refresh=False)
        idx._write_manifest(manifest)
        return idx

    @classmethod
    def open(cls, path: str | os.PathLike, encoder=None):
        """Open an existing index for reading (and writing: the lock is taken on the first write)."""
        path = Path(path)
        if (path / "qdrant.json").exists():
            from ..scale.qdrant import QdrantIndex

            return QdrantIndex.open(path)
        if not (path / MANIFEST).exists():
            raise InputError(f"{path}: no index here (missing {MANIFEST})")
        manifest = cls._read_manifest(path)
        try:
            vocab = (path / VOCAB).read_text(encoding="utf-8").split("\n")
        except OSError as e:
            raise DataFormatError(str(path / VOCAB), None, f"unreadable vocabulary ({e.strerror})") from None
        idx = cls(path, manifest, vocab)
        if encoder is not None:
            enc = _resolve_encoder(encoder)
            idx._check_model(enc.info())
            idx._encoder = enc
        return idx

    @staticmethod
    def _read_manifest(path: Path) -> dict:
        try:
            return json.loads((path / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataFormatError(str(path / MANIFEST), None, f"unreadable manifest ({e})") from None

    def _load_segments(self, manifest: dict) -> None:
        old = {s.name: s for s in self._segments}
        segs = []
        for entry in manifest["segments"]:
            base = old.get(entry["name"]) or Segment.load(self.path / entry["name"])
            if base.deleted_file != entry.get("deleted"):
                base = base.with_deletes(entry.get("deleted"))
            segs.append(base)
        self._segments = tuple(segs)
        self._manifest = manifest
        self._id_map = None

    def refresh(self) -> bool:
        """See the latest commit (readers call this to pick up other writers' work); True if it changed."""
        with self._wlock:
            for attempt in range(5):
                manifest = self._read_manifest(self.path)
                if manifest["generation"] == self._manifest["generation"]:
                    return False
                try:
                    self._load_segments(manifest)
                    return True
                except FileNotFoundError:  # a newer commit removed files of the one just read: read again
                    time.sleep(0.01 * (attempt + 1))
        raise SpladekitError(f"{self.path}: the index changed too fast to refresh; try again")

    # ------------------------------------------------------------------ model
    @property
    def model(self) -> dict:
        return dict(self._manifest["model"])

    @property
    def dim(self) -> int:
        return int(self._manifest["dim"])

    @property
    def vocab(self) -> list[str]:
        return self._vocab

    @property
    def encoder(self):
        """The SpladeEncoder that built this index, loaded on first use from the recorded model."""
        if self._encoder is None:
            with self._encoder_lock:  # concurrent first searches (e.g. the HTTP server) load it once
                if self._encoder is None:
                    from ..encode import SpladeEncoder

                    info = self._manifest["model"]
                    src = (
                        info.get("path")
                        if info.get("path") and Path(info["path"]).exists()
                        else info.get("name")
                    )
                    enc = SpladeEncoder.load(src)
                    self._check_model(enc.info())
                    self._encoder = enc
        return self._encoder

    def _check_model(self, info: Mapping) -> None:
        mine = self._manifest["model"]
        if info.get("weights_sha256") != mine.get("weights_sha256"):
            raise InputError(
                f"model mismatch: this index was built with {mine.get('name')} "
                f"(weights {str(mine.get('weights_sha256'))[:12]}), not {info.get('name')} "
                f"(weights {str(info.get('weights_sha256'))[:12]})"
            )

    def _acquire_lock(self, refresh: bool = True) -> None:
        if self._closed:
            raise InputError("this index is closed")
        if self._lock_file is not None:
            return
        f = open(self.path / LOCK, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise IndexLockedError(
                    f"{self.path} is being written by another writer (pid {holder}); one writer at a time"
                ) from None
            raise
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._lock_file = f
        if refresh:  # a newer commit may exist since this object was opened: writes must start from it
            self.refresh()
            self._remove_orphans()

    def _remove_orphans(self) -> None:
        """Delete files a crashed or finished writer left that no commit references."""
        live = {e["name"]: e.get("deleted") for e in self._manifest["segments"]}
        for p in self.path.iterdir():
            if p.name.startswith("seg_") and p.is_dir():
                if p.name not in live:
                    shutil.rmtree(p, ignore_errors=True)
                    continue
                for f in p.glob("deleted.*.npy"):
                    if f.name != live[p.name]:
                        f.unlink(missing_ok=True)
            elif p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)

    def _check_ids(self, ids) -> list[str]:
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
            raise InputError("ids must be a list of strings")
        seen = set()
        for i, x in enumerate(ids):
            if not isinstance(x, str):
                raise InputError(f"ids must be strings: item {i} is {type(x).__name__} {x!r}")
            if not x:
                raise InputError(f"ids must be non-empty strings (item {i})")
            if x in seen:
                raise InputError(f"duplicate id {x!r} in one call")
            seen.add(x)
        return list(ids)

    def _records(self, ids: list[str], texts, metadata) -> list[bytes | None]:
        n = len(ids)
        if texts is not None:
            if isinstance(texts, str) or len(texts) != n:
                raise InputError(f"texts must be a list of {n} strings (one per id)")
            for i, t in enumerate(texts):
                if t is not None and not isinstance(t, str):
                    raise InputError(f"text of id {ids[i]!r} must be a string, got {type(t).__name__}")
        if metadata is not None:
            if isinstance(metadata, Mapping) or len(metadata) != n:
                raise InputError(f"metadata must be a list of {n} dicts (one per id)")
        out: list[bytes | None] = []
        for i in range(n):
            t = texts[i] if texts is not None else None
            m = metadata[i] if metadata is not None else None
            if m is not None and not isinstance(m, Mapping):
                raise InputError(f"metadata of id {ids[i]!r} must be a dict, got {type(m).__name__}")
            if t is None and m is None:
                out.append(None)
                continue
            try:
                raw = json.dumps([t, dict(m) if m is not None else None], ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError) as e:
                raise InputError(f"metadata of id {ids[i]!r} is not JSON: {e}") from None
            out.append(raw.encode("utf-8"))
        return out

    def _exists(self, doc_id: str) -> bool:
        if doc_id in self._pending_ids:
            return True
        loc = self._ids().get(doc_id)
        return loc is not None and loc[1] not in self._pending_deletes.get(self._segments[loc[0]].name, ())

    def add(self, ids, texts, metadata=None, batch_size: int = 32, show_progress: bool = False) -> None:
        """Encode ``texts`` with the index's encoder and add them; visible after ``commit()``."""
        self._write(
            ids, None, texts, metadata, upsert=False, batch_size=batch_size, show_progress=show_progress
        )

    def add_vectors(self, ids, vectors: SparseVectors, texts=None, metadata=None) -> None:
        """Add precomputed document vectors (from this index's model); visible after ``commit()``."""
        self._write(ids, vectors, texts, metadata, upsert=False)

    def upsert(self, ids, texts, metadata=None, batch_size: int = 32, show_progress: bool = False) -> None:
        """Add documents, replacing any with the same id."""
        self._write(
            ids, None, texts, metadata, upsert=True, batch_size=batch_size, show_progress=show_progress
        )

    def upsert_vectors(self, ids, vectors: SparseVectors, texts=None, metadata=None) -> None:
        self._write(ids, vectors, texts, metadata, upsert=True)

    def _write(
        self, ids, vectors, texts, metadata, *, upsert: bool, batch_size: int = 32, show_progress=False
    ):
        ids = self._check_ids(ids)
        if vectors is None:
            if texts is None or isinstance(texts, str) or len(texts) != len(ids):
                raise InputError(f"texts must be a list of {len(ids)} strings (one per id)")
            if any(not isinstance(t, str) for t in texts):
                raise InputError("texts must be strings")
        else:
            self._check_vectors(vectors, "vectors")
            if len(vectors) != len(ids):
                raise InputError(f"{len(ids)} ids but {len(vectors)} vectors")
            if self._manifest["compact"] and vectors.nnz and vectors.data.min() < 0:
                raise InputError(
                    "a compact (8-bit) index holds non-negative weights only; got negative weights"
                )
        records = self._records(ids, texts, metadata)
        if not ids:
            return
        with self._wlock:
            self._acquire_lock()
            if not upsert:
                clash = [x for x in ids if self._exists(x)]
                if clash:
                    raise InputError(
                        f"{len(clash)} id(s) already in the index (first: {clash[0]!r}); use upsert to replace them"
                    )
        if vectors is None:
            vectors = self.encoder.encode_documents(
                list(texts), batch_size=batch_size, show_progress=show_progress
            )
        with self._wlock:
            if upsert:
                for x in ids:
                    self._drop(x)
            b = len(self._pending)
            self._pending.append(_Pending(ids, vectors, records))
            for r, x in enumerate(ids):
                self._pending_ids[x] = (b, r)
            if sum(p.vectors.nnz for p in self._pending) >= self.flush_postings:
                self._flush()

    def _drop(self, doc_id: str) -> bool:
        """Forget a pending or committed document (as part of delete / upsert)."""
        loc = self._pending_ids.pop(doc_id, None)
        if loc is not None:
            self._pending_dropped.add(loc)
            return True
        loc = self._ids().get(doc_id)
        if loc is None:
            return False
        seg = self._segments[loc[0]]
        dels = self._pending_deletes.setdefault(seg.name, set())
        if loc[1] in dels:
            return False
        dels.add(loc[1])
        return True

    def delete(self, ids) -> None:
        """Delete documents by id (tombstones); unknown ids are an error and nothing is deleted."""
        ids = self._check_ids(ids)
        with self._wlock:
            self._acquire_lock()
            missing = [x for x in ids if not self._exists(x)]
            if missing:
                raise InputError(f"{len(missing)} unknown id(s), nothing deleted (first: {missing[0]!r})")
            for x in ids:
                self._drop(x)

    def _flush(self) -> None:
        """Write the pending documents as a new segment (not visible until the manifest names it)."""
        ids: list[str] = []
        parts: list[SparseVectors] = []
        records: list[bytes | None] = []
        for b, p in enumerate(self._pending):
            keep = [r for r in range(len(p.ids)) if (b, r) not in self._pending_dropped]
            if not keep:
                continue
            if len(keep) == len(p.ids):
                parts.append(p.vectors)
            else:
                parts.append(p.vectors[np.asarray(keep)])
            ids.extend(p.ids[r] for r in keep)
            records.extend(p.records[r] for r in keep)
        self._pending, self._pending_ids, self._pending_dropped = [], {}, set()
        if not ids:
            return
        v = SparseVectors.concat(parts) if len(parts) > 1 else parts[0]
        name = self._new_segment_name()
        meta = write_segment(
            self.path / name, ids, v.indptr, v.indices, v.data, self.dim, records, self._manifest["compact"]
        )
        self._flushed.append({"name": name, "n_docs": meta["n_docs"], "nnz": meta["nnz"], "ids": ids})

    def _new_segment_name(self) -> str:
        n = self._manifest["next_segment"]
        self._manifest = {**self._manifest, "next_segment": n + 1}
        return f"seg_{n:06d}"

    @property
    def has_changes(self) -> bool:
        return bool(self._pending or self._flushed or self._pending_deletes)

    def commit(self, merge: bool = True) -> None:
        """Make every change since the last commit durable and visible, atomically; then fold small segments."""
        with self._wlock:
            if not self.has_changes:
                return
            self._acquire_lock()
            self._flush()
            gen = self._manifest["generation"] + 1
            entries = []
            for seg, e in zip(self._segments, self._manifest["segments"]):
                e = dict(e)
                dels = self._pending_deletes.get(seg.name)
                if dels:
                    dead = np.zeros(seg.n_docs, bool) if seg.alive is None else seg.alive == 0
                    dead[np.fromiter(dels, np.int64, len(dels))] = True
                    fname = f"deleted.{gen}.npy"
                    save_array(seg.folder / fname, np.packbits(dead))
                    fsync_dir(seg.folder)
                    e["deleted"] = fname
                    e["n_deleted"] = int(dead.sum())
                if e.get("n_deleted", 0) < e["n_docs"]:
                    entries.append(e)
            for f in self._flushed:
                entries.append({"name": f["name"], "n_docs": f["n_docs"], "nnz": f["nnz"], "deleted": None})
            manifest = {**self._manifest, "generation": gen, "segments": entries, "committed": time.time()}
            self._write_manifest(manifest)
            self._pending_deletes, self._flushed = {}, []
            self._load_segments(manifest)
            self._remove_orphans()
            if merge and len(self._segments) > MAX_SEGMENTS:
                self._merge(self._merge_plan())

    def _write_manifest(self, manifest: dict) -> None:
        tmp = self.path / (MANIFEST + ".tmp")
        save_bytes(tmp, json.dumps(manifest, indent=1).encode())
        os.replace(tmp, self.path / MANIFEST)
        fsync_dir(self.path)
        self._manifest = manifest

    def _merge_plan(self) -> list[int]:
        """The smallest segments, folded so that at most MAX_SEGMENTS / 2 remain."""
        order = sorted(range(len(self._segments)), key=lambda i: self._segments[i].n_live)
        return sorted(order[: len(order) - MAX_SEGMENTS // 2 + 1])

    def optimize(self) -> None:
        """Commit, then merge every segment into one (drops deleted documents; fastest search)."""
        with self._wlock:
            self.commit(merge=False)
            if len(self._segments) > 1 or any(s.n_deleted for s in self._segments):
                self._acquire_lock()
                self._merge(list(range(len(self._segments))))

    def _merge(self, which: list[int]) -> None:
        """Fold segments ``which`` into one new segment and commit that (tombstoned documents are dropped)."""
        if not which:
            return
        parts, ids, records = [], [], []
        for i in which:
            seg = self._segments[i]
            keep = np.ones(seg.n_docs, bool) if seg.alive is None else seg.alive.astype(bool)
            indptr, indices, data = seg.vectors(keep)
            parts.append(SparseVectors(indptr, indices, data, self.dim))
            seg_ids = seg.ids()
            for d in np.flatnonzero(keep):
                ids.append(seg_ids[d])
                if seg.store_off is None:
                    records.append(None)
                else:
                    raw = bytes(seg.store_blob[int(seg.store_off[d]) : int(seg.store_off[d + 1])])
                    records.append(raw or None)
        entries = [e for i, e in enumerate(self._manifest["segments"]) if i not in set(which)]
        if ids:
            v = SparseVectors.concat(parts)
            name = self._new_segment_name()
            meta = write_segment(
                self.path / name,
                ids,
                v.indptr,
                v.indices,
                v.data,
                self.dim,
                records,
                self._manifest["compact"],
            )
            pos = min(which)
            entries.insert(pos, {"name": name, "n_docs": meta["n_docs"], "nnz": meta["nnz"], "deleted": None})
        manifest = {**self._manifest, "generation": self._manifest["generation"] + 1, "segments": entries}
        self._write_manifest(manifest)
        self._load_segments(manifest)
        self._remove_orphans()

    # ------------------------------------------------------------------ reading
    def _snapshot(self) -> tuple[tuple[Segment, ...], dict[str, tuple[int, int]]]:
        """The committed segments and their id map, taken together: a refresh in another thread swaps both
        atomically (one tuple), so a reader never pairs an id map with the segments of another commit."""
        cached = self._id_map
        segs = self._segments
        if cached is not None and cached[0] is segs:
            return cached
        m: dict[str, tuple[int, int]] = {}
        for si, seg in enumerate(segs):
            ids = seg.ids()
            if seg.alive is None:
                m.update(zip(ids, ((si, d) for d in range(len(ids)))))
            else:
                for d in np.flatnonzero(seg.alive):
                    m[ids[d]] = (si, int(d))
        self._id_map = (segs, m)
        return segs, m

    def _ids(self) -> dict[str, tuple[int, int]]:
        """id -> (segment number, document number) of every live committed document."""
        return self._snapshot()[1]

    def __len__(self) -> int:
        return sum(s.n_live for s in self._segments)

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and doc_id in self._ids()

    def get(self, doc_id: str) -> dict | None:
        """The committed document ``{"id", "text", "metadata"}``, or None."""
        if not isinstance(doc_id, str):
            raise InputError(f"ids must be strings, got {type(doc_id).__name__}")
        segs, m = self._snapshot()
        loc = m.get(doc_id)
        if loc is None:
            return None
        text, meta = segs[loc[0]].record(loc[1])
        return {"id": doc_id, "text": text, "metadata": meta}

    def ids(self) -> list[str]:
        """Ids of every committed live document."""
        return list(self._ids())

    def vector(self, doc_id: str) -> SparseVectors | None:
        """The stored vector of one document (rebuilt from the postings), or None."""
        return self.vectors([doc_id]) if doc_id in self else None

    def vectors(self, ids) -> SparseVectors:
        """Stored vectors of committed documents, in the order of ``ids`` (one pass per segment involved)."""
        ids = self._check_ids(ids)
        segs, m = self._snapshot()
        missing = [x for x in ids if x not in m]
        if missing:
            raise InputError(f"{len(missing)} unknown id(s) (first: {missing[0]!r})")
        by_seg: dict[int, list[int]] = {}
        for x in ids:
            by_seg.setdefault(m[x][0], []).append(m[x][1])
        rows: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        for si, docs in by_seg.items():
            seg = segs[si]
            keep = np.zeros(seg.n_docs, bool)
            keep[docs] = True
            indptr, indices, data = seg.vectors(keep)
            for r, d in enumerate(np.flatnonzero(keep)):
                rows[(si, int(d))] = (indices[indptr[r] : indptr[r + 1]], data[indptr[r] : indptr[r + 1]])
        v = (
            SparseVectors.from_rows([rows[m[x]] for x in ids], self.dim)
            if ids
            else SparseVectors.empty(0, self.dim)
        )
        v.vocab = self._vocab
        return v

    def iter_documents(self, batch: int = 4096) -> Iterator[DocumentBatch]:
        """Every committed live document in batches, segment by segment (postings turned back into rows);
        for exporters and migrations, reading each segment once instead of one lookup per id."""
        segs, _ = self._snapshot()
        for seg in segs:
            keep = np.ones(seg.n_docs, bool) if seg.alive is None else seg.alive.astype(bool)
            live = np.flatnonzero(keep)
            if not len(live):
                continue
            indptr, indices, data = seg.vectors(keep)
            vectors = SparseVectors(indptr, indices, data, self.dim, self._vocab)
            all_ids = seg.ids()
            for s in range(0, len(live), batch):
                rows = live[s : s + batch]
                records = [seg.record(int(d)) for d in rows]
                yield DocumentBatch(
                    [all_ids[int(d)] for d in rows],
                    vectors[np.arange(s, s + len(rows))],
                    [r[0] for r in records],
                    [r[1] for r in records],
                )

    # ------------------------------------------------------------------ search
    def _allowed(self, segs: tuple[Segment, ...], filter) -> list[np.ndarray | None]:
        """Per segment: uint8 mask of searchable documents (tombstones and filter), or None for all."""
        if filter is None:
            return [s.alive for s in segs]
        conds = _parse_filter(filter)
        out = []
        for s in segs:
            mask = np.ones(s.n_docs, np.uint8) if s.alive is None else s.alive.copy()
            for fname, values in conds:
                idx = s.field_index(fname)
                m = np.zeros(s.n_docs, np.uint8)
                for v in values:
                    hit = idx.get(v)
                    if hit is not None:
                        m[hit] = 1
                mask &= m
            out.append(mask)
        return out

    def _run(self, segs, allowed, q_terms, q_weights, k: int, approx) -> list[tuple[float, int, int]]:
        if approx:
            q_terms, q_weights = approximate_query(
                q_terms, q_weights, 0.8 if approx is True else float(approx)
            )
        hs = np.zeros(k, np.float32)
        hd = np.zeros(k, np.int64)
        size = 0
        empty = np.zeros(0, np.uint8)
        for si, seg in enumerate(segs):
            a = allowed[si]
            size, _, _ = K.search_segment(
                q_terms,
                q_weights,
                seg.term_ptr,
                seg.win_ptr,
                seg.win_max,
                seg.win_min,
                seg.docs,
                seg.weights,
                seg.scales,
                seg.n_docs,
                empty if a is None else a,
                a is not None,
                si << 32,
                hs,
                hd,
                size,
                k,
                True,
            )
        order = sorted(range(size), key=lambda i: (-hs[i], hd[i]))
        return [(float(hs[i]), int(hd[i] >> 32), int(hd[i] & 0xFFFFFFFF)) for i in order]

    def _hits(self, segs, raw, q_terms, q_weights, with_text: bool, explain: bool) -> list[SearchHit]:
        hits = []
        for score, si, d in raw:
            seg = segs[si]
            hit = SearchHit(seg.doc_id(d), score)
            if with_text:
                hit.text, hit.metadata = seg.record(d)
            if explain:
                dw = K.doc_weights(q_terms, seg.term_ptr, seg.win_ptr, seg.docs, seg.weights, seg.scales, d)
                rows = [
                    (self._vocab[int(t)], float(q), float(w), float(np.float32(q) * np.float32(w)))
                    for t, q, w in zip(q_terms, q_weights, dw)
                    if w != 0
                ]
                hit.explanation = sorted(rows, key=lambda r: -r[3])
            hits.append(hit)
        return hits

    def search(
        self,
        query,
        k: int = 10,
        filter: Mapping | None = None,
        explain: bool = False,
        with_text: bool = False,
        approx: bool | float = False,
    ) -> list[SearchHit]:
        """Top-``k`` documents by dot product with ``query`` (exact unless ``approx``), best first.

        ``filter``: ``{"field": value}`` or ``{"field": {"$in": [...]}}`` on metadata, applied inside the search so
        ``k`` hits come back whenever ``k`` matching documents score above zero. ``approx``: keep only the heaviest
        query terms holding this share of the query weight (True = 0.8); see ``measure_approx``.
        """
        k = _check_k(k)
        q_terms, q_weights = self._query(query)
        segs = self._segments
        raw = self._run(segs, self._allowed(segs, filter), q_terms, q_weights, k, approx)
        return self._hits(segs, raw, q_terms, q_weights, with_text, explain)

    def search_batch(
        self,
        queries,
        k: int = 10,
        filter: Mapping | None = None,
        threads: int | None = None,
        explain: bool = False,
        with_text: bool = False,
        approx: bool | float = False,
    ) -> list[list[SearchHit]]:
        """``search`` for many queries (strings encoded in one batch, SparseVectors rows, or dicts), on threads."""
        k = _check_k(k)
        qs = self._queries(queries)
        segs = self._segments
        allowed = self._allowed(segs, filter)

        def one(q):
            raw = self._run(segs, allowed, q[0], q[1], k, approx)
            return self._hits(segs, raw, q[0], q[1], with_text, explain)

        threads = threads or os.cpu_count() or 1
        if threads <= 1 or len(qs) <= 1:
            return [one(q) for q in qs]
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(one, qs))

    def measure_approx(self, queries, k: int = 10, approx: bool | float = True, sample: int = 100) -> dict:
        """Recall@k of approximate search against exact search on (a sample of) ``queries``, and both timings."""
        n = len(queries)
        if n == 0:
            raise InputError("measure_approx needs at least one query")
        rng = np.random.default_rng(0)
        pick = sorted(rng.choice(n, size=min(sample, n), replace=False).tolist())
        qs = queries[np.asarray(pick)] if isinstance(queries, SparseVectors) else [queries[i] for i in pick]
        if not isinstance(qs, SparseVectors) and any(isinstance(q, str) for q in qs):
            qs = self.encoder.encode_queries(list(qs))
        t0 = time.perf_counter()
        exact = self.search_batch(qs, k=k, threads=1)
        t1 = time.perf_counter()
        appr = self.search_batch(qs, k=k, threads=1, approx=approx)
        t2 = time.perf_counter()
        rec = [len({h.id for h in a} & {h.id for h in e}) / len(e) for a, e in zip(appr, exact) if e]
        return {
            "queries": len(pick),
            "k": k,
            "approx": approx,
            "recall": float(np.mean(rec)) if rec else 1.0,
            "exact_ms": 1000 * (t1 - t0) / max(1, len(pick)),
            "approx_ms": 1000 * (t2 - t1) / max(1, len(pick)),
        }

    # ------------------------------------------------------------------ info / lifecycle
    def info(self) -> dict:
        """Documents, segments, postings, bytes on disk and the model of the committed state."""
        files = [self.path / MANIFEST, self.path / VOCAB]
        for s in self._segments:
            files.extend(s.files())
        size = sum(f.stat().st_size for f in files if f.exists())
        postings = sum(int(e["nnz"]) for e in self._manifest["segments"])
        return {
            "path": str(self.path),
            "documents": len(self),
            "deleted": sum(s.n_deleted for s in self._segments),
            "segments": len(self._segments),
            "postings": postings,
            "bytes_on_disk": size,
            "bytes_per_posting": size / postings if postings else None,
            "compact": self._manifest["compact"],
            "generation": self._manifest["generation"],
            "model": self.model,
        }

    def close(self) -> None:
        """Release the write lock; uncommitted changes are discarded."""
        with self._wlock:
            self._pending, self._pending_ids, self._pending_dropped = [], {}, set()
            self._pending_deletes = {}
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None
            self._closed = True

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Index({str(self.path)!r}, documents={len(self)}, segments={len(self._segments)})"


def approximate_query(
    q_terms: np.ndarray, q_weights: np.ndarray, mass: float
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the heaviest query terms that together hold ``mass`` of the query's total weight."""
    if not 0 < mass <= 1:
        raise InputError(f"approx must be a share of the query weight in (0, 1], got {mass}")
    if len(q_terms) == 0:
        return q_terms, q_weights
    order = np.argsort(-q_weights, kind="stable")
    cum = np.cumsum(q_weights[order])
    n = int(np.searchsorted(cum, mass * cum[-1] * (1 - 1e-7))) + 1
    keep = np.sort(order[: min(n, len(order))])
    return q_terms[keep], q_weights[keep]


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _parse_filter(filter) -> list[tuple[str, list[str]]]:
    if not isinstance(filter, Mapping):
        raise InputError('filter must be a dict like {"field": value} or {"field": {"$in": [v1, v2]}}')
    out = []
    for name, cond in filter.items():
        if not isinstance(name, str):
            raise InputError(f"filter field names must be strings, got {name!r}")
        if isinstance(cond, Mapping):
            if set(cond) != {"$in"}:
                raise InputError(
                    f"filter on {name!r}: only equality and {{'$in': [...]}} are supported, got {dict(cond)}"
                )
            vals = cond["$in"]
            if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence):
                raise InputError(f"filter on {name!r}: '$in' needs a list of values")
        else:
            vals = [cond]
        try:
            out.append((name, [canonical(v) for v in vals]))
        except (TypeError, ValueError):
            raise InputError(f"filter on {name!r}: values must be JSON values") from None
    return out
