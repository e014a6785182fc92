"""PMI affinity from the expert-by-task mean log-likelihood matrix.

For tasks A, B with probe sets D_A, D_B and experts named after them (DESIGN.md):

    S_AB = 1/2 [ mean_{D_B}(log p_A - log p_B) + mean_{D_A}(log p_B - log p_A) ]

Writing ``M[e, t] = mean_{x in D_t} log p_e(x)`` (the mean log-likelihood of expert
``e`` on task ``t``'s probe set), the two means are differences of entries of M:

    S_AB = 1/2 (M[A, B] + M[B, A] - M[A, A] - M[B, B])

so PMI is a function of M alone. That is why the whole matrix costs one pass over the
scores (one mean per shard), why bootstrap replicates only need resampled means, and
why partial scoring completes M (not S). Everything stays in log space: the scores are
log-likelihoods and only their means and differences are taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from taskpgm.choices import NORMALIZATIONS
from taskpgm.errors import InputError

if TYPE_CHECKING:
    from taskpgm.scores import ScoreTable


@dataclass
class TaskScores:
    """All experts' per-example scores on one task's probe set, shape ``[n_experts, m]``.

    Rows of experts with no shard for this task are NaN (only allowed when completing).
    """

    task: str
    example_ids: list[str]
    values: np.ndarray


def task_scores(
    table: ScoreTable,
    task: str,
    experts: Sequence[str],
    normalize: str = "sequence",
    allow_missing: bool = False,
) -> TaskScores:
    """Gather one task's per-example log-likelihoods for ``experts``, validated.

    ``normalize="token"`` divides each example's log-likelihood by its response token
    count (each shard's own count, so experts with different tokenizers stay comparable).
    """
    if normalize not in NORMALIZATIONS:
        raise InputError(f"unknown normalization {normalize!r} (use sequence or token)")
    ref_ids: list[str] | None = None
    ref_expert = ""
    rows: list[np.ndarray | None] = []
    for e in experts:
        if not table.has(e, task):
            if not allow_missing:
                raise InputError(f"no scores for expert {e!r} on task {task!r}")
            rows.append(None)
            continue
        shard = table.shard(e, task)
        if ref_ids is None:
            ref_ids, ref_expert = shard.example_ids, e
            if len(ref_ids) == 0:
                raise InputError(f"expert {e!r} scored no probe examples of task {task!r}")
        elif shard.example_ids is not ref_ids and shard.example_ids != ref_ids:
            raise InputError(
                f"expert {e!r} scored different probe examples of task {task!r} "
                f"than expert {ref_expert!r}"
            )
        lp = np.asarray(shard.logprob, dtype=np.float64)
        bad = ~np.isfinite(lp)
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(
                f"non-finite score {lp[i]} for expert {e!r} on task {task!r}, "
                f"example {shard.example_ids[i]!r}"
            )
        if normalize == "token":
            nt = np.asarray(shard.n_tokens)
            if (nt <= 0).any():
                i = int(np.argmax(nt <= 0))
                raise InputError(
                    f"n_tokens is {int(nt[i])} for expert {e!r} on task {task!r}, "
                    f"example {shard.example_ids[i]!r}; token normalisation needs >= 1"
                )
            lp = lp / nt
        rows.append(lp)
    if ref_ids is None:
        raise InputError(f"no expert has scores on task {task!r}")
    m = len(ref_ids)
    values = np.full((len(experts), m), np.nan)
    for i, r in enumerate(rows):
        if r is not None:
            values[i] = r
    return TaskScores(task, ref_ids, values)


def pmi_from_means(means: np.ndarray) -> np.ndarray:
    """PMI from mean log-likelihoods ``M[..., e, t]`` (experts and tasks aligned).

    Works on a stack of matrices (leading batch axes), e.g. bootstrap replicates.
    The diagonal is exactly 0 and the result exactly symmetric.
    """
    diag = np.diagonal(means, axis1=-2, axis2=-1)
    # gap[e, t] = M[e, t] - M[t, t]: how much worse expert e does than task t's own
    # expert, on t. Grouping the differences this way makes identical experts give
    # exactly 0, and a + b == b + a in floating point makes S exactly symmetric.
    gap = means - diag[..., None, :]
    s = 0.5 * (gap + np.swapaxes(gap, -1, -2))
    idx = np.arange(means.shape[-1])
    s[..., idx, idx] = 0.0
    return s


@dataclass
class MeanScores:
    """Mean log-likelihood matrix and, optionally, its bootstrap replicates."""

    means: np.ndarray  # [n_experts, n_tasks]
    replicates: np.ndarray | None  # [B, n_experts, n_tasks]
    n_examples: np.ndarray  # [n_tasks]


def mean_scores(
    table: ScoreTable,
    tasks: Sequence[str],
    experts: Sequence[str] | None = None,
    normalize: str = "sequence",
    bootstrap: int = 0,
    seed: int = 0,
    allow_missing: bool = False,
    progress=None,
) -> MeanScores:
    """One pass over the table, task by task (memory stays at one task's scores).

    Bootstrap: each replicate resamples every task's probe examples with replacement,
    once, and the same resample is used for all experts on that task (the scores are
    paired). Resamples are turned into counts per example, so a replicate's means are
    one matrix product ``counts @ scores.T`` per task.
    """
    experts = list(experts) if experts is not None else list(tasks)
    rng = np.random.default_rng(seed)
    means = np.empty((len(experts), len(tasks)))
    reps = np.empty((bootstrap, len(experts), len(tasks))) if bootstrap > 0 else None
    n_ex = np.empty(len(tasks), dtype=np.int64)
    for j, t in enumerate(tasks):
        ts = task_scores(table, t, experts, normalize, allow_missing)
        x = ts.values
        m = x.shape[1]
        n_ex[j] = m
        means[:, j] = x.mean(axis=1)
        if reps is not None:
            # Resample indices, then count them per replicate with one flat bincount
            # (10x faster than rng.multinomial for hundreds of categories).
            idx = rng.integers(0, m, size=(bootstrap, m))
            flat = (np.arange(bootstrap)[:, None] * m + idx).ravel()
            counts = np.bincount(flat, minlength=bootstrap * m).reshape(bootstrap, m)
            counts = counts.astype(np.float64)
            reps[:, :, j] = (counts @ x.T) / m
        if progress is not None:
            progress()
    return MeanScores(means, reps, n_ex)


def percentile_interval(
    replicates: np.ndarray, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval over axis 0."""
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(replicates, [alpha, 1.0 - alpha], axis=0)
    return lo, hi
