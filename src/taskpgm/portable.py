"""Paths that artifacts may record without tying them to one directory.

An artifact that names another file (an expert names its base model, a data manifest
its pool) records it relative to the artifact's own directory, so a run directory gives
the same bytes wherever it was made and still resolves after it is moved or copied as a
whole. Something that is not a local path (a hub model id) is recorded as given.

Inside a pipeline run (:func:`run_root`), a target outside the run directory (a ``dir``
pool, a user's base model) is recorded by its absolute path instead: it does not move
with the run, so its absolute path is what two runs in different directories share.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from pathlib import Path

_RUN_ROOT: contextvars.ContextVar[Path | None] = contextvars.ContextVar("run_root", default=None)


@contextlib.contextmanager
def run_root(root: str | os.PathLike[str]) -> Iterator[None]:
    """Within this block, paths outside ``root`` are recorded absolute."""
    token = _RUN_ROOT.set(Path(root).resolve())
    try:
        yield
    finally:
        _RUN_ROOT.reset(token)


def current_run_root() -> Path | None:
    """The directory of the enclosing :func:`run_root` block, if any (work sent to
    another process enters the same block there, so it records the same paths)."""
    return _RUN_ROOT.get()


def portable_path(target: str | os.PathLike[str], start: str | os.PathLike[str]) -> str:
    """``target`` relative to the directory ``start`` (POSIX separators)."""
    t = Path(target)
    if not t.exists():
        return str(target)
    t = t.resolve()
    root = _RUN_ROOT.get()
    if root is not None and not t.is_relative_to(root):
        return t.as_posix()
    return Path(os.path.relpath(t, Path(start).resolve())).as_posix()


def resolve_recorded(recorded: str, start: str | os.PathLike[str]) -> Path:
    """The path an artifact in ``start`` recorded with :func:`portable_path` (absolute
    paths from older artifacts are returned as they are)."""
    return (Path(start) / recorded).resolve()
