"""`LocalIndex`: the embedded backend, an editable SPLADE index on disk with exact top-k search.

Layout of an index folder: ``manifest.json`` (the committed state), ``vocab.txt`` (the model's tokens),
``write.lock`` (held by the single writer) and one ``seg_NNNNNN/`` folder per immutable segment (see
``segment.py``). Reading and search are in ``reading.py``, writing, commits and merges in ``writing.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

from ...encode.choose import model_record, resolve_model
from ...errors import DataFormatError, InputError, SpladekitError
from ...io import atomic_write
from ..approx import Plan, plan_for
from ..base import Index
from ..lexical import settings as bm25_settings
from .approx_build import BuildSettings
from .integrity import file_sum, verify_file, verify_manifest, verify_sizes
from .lexical import FILES as LEX_FILES
from .lock import WriteLock
from .reading import LocalReading
from .segment import Segment
from .writing import FLUSH_POSTINGS, MANIFEST, LocalWriting

VOCAB = "vocab.txt"
# Segment files whose size grows with the number of postings.
POSTING_FILES = ("docs.npy", "weights.npy")


class LocalIndex(LocalReading, LocalWriting, Index):
    """An embedded SPLADE index: immutable segments + tombstones, one writer, many readers, atomic commits."""

    backend = "local"

    def __init__(self, path: Path, manifest: dict, vocab: list[str]) -> None:
        self.path = Path(path)
        self._manifest = manifest
        self._vocab = vocab
        self._init_model()
        self._segments: tuple[Segment, ...] = ()
        self._id_map = None
        self._lock = WriteLock(self.path)
        self._wlock = threading.RLock()
        self._pending: list = []
        self._pending_ids: dict[str, tuple[int, int]] = {}
        self._pending_dropped: set[tuple[int, int]] = set()
        self._pending_deletes: dict[str, set[int]] = {}
        self._flushed: list[dict] = []
        self._closed = False
        self._manifest_seen: tuple[int, int, int] | None = None  # (mtime_ns, inode, size) at the last refresh
        self.flush_postings = FLUSH_POSTINGS
        self._load_segments(manifest)

    # ------------------------------------------------------------------ create / open
    @classmethod
    def _create(
        cls,
        path: Path,
        encoder=None,
        *,
        compact: bool = False,
        long_docs=None,
        bm25: bool = True,
        approx: bool | BuildSettings = True,
    ) -> LocalIndex:
        """A new index folder. ``compact=True`` stores 8-bit per-term quantised weights (about half the bytes;
        scores approximate). ``bm25`` (default on): keep a BM25 view of the documents' texts, for hybrid search
        (``search(..., hybrid=...)``); recorded in the manifest. ``approx`` (default on): each segment carries the
        structure of approximate search (``search(..., approx=0.95)``), built with these ``BuildSettings``."""
        if not isinstance(bm25, bool):
            raise InputError(f"bm25 must be True or False, got {bm25!r}")
        if not isinstance(approx, (bool, BuildSettings)):
            raise InputError(f"approx must be True, False or BuildSettings, got {approx!r}")
        if path.is_dir() and any(path.iterdir()):
            raise InputError(f"{path} is not empty: create an index in a new or empty folder")
        full, light = resolve_model(encoder)
        enc = full or light
        made_folder = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
        try:
            vocab = list(enc.vocab)
            atomic_write(path / VOCAB, "\n".join(vocab), durable=True)
            vocab_sum = file_sum(path / VOCAB)
            manifest = {
                "format": 1,
                "backend": "local",
                "generation": 0,
                "model": model_record(enc, long_docs),
                "dim": int(enc.vocab_size),
                "compact": bool(compact),
                "next_segment": 1,
                "segments": [],
                "created": time.time(),
                "vocab_sum": vocab_sum,
            }
            if bm25:
                manifest["bm25"] = bm25_settings()
            settings = BuildSettings() if approx is True else approx
            manifest["approx_build"] = settings.record() if settings else None
            idx = cls(path, manifest, vocab)
            idx._encoder, idx._query_encoder = full, light
            idx._acquire_lock(refresh=False)
            idx._write_manifest(manifest)
        except BaseException:
            if made_folder:  # a failed create leaves nothing behind
                shutil.rmtree(path, ignore_errors=True)
            else:
                for p in path.iterdir():
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            raise
        return idx

    @classmethod
    def _open(cls, path: Path) -> LocalIndex:
        """Open an existing index for reading (and writing: the lock is taken on the first write)."""
        manifest = cls._read_manifest(path)
        if manifest.get("vocab_sum") and (path / VOCAB).exists():
            verify_file(path / VOCAB, manifest["vocab_sum"])
        try:
            vocab = (path / VOCAB).read_text(encoding="utf-8").split("\n")
        except OSError as e:
            raise DataFormatError(str(path / VOCAB), None, f"unreadable vocabulary ({e.strerror})") from None
        return cls(path, manifest, vocab)

    @staticmethod
    def _read_manifest(path: Path) -> dict:
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataFormatError(str(path / MANIFEST), None, f"unreadable manifest ({e})") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("segments"), list):
            raise DataFormatError(str(path / MANIFEST), None, "not an index manifest")
        verify_manifest(path / MANIFEST, manifest)
        return manifest

    def _load_segments(self, manifest: dict) -> None:
        old = {s.name: s for s in self._segments}
        segs = []
        for entry in manifest["segments"]:
            base = old.get(entry["name"])
            if base is None or base.deleted_file != entry.get("deleted"):
                verify_sizes(self.path / entry["name"], entry)  # missing or truncated files: a clear error
            if base is None:
                sums = entry.get("files") or {}
                try:
                    base = Segment.load(self.path / entry["name"])  # refuses other formats first
                except (KeyError, TypeError, IndexError) as e:  # meta.json parses but lacks a field
                    p = self.path / entry["name"] / "meta.json"
                    raise DataFormatError(str(p), None, f"damaged segment metadata ({e!r})") from None
                if "meta.json" in sums:  # small, read whole: verify its sum
                    verify_file(base.folder / "meta.json", sums["meta.json"])
                base.sums = sums or None
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
                except DataFormatError:  # damaged, or removed by a newer commit: only the latter is retried
                    if self._read_manifest(self.path)["generation"] == manifest["generation"]:
                        raise
        raise SpladekitError(f"{self.path}: the index changed too fast to refresh; try again")

    def refresh_if_changed(self) -> bool:
        """``refresh()`` only when ``manifest.json`` changed since this object last looked: one ``os.stat`` when
        nothing changed, so a server can call it on every request. True if a newer commit was loaded.

        Never waits behind a write of this object in another thread (it returns False and looks again on the
        next call); this object's own commits are already loaded.
        """
        try:
            st = os.stat(self.path / MANIFEST)
        except OSError:
            return False
        seen = (st.st_mtime_ns, st.st_ino, st.st_size)
        if seen == self._manifest_seen:
            return False
        if not self._wlock.acquire(blocking=False):
            return False
        try:
            if self._closed:
                return False
            changed = self.refresh()
            self._manifest_seen = seen  # stat taken before the read: a later change is seen on the next call
            return changed
        finally:
            self._wlock.release()

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
    def has_bm25(self) -> bool:
        """Whether this index keeps a BM25 view (for hybrid search)."""
        return bool(self._manifest.get("bm25"))

    # ------------------------------------------------------------------ approximate search
    def _approx_settings(self) -> BuildSettings | None:
        """Build settings of new segments' approximate structure (None: the index keeps none; an index made
        before it existed gets the defaults)."""
        if "approx_build" not in self._manifest:
            return BuildSettings()
        return (
            BuildSettings.from_record(self._manifest["approx_build"])
            if self._manifest["approx_build"]
            else None
        )

    def _approx_plan(self, target: float | None, filter=None) -> Plan | None:
        """Knobs for a recall target from the stored tuning table (exact with a filter: the table was not
        measured under one)."""
        if target is None or filter is not None:
            return None
        return plan_for(target, (self._manifest.get("approx") or {}).get("table"))

    def tune(
        self, recall: float = 0.95, queries=None, sample: int = 200, exact_if_faster: bool = True
    ) -> dict:
        """Measure recall@10 against exact search for a grid of query-time knobs, on ``sample`` documents of the
        index used as queries (or on ``queries``), and store the cheapest setting reaching each target (0.9, 0.95,
        0.99 and ``recall``) in a new commit. A target whose cheapest setting is slower than exact search gets no
        row (it is searched exactly) unless ``exact_if_faster`` is False. Returns the table and the whole grid."""
        from .tuning import tune

        with self._wlock:
            return tune(self, recall, queries, sample, exact_if_faster)

    def _store_approx(self, record: dict) -> None:
        """Commit a new tuning table (the write lock is taken)."""
        with self._wlock:
            self._acquire_lock()
            gen = self._manifest["generation"] + 1
            self._write_manifest({**self._manifest, "approx": record, "generation": gen})

    # ------------------------------------------------------------------ info / lifecycle
    def info(self) -> dict:
        """Documents, segments, postings, bytes on disk and the model of the committed state."""
        files = [f for s in self._segments for f in s.files()] + [self.path / MANIFEST, self.path / VOCAB]
        sizes = {f: f.stat().st_size for f in files if f.exists()}
        size = sum(sizes.values())
        # what grows with the postings (document offsets, weights); the rest is fixed per index or segment
        # (vocabulary, per-term tables) or the document store
        posting_bytes = sum(n for f, n in sizes.items() if f.name in POSTING_FILES)
        postings = sum(int(e["nnz"]) for e in self._manifest["segments"])
        bm25 = self._manifest.get("bm25")
        if bm25:
            bm25 = {
                **bm25,
                "documents": sum(s.lex_stats()[0] for s in self._segments),
                "bytes": sum(n for f, n in sizes.items() if f.name in LEX_FILES),
            }
        return {
            "path": str(self.path),
            "backend": "local",
            "documents": len(self),
            "deleted": sum(s.n_deleted for s in self._segments),
            "segments": len(self._segments),
            "postings": postings,
            "bytes_on_disk": size,
            "bytes_per_posting": posting_bytes / postings if postings else None,
            "bytes_other": size - posting_bytes,
            "compact": self._manifest["compact"],
            "generation": self._manifest["generation"],
            "bm25": bm25 or None,
            "approx": {"build": self._manifest.get("approx_build"), "tuning": self._manifest.get("approx")},
            "model": self.model,
        }

    def check(self, deep: bool = False):
        """Verify the committed state on disk: the manifest and file sizes; with ``deep`` every checksum and the
        structure of every segment. A `CheckReport` (``ok``, ``problems``: one line each naming the file)."""
        from .integrity import check_index

        return check_index(self.path, deep=deep)

    def snapshot(self, out, link: bool = True) -> dict:
        """A consistent copy of the last commit in the new folder ``out``, taken while readers and a writer go
        on; open it to restore. Hard links where possible (they share bytes with this index); ``link=False``
        copies every file."""
        from .snapshot import snapshot

        return snapshot(self.path, Path(out), link=link)

    def close(self) -> None:
        """Release the write lock; uncommitted changes are discarded."""
        with self._wlock:
            self._pending, self._pending_ids, self._pending_dropped = [], {}, set()
            self._pending_deletes = {}
            self._lock.release()
            self._closed = True

    def __repr__(self) -> str:
        return f"LocalIndex({str(self.path)!r}, documents={len(self)}, segments={len(self._segments)})"
