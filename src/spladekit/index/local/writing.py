"""Writing the embedded index: pending documents, tombstones, atomic commits, merges, and the write lock.

Writes are buffered in memory and become visible only through ``commit()``, which writes new segment and
tombstone files, syncs them, then replaces ``manifest.json`` atomically: a crash at any moment leaves the previous
commit readable and nothing half-written visible.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import dataclass

import numpy as np

from ...errors import InputError
from ...io import atomic_write, fsync_dir
from ...sparse import SparseVectors
from ..lexical import check_settings
from ..lexical import settings as bm25_settings
from ..validate import check_ids, decode_record
from .integrity import file_sum, folder_sums, manifest_sum
from .lexical import LexicalArrays
from .segment import save_array, write_segment

MANIFEST = "manifest.json"
MAX_SEGMENTS = 8
FLUSH_POSTINGS = 32_000_000


@dataclass
class Pending:
    """One write call's documents, not yet in a segment."""

    ids: list[str]
    vectors: SparseVectors
    records: list[bytes | None]


class LocalWriting:
    """The writer half of `LocalIndex` (a mixin: the state lives in ``LocalIndex.__init__``)."""

    # ------------------------------------------------------------------ the write lock
    def _acquire_lock(self, refresh: bool = True, wait: float = 0.0) -> None:
        """Take the write lock (a no-op when held), waiting up to ``wait`` seconds for another writer to let go.

        With ``refresh``, moves to the latest commit and removes files no commit references; if that fails the
        lock is let go again.
        """
        if self._closed:
            raise InputError("this index is closed")
        if self._lock.held:
            return
        self._lock.acquire(wait)
        with self._wlock:
            if refresh:  # a newer commit may exist since this object was opened: writes must start from it
                try:
                    self.refresh()
                    self._remove_orphans()
                except BaseException:
                    self._lock.release()
                    raise

    @property
    def holds_lock(self) -> bool:
        """Whether this object holds the index's write lock now."""
        return self._lock.held

    def _begin_write(self) -> None:
        with self._wlock:
            self._acquire_lock()

    def writing(self, wait: float = 0.0):
        """A context manager for one batch of writes that holds the write lock only for the block.

        A writer takes the lock on its first write and keeps it until ``close()``; a process that lives long and
        writes now and then (``spladekit serve``) holds it only while it writes instead. On entry: takes the lock,
        waiting up to ``wait`` seconds while another writer holds it (then `IndexLockedError`, whose ``holder`` is
        that writer's pid), and moves to the latest commit. On a normal exit: commits. When the block raises:
        discards the uncommitted changes. Either way the lock is released again, unless this object held it
        before the block. One thread at a time per index object::

            with idx.writing(wait=10):
                idx.upsert(["a"], ["new text"])
        """

        @contextlib.contextmanager
        def block():
            had_lock = self._lock.held
            self._acquire_lock(wait=wait)
            try:
                try:
                    yield self
                except BaseException:
                    self.rollback()
                    raise
                try:
                    self.commit()
                except BaseException:
                    self.rollback()
                    raise
            finally:
                if not had_lock:
                    self.release_lock()

        return block()

    def release_lock(self) -> None:
        """Let other writers in (the next write takes the lock again, refreshing first). Refused while there are
        uncommitted changes: ``commit()`` or ``rollback()`` first."""
        with self._wlock:
            if self.has_changes:
                raise InputError(
                    f"{self.path}: uncommitted changes; commit() or rollback() before releasing the write lock"
                )
            self._lock.release()

    def rollback(self) -> None:
        """Discard every change since the last commit (segment files already flushed for them are deleted)."""
        with self._wlock:
            flushed = [f["name"] for f in self._flushed]
            self._pending, self._pending_ids, self._pending_dropped = [], {}, set()
            self._pending_deletes, self._flushed = {}, []
            for name in flushed:
                shutil.rmtree(self.path / name, ignore_errors=True)

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

    # ------------------------------------------------------------------ documents
    def _check_weights(self, vectors: SparseVectors) -> None:
        if self._manifest["compact"] and vectors.nnz and vectors.data.min() < 0:
            raise InputError("a compact (8-bit) index holds non-negative weights only; got negative weights")

    def _exists(self, doc_id: str) -> bool:
        if doc_id in self._pending_ids:
            return True
        loc = self._ids().get(doc_id)
        return loc is not None and loc[1] not in self._pending_deletes.get(self._segments[loc[0]].name, ())

    def _present(self, ids: list[str]) -> set[str]:
        with self._wlock:
            return {x for x in ids if self._exists(x)}

    def _apply(
        self, ids: list[str], vectors: SparseVectors, records: list[bytes | None], upsert: bool
    ) -> None:
        with self._wlock:
            if upsert:
                for x in ids:
                    self._drop(x)
            b = len(self._pending)
            self._pending.append(Pending(ids, vectors, records))
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
        ids = check_ids(ids)
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
            parts.append(p.vectors if len(keep) == len(p.ids) else p.vectors[np.asarray(keep)])
            ids.extend(p.ids[r] for r in keep)
            records.extend(p.records[r] for r in keep)
        if ids:
            v = parts[0] if len(parts) == 1 else SparseVectors.concat(parts)  # no copy of a lone batch
            lexical = self._view_of(records) if self._manifest.get("bm25") else None
            self._flushed.append(self._write_segment(ids, v, records, lexical))
        # only now: when writing the segment failed (disk full), the documents stay pending for a retry
        self._pending, self._pending_ids, self._pending_dropped = [], {}, set()

    def _write_segment(
        self, ids: list[str], v: SparseVectors, records: list[bytes | None], lexical: LexicalArrays | None
    ) -> dict:
        """A new segment folder with these documents (and their BM25 view, if given); its manifest entry."""
        n = self._manifest["next_segment"]
        self._manifest = {**self._manifest, "next_segment": n + 1}
        name = f"seg_{n:06d}"
        meta = write_segment(
            self.path / name,
            ids,
            v.indptr,
            v.indices,
            v.data,
            self.dim,
            records,
            self._manifest["compact"],
            lexical,
            self._approx_settings(),
        )
        files = folder_sums(self.path / name)  # checksums of every file, recorded in the manifest entry
        return {"name": name, "n_docs": meta["n_docs"], "nnz": meta["nnz"], "deleted": None, "files": files}

    def _view_of(self, records: list[bytes | None]) -> LexicalArrays:
        """The BM25 view of stored records: each document's text analysed (none for a record without text), as
        the index's recorded analyzer does (a process analysing otherwise is refused)."""
        check_settings(self._manifest.get("bm25") or bm25_settings(), str(self.path))
        return LexicalArrays.from_texts([decode_record(r)[0] for r in records])

    @property
    def has_changes(self) -> bool:
        return bool(self._pending or self._flushed or self._pending_deletes)

    # ------------------------------------------------------------------ commits and merges
    def commit(self, merge: bool = True) -> None:
        """Make every change since the last commit durable and visible, atomically; then fold small segments."""
        with self._wlock:
            if not self.has_changes:
                return
            before = self._manifest["generation"]
            try:
                self._acquire_lock()
                self._commit_changes()
            except OSError as e:
                if self._manifest["generation"] == before:
                    e.add_note(
                        f"committing to the index {self.path}: nothing of this commit is visible, the last commit "
                        "is intact"
                    )
                else:
                    e.add_note(
                        f"committing to the index {self.path}: the commit is in place but may not be durable"
                    )
                raise
            if merge and len(self._segments) > MAX_SEGMENTS:
                self._merge(self._merge_plan())

    def _commit_changes(self) -> None:
        """Write the pending segment and tombstones, then the manifest that names them (the atomic step)."""
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
                e["deleted_sum"] = file_sum(seg.folder / fname)
                e["n_deleted"] = int(dead.sum())
            if e.get("n_deleted", 0) < e["n_docs"]:
                entries.append(e)
        entries.extend(self._flushed)
        manifest = {**self._manifest, "generation": gen, "segments": entries, "committed": time.time()}
        try:
            self._write_manifest(manifest)
        finally:
            if self._manifest is manifest:  # renamed into place (even if syncing the folder then failed)
                self._pending_deletes, self._flushed = {}, []
                self._load_segments(manifest)
        self._remove_orphans()

    def _write_manifest(self, manifest: dict) -> None:
        """Replace ``manifest.json``. A failure after the rename (syncing the folder) still leaves this manifest
        the one readers see: it becomes this writer's state too (so a rollback cannot delete its segments), then
        the error is raised."""
        manifest["checksum"] = manifest_sum(manifest)  # in place: callers compare identity
        text = json.dumps(manifest, indent=1)
        try:
            atomic_write(self.path / MANIFEST, text, durable=True)
        except BaseException:
            with contextlib.suppress(OSError):
                if (self.path / MANIFEST).read_text(encoding="utf-8") == text:
                    self._manifest = manifest
            raise
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

    def enable_bm25(self) -> None:
        """Keep a BM25 view from now on (for hybrid search), built for the documents already stored from their
        stored texts: commits, then rewrites every segment into one with its view, and records the setting, in
        one atomic commit. Documents stored without text have no lexical view (they score 0 in BM25)."""
        with self._wlock:
            self.commit(merge=False)
            if self._manifest.get("bm25"):
                return
            self._acquire_lock()
            if self._manifest.get("bm25"):  # another writer enabled it meanwhile
                return
            if len(self) and not any(t for b in self.iter_documents() for t in (b.texts or ()) if t):
                raise InputError(
                    f"{self.path}: no document is stored with its text, so a BM25 view would be empty; "
                    "add the documents with their texts (spladekit index stores them)"
                )
            self._merge(list(range(len(self._segments))), {"bm25": bm25_settings()})

    def _merge(self, which: list[int], changes: dict | None = None) -> None:
        """Fold segments ``which`` into one new segment and commit that (tombstoned documents are dropped), with
        ``changes`` to the manifest in the same commit."""
        if not which and not changes:
            return
        try:
            self._merge_segments(which, changes or {})
        except OSError as e:
            e.add_note(f"merging segments of the index {self.path}: every committed document is intact")
            raise

    def _merge_segments(self, which: list[int], changes: dict) -> None:
        parts, ids, records, views = [], [], [], []
        bm25 = bool({**self._manifest, **changes}.get("bm25"))
        for i in which:
            seg = self._segments[i]
            keep = np.ones(seg.n_docs, bool) if seg.alive is None else seg.alive.astype(bool)
            indptr, indices, data = seg.vectors(keep)
            parts.append(SparseVectors(indptr, indices, data, self.dim))
            seg_ids = seg.ids()
            start = len(records)
            for d in np.flatnonzero(keep):
                ids.append(seg_ids[d])
                records.append(seg.raw_record(int(d)))
            if bm25:  # the segment's view, or (building one for the first time) one from its stored texts
                views.append(seg.lex.arrays().subset(keep) if seg.lex else self._view_of(records[start:]))
        chosen = set(which)
        entries = [e for i, e in enumerate(self._manifest["segments"]) if i not in chosen]
        if ids:
            lexical = LexicalArrays.concat(views) if bm25 else None
            new = self._write_segment(ids, SparseVectors.concat(parts), records, lexical)
            entries.insert(min(which), new)
        gen = self._manifest["generation"] + 1
        manifest = {**self._manifest, **changes, "generation": gen, "segments": entries}
        try:
            self._write_manifest(manifest)
        finally:
            if self._manifest is manifest:
                self._load_segments(manifest)
        self._remove_orphans()
