"""Metadata filters: the one parser every backend and the CLI use, so a bad filter gets the same message
everywhere, before any model is loaded or any query encoded."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from ..errors import InputError


def canonical(value) -> str:
    """A hashable key for a JSON value, so filters compare values as JSON does (key order ignored)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


FILTER_HELP = '{"field": value} or {"field": {"$in": [v1, v2]}}'


def parse_filter(filter) -> list[tuple[str, list[str]]]:
    """A filter dict as [(field, [canonical values])]: conditions are ANDed, the values of one field ORed."""
    if not isinstance(filter, Mapping):
        raise InputError(f"filter must be a dict like {FILTER_HELP}")
    out = []
    for name, cond in filter.items():
        if not isinstance(name, str) or not name:
            raise InputError(f"filter field names must be non-empty strings, got {name!r}")
        if isinstance(cond, Mapping):
            if set(cond) != {"$in"}:
                raise InputError(
                    f"filter on {name!r}: only equality and {{'$in': [...]}} are supported, got {dict(cond)}"
                )
            vals = cond["$in"]
            if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence):
                raise InputError(f"filter on {name!r}: '$in' needs a list of values")
        else:
            vals = [cond]
        try:
            out.append((name, [canonical(v) for v in vals]))
        except (TypeError, ValueError):
            raise InputError(f"filter on {name!r}: values must be JSON values") from None
    return out


def filter_from_args(items: Sequence[str] | None) -> dict | None:
    """CLI ``key=value`` items into a filter dict; a value that parses as JSON is used as such (``year=2020`` is
    an integer); a key given several times matches any of its values. Validated here, before any model loads."""
    if not items:
        return None
    values: dict[str, list] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--filter expects key=value, got {item!r}")
        if raw.startswith("="):
            raise InputError(f"--filter {item!r}: use a single '=' ({key}={raw.lstrip('=')})")
        try:
            val = json.loads(raw)
        except json.JSONDecodeError:
            val = raw
        values.setdefault(key.strip(), []).append(val)
    flt = {k: v[0] if len(v) == 1 else {"$in": v} for k, v in values.items()}
    parse_filter(flt)
    return flt
