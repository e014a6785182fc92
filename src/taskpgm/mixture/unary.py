"""Unary utilities u for the energy (lambda/2) p'Kp - beta u'p.

- ``rowsum``: u = K 1 (the reference choice). Then the optimum depends only on
  r = beta/lambda, and r = 1/n gives exactly the uniform mixture: the gradient
  lambda K p - beta K 1 vanishes at p = 1/n when beta/lambda = 1/n.
- ``target``: u_i = mean over target tasks t of K[i, t], so mass goes to tasks whose
  kernel affinity to what the user evaluates on is high.
- ``given``: utilities from the user (a mapping name -> value, or an array).
- ``none``: u = 0 (pure diversity: the minimum-"redundancy" mixture).
- ``auto`` (the default of :func:`taskpgm.solve`): ``balanced`` with the calibrated
  kernel, ``rowsum`` with any other (resolved before this function is called).
- ``balanced``: u = n K q with q_j proportional to 1 / (K 1)_j, the
  inverse kernel density of task j. Like rowsum, u = n K q makes the unconstrained
  optimum r_rel * q + (1 - r_rel) * (pure diversity point), but q counts every region
  of task space once instead of once per near-copy: with k interchangeable templates of
  a skill each gets 1/k of that skill's share. rowsum (q uniform) pays a skill for
  being duplicated, which is why it stays near uniform on redundant pools (D12).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from taskpgm.choices import UNARIES
from taskpgm.errors import InputError
from taskpgm.io import read_text_utf8


def unary_utilities(
    K: np.ndarray,
    names: Sequence[str],
    kind: str = "balanced",
    *,
    targets: Sequence[str] | None = None,
    utilities: Mapping[str, float] | np.ndarray | Sequence[float] | None = None,
) -> np.ndarray:
    n = K.shape[0]
    if kind == "rowsum":
        return K.sum(axis=1)
    if kind == "none":
        return np.zeros(n)
    if kind == "balanced":
        return n * K @ balanced_reference(K)
    if kind == "target":
        if not targets:
            raise InputError("unary 'target' needs at least one target task "
                             "(parameter 'targets')")
        pos = {name: i for i, name in enumerate(names)}
        unknown = [t for t in targets if t not in pos]
        if unknown:
            raise InputError(
                f"target task {unknown[0]!r} has no row in the affinity matrix"
                f" ({len(unknown)} of {len(targets)} targets); for held-out targets measure"
                " utilities from the scores (taskpgm.affinity.utilities.target_utilities)"
                " and use unary 'given' with them"
            )
        cols = [pos[t] for t in targets]
        return K[:, cols].mean(axis=1)
    if kind == "given":
        if utilities is None:
            raise InputError("unary 'given' needs utilities (parameter 'utilities')")
        return _align(utilities, names, "utilities")
    raise InputError(f"unknown unary {kind!r} (choose from {', '.join(UNARIES)})")


def balanced_reference(K: np.ndarray) -> np.ndarray:
    """q_j proportional to 1 / (K 1)_j: each cluster of near-copies counted once."""
    deg = K.sum(axis=1)
    if np.any(deg <= 0):
        raise InputError("unary 'balanced' needs a kernel with positive row sums "
                         "(use kernel 'calibrated' or 'exp'), or unary 'rowsum'")
    q = 1.0 / deg
    return q / q.sum()


def _align(values, names: Sequence[str], what: str) -> np.ndarray:
    if isinstance(values, Mapping):
        missing = [n for n in names if n not in values]
        if missing:
            raise InputError(f"{what}: no value for task {missing[0]!r}"
                             f" ({len(missing)} tasks missing)")
        extra = [k for k in values if k not in set(names)]
        if extra:
            raise InputError(f"{what}: unknown task {extra[0]!r}")
        arr = np.array([float(values[n]) for n in names])
    else:
        arr = np.asarray(values, dtype=np.float64).ravel()
        if len(arr) != len(names):
            raise InputError(f"{what}: {len(arr)} values for {len(names)} tasks")
    if not np.all(np.isfinite(arr)):
        i = int(np.argmax(~np.isfinite(arr)))
        raise InputError(f"{what}: value for task {names[i]!r} is not finite")
    return arr


def read_values(path: str | Path, what: str = "values") -> dict[str, float] | list[float]:
    """Per-task numbers from a file: JSON {name: value}, CSV/whitespace ``name,value``
    lines, or one bare number per line (aligned with the task order).

    Errors name the file and the line as an editor counts it: blank lines count, a
    quoted cell may span lines, and a byte that is not UTF-8 is reported on its own line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found")
    # Decode the whole file first, so a bad byte is reported on its own line.
    text = read_text_utf8(path)
    if text.lstrip().startswith(("{", "[")):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from None
        except RecursionError:
            raise InputError(f"{path}: JSON nested too deeply") from None
        if isinstance(raw, dict):
            out: dict[str, float] = {}
            for k, v in raw.items():
                out[str(k)] = _number(v, f"{path} field {k!r}")
            return out
        if isinstance(raw, list):
            return [_number(v, f"{path} item {i}") for i, v in enumerate(raw)]
        raise InputError(f"{path}: expected a JSON object {{name: value}}")
    named: dict[str, float] = {}
    bare: list[float] = []
    first = True
    for lineno, row in _csv_rows(path, text):
        cells = [c.strip() for c in (row if len(row) > 1 else " ".join(row).split())]
        cells = [c for c in cells if c]
        if not cells:
            continue
        if len(cells) == 1:
            bare.append(_number(cells[0], f"{path}:{lineno}"))
        elif len(cells) == 2:
            if first and not _is_number(cells[1]):
                first = False
                continue  # header row such as "name,value"
            if cells[0] in named:
                raise InputError(f"{path}:{lineno}: task {cells[0]!r} appears twice")
            named[cells[0]] = _number(cells[1], f"{path}:{lineno}")
        else:
            raise InputError(f"{path}:{lineno}: expected 'name,value', got {len(cells)} fields")
        first = False
    if named and bare:
        raise InputError(f"{path}: mixes 'name,value' lines with bare numbers")
    return named or bare


def _csv_rows(path: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    """``(line where the row starts, row)`` for each CSV row of ``text``, blank rows
    included in the count (the affinity CSV reader's rule, taskpgm.affinity.io)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    try:
        for row in reader:
            yield start, row
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InputError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _number(v, where: str) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {v!r} is not a number") from None
    if not np.isfinite(x):
        raise InputError(f"{where}: {v!r} is not finite")
    return x


def align_values(values, names: Sequence[str], what: str) -> np.ndarray:
    """Public alias: per-task values (mapping or sequence) as an array in task order."""
    return _align(values, names, what)
