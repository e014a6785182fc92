"""``cache.dir``: experts and score shards by identity, shared by several runs.

Layout: ``CACHE/<kind>/<identity[:2]>/<identity>/`` holds the entry's files under
``files/`` and ``entry.json`` (every file's size and SHA-256). Kinds: ``experts`` (an
expert's directory as it was trained) and ``shards`` (one ``shard.parquet``).

* An entry is built in a temporary sibling and renamed into place in one step, so a
  reader sees a whole entry or none. ``rename`` never replaces a non-empty directory: of
  two runs that finish the same entry, the second finds the first's and drops its own,
  so nothing a reader may be copying is ever swapped out under it.
* Whatever a run takes from the cache it copies into its own directory and checks
  against ``entry.json`` before using it. A damaged entry (a file edited, cut short or
  missing) is never used: it is moved aside and the unit is recomputed and written back.
* Files a run adds are hard links to its own files where the file system allows (no
  second copy on disk), else copies. A run's files are only ever replaced, never
  rewritten in place, so a link keeps the bytes the entry records; an edit in place by
  hand would damage the entry, which the check on read catches.

* A cache the run cannot write to (read-only mount, no permission, disk full) is still
  read: the run warns once, on stderr, and goes on without adding or repairing entries.
* Every fetch and store stamps the entry's ``entry.json`` with the time (its mtime), so
  ``taskpgm cache prune --unused-days D`` removes what no run has used for D days, and
  leftovers of killed writers (temporaries older than ``STALE_TEMP_HOURS``).

The cache is not part of any run's outputs: no stage records it and no fingerprint reads
its path.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from taskpgm.errors import InputError
from taskpgm.io import TEMP_TAG, atomic_write_json, read_json, sha256_file

ENTRY = "entry.json"
FILES = "files"
KINDS = ("experts", "shards")
# A writer builds an entry in minutes; a temporary this old belongs to a killed one.
STALE_TEMP_HOURS = 6.0
# errno values that mean "this cache cannot take writes here", not a bug: read on.
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC,
                 getattr(errno, "EDQUOT", errno.ENOSPC)}


class Cache:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        # Why writes are off for this run (None: writable as far as we know).
        self.read_only: str | None = None

    def entry(self, kind: str, identity: str) -> Path:
        return self.root / kind / identity[:2] / identity

    def has(self, kind: str, identity: str) -> bool:
        """Whether an entry exists (not checked: :meth:`fetch` checks what it copies)."""
        return (self.entry(kind, identity) / ENTRY).is_file()

    # -- reading ------------------------------------------------------------------------
    def fetch(self, kind: str, identity: str, dest: Path) -> bool:
        """Copy the entry's files into the empty directory ``dest`` and check the copies;
        False (``dest`` emptied again) when there is no whole, undamaged entry."""
        entry = self.entry(kind, identity)
        listed = _listing(entry)
        if listed is None:
            if entry.exists():  # published whole, so a bad listing means damage
                self._discard(entry)
            return False
        try:
            for rel in listed:
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(entry / FILES / rel, dest / rel)
            if _check(dest, listed):
                self._stamp(entry)
                return True
        except FileNotFoundError:
            pass  # a listed file is missing, or another run discarded the entry meanwhile
        _empty(dest)
        if entry.exists():
            self._discard(entry)
        return False

    # -- writing ------------------------------------------------------------------------
    def store(self, kind: str, identity: str, files: dict[str, Path]) -> None:
        """Add the entry ``identity``: entry-relative name -> the file to link or copy.
        A whole entry already there is kept (same identity: the same bytes)."""
        entry = self.entry(kind, identity)
        if _listing(entry) is not None:
            self._stamp(entry)
            return
        if self.read_only is not None:
            return
        try:
            self._store(entry, identity, files)
        except OSError as exc:
            if exc.errno not in _NOT_WRITABLE:
                raise
            from taskpgm.io import describe_os_error

            self.read_only = describe_os_error(exc)
            print(f"warning: cache {self.root} cannot be written ({self.read_only}); this "
                  "run reads it but adds nothing to it", file=sys.stderr)

    def _store(self, entry: Path, identity: str, files: dict[str, Path]) -> None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{identity}.{TEMP_TAG}", suffix=".tmp",
                                    dir=entry.parent))
        try:
            listed: dict[str, list] = {}
            for rel, src in sorted(files.items()):
                target = tmp / FILES / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                _link_or_copy(src, target)
                listed[rel] = [target.stat().st_size, sha256_file(target)]
            # The listing goes in last: an entry without it is not whole.
            atomic_write_json(tmp / ENTRY, {"format": "taskpgm-cache-entry", "version": 1,
                                            "identity": identity, "files": listed})
            self._publish(tmp, entry)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _publish(self, tmp: Path, entry: Path) -> None:
        for _ in range(2):
            try:
                os.rename(tmp, entry)
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            # Another run got there first: keep its entry unless it is damaged.
            listed = _listing(entry)
            if listed is not None and _check(entry / FILES, listed):
                return
            self._discard(entry)

    def _stamp(self, entry: Path) -> None:
        """Mark the entry used now (its entry.json's mtime), for ``prune``."""
        if self.read_only is None:
            try:
                os.utime(entry / ENTRY)
            except OSError:
                pass  # read-only or gone: the stamp is only a hint

    def _discard(self, entry: Path) -> None:
        """Move a damaged entry aside in one step (readers miss it), then delete it."""
        try:
            aside = Path(tempfile.mkdtemp(prefix=f".{entry.name}.{TEMP_TAG}", suffix=".old",
                                          dir=entry.parent))
        except OSError:
            return  # a read-only cache: the damaged entry stays, and is never used
        try:
            os.rename(entry, aside / "x")
        except OSError:
            pass  # already gone (another run discarded it)
        shutil.rmtree(aside, ignore_errors=True)

    # -- looking after it -----------------------------------------------------------------
    def survey(self, unused_days: float | None = None, now: float | None = None) -> Survey:
        """What the cache holds; with ``unused_days``, which entries no run has fetched or
        stored for that long, and which temporaries killed writers left behind."""
        now = time.time() if now is None else now
        out = Survey(self.root)
        for kind in KINDS:
            base = self.root / kind
            for prefix in sorted(base.iterdir()) if base.is_dir() else ():
                if not prefix.is_dir():
                    continue
                for entry in sorted(prefix.iterdir()):
                    size = _size(entry)
                    if TEMP_TAG in entry.name and entry.name.startswith("."):
                        age_h = (now - _mtime(entry)) / 3600.0
                        if age_h >= STALE_TEMP_HOURS:
                            out.stale_temps.append((entry, size))
                        continue
                    stamp = _mtime(entry / ENTRY)
                    out.entries[kind] = out.entries.get(kind, 0) + 1
                    out.bytes[kind] = out.bytes.get(kind, 0) + size
                    if unused_days is not None and (now - stamp) / 86400.0 >= unused_days:
                        out.unused.append((entry, size))
        return out

    def remove(self, entry: Path) -> None:
        """Remove an entry or a stale temporary: moved aside in one step first, so a run
        reading it meanwhile misses it (and recomputes) instead of copying half of it."""
        if entry.name.startswith(".") and TEMP_TAG in entry.name:
            shutil.rmtree(entry, ignore_errors=True)
        else:
            self._discard(entry)


@dataclass
class Survey:
    root: Path
    entries: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    unused: list[tuple[Path, int]] = field(default_factory=list)
    stale_temps: list[tuple[Path, int]] = field(default_factory=list)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0  # no listing: an entry cut short counts as unused since ever


def _size(path: Path) -> int:
    try:
        if path.is_file():
            return path.stat().st_size
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        return 0


def _listing(entry: Path) -> dict[str, list] | None:
    """The entry's file list, or None when it is not a whole entry."""
    try:
        raw = read_json(entry / ENTRY)
    except (InputError, OSError):
        return None
    files = raw.get("files") if isinstance(raw, dict) else None
    if not isinstance(files, dict) or not files or not all(
            isinstance(v, list) and len(v) == 2 for v in files.values()):
        return None
    if any(rel.startswith("/") or ".." in rel.split("/") for rel in files):
        return None
    return files


def _check(root: Path, listed: dict[str, list]) -> bool:
    try:
        return all((root / rel).stat().st_size == size and sha256_file(root / rel) == sha
                   for rel, (size, sha) in listed.items())
    except OSError:
        return False


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)  # another file system, or links not allowed


def _empty(d: Path) -> None:
    for p in list(d.iterdir()) if d.is_dir() else []:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
