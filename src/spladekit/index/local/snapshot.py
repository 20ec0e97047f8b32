"""Snapshots of the embedded index: a consistent copy of the last commit, taken while readers and a writer work.

Every file a manifest names is immutable (segment files never change, a commit writes a new tombstone file), so
a snapshot links (or, across filesystems, copies) the files of the current manifest and writes that manifest
last. When a newer commit removes a file before it is linked, the snapshot starts again from the newer manifest.
Restoring is opening the copy.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from pathlib import Path

from ...errors import InputError, SpladekitError
from ...io import atomic_write, fsync_dir
from .integrity import recorded, verify_manifest

ATTEMPTS = 20


def _place(src: Path, dst: Path, link: bool) -> bool:
    """Hard-link ``src`` at ``dst`` (with ``link``), or copy it when links cannot cross; True when linked."""
    if link:
        try:
            os.link(src, dst)
            return True
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
    shutil.copy2(src, dst)
    with open(dst, "rb") as f:
        os.fsync(f.fileno())
    return False


def _files(src: Path, manifest: dict) -> list[str]:
    """Paths (relative) of every file the manifest needs: the vocabulary and each segment's files."""
    out = ["vocab.txt"]
    for e in manifest["segments"]:
        names = list(recorded(e)) if e.get("files") else _listed(src / e["name"], e)
        out.extend(f"{e['name']}/{n}" for n in names)
    return out


def _listed(folder: Path, entry: dict) -> list[str]:
    """Files of a segment whose entry records no checksums (older indexes): its files, this tombstone only."""
    names = [p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("deleted.")]
    if not names:
        raise FileNotFoundError(str(folder))
    return names + ([entry["deleted"]] if entry.get("deleted") else [])


def snapshot(src: Path, out: Path, link: bool = True) -> dict:
    """Copy the last commit of the index at ``src`` into the new folder ``out``; returns what was copied.

    Hard links (``link``, on one filesystem) cost no space and keep the copy safe from later commits, merges and
    deletes, but share the bytes: damage to a file in place shows in both. ``link=False`` copies every file."""
    src, out = Path(src), Path(out)
    if not (src / "manifest.json").is_file():
        raise InputError(f"{src} is not an index folder (no manifest.json)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} exists and is not empty: snapshot into a new or empty folder")
    made = not out.exists()
    try:
        for attempt in range(ATTEMPTS):
            raw = (src / "manifest.json").read_text(encoding="utf-8")
            manifest = json.loads(raw)
            verify_manifest(src / "manifest.json", manifest)
            try:
                linked, total = _copy_files(src, out, manifest, link)
            except FileNotFoundError:  # a newer commit removed a file of this one: start over from it
                for p in out.iterdir():
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
                time.sleep(0.01 * (attempt + 1))
                continue
            atomic_write(out / "manifest.json", raw, durable=True)
            return {
                "path": str(out),
                "generation": manifest["generation"],
                "files": total,
                "linked": linked,
                "documents": sum(e["n_docs"] - e.get("n_deleted", 0) for e in manifest["segments"]),
            }
        raise SpladekitError(f"{src}: the index changed too fast to snapshot; try again")
    except BaseException:
        if made:
            shutil.rmtree(out, ignore_errors=True)
        else:
            for p in out.iterdir():
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        raise


def _copy_files(src: Path, out: Path, manifest: dict, link: bool) -> tuple[int, int]:
    out.mkdir(parents=True, exist_ok=True)
    linked = 0
    files = _files(src, manifest)
    for rel in files:
        dst = out / rel
        dst.parent.mkdir(exist_ok=True)
        linked += _place(src / rel, dst, link)
    for folder in {rel.split("/")[0] for rel in files if "/" in rel}:
        fsync_dir(out / folder)
    fsync_dir(out)
    return linked, len(files)
