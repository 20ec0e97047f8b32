"""Embedded SPLADE index: editable on-disk segments with exact, pruned top-k search."""

from .core import Index, IndexLockedError, SearchHit, approximate_query

__all__ = ["Index", "SearchHit", "IndexLockedError", "approximate_query"]
