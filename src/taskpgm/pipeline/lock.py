"""One run at a time per run directory.

``run_lock(dir)`` holds an OS advisory lock (``flock``) on the run directory itself for as
long as the run lasts. The kernel drops it when the process ends, however it ends, so a
killed run never leaves a stale lock behind; and since the lock is on the directory, not
on a file in it, deleting files cannot release it. ``dir/.taskpgm.lock`` only *names*
the holder: it is replaced atomically (a symlink there is replaced, never followed), and
a second run is refused in one line that names the holder's PID.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from taskpgm.errors import InputError
from taskpgm.io import atomic_write_text

LOCK_FILE = ".taskpgm.lock"


def _holder(run_dir: Path) -> str:
    p = run_dir / LOCK_FILE
    if p.is_symlink() or not p.is_file():
        return "unknown"
    try:
        return p.read_text(encoding="ascii", errors="replace").strip()[:32] or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"{run_dir}: in use by another taskpgm run (pid {_holder(run_dir)}); wait for "
                "it to finish or choose another run.dir"
            ) from None
        atomic_write_text(run_dir / LOCK_FILE, f"{os.getpid()}\n")
        yield
    finally:
        os.close(fd)  # releases the lock
