"""Request limits and the checks that enforce them; each refusal names the limit it hit."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from fastapi import HTTPException
from pydantic import BaseModel

from ..errors import InputError


@dataclass
class Limits:
    """Request limits; a request over one is refused with 413 (body) or 422 (the rest), naming the limit."""

    max_body_bytes: int = 8 * 1024 * 1024
    max_batch: int = 256
    max_text_chars: int = 20_000
    max_k: int = 1000

    def check(self) -> None:
        """Refuse a limit that is not a positive integer."""
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"limit {name} must be a positive integer, got {value!r}")


def refuse(status: int, message: str) -> HTTPException:
    """An HTTP error whose body is ``{"detail": message}``."""
    return HTTPException(status_code=status, detail=message)


def check_text(text: str, what: str, limits: Limits) -> None:
    if len(text) > limits.max_text_chars:
        raise refuse(
            422, f"{what} has {len(text)} characters; the limit is max_text_chars={limits.max_text_chars}"
        )


def check_unicode(value, what: str) -> None:
    """Refuse text that is not valid Unicode: JSON may carry a lone surrogate (``"\\ud800"``), which the
    tokenizer and the document store cannot take."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise refuse(
                422, f"{what} is not valid Unicode: a lone surrogate at position {e.start} of {value[:40]!r}"
            ) from None
    elif isinstance(value, dict):
        for k, v in value.items():
            check_unicode(k, f"{what} (a key)")
            check_unicode(v, f"{what}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_unicode(v, f"{what}[{i}]")


# What a lone surrogate looks like in a JSON body: a \uD800-\uDFFF escape, or its UTF-8-style bytes (json.loads
# decodes bytes with surrogatepass). A valid pair matches too; then the walk decides.
_SURROGATE_BYTES = re.compile(rb"\\u[dD][89abcdefABCDEF]|\xed[\xa0-\xbf]")


def check_body_unicode(raw: bytes, body: BaseModel) -> None:
    """``check_unicode`` of a body parsed from the JSON bytes ``raw``, walked only when those bytes could hold a
    surrogate (a search of the bytes costs a microsecond, the walk tens)."""
    if (b"\\u" in raw or b"\xed" in raw) and _SURROGATE_BYTES.search(raw):
        check_unicode(body.model_dump(), "request")


def check_batch(n: int, what: str, limits: Limits) -> None:
    if n > limits.max_batch:
        raise refuse(422, f"{n} {what} in one request; the limit is max_batch={limits.max_batch}")
    if n == 0:
        raise refuse(422, f"no {what} given")


def resolve_k(body, limits: Limits) -> int:
    """The one check of a search request's ``k``: at least 1; the default shrinks to ``max_k``, an explicit k
    over it is refused."""
    if "k" not in body.model_fields_set:
        return min(body.k, limits.max_k)
    if body.k < 1:
        raise refuse(422, f"k must be at least 1, got {body.k}")
    if body.k > limits.max_k:
        raise refuse(422, f"k={body.k} is over the limit max_k={limits.max_k}")
    return body.k
