"""`FastLane`: ``POST /search`` answered without FastAPI's routing, dependency solving and response objects.

A search takes ~0.1 ms; FastAPI's path around it (route matching through nested routers, solving the body
parameter, exception middleware, building a Response) cost about as much again. The lane sits in front of the
app and answers a plainly valid ``/search`` itself, with the route's own code (``search.search_one``) and the
route's own body model (``SearchIn``). Anything else goes on to the app as it came, the body replayed: another
path or method, a body that is not JSON or that the model refuses, a missing API key, and any refusal or error
while answering, so every error answer (status, message, headers, logging) is the one the route gives.
"""

from __future__ import annotations

import json

from .jsonsafe import JSON
from .middleware import API_KEY_HEADER, ApiKeyGuard
from .schemas import SearchIn
from .search import search_one
from .service import Service

_JSON = JSON.encode()
_HEADERS = [(b"content-type", _JSON)]
_KEY = API_KEY_HEADER.lower().encode()


class FastLane:
    """ASGI middleware: the happy path of ``POST /search`` (see the module docstring)."""

    def __init__(self, app, svc: Service, guard: ApiKeyGuard) -> None:
        self.app = app
        self.svc = svc
        self.guard = guard
        self.needs_key = bool(guard.reads)  # the route checks the key only when reads need it

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != "/search" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        chunks = []
        while True:
            msg = await receive()
            if msg["type"] != "http.request":  # the client left (or the body limit answered): nothing to do
                return
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body", False):
                break
        raw = b"".join(chunks)
        answer = await self._answer(scope, raw)
        if answer is None:
            return await self.app(scope, _replay(raw, receive), send)
        headers = [*_HEADERS, (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    async def _answer(self, scope, raw: bytes) -> bytes | None:
        """The answer, or None when the app should answer instead."""
        ctype = key = None
        for name, value in scope["headers"]:  # the first of each, as the app reads them
            if name == b"content-type" and ctype is None:
                ctype = value
            elif name == _KEY and key is None:
                key = value
        if ctype is None or ctype.split(b";")[0].strip().lower() != _JSON:
            return None
        if self.needs_key and not self.guard.matches(None if key is None else key.decode("latin-1")):
            return None
        try:
            body = SearchIn.model_validate(json.loads(raw))
            return await search_one(self.svc, body, raw)
        except Exception:  # noqa: BLE001 - the app answers it again, with its own error handling
            return None


def _replay(raw: bytes, receive):
    """A ``receive`` that gives the app the body already read, then whatever the client sends next."""
    given = False

    async def again():
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return again
