"""Guards in front of the routes: the request body size limit and the API key."""

from __future__ import annotations

import hmac
from typing import Literal

from fastapi import Depends, FastAPI, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.datastructures import Headers

from .limits import refuse

API_KEY_HEADER = "X-API-Key"
_KEY_MESSAGE = f"missing or wrong API key (send it in the {API_KEY_HEADER} header)"


class BodyLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` with 413, by Content-Length or while streaming."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"request body is over the limit max_body_bytes={self.max_bytes}"
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    return await JSONResponse({"detail": message}, status_code=413)(scope, receive, send)
        seen = 0
        started = False
        refused = False

        async def counting_receive():
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    # Answer 413 now and tell the app the client went away, so it stops reading.
                    refused = True
                    if not started:
                        await JSONResponse({"detail": message}, status_code=413)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg):
            nonlocal started
            if refused:
                return
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        await self.app(scope, counting_receive, guarded_send)


class ApiKeyGuard:
    """The API key check: route dependencies for reads and writes, and a middleware guarding the docs.

    ``protect="writes"``: only write endpoints need the key; ``"all"``: every endpoint but ``/health``, and the
    OpenAPI schema and docs pages too. The comparison is constant-time (``hmac.compare_digest``).
    """

    def __init__(self, api_key: str | None, protect: Literal["writes", "all"]) -> None:
        self.api_key = api_key
        self.protect = protect
        header = APIKeyHeader(
            name=API_KEY_HEADER, auto_error=False, description="API key (when the server has one)"
        )

        # async: FastAPI runs a sync dependency on its thread pool, a hop that cost more than the check
        async def guard(given: str | None = Security(header)) -> None:
            self.check(given)

        # Reads need the key only with protect="all"; otherwise they carry no dependency at all (solving one
        # costs every request), and their schema asks for no key that would not be checked.
        self.reads = [Depends(guard)] if api_key is not None and protect == "all" else []
        self.writes = [Depends(guard)]

    def matches(self, given: str | None) -> bool:
        if self.api_key is None:
            return True
        if given is None:
            return False
        # surrogatepass: a str that is not valid UTF-8 is refused, not an error
        return hmac.compare_digest(
            given.encode("utf-8", "surrogatepass"), self.api_key.encode("utf-8", "surrogatepass")
        )

    def check(self, given: str | None) -> None:
        if not self.matches(given):
            raise refuse(401, _KEY_MESSAGE)

    def install(self, app: FastAPI) -> None:
        """Guard the docs pages and the OpenAPI schema too, when every endpoint needs the key."""
        if self.api_key is None or self.protect != "all":
            return
        docs = {app.openapi_url, app.docs_url, app.redoc_url, "/docs/oauth2-redirect"}
        app.add_middleware(DocsGuard, guard=self, paths=docs)


class DocsGuard:
    """ASGI middleware: 401 for the docs pages and the schema without the key (other paths pass untouched)."""

    def __init__(self, app, guard: ApiKeyGuard, paths: set) -> None:
        self.app = app
        self.guard = guard
        self.paths = paths

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] in self.paths:
            given = Headers(scope=scope).get(API_KEY_HEADER)
            if not self.guard.matches(given):
                return await JSONResponse({"detail": _KEY_MESSAGE}, status_code=401)(scope, receive, send)
        await self.app(scope, receive, send)
