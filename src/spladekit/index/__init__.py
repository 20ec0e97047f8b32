"""The index: one contract (``Index``), two backends beneath it (``local``: embedded segments with exact, pruned
top-k search; ``qdrant``: a Qdrant collection), chosen by ``Index.create(path, backend=...)`` and found by
``Index.open(path)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .approx import Plan, check_approx
from .base import Index, backend_of, is_index_folder
from .types import DocumentBatch, IndexLockedError, SearchHit

if TYPE_CHECKING:  # pragma: no cover
    from .local.index import LocalIndex
    from .qdrant import QdrantIndex

__all__ = [
    "DocumentBatch",
    "Index",
    "IndexLockedError",
    "LocalIndex",
    "Plan",
    "QdrantIndex",
    "SearchHit",
    "backend_of",
    "check_approx",
    "is_index_folder",
]


def __getattr__(name: str) -> Any:
    """The backends load on first use (the Qdrant one imports qdrant-client)."""
    if name == "LocalIndex":
        from .local.index import LocalIndex

        return LocalIndex
    if name == "QdrantIndex":
        from .qdrant import QdrantIndex

        return QdrantIndex
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
