"""Warnings about an affinity matrix: degenerate structure and uncertain entries.

A matrix that looks fine to a solver can still be meaningless: a row that is constant
carries no information about its task, a block of exact zeros usually means the
scores were never computed (0 is PMI's "interchangeable", so a missing block silently
reads as "all these tasks are identical"), and NaN poisons everything downstream.
Each check returns human-readable warnings that name the tasks involved.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_NAMES = 8


def _names(names: Sequence[str], idx: Sequence[int] | np.ndarray) -> str:
    idx = list(idx)
    shown = ", ".join(names[i] for i in idx[:MAX_NAMES])
    more = len(idx) - MAX_NAMES
    return shown + (f", ... (+{more} more)" if more > 0 else "")


def zero_block(matrix: np.ndarray, min_share: float = 0.5, min_size: int = 3) -> np.ndarray:
    """Indices of the largest set of tasks whose mutual off-diagonal entries are mostly 0.

    Greedy peeling: start from every task with an exact off-diagonal zero and drop, one
    at a time, the task with the fewest zeros towards the rest of the set, until each
    remaining task has exact zeros with at least ``min_share`` of the others. Returns an
    empty array when no such set of ``min_size`` tasks exists.
    """
    n = matrix.shape[0]
    zero = matrix == 0.0
    np.fill_diagonal(zero, False)
    alive = zero.any(axis=1)
    counts = (zero & alive[None, :]).sum(axis=1)
    while alive.sum() >= min_size:
        size = int(alive.sum())
        cand = np.where(alive, counts, n + 1)
        worst = int(np.argmin(cand))
        if counts[worst] >= min_share * (size - 1):
            return np.flatnonzero(alive)
        alive[worst] = False
        counts -= zero[:, worst]
    return np.empty(0, dtype=np.int64)


def degenerate_warnings(matrix: np.ndarray, names: Sequence[str]) -> list[str]:
    """Warn about NaN/inf entries, constant rows and blocks of exact zeros."""
    m = np.asarray(matrix, dtype=np.float64)
    n = m.shape[0]
    out: list[str] = []
    bad = ~np.isfinite(m)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        out.append(f"{int(bad.sum())} non-finite entries, in the rows of: {_names(names, rows)}")
    if n < 3:
        return out
    off = m[~np.eye(n, dtype=bool)].reshape(n, n - 1)
    with np.errstate(invalid="ignore"):
        constant = np.flatnonzero(np.all(off == off[:, :1], axis=1))
    if len(constant):
        out.append(
            f"{len(constant)} tasks have a constant row (no information about them): "
            f"{_names(names, constant)}"
        )
    block = zero_block(np.where(bad, np.nan, m))
    if len(block):
        sub = m[np.ix_(block, block)] == 0.0
        k = len(block)
        share = (sub.sum() - k) / max(k * (k - 1), 1)
        out.append(
            f"block of {k} tasks whose mutual affinities are exactly 0 ({share:.0%} of their "
            f"pairs; likely never scored): {_names(names, block)}"
        )
    return out


def wide_intervals(
    matrix: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    rel_width: float = 0.5,
) -> np.ndarray:
    """Boolean mask of off-diagonal entries whose interval is wide.

    "Wide" is relative to how spread out the entries are: an interval wider than
    ``rel_width`` times the interquartile range of the off-diagonal values cannot rank
    the entry against a typical other entry.
    """
    n = matrix.shape[0]
    offdiag = ~np.eye(n, dtype=bool)
    vals = matrix[offdiag]
    q1, q3 = np.percentile(vals, [25, 75]) if vals.size else (0.0, 0.0)
    spread = q3 - q1
    if spread <= 0:
        spread = float(np.abs(vals).max()) if vals.size else 0.0
    width = upper - lower
    return offdiag & (width > rel_width * spread) & (spread > 0)


def interval_warnings(
    matrix: np.ndarray, lower: np.ndarray, upper: np.ndarray, names: Sequence[str],
    rel_width: float = 0.5, widened: np.ndarray | None = None,
) -> tuple[list[str], list[list]]:
    """Warning lines and the flagged pairs ``[a, b, lower, upper]`` (upper triangle).
    ``widened`` marks entries whose interval the completion's error widened (partial
    scoring): the warning says how many of the flagged ones are such, since more scoring,
    not more probe examples, narrows those."""
    mask = np.triu(wide_intervals(matrix, lower, upper, rel_width), k=1)
    pairs = np.argwhere(mask)
    if not len(pairs):
        return [], []
    width = (upper - lower)[mask]
    order = np.argsort(-width, kind="stable")
    flagged = [
        [names[int(i)], names[int(j)], float(lower[i, j]), float(upper[i, j])]
        for i, j in pairs[order]
    ]
    n_pairs = matrix.shape[0] * (matrix.shape[0] - 1) // 2
    a, b, lo, hi = flagged[0]
    by_completion = 0 if widened is None else int(np.count_nonzero(widened[mask]))
    kind = "bootstrap intervals" if not by_completion else "intervals"
    msg = (
        f"{len(flagged)} of {n_pairs} task pairs have wide {kind} "
        f"(> {rel_width} x the interquartile range of entries); widest: ({a}, {b}) "
        f"[{lo:.3g}, {hi:.3g}]"
    )
    if by_completion:
        msg += (f"; {by_completion} of them widened by the completion's error (they use "
                "unscored pairs: a larger scoring.fraction narrows them)")
    return [msg], flagged
