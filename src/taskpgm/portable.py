"""Paths that artifacts may record without tying them to one directory.

An artifact that names another file (an expert names its base model, a data manifest
its pool) records it relative to the artifact's own directory, so a run directory gives
the same bytes wherever it was made and still resolves after it is moved or copied as a
whole. Something that is not a local path (a hub model id) is recorded as given.
"""

from __future__ import annotations

import os
from pathlib import Path


def portable_path(target: str | os.PathLike[str], start: str | os.PathLike[str]) -> str:
    """``target`` relative to the directory ``start`` (POSIX separators)."""
    t = Path(target)
    if not t.exists():
        return str(target)
    return Path(os.path.relpath(t.resolve(), Path(start).resolve())).as_posix()


def resolve_recorded(recorded: str, start: str | os.PathLike[str]) -> Path:
    """The path an artifact in ``start`` recorded with :func:`portable_path` (absolute
    paths from older artifacts are returned as they are)."""
    return (Path(start) / recorded).resolve()
