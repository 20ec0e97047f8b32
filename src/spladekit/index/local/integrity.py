"""Checksums and verification of the embedded index.

A commit records, per segment entry of ``manifest.json``, ``"files"``: file name -> ``[size, crc32]`` for every
file of the segment (written once, segments are immutable) and ``"deleted_sum"`` for its tombstone file; the
manifest records ``"vocab_sum"`` for ``vocab.txt`` and ``"checksum"``: the CRC-32 of its own canonical JSON
without that field. CRC-32 (``zlib``, about 2.5 GB/s on one core) detects every error of up to 32 consecutive
bits, so any one damaged byte. Indexes written before checksums open as before: their sums are "not recorded".

Opening verifies the cheap part (`verify_manifest`, `verify_sizes`); `check_index` verifies everything.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numba as nb
import numpy as np

from ...errors import DataFormatError
from .approx_files import structure_problem
from .codec import GAP_MIN, SKIP, WINDOW

CHUNK = 1 << 20
TOMBSTONE_PREFIX = "deleted."


# ---------------------------------------------------------------------- sums
def file_sum(path: Path) -> list:
    """``[size, crc32 as 8 hex digits]`` of a file, read in 1 MiB chunks."""
    crc, size = 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return [size, f"{crc:08x}"]


def folder_sums(folder: Path) -> dict[str, list]:
    """Sums of every file of a new segment folder (tombstones are recorded apart, per commit)."""
    return {
        p.name: file_sum(p)
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(TOMBSTONE_PREFIX)
    }


def manifest_sum(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return f"{zlib.crc32(json.dumps(body, sort_keys=True).encode()):08x}"


def seal(manifest: dict) -> dict:
    """The manifest with its ``"checksum"`` (over every other field)."""
    return {**{k: v for k, v in manifest.items() if k != "checksum"}, "checksum": manifest_sum(manifest)}


# ---------------------------------------------------------------------- cheap verification (on open)
def verify_manifest(path: Path, manifest: dict) -> None:
    """Raise `DataFormatError` when the manifest's recorded checksum does not match its content."""
    want = manifest.get("checksum")
    if want is not None and want != manifest_sum(manifest):
        raise DataFormatError(
            str(path), None, "damaged manifest (checksum mismatch); restore it from a snapshot"
        )


def _size_problem(path: Path, want: list) -> str | None:
    try:
        size = path.stat().st_size
    except OSError:
        return "missing file named by the manifest"
    if size != want[0]:
        return f"size {size} bytes, the manifest records {want[0]} (truncated or damaged)"
    return None


def recorded(entry: dict) -> dict[str, list]:
    """File name -> recorded sum of a segment entry (its files and its tombstone file)."""
    sums = dict(entry.get("files") or {})
    if entry.get("deleted") and entry.get("deleted_sum"):
        sums[entry["deleted"]] = entry["deleted_sum"]
    return sums


def verify_sizes(folder: Path, entry: dict) -> None:
    """Raise `DataFormatError` naming the first file of a segment that is missing or has the wrong size; the
    tombstone file, read whole on open anyway, must match its sum too."""
    for name, want in recorded(entry).items():
        verify_file(folder / name, want, whole=name.startswith(TOMBSTONE_PREFIX))


def verify_file(path: Path, want: list, whole: bool = True) -> None:
    """Raise `DataFormatError` when a file is missing, has the wrong size, or (``whole``) the wrong sum."""
    problem = _size_problem(path, want)
    if problem is None and whole and file_sum(path)[1] != want[1]:
        problem = "checksum mismatch (damaged file)"
    if problem:
        raise DataFormatError(str(path), None, problem)


# ---------------------------------------------------------------------- deep verification
@dataclass
class CheckReport:
    """What `check_index` found: ``problems`` (one line each, naming the file) and ``notes`` (not damage)."""

    path: str
    deep: bool
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def bad(self, where, problem: str) -> None:
        self.problems.append(f"{where}: {problem}")


def _check_file(rep: CheckReport, path: Path, want: list | None) -> None:
    if want is None:
        return
    problem = _size_problem(path, want)
    if problem is None and rep.deep:
        got = file_sum(path)
        rep.bytes += got[0]
        if got[1] != want[1]:
            problem = f"checksum mismatch (crc32 {got[1]}, the manifest records {want[1]})"
    rep.files += 1
    if problem:
        rep.bad(path, problem)


def check_index(path: Path, deep: bool = False) -> CheckReport:
    """Verify an index folder's committed state: the manifest, sizes of every file it names, and with ``deep``
    every checksum and the structure of every segment (postings, ids, tombstones, document store)."""
    from .segment import FORMAT

    path = Path(path)
    rep = CheckReport(str(path), deep)
    mpath = path / "manifest.json"
    try:
        raw = mpath.read_text(encoding="utf-8")
        manifest = json.loads(raw)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        rep.bad(mpath, f"unreadable manifest ({e})")
        return rep
    if not isinstance(manifest, dict) or not isinstance(manifest.get("segments"), list):
        rep.bad(mpath, "not an index manifest")
        return rep
    if "checksum" not in manifest:
        rep.notes.append(f"{mpath}: checksum not recorded (written by an older spladekit)")
    elif manifest["checksum"] != manifest_sum(manifest):
        rep.bad(mpath, "checksum mismatch (damaged manifest)")
        return rep
    elif deep and json.dumps(manifest, indent=1) != raw:
        rep.bad(mpath, "bytes differ from the recorded content (damaged whitespace)")
    if "vocab_sum" in manifest:
        _check_file(rep, path / "vocab.txt", manifest["vocab_sum"])
    else:
        rep.notes.append(f"{path / 'vocab.txt'}: checksum not recorded")
    live_ids: dict[str, str] = {}
    for entry in manifest["segments"]:
        folder = path / str(entry.get("name"))
        sums = recorded(entry)
        if not entry.get("files"):
            rep.notes.append(f"{folder}: segment checksums not recorded")
        for name, want in sums.items():
            _check_file(rep, folder / name, want)
        if entry.get("deleted") and not entry.get("deleted_sum"):
            rep.notes.append(f"{folder / entry['deleted']}: checksum not recorded")
        if deep:
            try:
                _check_segment(rep, folder, entry, manifest, live_ids, FORMAT)
            except Exception as e:  # noqa: BLE001 - whatever breaks, name the segment and go on
                rep.bad(folder, f"could not be checked ({type(e).__name__}: {e})")
    return rep


def _load(rep: CheckReport, path: Path) -> np.ndarray | None:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        rep.bad(path, f"unreadable array ({e})")
        return None


def _check_offsets(rep: CheckReport, path: Path, off: np.ndarray, n: int, blob_size: int) -> bool:
    if off.ndim != 1 or len(off) != n + 1:
        rep.bad(path, f"{len(off)} offsets for {n} documents")
        return False
    o = off.astype(np.int64)
    if n >= 0 and (o[0] != 0 or (np.diff(o) < 0).any() or o[-1] != blob_size):
        rep.bad(path, f"offsets not monotone from 0 to the blob size {blob_size}")
        return False
    return True


def _check_segment(rep, folder: Path, entry: dict, manifest: dict, live_ids: dict, fmt: int) -> None:
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        rep.bad(folder / "meta.json", f"unreadable segment metadata ({e})")
        return
    n, dim, nw = meta.get("n_docs"), manifest.get("dim"), meta.get("n_windows")
    if meta.get("format") != fmt:
        rep.bad(folder / "meta.json", f"segment format {meta.get('format')}, expected {fmt}")
        return
    for key in ("n_docs", "nnz"):
        if meta.get(key) != entry.get(key):
            rep.bad(folder / "meta.json", f"{key} {meta.get(key)} but the manifest says {entry.get(key)}")
    if meta.get("dim") != dim or bool(meta.get("compact")) != bool(manifest.get("compact")):
        rep.bad(folder / "meta.json", "dim or compact mode differs from the manifest")
        return
    if not isinstance(n, int) or not isinstance(nw, int) or nw != max(1, -(-n // WINDOW)):
        rep.bad(folder / "meta.json", f"inconsistent counts (n_docs {n}, n_windows {nw})")
        return
    # tombstones
    alive = np.ones(n, bool)
    if entry.get("deleted"):
        tp = folder / entry["deleted"]
        bits = _load(rep, tp)
        if bits is not None:
            if bits.dtype != np.uint8 or bits.shape != ((n + 7) // 8,):
                rep.bad(tp, f"{bits.shape} {bits.dtype} tombstone bits for {n} documents")
            else:
                alive = ~np.unpackbits(np.asarray(bits), count=n).astype(bool)
                if int(n - alive.sum()) != entry.get("n_deleted"):
                    rep.bad(tp, f"{int(n - alive.sum())} deleted, the manifest says {entry.get('n_deleted')}")
                if not alive.any():
                    rep.bad(tp, "every document deleted, yet the segment is listed")
    # ids: every live document reachable by a unique id
    blob_p, off_p = folder / "ids.bin", folder / "ids_off.npy"
    off = _load(rep, off_p)
    if off is not None and blob_p.exists():
        blob = blob_p.read_bytes()
        if _check_offsets(rep, off_p, off, n, len(blob)):
            o = off.astype(np.int64).tolist()
            seen: set[str] = set()
            for d in range(n):
                try:
                    x = blob[o[d] : o[d + 1]].decode("utf-8")
                except UnicodeDecodeError:
                    rep.bad(blob_p, f"document {d}: id is not UTF-8")
                    continue
                if not alive[d]:
                    continue
                if x in seen or x in live_ids:
                    rep.bad(blob_p, f"id {x!r} is live twice (also in {live_ids.get(x, folder.name)})")
                seen.add(x)
                live_ids[x] = folder.name
    elif off is not None:
        rep.bad(blob_p, "missing")
    # document store
    if meta.get("has_store"):
        sp, so = folder / "store.bin", folder / "store_off.npy"
        off = _load(rep, so)
        if off is not None and sp.exists():
            blob = sp.read_bytes()
            if _check_offsets(rep, so, off, n, len(blob)):
                o = off.astype(np.int64).tolist()
                for d in range(n):
                    raw = blob[o[d] : o[d + 1]]
                    if raw and not _record_ok(raw):
                        rep.bad(sp, f"document {d}: record is not [text, metadata] JSON")
        elif off is not None:
            rep.bad(sp, "missing")
    _check_postings(rep, folder, meta, dim, n, nw)
    if meta.get("approx"):
        problem = structure_problem(
            folder,
            lambda p: _load(rep, p),
            n,
            dim,
            meta.get("nnz"),
            bool(meta.get("compact")),
            meta["approx"].get("summaries"),
        )
        if problem:
            rep.problems.append(problem)


def _record_ok(raw: bytes) -> bool:
    try:
        r = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return (
        isinstance(r, list)
        and len(r) == 2
        and isinstance(r[0], (str, type(None)))
        and isinstance(r[1], (dict, type(None)))
    )


WALK_PROBLEMS = {  # _walk's codes: (file, problem)
    1: ("win_ptr.npy", "window pointers inconsistent with the term's postings"),
    2: ("docs.npy", "container overruns the term's units"),
    3: ("docs.npy", "document offsets not ascending or past the segment's documents"),
    4: ("docs.npy", "byte-gap container or its skip table inconsistent"),
    5: ("weights.npy", "weight not finite or outside the window's recorded bounds"),
}


def _check_postings(rep, folder: Path, meta: dict, dim: int, n: int, nw: int) -> None:
    compact = bool(meta.get("compact"))
    shapes = {"term_ptr": (2, dim + 1), "win_ptr": (dim, nw + 1), "win_max": (dim, nw), "docs": None}
    shapes.update({"weights": None, **({"scales": (dim,)} if compact else {})})
    shapes.update({"win_min": (dim, nw)} if (folder / "win_min.npy").exists() else {})
    a = {}
    for name, shape in shapes.items():
        if (arr := _load(rep, folder / f"{name}.npy")) is None:
            return
        if shape is not None and arr.shape != shape:
            return rep.bad(folder / f"{name}.npy", f"shape {arr.shape}, expected {shape}")
        a[name] = arr
    tp, docs, weights = np.asarray(a["term_ptr"], np.int64), a["docs"], a["weights"]
    scales = np.asarray(a.get("scales", np.ones(dim)), np.float32)
    if docs.dtype != np.uint16 or docs.ndim != 1:
        return rep.bad(folder / "docs.npy", f"dtype {docs.dtype}, expected uint16")
    if weights.ndim != 1 or weights.dtype != (np.uint8 if compact else np.float32):
        return rep.bad(folder / "weights.npy", f"dtype {weights.dtype} does not fit the compact mode")
    p = folder / "term_ptr.npy"
    if (np.diff(tp, axis=1) < 0).any() or tp[0, 0] != 0 or tp[1, 0] != 0:
        return rep.bad(p, "term pointers not monotone from 0")
    if tp[0, -1] != len(weights) or tp[0, -1] != meta.get("nnz") or tp[1, -1] != len(docs):
        return rep.bad(p, f"pointers end at {tp[:, -1].tolist()}: {len(weights)} weights, {len(docs)} units")
    if not np.isfinite(scales).all() or (scales < 0).any():
        return rep.bad(folder / "scales.npy", "non-finite or negative scales")
    code, t = _walk(
        tp,
        np.asarray(a["win_ptr"], np.int64),
        np.ascontiguousarray(docs),
        np.asarray(weights, np.float32),
        scales,
        scales * (0.5 if compact else 0.0),  # 8-bit weights round to the nearest step
        np.asarray(a["win_max"], np.float32),
        np.asarray(a.get("win_min", np.zeros((dim, nw))), np.float32),
        n,
    )
    if code:
        file, problem = WALK_PROBLEMS[code]
        rep.bad(folder / file, f"{problem} (term {t})")


@nb.njit(cache=True, nogil=True)
def _walk(tp, win_ptr, docs16, weights, scales, slack, win_max, win_min, n_docs):
    """Walk every container with bounds checks: (0, 0) when sound, else (problem code, term)."""
    dim = tp.shape[1] - 1
    nw = win_ptr.shape[1] - 1
    for t in range(dim):
        s0 = tp[0, t]
        if win_ptr[t, 0] != 0 or win_ptr[t, nw] != tp[0, t + 1] - s0:
            return 1, t
        pos = tp[1, t]
        end = tp[1, t + 1]
        for w in range(nw):
            cnt = win_ptr[t, w + 1] - win_ptr[t, w]
            if cnt < 0:
                return 1, t
            if cnt == 0:
                continue
            base = w * WINDOW
            if cnt >= GAP_MIN:
                if pos >= end:
                    return 2, t
                nsk = (cnt + SKIP - 1) // SKIP
                nb_ = cnt + np.int64(docs16[pos])
                size = 1 + 2 * nsk + (nb_ + 1) // 2
                if pos + size > end:
                    return 2, t
                by = docs16[pos + 1 + 2 * nsk : pos + size].view(np.uint8)
                d = np.int64(-1)
                j = 0
                esc = 0
                for b in range(nb_):
                    g = by[b]
                    if g == 0:
                        d += 255
                        esc += 1
                        continue
                    d += g
                    if j >= cnt:
                        return 4, t
                    if j % SKIP == 0:
                        k = pos + 1 + 2 * (j // SKIP)
                        if np.int64(docs16[k]) != d or np.int64(docs16[k + 1]) != esc:
                            return 4, t
                    j += 1
                if j != cnt or d >= WINDOW or base + d >= n_docs:
                    return 4, t
                pos += size
            else:
                if pos + cnt > end:
                    return 2, t
                prev = np.int64(-1)
                for j in range(cnt):
                    o = np.int64(docs16[pos + j])
                    if o <= prev:
                        return 3, t
                    prev = o
                if base + prev >= n_docs:
                    return 3, t
                pos += cnt
            hi = win_max[t, w] + slack[t] + 1e-6 * abs(win_max[t, w])
            lo = win_min[t, w] - 1e-6 * abs(win_min[t, w])
            for q in range(s0 + win_ptr[t, w], s0 + win_ptr[t, w + 1]):
                x = weights[q] * scales[t]
                if not np.isfinite(x) or x > hi or x < lo:
                    return 5, t
        if pos != end:
            return 2, t
    return 0, 0
