"""`QueryBatcher`: the server's one path for encoding query text, batching the queries of concurrent requests."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

from ..errors import SpladekitError


class QueryBatcher:
    """Encodes the text queries of concurrent requests together, in one background thread.

    Each request thread queues its texts and waits; the worker takes everything queued (up to ``max_batch``)
    and encodes it in one call. Batches form by themselves while the previous one is encoding, so a lone client
    waits for nobody, and under load the per-query cost falls (a batch of 16 short queries costs about a
    quarter of 16 single calls on CPU). ``/search`` and ``/search/batch`` both encode through it.
    """

    def __init__(self, encoder, max_batch: int = 32) -> None:
        self.encoder = encoder
        self.max_batch = max_batch
        self._queue: list[tuple[str, Future]] = []
        self._cond = threading.Condition()
        self._closed = False
        self.calls = 0  # encoder calls and queries encoded, for /stats
        self.queries = 0
        self._thread = threading.Thread(target=self._run, name="spladekit-query-encoder", daemon=True)
        self._thread.start()

    def encode(self, text: str):
        """The 1-row SparseVectors of one query."""
        return self.encode_many([text])[0]

    def encode_many(self, texts: list[str]) -> list:
        """One 1-row SparseVectors per text, in order; queued together so they share encoder calls."""
        return [f.result() for f in self.submit(texts)]

    async def encode_many_async(self, texts: list[str]) -> list:
        """``encode_many`` for a coroutine: the event loop serves other requests while the texts encode."""
        return [await asyncio.wrap_future(f) for f in self.submit(texts)]

    def submit(self, texts: list[str]) -> list[Future]:
        """Queue ``texts`` together; one future per text."""
        futures = [Future() for _ in texts]
        with self._cond:
            if self._closed:
                raise SpladekitError("the server is shutting down")
            self._queue.extend(zip(texts, futures))
            self._cond.notify()
        return futures

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed and not self._queue:
                    return
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                vecs = self.encoder.encode_queries([t for t, _ in batch])
                self.calls += 1
                self.queries += len(batch)
                for i, (_, fut) in enumerate(batch):
                    fut.set_result(vecs[i])
            except BaseException as e:  # noqa: BLE001 - handed to every waiting request
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=10)
