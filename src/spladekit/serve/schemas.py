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


class SearchIn(QueryIn):
    k: int = Field(10, description="Number of hits.", json_schema_extra=_K_DOC)
    filter: dict[str, Any] | None = Field(
        None, description='{"field": value} or {"field": {"$in": [...]}}, ANDed.'
    )
    explain: bool = Field(False, description="Per-term contributions of each hit.")
    with_text: bool = Field(False, description="Return text and metadata of each hit.")


class BatchSearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: list[QueryIn]
    k: int = Field(10, description="Number of hits per query.", json_schema_extra=_K_DOC)
    filter: dict[str, Any] | None = None
    explain: bool = False
    with_text: bool = False


class Term(BaseModel):
    token: str
    query_weight: float
    doc_weight: float
    product: float


class Hit(BaseModel):
    id: str
    score: float
    text: str | None = None
    metadata: dict[str, Any] | None = None
    explanation: list[Term] | None = None


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
