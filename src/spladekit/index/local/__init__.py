"""The embedded backend: segments on disk, a single writer, atomic commits, exact pruned top-k search."""

from .index import LocalIndex

__all__ = ["LocalIndex"]
