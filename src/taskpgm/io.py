"""Atomic file writes and careful reads.

Every artifact is written to a temporary sibling and renamed into place, so a killed
process never leaves a half-written file where a finished one is expected.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from taskpgm.errors import InputError

M = TypeVar("M", bound=BaseModel)

# In every temporary sibling's name (``.<name>.taskpgm-XXXXXXXX.tmp`` / ``.old``), so a
# run can tell a killed writer's leftovers (its own) from a user's dot-files.
TEMP_TAG = "taskpgm-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tmp_sibling(path: Path, suffix: str = ".tmp") -> Path:
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.{TEMP_TAG}", suffix=suffix,
                                    dir=path.parent)
    except OSError as exc:  # name the file being written, not a random temporary name
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    # mkstemp creates 0600; give the final file the permissions a plain open() would.
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    return Path(name)


def _retarget(exc: OSError, tmp: Path, path: Path, nbytes: int | None = None) -> OSError:
    """``exc`` about ``path`` rather than its temporary sibling (or no file at all).

    A write that fails in the temporary file (disk full, quota, read-only file system)
    is reported under the name the user knows. ``nbytes`` (the size the write needed,
    when known) is kept as ``exc.needed_bytes`` for the message.
    """
    name = exc.filename
    tmp_s = str(tmp)
    if name is not None and str(name) != tmp_s and not str(name).startswith(tmp_s + os.sep):
        return exc  # about another file: leave it alone
    target = path if name is None or str(name) == tmp_s else path / Path(name).relative_to(tmp)
    new = OSError(exc.errno, exc.strerror or str(exc), str(target))
    if nbytes is not None:
        new.needed_bytes = nbytes  # type: ignore[attr-defined]
    return new


def describe_os_error(exc: OSError) -> str:
    """One line for an environment error: ``<path>: <reason>`` (no traceback).

    Disk full names the space the write needed when it is known.
    """
    reason = (exc.strerror or str(exc) or type(exc).__name__).strip().splitlines()[0]
    name = exc.filename
    if exc.errno == errno.EEXIST and isinstance(name, (str, os.PathLike)) and \
            os.path.lexists(name) and not os.path.isdir(name):
        reason = "is a file where a directory is needed"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        needed = getattr(exc, "needed_bytes", None)
        if needed is not None:
            reason += f" (the write needed {_human_bytes(needed)})"
    if name is None:
        return reason
    where = f"{name}" if exc.filename2 is None else f"{name} -> {exc.filename2}"
    return f"{where}: {reason}"


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}" if n >= 1024 else f"{n} bytes"
    return f"{size / 1024:.1f} TiB"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], nbytes: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On any failure the temporary file is removed and ``path`` is left as it was; an
    :class:`OSError` from writing the temporary file is re-raised naming ``path``.
    """
    path = Path(path)
    tmp = path  # until the sibling exists, errors are about path itself
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_sibling(path)
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        if tmp != path:
            tmp.unlink(missing_ok=True)
        new = _retarget(exc, tmp, path, nbytes)
        if new is exc:
            raise
        raise new from exc
    except BaseException:
        if tmp != path:
            tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path, nbytes=len(data)) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def user_cache_dir() -> Path:
    """taskpgm's per-user cache (``$TASKPGM_CACHE``, else ``~/.cache/taskpgm``): the
    BIG-bench sdist and the base-model digests live under it."""
    root = os.environ.get("TASKPGM_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "taskpgm"


def dumps_json(obj: Any, compact: bool = False) -> str:
    """Deterministic JSON: sorted keys, fixed indentation (none when ``compact``: the C
    encoder, several times faster on the 100k-entry records of a large run), trailing
    newline."""
    if compact:
        return json.dumps(obj, sort_keys=True, ensure_ascii=False,
                          separators=(",", ":")) + "\n"
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def atomic_write_json(path: str | os.PathLike[str], obj: Any, compact: bool = False) -> None:
    atomic_write_text(path, dumps_json(obj, compact))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], replaces: str | None = None) -> Iterator[Path]:
    """Build a directory in a temporary sibling and swap it into place on success.

    An existing directory at ``path`` is replaced only after the new one is complete;
    if the swap fails, the old one is put back. It is replaced only if it is empty or
    holds the file ``replaces`` (the marker of what the caller writes: ``pool.json``,
    a model's ``taskpgm_train.json``); any other directory, and a file, is the user's
    and is refused, never replaced.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: is a file, not a directory; move it away or choose "
                         "another output directory")
    if path.is_dir() and any(path.iterdir()) and not (replaces and (path / replaces).is_file()):
        what = f"has no {replaces}, so it was not written by taskpgm" if replaces else \
            "is not empty"
        raise InputError(f"{path}: exists and {what}; refusing to replace it (move it away "
                         "or choose another output directory)")
    tmp = path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{TEMP_TAG}", suffix=".tmp",
                                        dir=path.parent))
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        # mkdtemp creates 0700; give the final directory the permissions mkdir() would.
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        _swap_in(tmp, path)
    except OSError as exc:
        if tmp != path:
            shutil.rmtree(tmp, ignore_errors=True)
        new = _retarget(exc, tmp, path)
        if new is exc:
            raise
        raise new from exc
    except BaseException:
        if tmp != path:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(new: Path, path: Path) -> None:
    """Rename directory ``new`` onto ``path``; an old ``path`` survives a failed swap."""
    if not path.exists():
        os.replace(new, path)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.{TEMP_TAG}", suffix=".old",
                                dir=path.parent))
    try:
        os.replace(path, old / "x")
    except BaseException:
        shutil.rmtree(old, ignore_errors=True)
        raise
    try:
        os.replace(new, path)
    except BaseException:
        os.replace(old / "x", path)  # put the old directory back
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _not_utf8(path: Path, data: bytes, exc: UnicodeDecodeError, first_line: int = 1) -> InputError:
    """Name the line and column of the first byte that is not UTF-8."""
    line_start = data.rfind(b"\n", 0, exc.start) + 1
    line = first_line + data.count(b"\n", 0, exc.start)
    col = exc.start - line_start + 1
    return InputError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at "
                      f"column {col})")


def read_text_utf8(path: str | os.PathLike[str]) -> str:
    """Read a UTF-8 text file (a leading BOM is dropped); bad bytes name their line."""
    path = Path(path)
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, data, exc) from None


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, turning a missing or malformed file into one clear line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    text = read_text_utf8(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply") from None


def read_json_model(path: str | os.PathLike[str], model: type[M]) -> M:
    """Read a JSON file into a pydantic model; the first invalid field becomes one line."""
    raw = read_json(path)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise InputError(f"{path}: field {loc!r}: {err['msg']}") from None


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; errors name file and line.

    Lines end at ``\\n`` only (``\\r\\n`` is fine), as ``wc -l`` and editors count them,
    and each line is decoded on its own, so a bad byte is reported on its own line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 byte-order mark
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _not_utf8(path, raw, exc, lineno) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno}: malformed JSON ({exc.msg})") from None
            except RecursionError:
                raise InputError(f"{path}:{lineno}: JSON nested too deeply") from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
