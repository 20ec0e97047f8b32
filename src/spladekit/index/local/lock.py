"""The single-writer lock of an index folder: an advisory ``flock`` on ``write.lock``, which holds the writer's pid.

The kernel drops a ``flock`` when its process dies, so a lock left by a killed writer is free for the next one.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from ...io import naming
from .. import types

LOCK = "write.lock"


class WriteLock:
    """One process's claim to write an index folder."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK
        self._file = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self, wait: float = 0.0) -> None:
        """Take the lock, waiting up to ``wait`` seconds while another writer holds it; then `IndexLockedError`
        naming that writer's pid (also in ``.holder``)."""
        if self._file is not None:
            return
        deadline = time.monotonic() + max(0.0, float(wait))
        delay = 0.005
        while True:
            with naming(self.path):
                f = open(self.path, "a+")
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                f.seek(0)
                holder = f.read().strip() or "unknown"
                f.close()
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            left = deadline - time.monotonic()
            if left <= 0:
                waited = f", still after waiting {wait:g} s" if wait > 0 else ""
                err = types.IndexLockedError(
                    f"{self.path.parent} is being written by another writer (pid {holder}){waited}; "
                    "one writer at a time"
                )
                err.holder = holder
                raise err
            time.sleep(min(delay, left))  # poll: a blocking flock could not time out
            delay = min(2 * delay, 0.1)
        try:
            with naming(self.path):
                f.seek(0)
                f.truncate()
                f.write(str(os.getpid()))
                f.flush()
        except BaseException:
            f.close()  # recording the pid failed (disk full): let the lock go now, not when f is collected
            raise
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
