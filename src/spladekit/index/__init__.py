"""Embedded SPLADE index: editable on-disk segments with exact, pruned top-k search."""

from .core import DocumentBatch, Index, IndexLockedError, SearchHit, approximate_query

__all__ = ["DocumentBatch", "Index", "SearchHit", "IndexLockedError", "approximate_query"]
