"""``compute_affinity``: a ScoreTable in, an AffinityMatrix out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from taskpgm.affinity.diagnostics import degenerate_warnings, interval_warnings
from taskpgm.affinity.io import AffinityMatrix
from taskpgm.affinity.pmi import mean_scores, percentile_interval, pmi_from_means
from taskpgm.choices import METRICS, NORMALIZATIONS
from taskpgm.errors import ConfigError, InputError

if TYPE_CHECKING:
    from taskpgm.scores import ScoreTable

IGNORED_EXPERTS = ("base",)


def affinity_tasks(
    table: ScoreTable, ignore_experts: Sequence[str] = IGNORED_EXPERTS
) -> tuple[list[str], list[str]]:
    """Tasks that get a row in the matrix (have an expert and a probe set) and the rest.

    Experts are named after the task they were trained on. An expert named after no
    task (other than e.g. ``base``) means the names do not line up: an error.
    """
    task_set = set(table.tasks)
    for e in table.experts:
        if e not in task_set and e not in ignore_experts:
            raise InputError(
                f"expert {e!r} is named after no task in the scores (experts must be named "
                f"after the task they were trained on; tasks: {', '.join(table.tasks[:5])}"
                f"{', ...' if len(table.tasks) > 5 else ''})"
            )
    experts = set(table.experts)
    kept = [t for t in table.tasks if t in experts]
    skipped = [t for t in table.tasks if t not in experts]
    if len(kept) < 2:
        raise InputError(
            f"need at least 2 tasks that have both an expert and probe scores, found {len(kept)}"
        )
    return kept, skipped


def _first_missing(table: ScoreTable, tasks: Sequence[str]) -> tuple[str, str] | None:
    for e in tasks:
        for t in tasks:
            if not table.has(e, t):
                return e, t
    return None


def completion_m_error(estimated_error: dict, means: np.ndarray,
                       measured: np.ndarray) -> tuple[float, str]:
    """The typical error of an estimated mean log-likelihood, and where it comes from.

    The leave-some-out estimate when there was enough to hide; otherwise the spread of
    the measured off-diagonal means (the error of knowing nothing but their average), so
    a pool too small to check its completion gets wide intervals rather than none."""
    if estimated_error.get("m_rmse") is not None:
        return float(estimated_error["m_rmse"]), "leave-some-out"
    off = measured & ~np.eye(*measured.shape, dtype=bool)
    spread = float(np.std(means[off])) if off.sum() > 1 else float(np.std(means[measured]))
    return spread, "spread of the measured means (too few pairs to hide)"


def _column_shift(replicates: np.ndarray, means: np.ndarray,
                  estimated: np.ndarray) -> np.ndarray:
    """[B, tasks]: how far each replicate's resample of a task's probe examples moves the
    measured off-diagonal means on that task, on average.

    A replicate resamples a task's examples once for every expert, so a measured gap
    M_et - M_tt keeps its pairing and example difficulty cancels. An estimated M_et must
    move with that shared shift too (the completion's task effect would refit to it);
    held still, its gap would carry the whole spread of M_tt. Its own estimation error is
    added separately (:func:`widen_for_completion`)."""
    off = ~estimated & ~np.eye(*estimated.shape, dtype=bool)
    delta = np.where(off[None], replicates - means[None], 0.0)
    count = off.sum(axis=0)
    return np.divide(delta.sum(axis=1), count, out=np.zeros(delta.shape[::2]),
                     where=count > 0)


def widen_for_completion(matrix: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                         estimated: np.ndarray, m_error: float,
                         level: float) -> tuple[np.ndarray, np.ndarray]:
    """Add the completion's error to the bootstrap interval of every entry it touches.

    PMI_ij = (gap_ij + gap_ji) / 2 with gap_ij = M_ij - M_jj, and the diagonal is always
    measured, so an entry carries the estimation error of each of M_ij, M_ji that was
    estimated: standard error ``m_error * sqrt(k) / 2`` for k of them, independent of
    the probe-sampling noise, so each side of the interval grows in quadrature. Entries
    that use no estimated pair keep their bootstrap interval exactly."""
    from scipy.stats import norm

    k = estimated.astype(np.float64) + estimated.T.astype(np.float64)
    np.fill_diagonal(k, 0.0)
    half = float(norm.ppf(0.5 + level / 2.0)) * 0.5 * m_error * np.sqrt(k)
    touched = k > 0
    lower = np.where(touched, matrix - np.hypot(matrix - lower, half), lower)
    upper = np.where(touched, matrix + np.hypot(upper - matrix, half), upper)
    return lower, upper


def compute_affinity(
    table: ScoreTable,
    metric: str = "pmi",
    normalize: str = "sequence",
    bootstrap: int = 0,
    seed: int = 0,
    *,
    complete: bool = False,
    level: float = 0.95,
    wide_rel_width: float = 0.5,
    ignore_experts: Sequence[str] = IGNORED_EXPERTS,
    progress: Callable[[], None] | None = None,
) -> AffinityMatrix:
    """Affinity between tasks from every expert's scores on every task's probe set.

    ``metric``: ``pmi`` (symmetrised log-likelihood ratio), ``jsd`` / ``skl``
    (Jensen-Shannon / symmetric KL between next-token distributions from stored top-k
    data, negated), ``ce-gap`` (symmetrised per-token cross-entropy gap, negated). All
    are symmetric with a zero diagonal; larger means more similar, 0 = interchangeable.
    ``bootstrap`` > 0 adds percentile intervals (``lower``/``upper``) from resampled
    probe examples (PMI and ce-gap need only scalar scores; supported for PMI).
    ``complete`` estimates unscored (expert, task) pairs by low-rank completion (PMI);
    with ``bootstrap`` the intervals of entries that use an estimated pair also carry
    the completion's estimated error (:func:`widen_for_completion`).
    Warnings (degenerate structure, wide intervals) go into ``provenance["warnings"]``.
    """
    # Messages name the parameters (``bootstrap``, ``complete=True``), never a CLI flag; the
    # CLI writes ``parameter 'x'`` and ``x=True`` as its flags (taskpgm.cli.solve).
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r} (use {', '.join(METRICS)})")
    if normalize not in NORMALIZATIONS:
        raise ConfigError(f"unknown normalization {normalize!r} (use "
                          f"{' or '.join(NORMALIZATIONS)})")
    if bootstrap < 0:
        raise ConfigError(f"bootstrap must be >= 0, got {bootstrap}")
    if bootstrap and metric != "pmi":
        raise ConfigError(f"parameter 'bootstrap' (intervals) is supported for metric pmi "
                          f"only, not {metric!r}")
    if complete and metric != "pmi":
        raise ConfigError(f"complete=True (low-rank completion) is supported for metric pmi "
                          f"only, not {metric!r}")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"interval level must be in (0, 1), got {level}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")

    tasks, skipped = affinity_tasks(table, ignore_experts)
    missing = _first_missing(table, tasks)
    if missing is not None and not complete:
        n_missing = sum(not table.has(e, t) for e in tasks for t in tasks)
        raise InputError(
            f"no scores for expert {missing[0]!r} on task {missing[1]!r} "
            f"({n_missing} of {len(tasks) ** 2} pairs missing; pass complete=True to estimate "
            "them)"
        )

    prov: dict[str, Any] = {
        "metric": metric,
        "normalize": normalize if metric == "pmi" else None,
        "bootstrap": int(bootstrap),
        "seed": int(seed),
        "sign": "affinity = larger is more similar; 0 = interchangeable experts",
        "skipped_tasks": skipped,
        "ignored_experts": [e for e in table.experts if e not in set(tasks)],
    }
    if table.root is not None:
        prov["scores"] = str(table.root)
    lower = upper = None
    widened: np.ndarray | None = None  # entries the completion's error widened
    estimated = None  # mask of the (expert, task) pairs the completion estimated

    if metric == "pmi":
        ms = mean_scores(table, tasks, tasks, normalize, bootstrap, seed,
                         allow_missing=complete, progress=progress)
        means = ms.means
        if complete and missing is not None:
            from taskpgm.affinity.completion import complete_means, completion_error

            mask = np.isfinite(means)
            diag_missing = [t for i, t in enumerate(tasks) if not mask[i, i]]
            if diag_missing:
                raise InputError(
                    f"no scores for expert {diag_missing[0]!r} on its own task; completion "
                    "needs every expert scored on its own task"
                )
            comp = complete_means(means, mask, seed=seed)
            error = completion_error(means, mask, comp.means, seed=seed)
            prov["completion"] = comp.info | {
                "n_missing_pairs": int((~mask).sum()), "estimated_error": error}
            estimated = ~mask
            means = comp.means
        matrix = pmi_from_means(means)
        if ms.replicates is not None:
            replicates = ms.replicates
            if estimated is not None:
                replicates = np.where(estimated[None],
                                      means[None] + _column_shift(ms.replicates, means,
                                                                  estimated)[:, None, :],
                                      ms.replicates)
            lower, upper = percentile_interval(pmi_from_means(replicates), level)
            prov["interval_level"] = level
            if estimated is not None:
                m_error, source = completion_m_error(prov["completion"]["estimated_error"],
                                                     means, ~estimated)
                before = upper - lower
                lower, upper = widen_for_completion(matrix, lower, upper, estimated,
                                                    m_error, level)
                widened = (upper - lower) > before
                prov["completion"]["interval_m_error"] = {"value": m_error, "from": source}
        prov["n_examples"] = {t: int(c) for t, c in zip(tasks, ms.n_examples, strict=True)}
    elif metric == "ce-gap":
        from taskpgm.affinity.divergence import ce_gap_matrix

        matrix = -ce_gap_matrix(table, tasks)
    else:
        from taskpgm.affinity.divergence import divergence_matrix

        matrix = -divergence_matrix(table, tasks, metric, progress=progress)
    np.fill_diagonal(matrix, 0.0)

    warnings = degenerate_warnings(matrix, tasks)
    if lower is not None and upper is not None:
        lines, flagged = interval_warnings(matrix, lower, upper, tasks, wide_rel_width,
                                           widened)
        warnings += lines
        prov["wide_intervals"] = {"count": len(flagged), "widest": flagged[:20],
                                  "rel_width": wide_rel_width}
    prov["warnings"] = warnings
    return AffinityMatrix(list(tasks), matrix, kind=metric, lower=lower, upper=upper,
                          provenance=prov)
