"""Target-aware unary utilities measured from scores.

A user usually cares about some evaluation tasks (the *targets*) that have no expert of
their own: held-out tasks, a benchmark's dev set. Their affinity rows do not exist, so
``unary="target"`` over the affinity matrix cannot reach them. What the scores do hold
is how much each training task's expert improves over the base model on the targets'
probe examples — a PMI-style quantity that needs no expert for the target:

    u_A = mean_{T in targets} mean_{x in D_T} (log p_A(y|x) - log p_base(y|x)) / |y|

(nats per response token). Targets that do have experts use the same formula, so both
kinds sit on one scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from taskpgm.errors import InputError
from taskpgm.scores import ScoreTable

BASE_EXPERT_NAMES = ("base", "__base__", "_base")


def base_expert_name(table: ScoreTable) -> str:
    """The untuned model's row in the scores (``taskpgm score --base``)."""
    for cand in BASE_EXPERT_NAMES:
        if cand in table.experts:
            return cand
    where = f"{table.root}: " if table.root is not None else ""
    raise InputError(
        f"{where}the scores hold no base-model row (expert 'base'); "
        "score with 'taskpgm score --base MODEL'"
    )


def target_utilities(
    table: ScoreTable, train_tasks: Sequence[str], targets: Sequence[str]
) -> np.ndarray:
    """Mean per-token log-likelihood gain of each training task's expert on the targets."""
    if not targets:
        raise InputError("target-aware utilities need at least one target task")
    table.require(train_tasks, targets, what="target task")
    base = base_expert_name(table)
    gains = np.zeros(len(train_tasks))
    for t in targets:
        n_tok = np.maximum(table.n_tokens(t).astype(np.float64), 1.0)
        base_lp = table.shard(base, t).logprob / n_tok
        for i, a in enumerate(train_tasks):
            gains[i] += float(np.mean(table.shard(a, t).logprob / n_tok - base_lp))
    return gains / len(targets)


def scale_like_rowsum(u: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Put measured utilities on the scale of the reference ``u = K 1``.

    Utilities are log-likelihood gains (nats/token); the kernel is built from the
    affinity in its own units. Matching the spread of the affinity's row sums keeps the
    trade-off ``r`` meaning the same tilt for both unary choices; a constant added to u
    does not move the optimum on the simplex, so centring loses nothing.
    """
    u = np.asarray(u, dtype=np.float64)
    s = 0.5 * (matrix + matrix.T)
    ref = np.std(s.sum(axis=1))
    spread = np.std(u)
    if spread <= 0 or not np.isfinite(spread) or ref <= 0:
        return u - u.mean()
    return (u - u.mean()) * (ref / spread)
