"""Request limits and the checks that enforce them; each refusal names the limit it hit."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from fastapi import HTTPException

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
