"""Checks on what callers hand an index, shared by every backend so each rule and its message lives once."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import InputError


def check_ids(ids) -> list[str]:
    """A list of distinct, non-empty string ids."""
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise InputError("ids must be a list of strings")
    seen = set()
    for i, x in enumerate(ids):
        if not isinstance(x, str):
            raise InputError(f"ids must be strings: item {i} is {type(x).__name__} {x!r}")
        if not x:
            raise InputError(f"ids must be non-empty strings (item {i})")
        if x in seen:
            raise InputError(f"duplicate id {x!r} in one call")
        seen.add(x)
    return list(ids)


def check_texts(texts, n: int) -> list[str]:
    """``n`` texts to encode, one per id."""
    if texts is None or isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) != n:
        raise InputError(f"texts must be a list of {n} strings (one per id)")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InputError(f"texts must be strings: item {i} is {type(t).__name__}")
    return list(texts)


def encode_records(ids: list[str], texts, metadata) -> list[bytes | None]:
    """Per document the stored ``[text, metadata]`` as JSON bytes (None when both are absent), so every backend
    stores exactly what a JSON round trip gives back and refuses the same inputs."""
    n = len(ids)
    if texts is not None:
        if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) != n:
            raise InputError(f"texts must be a list of {n} strings (one per id)")
        for i, t in enumerate(texts):
            if t is not None and not isinstance(t, str):
                raise InputError(f"text of id {ids[i]!r} must be a string, got {type(t).__name__}")
    if metadata is not None:
        if isinstance(metadata, Mapping) or not isinstance(metadata, Sequence) or len(metadata) != n:
            raise InputError(f"metadata must be a list of {n} dicts (one per id)")
    out: list[bytes | None] = []
    for i in range(n):
        t = texts[i] if texts is not None else None
        m = metadata[i] if metadata is not None else None
        if m is not None and not isinstance(m, Mapping):
            raise InputError(f"metadata of id {ids[i]!r} must be a dict, got {type(m).__name__}")
        if t is None and m is None:
            out.append(None)
            continue
        try:
            raw = json.dumps([t, dict(m) if m is not None else None], ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise InputError(f"metadata of id {ids[i]!r} is not JSON: {e}") from None
        out.append(raw.encode("utf-8"))
    return out


def decode_record(raw: bytes | None) -> tuple[str | None, dict | None]:
    """``(text, metadata)`` of a record made by ``encode_records``."""
    if not raw:
        return None, None
    text, meta = json.loads(raw)
    return text, meta


def check_k(k) -> int:
    """A positive integer number of results."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    return int(k)
