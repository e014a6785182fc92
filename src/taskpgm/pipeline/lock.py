"""One run at a time per run directory.

``run_lock(dir)`` holds an OS advisory lock (``flock``) on ``dir/.taskpgm.lock`` for as
long as the run lasts. The kernel drops it when the process ends, however it ends, so a
killed run never leaves a stale lock behind; a second run on the same directory is
refused in one line that names the holder's PID.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from taskpgm.errors import InputError

LOCK_FILE = ".taskpgm.lock"


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            raise InputError(
                f"{run_dir}: in use by another taskpgm run (pid {holder}); wait for it to "
                "finish or choose another run.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
