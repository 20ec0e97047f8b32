"""The values the index contract hands back: hits, document batches, and its own error."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SpladekitError
from ..sparse import SparseVectors


class IndexLockedError(SpladekitError):
    """A second writer tried to write an index that another writer holds."""


@dataclass
class SearchHit:
    """One search result; text, metadata and explanation are filled on request."""

    id: str
    score: float
    text: str | None = None
    metadata: dict | None = None
    explanation: list[tuple[str, float, float, float]] | None = None  # (token, query w, doc w, product)
    passage: tuple[int, int] | None = None  # passages index: character span of the best passage
    highlights: dict | None = None  # on request: matched words and a snippet (see ``index.highlight``)
    # hybrid search: per run ("splade", "bm25") the hit's rank, score (and normalised score) there, or None
    hybrid: dict | None = None


@dataclass
class DocumentBatch:
    """A batch of stored documents read back: ids, vectors and (when stored) texts and metadata."""

    ids: list[str]
    vectors: SparseVectors
    texts: list[str | None] | None = None
    metadata: list[dict | None] | None = None
