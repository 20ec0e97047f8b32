"""Request and response bodies of the HTTP API (pydantic models; they make the OpenAPI schema at /docs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# ``k`` is checked once, by ``limits.resolve_k`` (at least 1, at most the server's max_k): the schema only
# documents the lower bound, so a request is not checked twice for the same thing.
_K_DOC = {"minimum": 1}


class SparseIn(BaseModel):
    """A sparse vector by term ids: ``indices`` and ``values`` of equal length."""

    indices: list[int]
    values: list[float]


class QueryIn(BaseModel):
    """One query: text (encoded with the index's model) or a vector ({token: weight} or indices/values)."""

    model_config = ConfigDict(extra="forbid")
    query: str | None = Field(None, description="Query text.")
    vector: dict[str, float] | SparseIn | None = Field(
        None, description="{token: weight} or {indices, values}."
    )


class HybridIn(BaseModel):
    """Fusion with the index's BM25 ranking of the same text (see ``spladekit.index.fusion.Hybrid``)."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["rrf", "convex", "linear"] = "rrf"
    k: int = Field(60, description="RRF rank constant.")
    weight: float = Field(0.5, description="convex: share of SPLADE in [0, 1].")
    normalize: Literal["minmax", "l2", "none"] = "minmax"
    depth: int | None = Field(None, description="Hits taken from each run (default max(k, 100)).")


_HYBRID_DOC = (
    'Fuse with BM25 (text queries, an index keeping the BM25 view): "rrf", "convex", true (rrf) or '
    '{"method", "k", "weight", "normalize", "depth"}.'
)
Hybrid = bool | Literal["rrf", "convex", "linear"] | HybridIn | None

# ``approx`` is taken as sent and read by ``index.approx.check_approx`` (the one rule, as ``Index.search`` reads
# it): the schema only documents it, so a bad value gets that rule's message.
_APPROX_DOC = (
    "Approximate search: a recall@k target in (0, 1] against exact search (true = 0.95, false or null = exact), "
    "met through the index's tuning table (`spladekit tune`); scores stay exact; with a filter or hybrid the "
    "search is exact."
)
_APPROX_SCHEMA = {
    "anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": 1}, {"type": "boolean"}, {"type": "null"}]
}


class SearchIn(QueryIn):
    k: int = Field(10, description="Number of hits.", json_schema_extra=_K_DOC)
    filter: dict[str, Any] | None = Field(
        None, description='{"field": value} or {"field": {"$in": [...]}}, ANDed.'
    )
    explain: bool = Field(False, description="Per-term contributions of each hit.")
    with_text: bool = Field(False, description="Return text and metadata of each hit.")
    highlight: bool = Field(
        False, description="Per matching term the document word that gave it its weight, and a snippet."
    )
    hybrid: Hybrid = Field(None, description=_HYBRID_DOC)
    approx: Any = Field(None, description=_APPROX_DOC, json_schema_extra=_APPROX_SCHEMA)


class BatchSearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: list[QueryIn]
    k: int = Field(10, description="Number of hits per query.", json_schema_extra=_K_DOC)
    filter: dict[str, Any] | None = None
    explain: bool = False
    with_text: bool = False
    highlight: bool = False
    hybrid: Hybrid = Field(None, description=_HYBRID_DOC)
    approx: Any = Field(None, description=_APPROX_DOC, json_schema_extra=_APPROX_SCHEMA)


class Term(BaseModel):
    token: str
    query_weight: float
    doc_weight: float
    product: float


class Span(BaseModel):
    start: int
    end: int


class MatchedWord(BaseModel):
    term: str = Field(description="The vocabulary term that matched.")
    score: float = Field(description="Its contribution to the score (query weight x document weight).")
    weight: float = Field(description="The document's weight for the term.")
    start: int | None = Field(None, description="Character span of the word that gave the term its weight.")
    end: int | None = None
    word: str | None = None


class Snippet(BaseModel):
    text: str
    start: int = Field(description="Character span of the snippet in the document text.")
    end: int
    marks: list[list[int]] = Field(description="[start, end) of each matched word, relative to the snippet.")


class Highlights(BaseModel):
    terms: list[MatchedWord]
    snippet: Snippet | None = None


class RunScore(BaseModel):
    rank: int
    score: float
    normalized: float | None = Field(None, description="convex: the score on the fused scale.")


class Hit(BaseModel):
    id: str
    score: float
    text: str | None = None
    metadata: dict[str, Any] | None = None
    explanation: list[Term] | None = None
    passage: Span | None = Field(None, description="Passages index: the best passage's character span.")
    highlights: Highlights | None = None
    hybrid: dict[str, RunScore] | None = Field(
        None,
        description="Hybrid: rank and score in each run (splade, bm25) that has the hit in its top depth.",
    )


class SearchOut(BaseModel):
    hits: list[Hit]
    took_ms: float


class BatchSearchOut(BaseModel):
    results: list[list[Hit]]
    took_ms: float


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(..., min_length=1)
    text: str
    metadata: dict[str, Any] | None = None


class DocumentsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    documents: list[DocumentIn]
    mode: Literal["upsert", "add"] = Field(
        "upsert", description="upsert replaces existing ids; add refuses them."
    )


class DocumentsOut(BaseModel):
    written: int
    documents: int
    took_ms: float


class Document(BaseModel):
    id: str
    text: str | None = None
    metadata: dict[str, Any] | None = None


class EncodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[str] | str
    kind: Literal["query", "document"] = "query"
    top_k: int | None = Field(None, ge=1, description="Keep only the heaviest terms of each vector.")


class EncodeOut(BaseModel):
    vectors: list[dict[str, float]]
