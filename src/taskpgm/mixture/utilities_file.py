"""Per-task utilities from a file, for ``unary: given`` (``mixture.utilities`` in a config).

The same reader as the weights of the ``given`` strategy
(:func:`taskpgm.mixture.unary.read_values`): a JSON list (task order) or object
``{task: utility}``, or ``task,utility`` CSV / whitespace lines (a header row is skipped),
or one bare number per line. Utilities may be negative (unlike weights) but must be finite.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from taskpgm.errors import InputError
from taskpgm.mixture.unary import align_values, read_values


def load_utilities_file(path: str | Path, names: Sequence[str]) -> np.ndarray:
    """The utilities in ``path`` as a float64 array aligned with ``names``.

    Every task needs a value and a named file may not name other tasks; errors are one
    line naming the file (and the line, for CSV).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: utilities file not found")
    # Bytes that are not UTF-8 are an InputError naming their line (read_values).
    values = read_values(path, "utilities")
    if not values:
        raise InputError(f"{path}: no utilities in the file")
    return align_values(values, list(names), f"utilities {path}")
