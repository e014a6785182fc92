"""Which tasks are redundant: affinity entries read against their own noise and scale.

An affinity S (PMI and friends: 0 = interchangeable experts, more negative = more
different) says how far apart two tasks are, ``d = max(-sym(S), 0)``. Whether a given
``d`` means "the same task under another template" or "a different skill" depends on
two things the raw number does not carry:

- **noise**: a PMI entry is a mean over probe examples, so two interchangeable experts
  never measure exactly 0 (and can measure slightly above it: a positive affinity is
  read as 0, never as "more similar than a task to itself");
- **scale**: the spread of distances in the pool (about 2 nats/token between skills of
  the synthetic suites, 4 on BIG-bench).

So every pair gets a bandwidth ``h_ij = max(Z_NOISE * sigma_ij, REL_SCALE * D)`` with
``sigma_ij`` the entry's standard error (from bootstrap intervals when the affinity has
them) and ``D`` the median off-diagonal distance, and the *normalised distance*
``t_ij = d_ij / h_ij``. A pair is indistinguishable when ``d`` lies within two standard
errors of 0, or within 10% of the typical distance between tasks (the option
``bandwidth``; 5% until docs/DECISIONS.md D26). Z_NOISE was fixed before any benchmark
run (D12); the 10% was chosen by D25's rule on development seeds. ``t`` drives the ``calibrated``
kernel ``exp(-t^2 / 2)`` and the clusters of the ``cluster-balanced`` strategy, cut
where that kernel falls to 1/2, so the two always agree on what "redundant" means.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from scipy.stats import norm

from taskpgm.errors import InputError

Z_NOISE = 2.0  # standard errors within which a distance is indistinguishable from 0
# Fraction of the median distance below which tasks are near-copies. 0.05 until D26: the
# templates of one skill sit 0.1-0.7 nats apart where skills sit ~3.5, and 5% paid a family
# twice for a template 0.4 nats off; 0.10 won D25's rule on development seeds.
REL_SCALE = 0.10
# exp(-t^2/2) = 1/2: two tasks share a cluster when the kernel calls them more alike than not
CLUSTER_CUT = float(np.sqrt(2.0 * np.log(2.0)))


def distances(S: np.ndarray) -> np.ndarray:
    """``max(-sym(S), 0)`` with a zero diagonal."""
    A = 0.5 * (np.asarray(S, dtype=np.float64) + np.asarray(S, dtype=np.float64).T)
    d = np.maximum(-A, 0.0)
    np.fill_diagonal(d, 0.0)
    return d


def noise_from_intervals(lower: np.ndarray, upper: np.ndarray, level: float = 0.95) -> np.ndarray:
    """Per-entry standard errors from (percentile) intervals at ``level``."""
    z = float(norm.ppf(0.5 + level / 2.0))
    sigma = 0.5 * (np.asarray(upper, dtype=np.float64) - np.asarray(lower, dtype=np.float64)) / z
    sigma = np.maximum(0.5 * (sigma + sigma.T), 0.0)
    np.fill_diagonal(sigma, 0.0)
    return sigma


def check_noise(noise, n: int) -> np.ndarray | None:
    """A scalar or an n x n matrix of non-negative standard errors (None: unknown)."""
    if noise is None:
        return None
    try:
        arr = np.asarray(noise, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("noise must be a number or an n x n matrix of standard errors") from None
    if arr.ndim == 0:
        arr = np.full((n, n), float(arr))
    if arr.shape != (n, n):
        raise InputError(f"noise must be a number or a {n}x{n} matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise InputError("noise: standard errors must be finite and >= 0")
    return arr


def check_bandwidth(bandwidth) -> float:
    """The relative bandwidth (fraction of the median distance); None: ``REL_SCALE``."""
    if bandwidth is None:
        return REL_SCALE
    try:
        value = float(bandwidth)
    except (TypeError, ValueError):
        raise InputError(f"bandwidth must be a number > 0, got {bandwidth!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise InputError(f"bandwidth must be a number > 0, got {bandwidth!r}")
    return value


def normalised_distances(S: np.ndarray, noise=None,
                         bandwidth: float | None = None) -> tuple[np.ndarray, dict[str, float]]:
    """``t = d / h`` (see the module docstring) and the numbers that set ``h``.

    ``bandwidth``: the fraction of the median distance below which two tasks count as
    near-copies (default ``REL_SCALE``)."""
    rel = check_bandwidth(bandwidth)
    d = distances(S)
    n = d.shape[0]
    off = d[~np.eye(n, dtype=bool)]
    scale = float(np.median(off)) if off.size else 0.0
    sigma = check_noise(noise, n)
    h = np.full((n, n), rel * scale)
    if sigma is not None:
        h = np.maximum(h, Z_NOISE * sigma)
    if not np.any(h > 0):
        # Every distance is 0 (or there is nothing to compare): all tasks are one cluster.
        h = np.ones((n, n))
    h = np.where(h > 0, h, np.min(h[h > 0]))
    info = {"median_distance": scale, "rel_scale": rel, "z_noise": Z_NOISE,
            "noise": "per-entry standard errors" if sigma is not None else "unknown",
            "median_bandwidth": float(np.median(h[~np.eye(n, dtype=bool)])) if n > 1 else 0.0}
    return d / h, info


def redundancy_clusters(S: np.ndarray, noise=None, bandwidth: float | None = None) -> np.ndarray:
    """Cluster labels 0..k-1 (numbered by first member): average-linkage clustering of
    the normalised distances, cut at ``CLUSTER_CUT`` (where the calibrated kernel = 1/2)."""
    t, _ = normalised_distances(S, noise, bandwidth)
    n = t.shape[0]
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    raw = fcluster(linkage(squareform(t, checks=False), method="average"), CLUSTER_CUT,
                   criterion="distance")
    # Renumber by first appearance so labels do not depend on scipy's internal order.
    first: dict[int, int] = {}
    return np.array([first.setdefault(int(c), len(first)) for c in raw], dtype=np.int64)
