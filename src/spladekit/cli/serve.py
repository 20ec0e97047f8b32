"""``spladekit serve``: the HTTP API over an index folder."""

from __future__ import annotations

import errno
import ipaddress
import socket
from pathlib import Path

import typer

from ..errors import InputError


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("serve")(serve_cmd)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_cmd(
    index_dir: Path = typer.Option(..., "--index", "-i", help="Index folder (embedded or Qdrant)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: loopback only)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    api_key: str = typer.Option(
        None, "--api-key", envvar="SPLADEKIT_API_KEY", help="Require this key in the X-API-Key header."
    ),
    protect: str = typer.Option("writes", "--protect", help="What the API key guards: writes | all."),
    create: bool = typer.Option(
        False, "--create", help="Create an empty index (bundled model) if none exists."
    ),
    max_body_bytes: int = typer.Option(
        8 * 1024 * 1024, "--max-body-bytes", help="Largest request body (413)."
    ),
    max_batch: int = typer.Option(
        256, "--max-batch", help="Most documents / queries / texts per request (422)."
    ),
    max_text_chars: int = typer.Option(20_000, "--max-text-chars", help="Longest text or query (422)."),
    max_k: int = typer.Option(1000, "--max-k", help="Largest k (422)."),
    threads: int = typer.Option(
        1,
        "--threads",
        help="Torch threads per encoding call. Default 1: queries are short, concurrent requests bring the "
        "parallelism, and multi-threaded torch stalls badly when the cores are busy.",
    ),
    lock_wait: float = typer.Option(
        10.0,
        "--lock-wait",
        help="Seconds a write request waits while another writer (e.g. `spladekit index`) holds the index "
        "before answering 503.",
    ),
    workers: int = typer.Option(
        None,
        "--workers",
        help="Worker processes serving the index together (each opens it, memory-mapped, and loads its own "
        "query model; writes from all of them take the index's write lock in turn). Default: one per core, at "
        "most 8; 1 for a Qdrant index.",
        show_default=False,
    ),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
) -> None:
    """Serve an index over HTTP (FastAPI + uvicorn): search, documents, encode, health, stats, /docs.

    The server holds the index's write lock only while a write request commits, so `spladekit index` can add
    to a served index meanwhile; every worker sees its commits on the next request.
    """
    from ..index import Index, is_index_folder
    from ..serve import Limits
    from ..serve.workers import ServeConfig, check_workers, default_workers, run

    if protect not in ("writes", "all"):
        raise InputError(f"--protect must be 'writes' or 'all', got {protect!r}")
    if not _is_loopback(host) and api_key is None:
        typer.secho(
            f"warning: serving on {host} without --api-key: anyone who can reach this port can write to the index",
            fg=typer.colors.YELLOW,
            err=True,
        )
    limits = Limits(
        max_body_bytes=max_body_bytes, max_batch=max_batch, max_text_chars=max_text_chars, max_k=max_k
    )
    limits.check()
    sock = _bind(host, port)  # before loading anything: a busy port fails at once, in one line
    try:
        if not is_index_folder(index_dir):
            if not create:
                raise InputError(
                    f"{index_dir}: no index here (build one with `spladekit index`, or pass --create)"
                )
            Index.create(index_dir).close()  # once, here: the workers only open it
        if workers is None:
            workers = default_workers(index_dir)
        check_workers(index_dir, workers)
        if workers > 1:
            Index.open(index_dir).close()  # a damaged index fails here, in one line, not in each worker
    except BaseException:
        sock.close()
        raise
    cfg = ServeConfig(
        str(index_dir), api_key=api_key, protect=protect, limits=limits, lock_wait=lock_wait, threads=threads
    )
    where = f"[{host}]" if ":" in host else host
    port = sock.getsockname()[1]  # the one picked when --port 0
    several = f", {workers} workers" if workers > 1 else ""
    message = f"serving {index_dir} on http://{where}:{port} (docs at /docs{several})"
    run(cfg, sock, workers, log_level, announce=lambda: typer.echo(message, err=True))


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for uvicorn to listen on, or a one-line error naming the port."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as e:
        raise InputError(f"--host {host}: cannot resolve it ({e.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise InputError(
                f"port {port} on {host} is already in use: stop what runs there or choose another --port"
            ) from None
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.set_inheritable(True)
    return sock
