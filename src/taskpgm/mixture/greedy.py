"""Budgeted TaskPGM: choose at most k tasks (or tasks within a cost budget) greedily.

f(S) = min { E(p) : p on the simplex, supp(p) in S } is evaluated *exactly* (the
active-set solver on the sub-problem). Each step adds the task with the largest energy
decrease f(S) - f(S + j) (per unit cost under a cost budget). Since S is a subset of
S + j, f never increases along the greedy path (the recorded objective is monotone).

Speed: for every candidate at once we bound the decrease from above with the
equality-only optimum on S + j (dropping p >= 0 can only lower the energy). That bound
has a closed form from the Cholesky factor of Q~_SS, which grows by one row per pick
(a rank-one update). Candidates are then evaluated exactly in order of their bound and
the scan stops as soon as the best exact decrease beats every remaining bound (lazy
evaluation), so the pick is the exact greedy pick.

Guarantee. Greedy maximisation of a monotone set function under a cardinality
constraint is within (1 - e^(-gamma)) of the best k-set, where gamma is the submodularity
ratio (Das & Kempe 2011). For f(S) = max of an m-strongly concave, M-smooth function over
vectors supported on S, Elenberg et al. (2018) show gamma >= m/M (restricted strong
concavity/smoothness constants). Honest caveat: our f also carries the simplex
constraint (p >= 0, sum p = 1), which those results do not cover, and with a singular K
m = 0; so this is a heuristic with a guarantee only in the unconstrained-sparse
analogue. The recorded objective after each pick lets a user see the diminishing
returns directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular

from taskpgm.mixture.qp import solve_qp

_GAIN_TOL = 1e-13


@dataclass
class GreedyResult:
    order: list[int]  # task indices in the order picked
    energies: list[float]  # exact optimal energy on the first t picks, t = 1..len(order)
    x: np.ndarray  # exact optimum on the final set (zeros elsewhere)
    exact_evaluations: int
    kkt_residual: float


def greedy_select(
    Q: np.ndarray,
    c: np.ndarray,
    *,
    k: int | None = None,
    costs: np.ndarray | None = None,
    cost_budget: float | None = None,
) -> GreedyResult:
    n = len(c)
    k = n if k is None else k
    cost = np.ones(n) if costs is None else np.asarray(costs, dtype=np.float64)
    budget = np.inf if cost_budget is None else float(cost_budget)
    rho = float(np.max(np.abs(np.diag(Q)))) or 1.0
    Qt = Q + rho
    scale = max(rho, float(np.max(np.abs(c))) if n else 0.0, 1e-300)

    single = 0.5 * np.diag(Q) - c
    affordable = cost <= budget
    if not affordable.any():
        return GreedyResult([], [], np.zeros(n), 0, float("nan"))
    first = int(np.argmin(np.where(affordable, single, np.inf)))
    chosen = [first]
    spent = cost[first]
    energies = [float(single[first])]
    x_sub = np.ones(1)
    L = np.zeros((min(k, n), min(k, n)))
    L[0, 0] = np.sqrt(Qt[first, first])
    factor_ok = True
    evals = 0
    kkt = 0.0
    while len(chosen) < k:
        in_s = np.zeros(n, bool)
        in_s[chosen] = True
        cand = np.flatnonzero(~in_s & (spent + cost <= budget + 1e-12))
        if len(cand) == 0:
            break
        s = len(chosen)
        e_now = energies[-1]
        bound = np.full(len(cand), np.inf)
        if factor_ok:
            Ls = L[:s, :s]
            W = solve_triangular(Ls, Qt[np.ix_(chosen, cand)], lower=True, check_finite=False)
            z = solve_triangular(Ls, np.ones(s), lower=True, check_finite=False)
            a = solve_triangular(Ls, solve_triangular(Ls, c[chosen], lower=True,
                                 check_finite=False), lower=True, trans="T", check_finite=False)
            b = solve_triangular(Ls, z, lower=True, trans="T", check_finite=False)
            nu = (1.0 - a.sum()) / b.sum()
            xh = a + nu * b
            e_eqp = 0.5 * xh @ (Q[np.ix_(chosen, chosen)] @ xh) - c[chosen] @ xh
            red = Qt[np.ix_(cand, chosen)] @ xh - c[cand] - nu
            sig = np.diag(Qt)[cand] - np.einsum("ij,ij->j", W, W) + (z @ W - 1.0) ** 2 / (z @ z)
            with np.errstate(divide="ignore", invalid="ignore"):
                drop = np.where(sig > 1e-12 * rho, 0.5 * red**2 / sig, np.inf)
            bound = np.maximum(e_now - (e_eqp - drop), 0.0)
        # Exact screen: a candidate whose reduced cost at the current constrained optimum
        # is >= 0 cannot lower the energy (the optimum on S stays KKT on S + j).
        x_s = x_sub
        g_s = Q[np.ix_(chosen, chosen)] @ x_s - c[chosen]
        nu_s = float(np.mean(g_s[x_s > 0]))
        red_c = Q[np.ix_(cand, chosen)] @ x_s - c[cand] - nu_s
        bound = np.where(red_c >= -_GAIN_TOL * scale, 0.0, bound)
        ratio = bound / cost[cand]
        best_j, best_gain, best_x = -1, _GAIN_TOL * scale, None
        for pos in np.argsort(-ratio, kind="stable"):
            if ratio[pos] * cost[cand[pos]] <= _GAIN_TOL * scale:
                break
            if best_j >= 0 and ratio[pos] <= best_gain / cost[best_j]:
                break
            j = int(cand[pos])
            sub = chosen + [j]
            warm = np.append(x_sub > 0, True)
            res = solve_qp(Q[np.ix_(sub, sub)], c[sub], warm_free=warm)
            evals += 1
            gain = e_now - res.energy
            better = best_j < 0 or gain / cost[j] > best_gain / cost[best_j]
            if better and gain > _GAIN_TOL * scale:
                best_j, best_gain, best_x = j, gain, res
        if best_j < 0 or best_x is None:
            break  # no candidate lowers the energy: more tasks would get weight 0
        if factor_ok:
            w = solve_triangular(L[:s, :s], Qt[chosen, best_j], lower=True, check_finite=False)
            piv = Qt[best_j, best_j] - w @ w
            if piv > 1e-12 * rho:
                L[s, :s] = w
                L[s, s] = np.sqrt(piv)
            else:
                factor_ok = False  # singular Q~_SS: fall back to exact evaluations only
        chosen.append(best_j)
        spent += cost[best_j]
        energies.append(float(best_x.energy))
        x_sub = best_x.x
        kkt = best_x.kkt_residual
    x = np.zeros(n)
    x[chosen] = x_sub
    return GreedyResult(chosen, energies, x, evals, kkt)
