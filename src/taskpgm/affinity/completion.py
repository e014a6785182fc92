"""Partial scoring: score a fraction of (expert, task) pairs and complete the rest.

Scoring is the expensive stage (n experts x n tasks shards). PMI depends only on the
expert-by-task mean log-likelihood matrix M (see ``pmi.py``), so we complete M, not
the affinity, and then take PMI of the completed M.

Model: ``M[e, t] = mu + a_e + b_t + Z[e, t]`` with a general expert strength a_e, a
task difficulty b_t and a low-rank interaction Z fitted by soft-impute (Mazumder,
Hastie & Tibshirani 2010, "Spectral regularization algorithms for learning large
incomplete matrices"), its shrinkage chosen on held-out observed entries.

The diagonal (each expert on its own task) is always scored: it is n of the n^2
pairs, it is what shows the experts learned at all, and it is an outlier to any
low-rank model (an expert is far better on its own task), so it is kept out of the
fit and put back exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from taskpgm.choices import SAMPLING, SCORING_SAMPLING
from taskpgm.errors import InputError

CURVE_STRATEGIES = SCORING_SAMPLING


def planned_offdiagonal(n: int, fraction: float) -> int:
    """How many off-diagonal pairs ``fraction`` plans (the diagonal is always scored)."""
    return int(min(max(round(fraction * n * n) - n, 0), n * (n - 1)))


def _name_keys(names: Sequence[str], seed: int, salt: str) -> np.ndarray:
    """A 64-bit key per name, from the name and the seed only (never the position)."""
    import hashlib

    return np.array([int.from_bytes(hashlib.blake2b(f"{seed}\0{salt}\0{name}".encode(),
                                                    digest_size=8).digest(), "little")
                     for name in names], dtype=np.uint64)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit moves every output bit."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def pair_keys(names: Sequence[str], seed: int, salt: str = "pair",
              symmetric: bool = False) -> np.ndarray:
    """An n x n matrix of pseudo-random 64-bit keys, one per (expert, task) pair, that
    depends only on the two names and the seed: the same pair keeps its key when tasks
    are added, removed or reordered."""
    k = _name_keys(names, seed, salt)
    a, b = k[:, None], k[None, :]
    if symmetric:
        a, b = np.minimum(a, b), np.maximum(a, b)
    with np.errstate(over="ignore"):
        return _mix(a ^ _mix(b + np.uint64(0x9E3779B97F4A7C15)))


def _smallest(keys: np.ndarray, count: int) -> np.ndarray:
    """Flat indices of the ``count`` smallest keys (ties, never seen in 64 bits, by index)."""
    return np.argsort(keys, kind="stable")[:count]


def sample_mask(n: int, fraction: float, seed: int = 0, strategy: str = "random", *,
                n_off: int | None = None, names: Sequence[str] | None = None) -> np.ndarray:
    """Which (expert, task) pairs to score: about ``fraction * n^2``, diagonal included
    (``n_off``: exactly that many off-diagonal pairs instead).

    Pairs are chosen by pseudo-random keys of the two task ``names`` (default: the
    positions) and the seed, so a pool that grows or shrinks keeps almost every pair it
    had scored: a scored pair stays scored unless new pairs with smaller keys displace it.

    ``random`` takes the off-diagonal pairs with the smallest keys. ``balanced`` anchors
    every row and column of M for the completion: each expert takes its own
    ``per_row // 2`` (+1 for some) smallest-key tasks, then each task its
    ``per_row - per_row // 2`` smallest-key experts among the rest, so every expert and
    every task gets about half the average share or more (near ``fraction`` 1, a task
    short of unscored experts leaves its share to the smallest keys overall). With one
    pair per row on average, the row half is empty and only tasks are anchored: some
    experts then have no off-diagonal pair at all.
    ``pairs`` takes unordered task pairs by a symmetric key and scores both directions (A
    on B and B on A), so a pair's PMI is either fully scored or fully estimated.
    """
    if not 0.0 < fraction <= 1.0:
        raise InputError(f"fraction must be in (0, 1], got {fraction}")
    if strategy not in SAMPLING:
        raise InputError(f"unknown sampling strategy {strategy!r} (use {', '.join(SAMPLING)})")
    names = [str(i) for i in range(n)] if names is None else list(names)
    if len(names) != n or len(set(names)) != n:
        raise InputError(f"sample_mask needs {n} distinct names, got {len(names)} "
                         f"({len(set(names))} distinct)")
    mask = np.eye(n, dtype=bool)
    n_off = planned_offdiagonal(n, fraction) if n_off is None else min(n_off, n * (n - 1))
    if n_off == 0:
        return mask
    top = np.iinfo(np.uint64).max
    if strategy == "pairs":
        keys = pair_keys(names, seed, symmetric=True)
        keys[np.tril_indices(n)] = top
        mask.ravel()[_smallest(keys.ravel(), min(n * (n - 1) // 2, round(n_off / 2)))] = True
        return mask | mask.T
    keys = pair_keys(names, seed)
    np.fill_diagonal(keys, top)
    if strategy == "random":
        mask.ravel()[_smallest(keys.ravel(), n_off)] = True
        return mask
    per_row, extra = divmod(n_off, n)
    by_rows = per_row // 2
    # Which experts take one more than the rest: by a key of their name, not position.
    more = np.zeros(n, dtype=np.int64)
    more[_smallest(_name_keys(names, seed, "extra"), extra)] = 1
    order = np.argsort(keys, axis=1, kind="stable")
    for e in range(n):
        mask[e, order[e, : by_rows + more[e]]] = True
    # Each task's share from its own keys (another salt: independent of the rows' draw).
    col = pair_keys(names, seed, salt="column").T  # [task, expert]
    col[mask.T] = top  # already scored (and the diagonal)
    order = np.argsort(col, axis=1, kind="stable")
    for t in range(n):
        mask[order[t, : per_row - by_rows], t] = True
    # Near fraction 1 a task can run out of unscored experts; the rest by smallest key.
    short = n + n_off - int(mask.sum())
    if short > 0:
        keys[mask] = top
        mask.ravel()[_smallest(keys.ravel(), short)] = True
    return mask


def _additive_fit(m: np.ndarray, mask: np.ndarray, iters: int = 20):
    """Least-squares ``mu + a_e + b_t`` on observed entries (alternating means)."""
    w = mask.astype(np.float64)
    mu = float(m[mask].mean())
    a = np.zeros(m.shape[0])
    b = np.zeros(m.shape[1])
    x = np.where(mask, m, 0.0)
    rc = np.maximum(w.sum(axis=1), 1.0)
    cc = np.maximum(w.sum(axis=0), 1.0)
    for _ in range(iters):
        a = ((x - mu - b[None, :]) * w).sum(axis=1) / rc
        b = ((x - mu - a[:, None]) * w).sum(axis=0) / cc
    return mu, a, b


def _outer(v: np.ndarray) -> np.ndarray:
    return (v[:, :, None] * v[:, None, :]).reshape(v.shape[0], -1)


def _spectral_start(r, mask, max_rank):
    """Top singular triplets of the zero-filled residual, rescaled for the missing share."""
    x = np.where(mask, r, 0.0) / max(mask.mean(), 1e-12)
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    return u[:, :max_rank], s[:max_rank], vt[:max_rank]


def _als(r, mask, rank, ridge, iters, start):
    """Rank-``rank`` fit ``U V^T`` of the observed entries of ``r`` by alternating ridge
    regressions (one batched solve per side per sweep)."""
    if rank == 0:
        return np.zeros_like(r)
    w = mask.astype(np.float64)
    x = np.where(mask, r, 0.0)
    u, s, vt = start
    root = np.sqrt(s[:rank])
    a, b = u[:, :rank] * root, vt[:rank].T * root
    eye = ridge * np.eye(rank)
    for _ in range(iters):
        # Per-row Gram matrices sum_t w[e, t] b_t b_t^T as one BLAS product.
        gram = (w @ _outer(b)).reshape(-1, rank, rank) + eye
        a = np.linalg.solve(gram, (x @ b)[:, :, None])[:, :, 0]
        gram = (w.T @ _outer(a)).reshape(-1, rank, rank) + eye
        b = np.linalg.solve(gram, (x.T @ a)[:, :, None])[:, :, 0]
    return a @ b.T


@dataclass
class Completion:
    means: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def complete_means(
    means: np.ndarray,
    mask: np.ndarray,
    seed: int = 0,
    ranks: Sequence[int] = (0, 1, 2, 3, 4, 6, 8, 12, 16, 24),
    holdout: float = 0.1,
    ridge: float = 0.1,
    iters: int = 30,
) -> Completion:
    """Fill the unobserved entries of M (observed entries are returned unchanged).

    The interaction rank is chosen on a random ``holdout`` share of the observed
    off-diagonal entries (rank 0 = additive model only), then refitted on all of them.
    """
    m = np.asarray(means, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if mask.all():
        return Completion(m.copy(), {"observed_fraction": 1.0})
    if not np.isfinite(m[mask]).all():
        raise InputError("observed mean log-likelihoods must be finite")
    fit = mask.copy()
    if m.shape[0] == m.shape[1]:
        np.fill_diagonal(fit, False)
    if fit.sum() < 2:
        raise InputError("too few scored (expert, task) pairs to complete the matrix")
    mu, a, b = _additive_fit(m, fit)
    base = mu + a[:, None] + b[None, :]
    r = np.where(fit, m - base, 0.0)
    scale = float(np.sqrt(np.mean(r[fit] ** 2))) or 1.0
    r = r / scale  # unit scale, so one ridge value suits any units of log-likelihood
    rng = np.random.default_rng(seed)
    obs = np.flatnonzero(fit.ravel())
    held = rng.choice(obs, size=max(1, int(holdout * len(obs))), replace=False)
    train = fit.copy()
    train.ravel()[held] = False
    per_line = min(train.sum(axis=1).min(), train.sum(axis=0).min())
    usable = [k for k in ranks if k <= max(per_line - 1, 0) and k <= min(m.shape) // 2]
    usable = usable or [0]
    start = _spectral_start(r, train, max(usable))
    errors: dict[int, float] = {}
    for k in usable:
        z = _als(r, train, k, ridge, iters, start)
        errors[k] = float(np.sqrt(np.mean((z.ravel()[held] - r.ravel()[held]) ** 2)))
        if len(errors) >= 3 and errors[k] > min(errors.values()) and \
                list(errors.values())[-2] > min(errors.values()):
            break  # held-out error rose twice in a row: larger ranks only overfit more
    best = min(errors, key=lambda k: (errors[k], k))
    z = _als(r, fit, best, ridge, iters, _spectral_start(r, fit, best) if best else None)
    out = np.where(mask, m, base + scale * z)
    info = {
        "observed_fraction": float(mask.mean()),
        "rank": int(best),
        "holdout_rmse": errors[best] * scale,
        "holdout_rmse_additive_only": errors.get(0, float(np.sqrt(np.mean(r.ravel()[held] ** 2))))
        * scale,
        "holdout_rmse_by_rank": {str(k): v * scale for k, v in errors.items()},
    }
    return Completion(out, info)


def completion_error(means: np.ndarray, mask: np.ndarray, completed: np.ndarray,
                     seed: int = 0, holdout: float = 0.1) -> dict[str, Any]:
    """How wrong the completion is likely to be on the pairs it estimated.

    Leave-some-out on measured pairs: hide a random ``holdout`` share of the scored
    off-diagonal pairs, complete from the rest exactly as for the real matrix, and
    compare with what was measured. ``m_rmse`` is the error of the mean log-likelihood;
    ``affinity_rmse`` that of the PMI entries that use a hidden pair (against the
    PMI of ``completed``, the matrix actually used), the unit of the report's heatmap.
    The hidden pairs were chosen like the scored ones, not where the completion is
    least sure, so for adaptive scoring this is a typical, not a worst-case, error.
    """
    from taskpgm.affinity.pmi import pmi_from_means

    m = np.asarray(means, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    off = np.flatnonzero((mask & ~np.eye(*mask.shape, dtype=bool)).ravel())
    n_hide = max(1, round(holdout * len(off)))
    if len(off) - n_hide < 2:
        return {}
    rng = np.random.default_rng([seed, 1])  # not the completion's own held-out draw
    hide = np.sort(rng.choice(off, size=n_hide, replace=False))
    keep = mask.copy()
    keep.ravel()[hide] = False
    est = complete_means(np.where(keep, m, np.nan), keep, seed=seed).means
    err = est.ravel()[hide] - m.ravel()[hide]
    hidden = np.zeros_like(mask)
    hidden.ravel()[hide] = True
    touched = (hidden | hidden.T) & ~np.eye(*mask.shape, dtype=bool)
    gap = pmi_from_means(est)[touched] - pmi_from_means(np.asarray(completed))[touched]
    spread = float(np.std(m.ravel()[off]))
    return {
        "method": f"leave-some-out: {n_hide} of {len(off)} scored off-diagonal pairs hidden "
                  "and completed from the rest",
        "hidden_pairs": int(n_hide),
        "m_rmse": float(np.sqrt(np.mean(err ** 2))),
        "m_rmse_relative": float(np.sqrt(np.mean(err ** 2)) / spread) if spread > 0 else None,
        "affinity_rmse": float(np.sqrt(np.mean(gap ** 2))),
        "affinity_entries": int(touched.sum() // 2),
    }


def adaptive_pairs(means: np.ndarray, mask: np.ndarray, n_new: int, seed: int = 0) -> np.ndarray:
    """The ``n_new`` unscored pairs to score next, where the completion is least sure.

    Uncertainty of an unscored entry = disagreement between two completions, each
    fitted on a random half of the scored off-diagonal pairs (plus the diagonal).
    Use between scoring rounds: score a first (e.g. balanced) share, call this, score
    the returned pairs, complete.
    """
    mask = np.asarray(mask, dtype=bool)
    rng = np.random.default_rng(seed)
    off = mask & ~np.eye(*mask.shape, dtype=bool)
    idx = np.flatnonzero(off.ravel())
    half = rng.permutation(idx)[: len(idx) // 2]
    first = mask & np.eye(*mask.shape, dtype=bool)
    first.ravel()[half] = True
    second = mask & ~first
    second |= np.eye(*mask.shape, dtype=bool) & mask
    a = complete_means(np.where(first, means, np.nan), first, seed=seed).means
    b = complete_means(np.where(second, means, np.nan), second, seed=seed + 1).means
    spread = np.where(mask, -np.inf, np.abs(a - b))
    n_new = int(min(n_new, (~mask).sum()))
    order = np.argsort(-spread.ravel(), kind="stable")[:n_new]
    new = np.zeros_like(mask)
    new.ravel()[order] = True
    return new


def _curve_mask(means, fraction, seed, strategy):
    n = means.shape[0]
    if strategy != "adaptive":
        return sample_mask(n, fraction, seed=seed, strategy=strategy)
    # Two rounds: half the budget balanced, the other half where the completion of the
    # first round is least certain.
    mask = sample_mask(n, max(fraction / 2, 1.0 / n), seed=seed, strategy="balanced")
    target = min(max(round(fraction * n * n), n), n * n)
    if target > mask.sum():
        mask |= adaptive_pairs(means, mask, target - int(mask.sum()), seed=seed)
    return mask


def _offdiag_upper(s: np.ndarray) -> np.ndarray:
    return s[np.triu_indices(s.shape[0], k=1)]


def completion_curve(
    means: np.ndarray,
    fractions: Sequence[float] = (1.0, 0.8, 0.6, 0.4, 0.3, 0.2),
    seed: int = 0,
    strategy: str = "random",
    mixture_fn: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """How close PMI from a partially scored, completed M is to PMI from the full M.

    ``strategy``: a :func:`sample_mask` strategy, or ``adaptive`` (two scoring rounds,
    see :func:`adaptive_pairs`).

    Per fraction: Pearson and Spearman correlation of the off-diagonal PMI entries, the
    relative error of the completed M on unscored pairs, and (when ``mixture_fn`` maps
    an affinity matrix to mixture weights) the L1 distance between the two mixtures.
    """
    from scipy.stats import pearsonr, spearmanr

    from taskpgm.affinity.pmi import pmi_from_means

    full = pmi_from_means(means)
    ref_w = mixture_fn(full) if mixture_fn is not None else None
    rows = []
    for f in fractions:
        mask = _curve_mask(means, f, seed, strategy)
        comp = complete_means(np.where(mask, means, np.nan), mask, seed=seed)
        s = pmi_from_means(comp.means)
        a, b = _offdiag_upper(full), _offdiag_upper(s)
        unseen = ~mask
        rel = (
            float(np.linalg.norm((comp.means - means)[unseen]) /
                  max(np.linalg.norm((means - means[unseen].mean())[unseen]), 1e-300))
            if unseen.any() else 0.0
        )
        row = {
            "fraction": float(f),
            "scored_fraction": float(mask.mean()),
            "pearson": float(pearsonr(a, b)[0]) if np.ptp(b) > 0 else float("nan"),
            "spearman": float(spearmanr(a, b)[0]) if np.ptp(b) > 0 else float("nan"),
            "m_rel_error_unscored": rel,
            "rank": comp.info.get("rank"),
        }
        if mixture_fn is not None:
            row["mixture_l1"] = float(np.abs(mixture_fn(s) - ref_w).sum())
        rows.append(row)
    return rows
