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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from taskpgm.errors import InputError
from taskpgm.io import atomic_write_bytes


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
    try:
        m = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
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
    if names is not None:
        if len(names) != m.shape[0]:
            raise InputError(
                f"{source}: {len(names)} names for a {m.shape[0]}x{m.shape[0]} matrix"
            )
        dup = _first_duplicate(names)
        if dup is not None:
            raise InputError(f"{source}: task name {dup!r} appears twice")
    return m


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
        raise InputError(f"{path}: names file not found")
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InputError(f"{path}: expected a JSON list of strings")
        return names
    return [line.strip() for line in text.splitlines() if line.strip()]


def load_affinity(path: str | Path, names: list[str] | None = None) -> AffinityMatrix:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: affinity file not found")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            m = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(f"{path}: not a readable .npy file ({exc})") from None
        m = validate_matrix(m, str(path))
        names = names or [f"task{i}" for i in range(m.shape[0])]
        validate_matrix(m, str(path), names)
        return AffinityMatrix(names, m, kind="unknown", provenance={"source": str(path)})
    if suffix == ".npz":
        return _load_npz(path, names)
    if suffix == ".csv":
        return _load_csv(path, names)
    raise InputError(f"{path}: unknown affinity format {suffix!r} (use .npy, .npz or .csv)")


def _load_npz(path: Path, names: list[str] | None) -> AffinityMatrix:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: not a readable .npz file ({exc})") from None
    if "matrix" not in data:
        raise InputError(f"{path}: missing array 'matrix'")
    stored = [str(x) for x in data["names"].tolist()] if "names" in data else None
    if names is not None and stored is not None and names != stored:
        raise InputError(f"{path}: --names do not match the names stored in the file")
    names = names or stored or [f"task{i}" for i in range(len(data["matrix"]))]
    m = validate_matrix(data["matrix"], str(path), names)
    prov: dict[str, Any] = {}
    if "provenance" in data:
        try:
            prov = json.loads(str(data["provenance"]))
        except json.JSONDecodeError:
            raise InputError(f"{path}: 'provenance' is not valid JSON") from None
    lower = np.asarray(data["lower"], dtype=np.float64) if "lower" in data else None
    upper = np.asarray(data["upper"], dtype=np.float64) if "upper" in data else None
    kind = str(data["kind"]) if "kind" in data else "unknown"
    return AffinityMatrix(names, m, kind, lower, upper, prov)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _load_csv(path: Path, names: list[str] | None) -> AffinityMatrix:
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except csv.Error as exc:
        raise InputError(f"{path}: malformed CSV ({exc})") from None
    if len(rows) < 2:
        raise InputError(f"{path}: expected a header row of names and at least one data row")
    header = [c.strip() for c in rows[0]]
    if all(_is_number(c) for c in header if c):
        raise InputError(f"{path}:1: the first row must be a header of task names, "
                         "not numbers (or use a .npy file and --names)")
    body = rows[1:]
    # A leading empty header cell means every data row starts with its task's name.
    row_labels = header[0] == "" or len(body[0]) == len(header) + 1
    if header[0] == "":
        header = header[1:]
    values = []
    for lineno, row in enumerate(body, start=2):
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
    arrays: dict[str, np.ndarray] = {
        "matrix": np.asarray(aff.matrix, dtype=np.float64),
        "names": np.asarray(aff.names, dtype=np.str_),
        "kind": np.asarray(aff.kind, dtype=np.str_),
        "provenance": np.asarray(json.dumps(aff.provenance, sort_keys=True), dtype=np.str_),
    }
    if aff.lower is not None:
        arrays["lower"] = np.asarray(aff.lower, dtype=np.float64)
    if aff.upper is not None:
        arrays["upper"] = np.asarray(aff.upper, dtype=np.float64)
    buf = io.BytesIO()
    # np.savez writes zip entries with fixed timestamps, so equal arrays give equal bytes.
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
