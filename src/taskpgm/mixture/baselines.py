"""Mixing baselines that need only the task sizes (number of training examples).

- ``uniform``: 1/n each.
- ``size``: examples-proportional, n_i / sum n.
- ``temperature``: p_i ~ n_i^(1/T) (Arivazhagan et al. 2019; T = 1 is ``size``,
  T -> inf is ``uniform``).
- ``capped``: T5's examples-proportional mixing with an artificial limit K
  (Raffel et al. 2020, sec. 3.5.2): p_i = min(n_i, K) / sum_j min(n_j, K).
- ``unimax``: UniMax (Chung et al. 2023, Algorithm 1): spread a budget of B examples as
  uniformly as possible, but never more than N epochs of any task. Tasks are visited
  smallest first; each gets min(N n_i, remaining budget / remaining tasks).
"""

from __future__ import annotations

import numpy as np

from taskpgm.errors import InputError


def _check_sizes(sizes: np.ndarray) -> np.ndarray:
    sizes = np.asarray(sizes, dtype=np.float64)
    if sizes.ndim != 1 or len(sizes) == 0:
        raise InputError("sizes: need one size per task")
    if not np.all(np.isfinite(sizes)) or np.any(sizes < 0):
        raise InputError("sizes: every task size must be a finite number >= 0")
    if sizes.sum() <= 0:
        raise InputError("sizes: all task sizes are 0")
    return sizes


def uniform_weights(n: int) -> np.ndarray:
    return np.full(n, 1.0 / n)


def size_weights(sizes) -> np.ndarray:
    s = _check_sizes(sizes)
    return s / s.sum()


def temperature_weights(sizes, temperature: float) -> np.ndarray:
    if not (np.isfinite(temperature) and temperature > 0):
        raise InputError(f"temperature must be a positive number, got {temperature}")
    s = _check_sizes(sizes)
    # Work in log space: n^(1/T) overflows for large n and small T.
    with np.errstate(divide="ignore"):
        logw = np.log(s) / temperature
    logw -= logw[np.isfinite(logw)].max()
    w = np.exp(logw)
    return w / w.sum()


def capped_weights(sizes, cap: float) -> np.ndarray:
    if not (np.isfinite(cap) and cap > 0):
        raise InputError(f"cap (T5 mixing limit K) must be a positive number, got {cap}")
    s = np.minimum(_check_sizes(sizes), cap)
    return s / s.sum()


def unimax_allocation(sizes, budget: float, max_epochs: float) -> np.ndarray:
    """UniMax example counts per task (Chung et al. 2023, Algorithm 1)."""
    if not (np.isfinite(budget) and budget > 0):
        raise InputError(f"unimax budget must be a positive number, got {budget}")
    if not (np.isfinite(max_epochs) and max_epochs > 0):
        raise InputError(f"unimax max epochs must be a positive number, got {max_epochs}")
    s = _check_sizes(sizes)
    alloc = np.zeros_like(s)
    remaining = float(budget)
    order = np.argsort(s, kind="stable")
    for rank, i in enumerate(order):
        share = remaining / (len(s) - rank)
        alloc[i] = min(s[i] * max_epochs, share)
        remaining -= alloc[i]
    return alloc


def unimax_weights(sizes, budget: float, max_epochs: float) -> np.ndarray:
    alloc = unimax_allocation(sizes, budget, max_epochs)
    if alloc.sum() <= 0:
        raise InputError("unimax: nothing allocated (all tasks empty)")
    return alloc / alloc.sum()
