"""JSON answers that always serialise: non-finite floats become strings, text is sent ASCII-escaped (a lone
surrogate in an id or an echoed input cannot be encoded as UTF-8, and made the default response a 500).

``dumps`` is the one serialiser: the C encoder straight away, and ``json_safe`` first only when the content has
a non-finite float (or a key the encoder refuses), so the common answer costs one ``json.dumps``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

JSON = "application/json"
_encode = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by its name ("nan", "inf", "-inf")."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps(content: Any) -> bytes:
    """``content`` as compact ASCII JSON, non-finite floats as their names."""
    try:
        return _encode(content).encode("ascii")
    except (ValueError, TypeError):  # NaN/Infinity, or a key that is not a str/int/float/bool/None
        return _encode(json_safe(content)).encode("ascii")


def safe_validation_errors(errors) -> list[dict]:
    """Pydantic's errors as FastAPI sends them (loc, msg, type, input, ctx), made serialisable."""
    out = []
    for e in errors:
        e = dict(e)
        e.pop("url", None)
        try:
            e = jsonable_encoder(e)
        except Exception:  # noqa: BLE001 - an input the encoder cannot take: drop it, keep the message
            e = {k: v for k, v in e.items() if k in ("loc", "msg", "type")}
            e = jsonable_encoder(e)
        out.append(json_safe(e))
    return out


class SafeJSONResponse(JSONResponse):
    """A JSONResponse that escapes non-ASCII text and never fails on NaN/Infinity or lone surrogates."""

    def render(self, content: Any) -> bytes:
        return dumps(content)
