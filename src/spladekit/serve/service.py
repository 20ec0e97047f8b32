"""`Service`: what the endpoints share: the index, the query batcher, the write path, refreshes and counters.

Sharing an index with other writers: the server holds the index's write lock only while a write request
applies and commits (``Index.writing``), so ``spladekit index`` can add to a served index between requests.
A write that finds another writer holding the lock waits up to ``lock_wait`` seconds, then answers 503 with
that writer's pid. Reads pick up other writers' commits: each read request first checks (one ``os.stat`` of the
manifest, about a microsecond) whether the index changed, and refreshes if so. Looking on every request, not
every so often, is what makes a write acknowledged by one worker process (or by ``spladekit index``) visible
to the very next request that any worker answers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator

from fastapi import HTTPException

from ..errors import SpladekitError
from .batching import QueryBatcher
from .limits import Limits

LOCK_WAIT = 10.0  # seconds a write request waits for another writer's lock

log = logging.getLogger("spladekit.serve")


class Service:
    """The index plus the query batcher, the write path and the counters the endpoints share.

    Searches read an immutable snapshot of the committed segments (the index swaps segments and id map in one
    step), so they take no lock and never see a half-written document. This process's writes go one at a time
    (``write_lock``); documents are encoded before it, outside every lock.
    """

    def __init__(self, index, limits: Limits, *, lock_wait: float = LOCK_WAIT) -> None:
        self.index = index
        self.limits = limits
        self.lock_wait = lock_wait
        # Text queries: an inference-free model's table lookup runs inline with its light (numpy) encoder, so
        # the server never loads torch for them; a masked-LM query side goes through the batcher and the torch
        # encoder (batched, ~10x faster a query than the numpy forward pass).
        self.inline_queries = table_queries(index)
        self.query_encoder = index.query_encoder if self.inline_queries else index.encoder
        self.batcher = QueryBatcher(self.query_encoder)
        self.write_lock = threading.Lock()
        self.started = time.time()
        self.counts: dict[str, int] = {}
        self._count_lock = threading.Lock()

    def count(self, name: str) -> None:
        with self._count_lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def maybe_refresh(self) -> None:
        """See commits of other writers and workers: refresh when the manifest changed since the last look."""
        try:
            self.index.refresh_if_changed()  # every backend has it (Qdrant: nothing to do)
        except SpladekitError as e:  # keep serving the commit in hand; the next request tries again
            log.warning("could not refresh the index: %s", e)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """One write request: takes the index's write lock, starting from the latest commit; commits and lets
        the lock go at the end, discards the changes on an error. Waits at most ``lock_wait`` seconds in all
        (for this server's earlier writes, then for another writer), then answers 503 naming who holds it."""
        from ..index import IndexLockedError

        deadline = time.monotonic() + self.lock_wait
        if not self.write_lock.acquire(timeout=max(0.0, self.lock_wait)):
            raise _busy(
                f"earlier write requests to this server (pid {os.getpid()}) are running", self.lock_wait
            )
        try:
            try:  # every backend has `writing` (Qdrant: no lock, the commit at the end is a no-op)
                with self.index.writing(wait=max(0.0, deadline - time.monotonic())):
                    yield
            except IndexLockedError as e:
                raise _busy(
                    f"another writer (pid {getattr(e, 'holder', 'unknown')}) is writing the index",
                    self.lock_wait,
                ) from None
        finally:
            self.write_lock.release()

    def close(self, index_too: bool) -> None:
        self.batcher.close()
        if index_too:
            self.index.close()


def table_queries(index) -> bool:
    """Whether the index's model queries by table lookup (an inference-free model)."""
    return (index.model.get("query_side") or {}).get("kind") == "table"


def _busy(why: str, waited: float) -> HTTPException:
    return HTTPException(503, f"{why}, still after {waited:g} s; retry later", headers={"Retry-After": "1"})
