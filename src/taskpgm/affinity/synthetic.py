"""Synthetic score tables with known structure (tests, benchmarks, demos).

Per-example scores follow ``log p_e(x) = M[e, t] + d_x + noise`` for x in task t's
probe set: a true mean matrix M (general expert strength + task difficulty + low-rank
interaction + an own-task bonus on the diagonal), an example difficulty d_x shared by
all experts (so scores are paired, as real ones are) and independent noise.
Shards of one task share one ``example_ids`` list, which keeps 316 x 316 tables small.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from taskpgm.scores import ScoreTable, Shard


def low_rank_means(n: int, rank: int = 3, seed: int = 0, own_bonus: float = 5.0) -> np.ndarray:
    """A mean log-likelihood matrix ``M[e, t]`` with low-rank structure."""
    rng = np.random.default_rng(seed)
    strength = rng.normal(0.0, 1.0, n)
    difficulty = rng.normal(-30.0, 5.0, n)
    u = rng.normal(0.0, 1.0, (n, rank))
    v = rng.normal(0.0, 1.0, (n, rank))
    m = strength[:, None] + difficulty[None, :] + u @ v.T
    m[np.diag_indices(n)] += own_bonus
    return m


def table_from_means(
    means: np.ndarray,
    n_examples: int | Sequence[int] = 50,
    noise: float = 1.0,
    seed: int = 0,
    names: Sequence[str] | None = None,
    extra_experts: dict[str, np.ndarray] | None = None,
) -> ScoreTable:
    """Draw per-example scores whose expected per-task means are ``means``.

    ``extra_experts`` maps a name (e.g. ``"base"``) to its row of means over the tasks.
    """
    rng = np.random.default_rng(seed)
    n = means.shape[0]
    names = list(names) if names is not None else [f"task{i:03d}" for i in range(n)]
    counts = [n_examples] * n if isinstance(n_examples, int) else list(n_examples)
    rows = {e: means[i] for i, e in enumerate(names)}
    rows.update(extra_experts or {})
    experts = list(rows)
    shards: dict[tuple[str, str], Shard] = {}
    for j, t in enumerate(names):
        m = counts[j]
        ids = [f"{t}-{k}" for k in range(m)]
        n_tokens = rng.integers(1, 30, size=m).astype(np.int32)
        difficulty = rng.normal(0.0, 3.0, m)
        eps = rng.normal(0.0, noise, (len(experts), m))
        for i, e in enumerate(experts):
            lp = rows[e][j] + difficulty + eps[i]
            lp -= lp.mean() - rows[e][j]  # hit the stated mean exactly
            shards[(e, t)] = Shard(ids, lp, n_tokens)
    return ScoreTable(experts, names, shards)


def table_with_topk(
    logprobs: dict[tuple[str, str], list[np.ndarray]],
    k: int,
) -> ScoreTable:
    """Build a table from full next-token log-distributions, keeping each top-k.

    ``logprobs[(expert, task)]`` is a list over probe examples of ``[positions, V]``
    log-probability arrays. The sequence log-likelihood stored is that of token 0 at
    every position (any fixed response will do for the divergence tests).
    """
    experts = sorted({e for e, _ in logprobs})
    tasks = sorted({t for _, t in logprobs})
    shards = {}
    ids_by_task: dict[str, list[str]] = {}
    for (e, t), per_example in logprobs.items():
        ids = ids_by_task.setdefault(t, [f"{t}-{x}" for x in range(len(per_example))])
        top_ids, top_lp, seq, ntok = [], [], [], []
        for lp in per_example:
            order = np.argsort(-lp, axis=1, kind="stable")[:, :k]
            top_ids.append(order.astype(np.int32))
            top_lp.append(np.take_along_axis(lp, order, axis=1).astype(np.float32))
            seq.append(float(lp[:, 0].sum()))
            ntok.append(lp.shape[0])
        shards[(e, t)] = Shard(ids, np.array(seq), np.array(ntok, dtype=np.int32),
                               top_ids, top_lp)
    return ScoreTable(experts, tasks, shards)
