"""What a run wrote, and whether it is still there unchanged.

When a stage finishes, the runner records every file under its outputs with its size,
modification time and SHA-256 (:func:`snapshot`). That record is what the run owns:

* a re-run verifies it cheaply (:func:`damaged`): a file is re-hashed only when its size
  or modification time moved, so an untouched multi-GB expert costs one ``stat``;
* a stage that must start afresh removes only recorded files (:func:`remove_recorded`);
  anything else found under its outputs (:func:`foreign`) is the user's, and the run
  refuses rather than delete it.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

from taskpgm.io import TEMP_TAG, sha256_file

# relative path (POSIX) -> [size in bytes, mtime in ns, sha256 hex]
FileRecord = dict[str, list]

# The temporary siblings taskpgm.io's atomic writers make (mkstemp/mkdtemp:
# ``.<name>.taskpgm-<8 random chars>.tmp`` or ``.old``). A kill can leave one behind; it
# is the run's by its name, never recorded, and removed before the stage runs again.
_TEMP = re.compile(r"^\..+\." + re.escape(TEMP_TAG) + r"[a-z0-9_]{8}\.(tmp|old)$")


def is_temp(rel: str) -> bool:
    return any(_TEMP.match(part) for part in rel.split("/"))


def remove_sibling_temps(directory: Path, names: tuple[str, ...]) -> None:
    """Remove a killed writer's temporaries of ``names`` in ``directory`` (not below)."""
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if _TEMP.match(entry.name) and any(entry.name.startswith(f".{n}.") for n in names):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def remove_temps(root: Path, outputs: tuple[str, ...]) -> None:
    """Remove leftover atomic-write temporaries under ``outputs`` and beside them (a
    killed writer builds ``data/<s>`` as a sibling ``data/.<s>.taskpgm-*.tmp``)."""
    for rel in outputs:
        parent = (root / rel).parent
        if not parent.is_symlink():
            remove_sibling_temps(parent, (Path(rel).name,))
        p = root / rel
        if not p.is_dir() or p.is_symlink():
            continue
        for dirpath, dirnames, filenames in os.walk(p):
            for d in [d for d in dirnames if _TEMP.match(d)]:
                shutil.rmtree(Path(dirpath, d), ignore_errors=True)
                dirnames.remove(d)
            for f in filenames:
                if _TEMP.match(f):
                    Path(dirpath, f).unlink(missing_ok=True)


def _files_under(root: Path, rel: str) -> list[Path]:
    p = root / rel
    if p.is_symlink() or p.is_file():
        return [p]
    if p.is_dir():
        # followlinks=False: a symlink inside an output is listed, never walked into.
        out = []
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames.sort()
            base = Path(dirpath)
            out.extend(base / f for f in sorted(filenames))
            out.extend(base / d for d in dirnames if (base / d).is_symlink())
        return out
    return []


def _rel(root: Path, p: Path) -> str:
    return p.relative_to(root).as_posix()


def snapshot(root: Path, outputs: tuple[str, ...], exclude: frozenset[str] = frozenset(),
             known: FileRecord | None = None) -> FileRecord:
    """Size, mtime and digest of every file under ``outputs`` (relative to ``root``), but
    atomic-write temporaries and ``exclude`` (files that were the user's before the
    stage ran). A file ``known`` lists with its size and mtime unchanged keeps its digest
    unread (the rule :func:`damaged` trusts too), so re-recording a kept expert is a
    ``stat``."""
    rec: FileRecord = {}
    for rel in outputs:
        for f in _files_under(root, rel):
            rel_f = _rel(root, f)
            if is_temp(rel_f) or rel_f in exclude:
                continue
            try:
                st = os.lstat(f)  # one call: not a link, a regular file, size and mtime
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            old = (known or {}).get(rel_f)
            same = old is not None and old[0] == st.st_size and old[1] == st.st_mtime_ns
            rec[rel_f] = [st.st_size, st.st_mtime_ns, old[2] if same else sha256_file(f)]
    return rec


def damaged(root: Path, files: FileRecord) -> list[tuple[str, str]]:
    """``(path, what)`` for every recorded file that is missing or whose bytes changed."""
    out: list[tuple[str, str]] = []
    for rel, (size, mtime_ns, digest) in files.items():
        p = root / rel
        if not p.is_file():
            out.append((rel, "missing"))
            continue
        st = p.stat()
        if st.st_size != size or st.st_mtime_ns != mtime_ns and sha256_file(p) != digest:
            out.append((rel, "changed"))
    return out


def foreign(root: Path, outputs: tuple[str, ...], files: FileRecord) -> list[str]:
    """Files under ``outputs`` that the record does not list (the user's, not the run's)."""
    return [r for r in present(root, outputs) if r not in files]


def present(root: Path, outputs: tuple[str, ...]) -> list[str]:
    """Files (not empty directories, not atomic-write temporaries) under ``outputs``."""
    return [r for r in (_rel(root, f) for rel in outputs for f in _files_under(root, rel))
            if not is_temp(r)]


def within(rel: str, outputs: tuple[str, ...]) -> bool:
    """Whether ``rel`` names a path inside one of ``outputs`` (a hand-edited record
    could name ``../../somewhere``; nothing outside a stage's outputs is ever touched)."""
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        return False
    return any(parts[: len(o.split("/"))] == o.split("/") for o in outputs)


def remove_recorded(root: Path, outputs: tuple[str, ...], files: FileRecord) -> None:
    """Remove the recorded files, then the directories under ``outputs`` left empty."""
    for rel in files:
        if within(rel, outputs):
            (root / rel).unlink(missing_ok=True)
    for rel in outputs:
        p = root / rel
        if p.is_dir() and not p.is_symlink():
            for dirpath, _, _ in sorted(os.walk(p), key=lambda t: -len(t[0])):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass  # not empty: something unrecorded lives there (refused earlier)


def unit_of(rel: str, outputs: tuple[str, ...], depth: int = 1) -> str:
    """The part of an output that is redone as a whole when one of its files is damaged:
    the entry ``depth`` levels below an output directory (``experts/<task>`` at depth 1,
    ``scores/shards/<expert>/<task>.parquet`` at depth 3), or the damaged file itself
    when it sits higher up."""
    parts = rel.split("/")
    for out in outputs:
        o = out.split("/")
        if parts[: len(o)] == o:
            return "/".join(parts[: len(o) + depth])
    return rel
