"""A lean HTTP/1.1 load generator for ``bench/serve.py``: keep-alive connections driven by asyncio protocol
callbacks, one prepared request per body, responses parsed only as far as status and Content-Length.

On a 2-core machine the clients share the CPUs with the server, so what a client spends per request is taken
from the server: a thread per client with httpx spent ~0.3 ms of CPU per request (more than the server's own
work on a vector query), these callbacks spend a few tens of microseconds. Each level reports the client's CPU
per request, so a reader can see that the load generator was not the bottleneck.
"""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np


def prepare(path: str, bodies: list[dict], host: str = "127.0.0.1") -> list[bytes]:
    """One ready-to-send POST request per JSON body."""
    out = []
    for b in bodies:
        data = json.dumps(b, separators=(",", ":")).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(data)}\r\n\r\n"
        )
        out.append(head.encode() + data)
    return out


class _Conn(asyncio.Protocol):
    """One keep-alive connection: sends the next request as soon as the previous answer is complete."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.buf = bytearray()
        self.need = -1  # bytes of the whole answer once its head is parsed
        self.status = 0
        self.body_at = 0
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.send_next()

    def send_next(self) -> None:
        req = self.run.next_request()
        if req is None:
            self.transport.close()
            return
        self.sent_at = time.perf_counter()
        self.transport.write(req)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buf[:end]).lower().split(b"\r\n")
            self.status = int(lines[0][9:12])
            length = [v for k, _, v in (x.partition(b":") for x in lines[1:]) if k == b"content-length"]
            if not length:
                self.run.fail(f"{self.status} answer without content-length")
                self.transport.close()
                return
            self.body_at = end + 4
            self.need = self.body_at + int(length[0])
        if len(self.buf) < self.need:
            return
        self.run.done(
            self.status, time.perf_counter() - self.sent_at, bytes(self.buf[self.body_at : self.need])
        )
        del self.buf[: self.need]
        self.need = -1
        self.send_next()

    def connection_lost(self, exc) -> None:
        self.run.closed(self, exc)


class _Run:
    """The shared budget of a level (requests and time), the latencies and the errors."""

    def __init__(self, requests: list[bytes], max_requests: int, max_seconds: float, expect: bytes) -> None:
        self.requests = requests
        self.max_requests = max_requests
        self.deadline = time.perf_counter() + max_seconds
        self.expect = expect
        self.started = 0
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.open = 0
        self.finished: asyncio.Future | None = None

    def next_request(self) -> bytes | None:
        if self.started >= self.max_requests or time.perf_counter() > self.deadline:
            return None
        self.started += 1
        return self.requests[(self.started - 1) % len(self.requests)]

    def done(self, status: int, seconds: float, body: bytes) -> None:
        if status == 200 and body.startswith(self.expect):
            self.latencies.append(seconds)
        else:
            self.fail(f"{status} {body[:200]!r}")

    def fail(self, why: str) -> None:
        self.errors.append(why)

    def closed(self, conn: _Conn, exc) -> None:
        if exc is not None:
            self.fail(f"connection lost: {exc!r}")
        self.open -= 1
        if self.open == 0 and not self.finished.done():
            self.finished.set_result(None)


async def _level(host: str, port: int, run: _Run, clients: int) -> None:
    loop = asyncio.get_running_loop()
    run.finished = loop.create_future()
    run.open = clients
    for _ in range(clients):
        await loop.create_connection(lambda: _Conn(run), host, port)
    await run.finished


def _run_loop(coro) -> None:
    """Run ``coro`` on uvloop when installed (the server's loop too: less client CPU per request)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)


def run_level(
    host: str,
    port: int,
    requests: list[bytes],
    clients: int,
    max_requests: int,
    max_seconds: float,
    expect: bytes = b"{",
) -> dict:
    """``clients`` keep-alive connections share a budget of ``max_requests`` requests and ``max_seconds``;
    a request counts when the answer is 200 and its body starts with ``expect``."""
    run = _Run(requests, max_requests, max_seconds, expect)
    cpu0, t0 = time.process_time(), time.perf_counter()
    _run_loop(_level(host, port, run, clients))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    lat = np.asarray(run.latencies) * 1000
    n = len(lat)
    return {
        "clients": clients,
        "requests": n,
        "errors": len(run.errors),
        "first_error": run.errors[0] if run.errors else None,
        "seconds": wall,
        "rps": n / wall if wall else 0.0,
        "p50_ms": float(np.percentile(lat, 50)) if n else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if n else float("nan"),
        "client_cpu_us": 1e6 * cpu / max(1, n + len(run.errors)),
        "latencies_ms": lat.tolist(),
    }
