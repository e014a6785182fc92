"""Divergences between two experts' next-token distributions from stored top-k data.

Each shard may store, per response position, an expert's top-k token ids and their
log-probabilities. Two experts scored on the same inputs give, at each position, two
truncated distributions P (expert A) and Q (expert B). We compare them on a common
partition of the vocabulary:

* every id in the union U of the two top-k lists is its own outcome;
* every other id is lumped into one "other" outcome.

An id in A's top-k but not in B's has an unknown probability under B. We impute it
as ``q_miss = min(q_kth, r_B / (n_miss + 1))``, where ``r_B`` is B's probability mass
outside its top-k, ``n_miss`` how many ids of U are missing from B's list and
``q_kth`` B's smallest listed probability (an unlisted id cannot be more likely than a
listed one). B's "other" outcome gets what is left, ``r_B - n_miss * q_miss >= 0``.
So both sides are proper distributions that respect everything the top-k data says,
and the result is exact whenever the top-k lists carry all the mass (k = vocabulary).
The approximation is documented in docs/affinity.md.

Affinities are negated divergences: 0 means identical distributions, more negative
means more different, the same convention as PMI.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import logsumexp, rel_entr

from taskpgm.errors import InputError
from taskpgm.scores import ScoreTable

DIVERGENCES = ("jsd", "skl")
# Imputed probabilities are floored here so that KL terms stay finite when an expert's
# residual mass rounds to 0 while the other expert puts mass on ids it did not list.
KL_FLOOR = 1e-10


def stack_topk(table: ScoreTable, expert: str, task: str) -> tuple[np.ndarray, np.ndarray]:
    """All response positions of one shard: ids ``[P, k]`` int, log-probs ``[P, k]``."""
    shard = table.shard(expert, task)
    if shard.topk_ids is None or shard.topk_logprobs is None:
        raise InputError(
            f"expert {expert!r} on task {task!r} has no top-k scores; "
            "re-run scoring with --topk K for jsd/skl"
        )
    ids = [np.asarray(a, dtype=np.int64) for a in shard.topk_ids]
    lps = [np.asarray(a, dtype=np.float64) for a in shard.topk_logprobs]
    k = next((a.shape[1] for a in ids if a.ndim == 2), 0)
    # An example with no response positions reads back as a flat empty list.
    ids = [a if a.ndim == 2 else a.reshape(0, k) for a in ids]
    lps = [a if a.ndim == 2 else a.reshape(0, k) for a in lps]
    for x, (a, b) in enumerate(zip(ids, lps, strict=True)):
        if a.shape != b.shape or a.shape[1] != k:
            raise InputError(
                f"expert {expert!r} on task {task!r}, example {shard.example_ids[x]!r}: "
                f"top-k ids {a.shape} and log-probs {b.shape} differ in shape"
            )
    ids_all = np.concatenate(ids) if ids else np.empty((0, k), dtype=np.int64)
    lp_all = np.concatenate(lps) if lps else np.empty((0, k))
    if np.isnan(lp_all).any() or np.isposinf(lp_all).any():
        raise InputError(f"non-finite top-k log-probability for expert {expert!r} on task {task!r}")
    if (lp_all > 1e-4).any():
        raise InputError(f"top-k log-probability above 0 for expert {expert!r} on task {task!r}")
    return ids_all, lp_all


def _aligned(ids_a, lp_a, ids_b, lp_b):
    """Both experts' probabilities on the common partition of each position.

    Returns ``(p_a, q_a, p_b, q_b, p_other, q_other)``: probabilities of A's listed ids
    under A and B, of B-only ids under A and B (0 where the id is also in A's list, so
    it is not counted twice) and of the "other" bucket.
    """
    if ids_a.shape[0] != ids_b.shape[0]:
        raise InputError("the two experts scored a different number of response positions")
    pa = np.exp(lp_a)
    pb = np.exp(lp_b)
    # Residual mass outside the top-k, computed from the log-sum so it keeps precision.
    ra = np.clip(-np.expm1(np.minimum(logsumexp(lp_a, axis=1), 0.0)), 0.0, 1.0)
    rb = np.clip(-np.expm1(np.minimum(logsumexp(lp_b, axis=1), 0.0)), 0.0, 1.0)
    eq = ids_a[:, :, None] == ids_b[:, None, :]  # [P, ka, kb]
    a_in_b = eq.any(axis=2)
    b_in_a = eq.any(axis=1)
    n_miss_b = (~a_in_b).sum(axis=1)  # A-listed ids that B did not list
    n_miss_a = (~b_in_a).sum(axis=1)
    qa_kth = pa.min(axis=1) if pa.shape[1] else np.zeros(len(pa))
    qb_kth = pb.min(axis=1) if pb.shape[1] else np.zeros(len(pb))
    imp_a = np.minimum(qa_kth, ra / (n_miss_a + 1))
    imp_b = np.minimum(qb_kth, rb / (n_miss_b + 1))
    # B's probability of each of A's ids: its listed value, or the imputed one.
    j = np.argmax(eq, axis=2)
    pb_at_a = np.where(a_in_b, np.take_along_axis(pb, j, axis=1), imp_b[:, None])
    # B-only ids: A's probability is imputed.
    b_only = ~b_in_a
    pb_only = np.where(b_only, pb, 0.0)
    pa_only = np.where(b_only, imp_a[:, None], 0.0)
    other_a = np.maximum(ra - n_miss_a * imp_a, 0.0)
    other_b = np.maximum(rb - n_miss_b * imp_b, 0.0)
    return (pa, pb_at_a), (pa_only, pb_only), (other_a, other_b)


def _per_position(ids_a, lp_a, ids_b, lp_b, metric: str) -> np.ndarray:
    (pa, qa), (po, qo), (ra, rb) = _aligned(ids_a, lp_a, ids_b, lp_b)
    p = np.concatenate([pa, po, ra[:, None]], axis=1)
    q = np.concatenate([qa, qo, rb[:, None]], axis=1)
    if metric == "jsd":
        mid = 0.5 * (p + q)
        return 0.5 * (rel_entr(p, mid).sum(axis=1) + rel_entr(q, mid).sum(axis=1))
    if metric == "skl":
        # Jeffreys divergence KL(P||Q) + KL(Q||P); floor so unlisted mass stays finite.
        used = (p > 0) | (q > 0)
        pf = np.where(used, np.maximum(p, KL_FLOOR), 0.0)
        qf = np.where(used, np.maximum(q, KL_FLOOR), 0.0)
        return rel_entr(pf, qf).sum(axis=1) + rel_entr(qf, pf).sum(axis=1)
    raise InputError(f"unknown divergence {metric!r}")


def position_divergence(ids_a, lp_a, ids_b, lp_b, metric: str = "jsd") -> np.ndarray:
    """Divergence (nats) at each response position; public for tests and users."""
    return _per_position(np.asarray(ids_a), np.asarray(lp_a, dtype=np.float64),
                         np.asarray(ids_b), np.asarray(lp_b, dtype=np.float64), metric)


def divergence_matrix(
    table: ScoreTable, tasks: Sequence[str], metric: str = "jsd", progress=None
) -> np.ndarray:
    """Mean divergence between experts A and B over the positions of D_A and D_B pooled.

    Returns the (non-negative, symmetric, zero-diagonal) divergence matrix; the
    affinity is its negation.
    """
    tasks = list(tasks)
    n = len(tasks)
    cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    def get(e: str, t: str):
        if (e, t) not in cache:
            cache[(e, t)] = stack_topk(table, e, t)
        return cache[(e, t)]

    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            total, count = 0.0, 0
            for t in (tasks[i], tasks[j]):
                ia, la = get(tasks[i], t)
                ib, lb = get(tasks[j], t)
                if ia.shape[0] != ib.shape[0]:
                    raise InputError(
                        f"experts {tasks[i]!r} and {tasks[j]!r} scored a different number of "
                        f"response positions on task {t!r}"
                    )
                d = _per_position(ia, la, ib, lb, metric)
                total += float(d.sum())
                count += len(d)
            out[i, j] = out[j, i] = total / count if count else 0.0
        if progress is not None:
            progress()
    return out


def ce_gap_matrix(table: ScoreTable, tasks: Sequence[str]) -> np.ndarray:
    """Symmetrised per-token cross-entropy gap (needs no top-k data).

    ``CE_e(t)`` = total negative log-likelihood of expert e on task t's probe responses
    divided by their total token count (tokens pooled, so long responses weigh more,
    unlike token-normalised PMI which averages per example). The gap of the pair is
    ``1/2 [(CE_B(D_A) - CE_A(D_A)) + (CE_A(D_B) - CE_B(D_B))]``; affinity = -gap.
    """
    from taskpgm.affinity.pmi import task_scores

    tasks = list(tasks)
    n = len(tasks)
    ce = np.empty((n, n))  # ce[e, t]
    for j, t in enumerate(tasks):
        ts = task_scores(table, t, tasks, "sequence")
        tokens = np.array([table.shard(e, t).n_tokens.sum() for e in tasks], dtype=np.float64)
        if (tokens <= 0).any():
            raise InputError(f"task {t!r} has no response tokens; ce-gap needs token counts")
        ce[:, j] = -ts.values.sum(axis=1) / tokens
    diag = np.diag(ce)
    gap = 0.5 * ((ce - diag[None, :]) + (ce - diag[None, :]).T)
    np.fill_diagonal(gap, 0.0)
    return gap
