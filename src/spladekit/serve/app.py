"""`create_app`: the FastAPI app around one index (embedded or Qdrant).

The parts live in rooms of their own: request/response bodies in ``schemas``, limits in ``limits``, query
encoding in ``batching``, the body-size and API-key guards in ``middleware``, the shared state and the write
path in ``service``, the endpoints in ``routes`` and ``search``, the hot path of ``/search`` in ``fastlane``,
worker processes in ``workers``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InputError, SpladekitError, first_line
from .fastlane import FastLane
from .jsonsafe import SafeJSONResponse, safe_validation_errors
from .limits import Limits
from .middleware import ApiKeyGuard, BodyLimit
from .routes import ROUTERS
from .service import LOCK_WAIT, Service


def create_app(
    index: str | os.PathLike | Any,
    *,
    api_key: str | None = None,
    protect: Literal["writes", "all"] = "writes",
    limits: Limits | None = None,
    create: bool = False,
    lock_wait: float = LOCK_WAIT,
) -> FastAPI:
    """A FastAPI app serving ``index`` (an index folder, or an open `Index` / `QdrantIndex`).

    ``api_key``: when set, requests must carry it in the ``X-API-Key`` header: write endpoints only
    (``protect="writes"``) or every endpoint except ``/health`` (``protect="all"``, which also guards the docs).
    ``create``: make an empty embedded index (bundled model) when the folder holds none.
    ``lock_wait``: seconds a write request waits while another process (``spladekit index``) holds the index's
    write lock before answering 503; the server itself holds the lock only while a write request commits.
    """
    from ..index import Index, IndexLockedError, is_index_folder

    if protect not in ("writes", "all"):
        raise InputError(f"protect must be 'writes' or 'all', got {protect!r}")
    limits = limits or Limits()
    limits.check()
    owns = False
    if isinstance(index, (str, os.PathLike)):
        path = Path(index)
        has_index = is_index_folder(path)
        if not has_index and create:
            index = Index.create(path)
            index.release_lock()  # taken by create; write requests take it again, one at a time
        elif not has_index:
            raise InputError(f"{path}: no index here (build one with `spladekit index`, or pass --create)")
        else:
            index = Index.open(path)
        owns = True
    # Service loads the query encoder now: the first requests would otherwise race to load it on several threads
    # (transformers' lazy imports are not thread-safe) and the first user would wait for the model. An
    # inference-free model's is its light table encoder; the document encoder then loads on the first write.
    svc = Service(index, limits, lock_wait=lock_wait)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        svc.close(index_too=owns)

    app = FastAPI(
        lifespan=lifespan,
        title="spladekit",
        version=_version(),
        description="Learned sparse retrieval with SPLADE: search, documents, encoding.",
        default_response_class=SafeJSONResponse,
    )
    app.state.service = svc
    guard = ApiKeyGuard(api_key, protect)
    app.add_middleware(FastLane, svc=svc, guard=guard)  # inside the body limit: it reads bodies too
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    guard.install(app)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        # FastAPI's own handler echoes the input, and NaN/Infinity or a lone surrogate in it made that a 500.
        return SafeJSONResponse({"detail": safe_validation_errors(exc.errors())}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return SafeJSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(SpladekitError)
    async def _user_error(request: Request, exc: SpladekitError):
        if isinstance(exc, IndexLockedError):  # the write path answers 503 itself; this is a safety net
            return SafeJSONResponse(
                {"detail": f"{exc}; retry later"}, status_code=503, headers={"Retry-After": "1"}
            )
        return SafeJSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(OSError)
    async def _storage_error(request: Request, exc: OSError):
        # The disk, not the request: 507 when it is full, else 503 (retry). The client learns what happened to
        # its write, not the server's paths; the log gets the file and the traceback.
        logging.getLogger("spladekit.serve").exception("storage error on %s", request.url.path)
        return storage_error_response(exc)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):
        # One line for the client; the traceback goes to the server log.
        logging.getLogger("spladekit.serve").exception("internal error on %s", request.url.path)
        return SafeJSONResponse(
            {"detail": f"internal error: {type(exc).__name__}: {first_line(exc, 200)}"}, status_code=500
        )

    for routes in ROUTERS:
        app.include_router(routes(svc, guard))
    return app


def storage_error_response(exc: OSError) -> SafeJSONResponse:
    """507 (disk full or over quota) or 503 with Retry-After, saying whether the write landed."""
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    landed = any("in place" in n for n in getattr(exc, "__notes__", []))
    what = exc.strerror or type(exc).__name__
    fate = (
        "the write is committed but may not be durable" if landed else "nothing of this request was committed"
    )
    return SafeJSONResponse(
        {"detail": f"the server could not write to its storage ({what}); {fate}; retry later"},
        status_code=507 if full else 503,
        headers={"Retry-After": "5" if full else "1"},
    )


def _version() -> str:
    from .. import __version__

    return __version__
