"""Between spladekit and Qdrant: point ids, sparse vectors, filters and client connections."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, first_line
from .filters import parse_filter
from .types import SearchHit

VECTOR = "splade"
_NS = uuid.UUID("6b0c7c43-5f0e-4b1c-9d56-2b7a4c1e8f10")  # fixed namespace: the same id maps to the same point
_FIELD_NAME = re.compile(r"[.\[\]\"]")


def point_id(doc_id: str) -> str:
    """The Qdrant point id (a UUID) of a document id (Qdrant accepts only integers and UUIDs)."""
    return str(uuid.uuid5(_NS, doc_id))


def qdrant_sparse(indices: np.ndarray, values: np.ndarray):
    """A Qdrant sparse vector with term ids sorted and unique (Qdrant keeps duplicates silently) and float32 weights."""
    from qdrant_client import models

    idx = np.asarray(indices, np.int64)
    val = np.asarray(values, np.float32)
    if len(idx) and np.any(np.diff(idx) <= 0):
        uniq, inv = np.unique(idx, return_inverse=True)
        summed = np.zeros(len(uniq), np.float32)
        np.add.at(summed, inv, val)
        idx, val = uniq, summed
    keep = val != 0
    return models.SparseVector(indices=idx[keep].tolist(), values=val[keep].tolist())


def _condition(name: str, value: Any):
    from qdrant_client import models

    key = f"metadata.{name}"
    if isinstance(value, bool) or isinstance(value, (str, int)):
        return models.FieldCondition(key=key, match=models.MatchValue(value=value))
    if isinstance(value, float):
        return models.FieldCondition(key=key, range=models.Range(gte=value, lte=value))
    raise InputError(f"filter on {name!r}: the qdrant backend filters on strings, numbers and booleans only")


def check_field_name(name: str) -> None:
    """Qdrant payload keys are paths: a metadata field name must not contain . [ ] or quotes."""
    if _FIELD_NAME.search(name):
        raise InputError(
            f"filter field {name!r}: field names must be non-empty strings without . [ ] or quotes"
        )


def to_qdrant_filter(filter: Mapping | None):
    """A spladekit filter (validated by ``filters.parse_filter``, the rule every backend shares) as a Qdrant
    ``Filter`` on ``metadata.<field>``: fields ANDed, the values of one field ORed."""
    from qdrant_client import models

    if filter is None:
        return None
    parse_filter(filter)
    must = []
    for name, cond in filter.items():
        check_field_name(name)
        vals = list(cond["$in"]) if isinstance(cond, Mapping) else [cond]
        if vals and (
            all(isinstance(v, str) for v in vals)
            or all(isinstance(v, int) and not isinstance(v, bool) for v in vals)
        ):
            must.append(models.FieldCondition(key=f"metadata.{name}", match=models.MatchAny(any=vals)))
        elif len(vals) == 1:
            must.append(_condition(name, vals[0]))
        else:
            # Mixed types (or none): any one of the equalities; an empty list matches nothing.
            should = [_condition(name, v) for v in vals]
            must.append(models.Filter(should=should) if should else models.HasIdCondition(has_id=[]))
    return models.Filter(must=must)


def connect(path: Path, config: dict, api_key: str | None):
    """A client for the collection ``config`` describes: a server (``url``) or embedded storage in ``path``."""
    from qdrant_client import QdrantClient

    try:
        if config.get("url"):
            return QdrantClient(url=config["url"], api_key=api_key or os.environ.get("QDRANT_API_KEY"))
        return QdrantClient(path=str(path / (config.get("local_path") or "qdrant_data")))
    except Exception as e:  # noqa: BLE001 - e.g. the local storage is locked by another process
        where = config.get("url") or path / (config.get("local_path") or "qdrant_data")
        raise InputError(f"cannot open Qdrant at {where} ({first_line(e)})") from None


def collection_name(path: Path) -> str:
    """The default collection name of an index folder."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", path.resolve().name).strip("_") or "index"
    return f"spladekit_{name}"


def points_to_hits(points, q_terms, q_weights, vocab: list[str] | None, with_text: bool) -> list[SearchHit]:
    """Qdrant's scored points as hits; with ``vocab``, each explained by its matching terms (the points must
    carry their vectors). Like the embedded index, only documents that share a term with the query count."""
    hits = []
    for p in points:
        if p.score <= 0:
            continue
        payload = p.payload or {}
        hit = SearchHit(payload.get("_id", str(p.id)), float(p.score))
        if with_text:
            hit.text, hit.metadata = payload.get("text"), payload.get("metadata")
        if vocab is not None:
            sv = (p.vector or {}).get(VECTOR)
            dw = dict(zip(sv.indices, sv.values)) if sv is not None else {}
            rows = [
                (vocab[int(t)], float(q), float(dw[int(t)]), float(np.float32(q) * np.float32(dw[int(t)])))
                for t, q in zip(q_terms, q_weights)
                if int(t) in dw
            ]
            hit.explanation = sorted(rows, key=lambda r: -r[3])
        hits.append(hit)
    return hits
