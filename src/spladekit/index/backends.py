"""Which backend an index folder holds (its marker file), and the backend classes, loaded on first use."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError

# The file that marks an index folder, per backend.
MARKERS = {"local": "manifest.json", "qdrant": "qdrant.json"}


def backend_of(path: str | os.PathLike) -> str | None:
    """The backend of the index in ``path``, or None when there is no index there."""
    for name, marker in MARKERS.items():
        if (Path(path) / marker).exists():
            return name
    return None


def is_index_folder(path: str | os.PathLike) -> bool:
    """True when ``path`` holds an index of any backend."""
    return backend_of(path) is not None


def backend_class(name: str):
    if name == "local":
        from .local import LocalIndex

        return LocalIndex
    if name == "qdrant":
        from .qdrant import QdrantIndex

        return QdrantIndex
    raise InputError(f"unknown backend {name!r}: use one of {', '.join(MARKERS)}")
