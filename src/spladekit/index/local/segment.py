"""Immutable on-disk segments: postings per term, a document store, and tombstone files.

A segment folder ``seg_NNNNNN/`` holds plain ``.npy`` arrays (memory-mapped on open) and two byte blobs:

- ``term_ptr.npy`` (2 x dim+1; uint32, or int64 when a value needs it): per term, where its postings start in
  ``weights.npy`` (row 0) and where its document containers start in ``docs.npy`` (row 1);
- ``docs.npy`` (uint16 units): per (term, window of 65,536 documents) a container of the term's documents: their
  sorted offsets inside the window (2 bytes each), or for frequent terms one byte per gap plus a skip table (about
  1 byte a posting; see ``codec``);
- ``weights.npy`` (float32, or uint8 with per-term ``scales.npy`` in compact mode), in term then document order;
- ``win_ptr.npy`` (int32, dim x windows+1), ``win_max.npy`` / ``win_min.npy`` (float32, dim x windows): per
  (term, window) postings offsets (relative to the term's first) and weight bounds used for pruning;
  ``win_min.npy`` only when some weight is negative;
- ``ids.bin`` + ``ids_off.npy``: document ids (UTF-8); ``store.bin`` + ``store_off.npy``: ``[text, metadata]`` JSON
  (offsets uint32, or int64 when the blob exceeds 4 GiB);
- ``meta.json``: counts and format; ``deleted.<generation>.npy``: packed tombstone bits written by a commit;
- ``lex_*``: the BM25 view, in an index that keeps one (see ``lexical``);
- ``ax_*``: the approximate-search structure (cut, clustered lists with summaries, forward index; ``approx_build``).
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from tokenize import TokenError

import numpy as np

from ...errors import DataFormatError
from ...io import fsync_dir, naming
from ..filters import canonical
from ..validate import decode_record
from . import approx_build, approx_files, codec, kernels
from .approx_kernels import search_approx
from .lexical import LexicalArrays, LexicalView

FORMAT = 2  # 2: byte-gap containers for frequent terms, two-row term_ptr


def save_array(path: Path, arr: np.ndarray) -> None:
    with naming(path), open(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def save_bytes(path: Path, data: bytes) -> None:
    with naming(path), open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _offsets(arr: np.ndarray) -> np.ndarray:
    """Non-negative offsets as uint32 when they all fit (half the bytes), else int64."""
    return arr.astype(np.uint32 if arr.size == 0 or int(arr.max()) < 2**32 else np.int64)


def _blob(parts: list[bytes]) -> tuple[bytes, np.ndarray]:
    lens = np.fromiter((len(p) for p in parts), np.int64, len(parts))
    off = np.zeros(len(parts) + 1, np.int64)
    np.cumsum(lens, out=off[1:])
    return b"".join(parts), _offsets(off)


def write_segment(
    folder: Path,
    ids: list[str],
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    dim: int,
    records: list[bytes | None] | None,
    compact: bool = False,
    lexical: LexicalArrays | None = None,
    approx: approx_build.BuildSettings | None = None,
) -> dict:
    """Write a segment folder (every file synced); returns its meta dict. Not visible until a manifest names it.
    ``lexical``: the documents' BM25 view, in an index that keeps one; ``approx``: build the approximate-search
    structure with these settings."""
    folder.mkdir(parents=True, exist_ok=False)
    n = len(ids)
    term_ptr, docs, weights = codec.csr_to_postings(indptr, indices, data, dim)
    n_windows = max(1, -(-n // codec.WINDOW))
    win_ptr, win_max, win_min = codec.window_tables(term_ptr, docs, weights, n_windows)
    doc_ptr, docs16 = codec.build_containers(term_ptr, docs, win_ptr)
    save_array(folder / "term_ptr.npy", _offsets(np.stack([term_ptr, doc_ptr])))
    save_array(folder / "win_ptr.npy", win_ptr)
    save_array(folder / "win_max.npy", win_max)
    if (win_min < 0).any():
        save_array(folder / "win_min.npy", win_min)
    save_array(folder / "docs.npy", docs16)
    del docs16
    fw = data
    if compact:
        scales = np.zeros(dim, np.float32)
        tmax = np.max(np.abs(win_max), axis=1)
        scales[:] = tmax / 255.0
        safe = np.where(scales > 0, scales, 1.0).astype(np.float32)
        term_of = np.repeat(np.arange(dim, dtype=np.int32), np.diff(term_ptr))
        q = np.clip(np.rint(weights / safe[term_of]), 0, 255).astype(np.uint8)
        del term_of
        save_array(folder / "weights.npy", q)
        save_array(folder / "scales.npy", scales)
        if approx is not None:  # the forward index holds the same 8-bit codes as the postings
            fw = np.clip(np.rint(np.asarray(data, np.float32) / safe[indices]), 0, 255).astype(np.uint8)
    else:
        save_array(folder / "weights.npy", weights)
    if approx is not None:
        fw = np.asarray(fw, np.uint8 if compact else np.float32)
        ax_meta = approx_build.build(
            folder, indptr, indices, data, fw, term_ptr, docs, weights, dim, approx, save_array
        )
    del docs
    blob, off = _blob([s.encode("utf-8") for s in ids])
    save_bytes(folder / "ids.bin", blob)
    save_array(folder / "ids_off.npy", off)
    has_store = records is not None and any(r is not None for r in records)
    if has_store:
        blob, off = _blob([r or b"" for r in records])
        save_bytes(folder / "store.bin", blob)
        save_array(folder / "store_off.npy", off)
    meta = {
        "format": FORMAT,
        "n_docs": n,
        "nnz": int(term_ptr[-1]),
        "dim": dim,
        "n_windows": n_windows,
        "compact": compact,
        "has_store": has_store,
    }
    if lexical is not None:
        meta["lexical"] = lexical.save(folder, save_array, save_bytes)
    if approx is not None:
        meta["approx"] = ax_meta
    save_bytes(folder / "meta.json", json.dumps(meta).encode())
    fsync_dir(folder)
    return meta


def _mmap_bytes(path: Path) -> np.ndarray:
    """A file's bytes, memory-mapped, as a plain ndarray view (a np.memmap slice costs microseconds in Python)."""
    if path.stat().st_size == 0:
        return np.zeros(0, np.uint8)
    return np.asarray(np.memmap(path, dtype=np.uint8, mode="r"))


@dataclass(eq=False)
class Segment:
    """A read-only view of one segment folder (arrays memory-mapped) plus its current tombstones."""

    name: str
    folder: Path
    meta: dict
    term_ptr: np.ndarray
    win_ptr: np.ndarray
    win_max: np.ndarray
    win_min: np.ndarray
    docs: np.ndarray
    weights: np.ndarray
    scales: np.ndarray
    ids_blob: np.ndarray
    ids_off: np.ndarray
    ids_off_file: np.ndarray  # ids_off.npy's bytes, header included (what its recorded sum covers)
    store_blob: np.ndarray | None
    store_off: np.ndarray | None
    deleted_file: str | None = None
    alive: np.ndarray | None = None  # uint8 per document, None when nothing is deleted
    n_deleted: int = 0
    _fields: dict = field(default_factory=dict, repr=False)
    _ids: list | None = field(default=None, repr=False)
    sums: dict | None = None  # file name -> recorded [size, crc32] (None: not recorded)
    _ids_ok: bool = field(default=False, repr=False)
    lex: LexicalView | None = None  # the BM25 view, when the segment has one
    ax: approx_files.ApproxView | None = None  # the approximate-search structure, when the segment has one
    _lex_stats: tuple[int, int] | None = field(default=None, repr=False)

    @classmethod
    def load(cls, folder: Path) -> Segment:
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataFormatError(
                str(folder / "meta.json"), None, f"unreadable segment metadata ({e})"
            ) from None
        if meta.get("format") != FORMAT:
            raise DataFormatError(
                str(folder / "meta.json"),
                None,
                f"segment format {meta.get('format')} was written by another spladekit version; this one reads "
                f"format {FORMAT}: rebuild the index (add the documents again) with this version",
            )
        dim, nw = meta["dim"], meta["n_windows"]

        def arr(name: str) -> np.ndarray:  # memory-mapped, as a plain ndarray view (see _mmap_bytes)
            try:
                return np.asarray(np.load(folder / name, mmap_mode="r", allow_pickle=False))
            except (ValueError, EOFError, SyntaxError, TokenError) as e:  # a damaged header: name the file
                raise DataFormatError(str(folder / name), None, f"unreadable array ({e})") from None

        win_min = arr("win_min.npy") if (folder / "win_min.npy").exists() else np.zeros((dim, nw), np.float32)
        scales = arr("scales.npy") if meta["compact"] else np.ones(dim, np.float32)
        has_store = meta["has_store"]
        return cls(
            name=folder.name,
            folder=folder,
            meta=meta,
            term_ptr=arr("term_ptr.npy"),
            win_ptr=arr("win_ptr.npy"),
            win_max=arr("win_max.npy"),
            win_min=win_min,
            docs=arr("docs.npy"),
            weights=arr("weights.npy"),
            scales=np.ascontiguousarray(scales),
            ids_blob=_mmap_bytes(folder / "ids.bin"),
            ids_off=arr("ids_off.npy"),
            ids_off_file=_mmap_bytes(folder / "ids_off.npy"),
            store_blob=_mmap_bytes(folder / "store.bin") if has_store else None,
            store_off=arr("store_off.npy") if has_store else None,
            lex=LexicalView.load(folder, arr, _mmap_bytes) if meta.get("lexical") else None,
            ax=approx_files.ApproxView.load(folder, arr, meta["approx"].get("summaries"))
            if meta.get("approx")
            else None,
        )

    def with_deletes(self, deleted_file: str | None) -> Segment:
        """A copy sharing the arrays, with the tombstones of ``deleted_file`` (a name inside the folder)."""
        seg = Segment(
            **{
                k: getattr(self, k)
                for k in self.__dataclass_fields__
                if k not in ("_fields", "_ids", "_lex_stats")
            }
        )
        seg._ids = self._ids
        seg._fields = self._fields
        seg.deleted_file = deleted_file
        if deleted_file is None:
            seg.alive, seg.n_deleted = None, 0
        else:
            bits = np.load(self.folder / deleted_file, allow_pickle=False)
            dead = np.unpackbits(bits, count=self.n_docs).astype(bool)
            seg.alive = (~dead).astype(np.uint8)
            seg.n_deleted = int(dead.sum())
        return seg

    @property
    def n_docs(self) -> int:
        return int(self.meta["n_docs"])

    @property
    def n_live(self) -> int:
        return self.n_docs - self.n_deleted

    def verify_ids(self) -> None:
        """Once, before the first id is read: the id files match their recorded sums (a search must not name
        the wrong document); the cost is one read of files ``ids()`` reads whole anyway. It reads the maps taken
        at load, not the paths: a merge in another process may have removed this segment's folder since."""
        if self._ids_ok or not self.sums:
            return
        for name, data in (("ids.bin", self.ids_blob), ("ids_off.npy", self.ids_off_file)):
            want = self.sums.get(name)
            if want and f"{zlib.crc32(memoryview(np.ascontiguousarray(data))):08x}" != want[1]:
                raise self.damaged(name)
        self._ids_ok = True

    def doc_id(self, d: int) -> str:
        if self._ids is not None:  # decoded already (the id map of a snapshot reads them all)
            return self._ids[d]
        self.verify_ids()
        return bytes(self.ids_blob[int(self.ids_off[d]) : int(self.ids_off[d + 1])]).decode("utf-8")

    def ids(self) -> list[str]:
        """All document ids in document order (decoded once, then cached)."""
        if self._ids is None:
            self.verify_ids()
            blob = bytes(self.ids_blob)
            off = self.ids_off.tolist()
            try:
                self._ids = [blob[off[i] : off[i + 1]].decode("utf-8") for i in range(self.n_docs)]
            except UnicodeDecodeError:
                raise self.damaged("ids.bin") from None
        return self._ids

    def record(self, d: int) -> tuple[str | None, dict | None]:
        """(text, metadata) of document ``d``."""
        try:
            return decode_record(self.raw_record(d))
        except (ValueError, TypeError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise self.damaged("store.bin", d) from None

    def damaged(self, name: str, d: int | None = None) -> DataFormatError:
        """The error for a file of this segment found damaged while reading it."""
        doc = "" if d is None else f"document {d}: "
        problem = f"{doc}damaged data; run `spladekit check --deep` and restore from a snapshot"
        return DataFormatError(str(self.folder / name), None, problem)

    def raw_record(self, d: int) -> bytes | None:
        """The stored ``[text, metadata]`` JSON of document ``d`` (None when nothing was stored)."""
        if self.store_off is None:
            return None
        return bytes(self.store_blob[int(self.store_off[d]) : int(self.store_off[d + 1])]) or None

    def field_index(self, name: str) -> dict[str, np.ndarray]:
        """Canonical JSON of a metadata field's value -> document numbers having it (built once per field)."""
        idx = self._fields.get(name)
        if idx is None:
            groups: dict[str, list[int]] = {}
            if self.store_off is not None:
                blob = bytes(self.store_blob)
                off = self.store_off.tolist()
                for d in range(self.n_docs):
                    raw = blob[off[d] : off[d + 1]]
                    if not raw:
                        continue
                    try:
                        meta = json.loads(raw)[1]
                    except (ValueError, TypeError, IndexError, KeyError):
                        raise self.damaged("store.bin", d) from None
                    if isinstance(meta, dict) and name in meta:
                        groups.setdefault(canonical(meta[name]), []).append(d)
            idx = {k: np.asarray(v, np.int64) for k, v in groups.items()}
            self._fields[name] = idx
        return idx

    def vectors(self, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR rows of the documents where ``keep`` is set (used by merges)."""
        return codec.postings_to_csr(
            self.term_ptr,
            self.docs,
            self.win_ptr,
            self.weights,
            self.scales,
            self.n_docs,
            keep.astype(np.uint8),
        )

    def search(self, q_terms, q_weights, allowed, base: int, hs, hd, size: int, k: int) -> int:
        """Push this segment's documents of the exact top ``k`` into the heap ``(hs, hd)`` of ``size`` entries
        (document keys ``base | d``); ``allowed`` is a uint8 mask of searchable documents or None for all."""
        size, _, _ = kernels.search_segment(
            q_terms,
            q_weights,
            self.term_ptr,
            self.win_ptr,
            self.win_max,
            self.win_min,
            self.docs,
            self.weights,
            self.scales,
            self.n_docs,
            _NO_MASK if allowed is None else allowed,
            allowed is not None,
            base,
            hs,
            hd,
            size,
            k,
            True,
        )
        return size

    def search_approx(self, q_terms, q_weights, qd, plan, allowed, base: int, hs, hd, size: int, k: int):
        """``search`` through the approximate structure with ``plan`` (query_terms, heap_factor); a segment
        without one is searched exactly. Returns (new size, entries read)."""
        ax = self.ax
        if ax is None:
            return self.search(q_terms, q_weights, allowed, base, hs, hd, size, k), 0
        return search_approx(
            q_terms,
            q_weights,
            int(plan.query_terms),
            np.float32(plan.heap_factor),
            qd,
            *ax.arrays(),
            self.scales,
            _NO_MASK if allowed is None else allowed,
            allowed is not None,
            base,
            hs,
            hd,
            size,
            k,
        )

    def lex_stats(self) -> tuple[int, int]:
        """(live documents with a BM25 view, their summed length), computed once per set of tombstones."""
        if self._lex_stats is None:
            self._lex_stats = self.lex.stats(self.alive) if self.lex is not None else (0, 0)
        return self._lex_stats

    def doc_weights(self, q_terms, d: int) -> np.ndarray:
        """Document ``d``'s weight of each query term (0 where it lacks the term): what an explanation shows."""
        return kernels.doc_weights(
            q_terms, self.term_ptr, self.win_ptr, self.docs, self.weights, self.scales, d
        )

    def files(self) -> list[Path]:
        return [p for p in self.folder.iterdir() if p.is_file()]


_NO_MASK = np.zeros(0, np.uint8)
