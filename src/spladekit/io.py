"""Atomic file writes, the one implementation every writer uses: write a temporary file next to the target, make
it durable, rename it over the target. Readers see the old file or the new one, never half of one, and a failed
write leaves no temporary file behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file inside ``path`` durable."""
    with naming(path):
        fd = os.open(str(path), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """An OSError raised inside names ``path`` when it names no file: ``os.write`` and ``os.fsync`` errors (a full
    disk, an I/O error) otherwise say only "[Errno 28] No space left on device"."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            e.filename = str(path)
        raise


@contextlib.contextmanager
def atomic_writer(path: str | Path, mode: str = "w", *, durable: bool = False) -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing (text ``"w"`` as UTF-8, or ``"wb"``); on a clean exit
    rename it over ``path`` (after an fsync of the file and the folder when ``durable``); on an error remove it."""
    path = Path(path)
    with naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with naming(path), os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        with naming(path):
            os.replace(tmp, path)
            if durable:
                fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | Path, data: bytes | str, *, durable: bool = False) -> None:
    """Replace ``path`` with ``data`` atomically (see ``atomic_writer``)."""
    with atomic_writer(path, "wb", durable=durable) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
