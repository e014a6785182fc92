"""MixMin: data-mixture weights by convex minimisation (Thudi et al., ICML 2025).

Each candidate training task i has an *expert* (a model fine-tuned on it). MixMin picks
the mixture w on the simplex whose mixture-of-experts ensemble best fits the targets::

    L(w) = - sum_x q_x log sum_i w_i exp(a_i(x))

where a_i(x) is expert i's log-likelihood of target example x *per response token*
(logprob / n_tokens, as in :mod:`taskpgm.affinity.utilities`) and q are example
weights summing to 1 (1/m by default; 1/(T m_t) from :func:`mixmin_logprobs`, so each of
T target tasks counts equally). L is convex: minus the log of a linear function of w.

Certificate. Let g = grad L(w). Convexity gives L(v) >= L(w) + g.(v - w) for every v on
the simplex, and min_v g.v = min_i g_i, so

    gap(w) = g.w - min_i g_i  >=  L(w) - min L  >=  0,

with gap = 0 exactly at a minimiser. Here g_i = -r_i with r_i = sum_x q_x e_i(x) / s_x,
s_x = sum_j w_j e_j(x), so gap = max_i r_i - r.w (nats per token, absolute).

Solver. A primal log-barrier interior-point method: Newton steps with backtracking on
L(w) - mu sum_i log w_i over the simplex, mu shrunk 50-fold whenever the iterate is
centred, stopping as soon as gap <= tol (a centred iterate has gap <= n mu). In scaled
coordinates (step d = w * u) the Newton system is (P P' + mu I) u + nu w = rho + mu,
w.u = 0 (nu for sum w = 1), where P_ix = sqrt(q_x) w_i e_i(x) / s_x are posterior
responsibilities (entries <= 1) and rho = P sqrt(q) their totals, so it stays well
scaled near the boundary. Exponentiated gradient (mirror descent on the simplex) was
tried first: with a backtracking step it is fine on well-separated experts but stalls
at gap ~1e-6 after 20000 steps when experts are near mixtures of one another (a nearly
rank-deficient likelihood matrix, usual for experts fine-tuned from one base model);
Newton reaches 1e-8 in about 10-40 steps. Experts the optimum does not use end with
tiny positive weights (about mu), not exact zeros.

Stability: e_i(x) = exp(a_i(x) - max_j a_j(x)) lies in [0, 1] with a 1 in every column
(the logsumexp shift, done once), so L = -sum_x q_x (max_j a_j(x) + log s_x) never
overflows, and the barrier keeps s_x >= min_i w_i > 0. Deterministic; starts at uniform.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve

from taskpgm.errors import InputError
from taskpgm.scores import ScoreTable

_MU_SHRINK = 0.02
_MU_FLOOR = 1e-14  # P P' has trace <= 1, so this keeps the Newton matrix positive definite
_CENTRED = 1.0  # Newton decrement^2 / mu below which the iterate counts as centred
_ARMIJO = 1e-4
_TO_BOUNDARY = 0.99


@dataclass
class MixMinResult:
    weights: np.ndarray  # on the simplex
    loss: float  # L(weights)
    gap: float  # duality-gap certificate at the end: loss - min L <= gap
    iterations: int  # Newton steps
    converged: bool  # gap <= tol


def _check_logp(logp, example_weights) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(logp, dtype=np.float64)
    if a.ndim != 2:
        raise InputError(f"logp must be 2-D [n_experts, m_examples], got shape {a.shape}")
    n, m = a.shape
    if n == 0:
        raise InputError("MixMin needs at least one expert (logp has no rows)")
    if m == 0:
        raise InputError("MixMin needs at least one target example (logp has no columns)")
    bad = np.argwhere(~np.isfinite(a))
    if len(bad):
        i, x = bad[0]
        raise InputError(f"logp[{i}, {x}] is {a[i, x]} (expert {i}, example {x}): need finite values")
    if example_weights is None:
        return a, np.full(m, 1.0 / m)
    q = np.asarray(example_weights, dtype=np.float64)
    if q.shape != (m,):
        raise InputError(f"example_weights has shape {q.shape}, logp has {m} examples")
    if not np.all(np.isfinite(q)) or np.any(q < 0):
        raise InputError("example_weights must be finite and >= 0")
    total = q.sum()
    if not total > 0:
        raise InputError("example_weights sum to 0: no example counts")
    return a, q / total


def mixmin_weights(
    logp: np.ndarray,
    *,
    example_weights: np.ndarray | None = None,
    tol: float = 1e-8,
    max_iter: int = 20000,
) -> MixMinResult:
    """MixMin weights: argmin of L(w) on the simplex, certified to ``gap <= tol``.

    ``logp``: [n_experts, m_examples] per-token log-likelihoods (finite).
    ``example_weights``: [m] non-negative (normalised here); default uniform.
    ``tol``: absolute bound on L(weights) - min L (nats per token). Round-off limits the
    certificate to about 1e-13; below that the result comes back with converged False.
    """
    a, q = _check_logp(logp, example_weights)
    if not (np.isfinite(tol) and tol >= 0):
        raise InputError(f"tol must be a finite number >= 0, got {tol}")
    if int(max_iter) != max_iter or max_iter < 0:
        raise InputError(f"max_iter must be an integer >= 0, got {max_iter}")
    keep = q > 0  # examples of weight 0 change nothing
    a, q = a[:, keep], q[keep]
    n = a.shape[0]
    shift = a.max(axis=0)
    e = np.exp(a - shift)  # [n, m] in [0, 1], a 1 in every column
    sq = np.sqrt(q)

    def barrier(w: np.ndarray, mu: float) -> tuple[float, np.ndarray]:
        s = w @ e
        if not (w.min() > 0 and s.min() > 0):
            return np.inf, s
        return float(-q @ np.log(s) - mu * np.log(w).sum()), s

    def certificate(w: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, float]:
        r = e @ (q / s)  # = -grad L(w)
        return r, max(0.0, float(r.max() - r @ w))

    w = np.full(n, 1.0 / n)
    s = w @ e
    r, gap = certificate(w, s)
    mu = max(gap / n, _MU_FLOOR)
    f, _ = barrier(w, mu)
    it = 0
    while gap > tol and it < max_iter:
        p = e * w[:, None] * (sq / s)  # sqrt(q_x) * responsibilities
        rho = w * r
        try:
            cf = cho_factor(p @ p.T + mu * np.eye(n))
        except LinAlgError:  # pragma: no cover - mu I keeps it positive definite
            break
        u1, u2 = cho_solve(cf, rho + mu), cho_solve(cf, w)
        u = u1 - (w @ u1) / (w @ u2) * u2  # scaled Newton step, w.u = 0
        dec2 = float((rho + mu) @ u)  # squared Newton decrement = -slope
        alpha = min(1.0, _TO_BOUNDARY / -u.min()) if u.min() < 0 else 1.0
        slack = 1e-13 * (1.0 + abs(f))  # round-off in f
        while True:
            w_new = w * (1.0 + alpha * u)
            w_new /= w_new.sum()
            f_new, s_new = barrier(w_new, mu)
            if f_new <= f - _ARMIJO * alpha * dec2 + slack or alpha < 1e-12:
                break
            alpha *= 0.5
        it += 1
        if not f_new <= f + slack:  # no descent possible: round-off floor reached
            break
        w, s, f = w_new, s_new, f_new
        r, gap = certificate(w, s)
        if dec2 <= _CENTRED * mu:
            if mu <= _MU_FLOOR:  # centred at the smallest barrier: as close as it gets
                break
            mu = max(mu * _MU_SHRINK, _MU_FLOOR)
            f, _ = barrier(w, mu)
    loss = float(-(q @ (shift + np.log(s))))
    return MixMinResult(weights=w, loss=loss, gap=gap, iterations=it, converged=gap <= tol)


def mixmin_logprobs(
    table: ScoreTable, experts: Sequence[str], targets: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-token log-likelihoods of every expert on every target's probe examples.

    Returns ``logp`` [len(experts), total examples] (targets concatenated in the given
    order) and per-example weights 1/(T m_t), so each of the T targets weighs 1/T.
    """
    experts, targets = list(experts), list(targets)
    if not experts:
        raise InputError("MixMin needs at least one expert")
    if not targets:
        raise InputError("MixMin needs at least one target task")
    table.require(experts, targets, what="target task")
    blocks, weights = [], []
    for t in targets:
        lp = table.matrix(t, experts)
        n_tok = table.n_tokens(t)
        if lp.shape[1] == 0:
            raise InputError(f"target task {t!r} has no probe examples")
        if len(n_tok) != lp.shape[1]:
            raise InputError(
                f"target task {t!r}: {len(n_tok)} token counts for {lp.shape[1]} examples"
            )
        per_token = lp / np.maximum(n_tok.astype(np.float64), 1.0)
        bad = np.argwhere(~np.isfinite(per_token))
        if len(bad):
            i, x = bad[0]
            raise InputError(
                f"expert {experts[i]!r} on task {t!r}: log-likelihood of example {x} "
                f"is {lp[i, x]}, need finite values"
            )
        blocks.append(per_token)
        weights.append(np.full(lp.shape[1], 1.0 / (len(targets) * lp.shape[1])))
    return np.concatenate(blocks, axis=1), np.concatenate(weights)
