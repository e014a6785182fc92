"""Reading and writing affinity matrices (.npy, .npz, .csv).

``.npz`` is the native form written by ``taskpgm affinity``: keys ``matrix``,
``names``, ``kind`` and optionally ``lower``/``upper`` (bootstrap interval per entry)
and ``provenance`` (a JSON string). ``.npy`` holds only the matrix (names come from
``--names`` or default to ``task0..``); ``.csv`` has a header row of names and, per
row, optionally the row's name first.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from taskpgm.errors import InputError
from taskpgm.io import atomic_write_bytes, read_text_utf8
from taskpgm.portable import portable_path

# Entries beyond this overflow later (kernels square and sum them): refuse them on read.
MAX_ABS = 1e150


@dataclass
class AffinityMatrix:
    names: list[str]
    matrix: np.ndarray
    kind: str = "unknown"
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.names)


def validate_matrix(matrix: Any, source: str, names: list[str] | None = None) -> np.ndarray:
    """Check a square, finite, real matrix; name the first bad entry on failure."""
    raw = np.asarray(matrix)
    if np.iscomplexobj(raw):
        raise InputError(f"{source}: matrix holds complex numbers ({raw.dtype}); an affinity "
                         "matrix must be real")
    if raw.dtype.kind not in "biuf":
        raise InputError(f"{source}: matrix must hold real numbers, not {_dtype_words(raw)}")
    try:
        m = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{source}: matrix must hold real numbers") from None
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise InputError(f"{source}: matrix must be square, got shape {m.shape}")
    if m.shape[0] == 0:
        raise InputError(f"{source}: matrix is empty")
    bad = np.argwhere(~np.isfinite(m))
    if len(bad):
        i, j = (int(x) for x in bad[0])
        label = f"({names[i]}, {names[j]})" if names and len(names) == m.shape[0] else f"[{i}, {j}]"
        raise InputError(
            f"{source}: matrix entry {label} is {m[i, j]} ({len(bad)} non-finite entries)"
        )
    big = np.argwhere(np.abs(m) > MAX_ABS)
    if len(big):
        i, j = (int(x) for x in big[0])
        label = f"({names[i]}, {names[j]})" if names and len(names) == m.shape[0] else f"[{i}, {j}]"
        raise InputError(
            f"{source}: matrix entry {label} is {m[i, j]:.4g}, too large for the solvers "
            f"(|value| must be at most {MAX_ABS:.0e}; {len(big)} entries are larger)"
        )
    if names is not None:
        if len(names) != m.shape[0]:
            raise InputError(
                f"{source}: {len(names)} names for a {m.shape[0]}x{m.shape[0]} matrix"
            )
        dup = _first_duplicate(names)
        if dup is not None:
            raise InputError(f"{source}: task name {dup!r} appears twice")
    return m


def _dtype_words(a: np.ndarray) -> str:
    kinds = {"U": "text", "S": "bytes", "O": "Python objects", "M": "dates", "m": "durations",
             "V": "structured records"}
    return kinds.get(a.dtype.kind, f"dtype {a.dtype}")


def _first_duplicate(names: list[str]) -> str | None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            return n
        seen.add(n)
    return None


def read_names(path: str | Path) -> list[str]:
    """Names file: one name per line (blank lines ignored), or a JSON list."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a names file" if path.is_dir() else "names file not found"
        raise InputError(f"{path}: {what}")
    text = read_text_utf8(path)
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InputError(f"{path}: expected a JSON list of strings")
        empty = next((i for i, n in enumerate(names) if not n.strip()), None)
        if empty is not None:
            raise InputError(f"{path}: entry {empty} of the list is an empty name")
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise InputError(f"{path}: names file is empty (expected one task name per line, "
                         "or a JSON list)")
    return names


def load_affinity(path: str | Path, names: list[str] | None = None) -> AffinityMatrix:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: affinity file not found")
    suffix = path.suffix.lower()
    if names is not None and not names:
        raise InputError(f"{path}: an empty list of task names was given")
    if suffix == ".npy":
        if path.stat().st_size == 0:
            raise InputError(f"{path}: empty file, not a .npy array")
        try:
            m = np.load(path, allow_pickle=False)
        except _NPY_ERRORS as exc:
            raise InputError(f"{path}: not a readable .npy file ({_reason(exc)})") from None
        if not isinstance(m, np.ndarray):
            raise InputError(f"{path}: not a .npy array")
        m = validate_matrix(m, str(path))
        names = names if names is not None else [f"task{i}" for i in range(m.shape[0])]
        validate_matrix(m, str(path), names)
        return AffinityMatrix(names, m, kind="unknown", provenance={"source": str(path)})
    if suffix == ".npz":
        return _load_npz(path, names)
    if suffix == ".csv":
        return _load_csv(path, names)
    raise InputError(f"{path}: unknown affinity format {suffix!r} (use .npy, .npz or .csv)")


def _load_npz(path: Path, names: list[str] | None) -> AffinityMatrix:
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file, not a .npz archive")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise InputError(f"{path}: holds a single .npy array, not a .npz archive; "
                             "rename it to .npy")
        with z:
            data = {k: z[k] for k in z.files}
    except _NPY_ERRORS as exc:
        raise InputError(f"{path}: not a readable .npz file ({_reason(exc)})") from None
    if "matrix" not in data:
        keys = ", ".join(sorted(data)) or "none"
        raise InputError(f"{path}: missing array 'matrix' (arrays in the file: {keys})")
    stored = None
    if "names" in data:
        raw = data["names"]
        if raw.ndim != 1 or raw.dtype.kind not in "US":
            raise InputError(f"{path}: array 'names' must be a list of strings")
        stored = [str(x) for x in raw.tolist()]
    if names is not None and stored is not None and names != stored:
        raise InputError(f"{path}: --names do not match the names stored in the file")
    matrix = data["matrix"]
    if names is None:
        names = stored
    if names is None:
        matrix = validate_matrix(matrix, str(path))
        names = [f"task{i}" for i in range(matrix.shape[0])]
    m = validate_matrix(matrix, str(path), names)
    prov: dict[str, Any] = {}
    if "provenance" in data:
        try:
            prov = json.loads(str(data["provenance"]))
        except json.JSONDecodeError:
            raise InputError(f"{path}: 'provenance' is not valid JSON") from None
        if not isinstance(prov, dict):
            raise InputError(f"{path}: 'provenance' must be a JSON object")
    lower = _bound(data, "lower", m.shape, path)
    upper = _bound(data, "upper", m.shape, path)
    kind = str(data["kind"]) if "kind" in data else "unknown"
    return AffinityMatrix(names, m, kind, lower, upper, prov)


# What numpy raises on a damaged file: a cut header (ValueError/EOFError), a cut or
# corrupt zip (BadZipFile, zlib.error, EOFError), an unknown format (ValueError).
_NPY_ERRORS = (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error, KeyError,
               NotImplementedError)


def _reason(exc: BaseException) -> str:
    text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    if isinstance(exc, (EOFError, zipfile.BadZipFile, zlib.error)) or "EOF" in text:
        text += "; is the file truncated or damaged?"
    return text


def _bound(data: dict[str, np.ndarray], key: str, shape: tuple[int, ...], path: Path
           ) -> np.ndarray | None:
    """An interval array ('lower'/'upper'): real, the matrix's shape (NaN allowed)."""
    if key not in data:
        return None
    raw = data[key]
    if np.iscomplexobj(raw) or raw.dtype.kind not in "biuf":
        raise InputError(f"{path}: array {key!r} must hold real numbers")
    if raw.shape != shape:
        raise InputError(f"{path}: array {key!r} has shape {raw.shape}, the matrix {shape}")
    return np.asarray(raw, dtype=np.float64)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _load_csv(path: Path, names: list[str] | None) -> AffinityMatrix:
    # Decode the whole file first, so a bad byte is reported on its own line.
    text = read_text_utf8(path)
    # (line number where the row starts, row); blank rows are skipped, not counted out.
    rows: list[tuple[int, list[str]]] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        start = 1
        for r in reader:
            if r and any(c.strip() for c in r):
                rows.append((start, r))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InputError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
    if len(rows) < 2:
        raise InputError(f"{path}: expected a header row of names and at least one data row")
    header_line, first = rows[0]
    header = [c.strip() for c in first]
    if all(_is_number(c) for c in header if c):
        raise InputError(f"{path}:{header_line}: the first row must be a header of task names, "
                         "not numbers (or use a .npy file and --names)")
    body = rows[1:]
    # A leading empty header cell means every data row starts with its task's name.
    row_labels = header[0] == "" or len(body[0][1]) == len(header) + 1
    if header[0] == "":
        header = header[1:]
    values = []
    for lineno, row in body:
        cells = row[1:] if row_labels else row
        if len(cells) != len(header):
            raise InputError(f"{path}:{lineno}: {len(cells)} values, header has {len(header)}")
        bad = next((c for c in cells if not _is_number(c)), None)
        if bad is not None:
            raise InputError(f"{path}:{lineno}: value {bad.strip()!r} is not a number")
        values.append([float(c) for c in cells])
    if names is not None and names != header:
        raise InputError(f"{path}: --names do not match the CSV header")
    m = validate_matrix(values, str(path), header)
    return AffinityMatrix(header, m, "unknown", provenance={"source": str(path)})


def save_affinity(path: str | Path, aff: AffinityMatrix) -> None:
    """Write the native ``.npz`` atomically (deterministic bytes for equal inputs)."""
    provenance = dict(aff.provenance)
    if isinstance(provenance.get("scores"), str):
        # Relative to the file, so the same run gives the same bytes in any directory.
        provenance["scores"] = portable_path(provenance["scores"], Path(path).parent)
    arrays: dict[str, np.ndarray] = {
        "matrix": np.asarray(aff.matrix, dtype=np.float64),
        "names": np.asarray(aff.names, dtype=np.str_),
        "kind": np.asarray(aff.kind, dtype=np.str_),
        "provenance": np.asarray(json.dumps(provenance, sort_keys=True), dtype=np.str_),
    }
    if aff.lower is not None:
        arrays["lower"] = np.asarray(aff.lower, dtype=np.float64)
    if aff.upper is not None:
        arrays["upper"] = np.asarray(aff.upper, dtype=np.float64)
    buf = io.BytesIO()
    # np.savez writes zip entries with fixed timestamps, so equal arrays give equal bytes.
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
