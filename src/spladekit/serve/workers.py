"""Running the server: one process, or several worker processes that share the listening socket and the index.

Each worker opens the index folder itself (the segment files are memory-mapped, so the operating system keeps
one copy of them in memory for all workers) and loads its own query encoder. Workers share nothing else:

- reads: every read request looks at the manifest first (``Service.maybe_refresh``), so a write acknowledged
  by one worker, or committed by ``spladekit index``, is seen by the next request any worker answers;
- writes: each takes the index's cross-process write lock only while it commits (``Service.writing``), so
  writes from several workers go one at a time and no worker holds the lock while idle;
- request counts in ``/stats`` are per worker (``pid`` says which one answered).

uvicorn starts the workers (spawned, not forked) and builds each one's app with ``build_app``: the settings
travel as a picklable `ServeConfig`, not through the environment, so the API key is not left in it.
"""

from __future__ import annotations

import functools
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from .limits import Limits
from .service import LOCK_WAIT

# The default worker count: one per usable core, at most this many (each worker holds its own query model).
MAX_AUTO_WORKERS = 8


@dataclass(frozen=True)
class ServeConfig:
    """What each worker needs to build the app: the index folder and the server's settings."""

    index: str
    api_key: str | None = None
    protect: str = "writes"
    limits: Limits = field(default_factory=Limits)
    lock_wait: float = LOCK_WAIT
    threads: int | None = 1  # torch threads for query encoding in each worker


def build_app(cfg: ServeConfig):
    """The app of one worker process (uvicorn calls it in each worker, as an app factory)."""
    import threading

    from tqdm import tqdm

    from .app import create_app

    if cfg.threads:  # the process serves and nothing else: its torch thread count is ours for its life
        import torch

        torch.set_num_threads(cfg.threads)
    # tqdm's default lock is a named semaphore: a worker (which uvicorn ends by re-raising SIGTERM, skipping
    # exit handlers) would leave it to the resource tracker, which warns at shutdown. No bars are drawn here.
    tqdm.set_lock(threading.RLock())
    return create_app(
        cfg.index, api_key=cfg.api_key, protect=cfg.protect, limits=cfg.limits, lock_wait=cfg.lock_wait
    )


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers(index: Path) -> int:
    """One worker per usable core (at most ``MAX_AUTO_WORKERS``); one for a Qdrant index, which has a server of
    its own to scale (and whose embedded storage only one process can open)."""
    from ..index import backend_of

    if backend_of(index) == "qdrant":
        return 1
    return max(1, min(usable_cores(), MAX_AUTO_WORKERS))


def check_workers(index: Path, workers: int) -> None:
    """Refuse a worker count the index cannot take, in one line, before any worker starts."""
    from ..index import backend_of

    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if workers > 1 and backend_of(index) == "qdrant":
        config = json.loads((index / "qdrant.json").read_text())
        if config.get("local_path"):
            raise InputError(
                f"--workers {workers}: {index} keeps its Qdrant collection in embedded storage, which one process "
                "at a time can open; use --workers 1 (or a Qdrant server, --url when indexing)"
            )


def run(cfg: ServeConfig, sock: socket.socket, workers: int, log_level: str, announce=None) -> None:
    """Serve on the bound ``sock`` until interrupted: in this process, or in ``workers`` worker processes.
    ``announce()`` is called once the app is built (one process) or just before the workers start."""
    import uvicorn

    if workers == 1:
        from ..encode.threads import torch_threads
        from .app import create_app

        try:
            app = create_app(
                cfg.index,
                api_key=cfg.api_key,
                protect=cfg.protect,
                limits=cfg.limits,
                lock_wait=cfg.lock_wait,
            )
        except BaseException:
            sock.close()
            raise
        if announce:
            announce()
        config = uvicorn.Config(app, log_level=log_level, workers=1)
        with torch_threads(cfg.threads or None):  # for the server's life: its encoder calls use this many
            uvicorn.Server(config).run(sockets=[sock])
        return
    from uvicorn.supervisors import Multiprocess

    factory = functools.partial(build_app, cfg)
    config = uvicorn.Config(factory, factory=True, log_level=log_level, workers=workers)
    try:
        supervisor = Multiprocess(config, sockets=[sock])
    except TypeError:  # uvicorn before the supervisor ran the servers itself
        supervisor = Multiprocess(config, target=uvicorn.Server(config).run, sockets=[sock])
    if announce:
        announce()
    supervisor.run()
