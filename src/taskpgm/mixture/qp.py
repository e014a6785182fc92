"""Exact solver for a convex quadratic over the (capped) probability simplex.

Problem::

    minimise  E(x) = 1/2 x'Qx - c'x   s.t.  sum(x) = 1,  lower <= x <= upper

with Q symmetric positive semi-definite. The optimum has a closed form on its *free
set* F (the coordinates strictly between their bounds): with the others fixed,
``Q_FF x_F = c_F - Q_F,fixed x_fixed + nu 1`` and ``1'x_F = 1 - sum(x_fixed)``. The
work is finding F, in two phases:

1. *Bulk phase* (primal-dual active set, Hintermueller et al. 2002): guess F (all
   coordinates, or a warm start), solve on it with one Cholesky, then move *every*
   coordinate that violates feasibility or its multiplier's sign at once, and repeat.
   Usually a handful of factorisations of shrinking supports; exit only on a verified
   KKT point. It may cycle on hard instances, so it is capped and cycle-checked.
2. *Primal active set* (Nocedal & Wright, Alg. 16.3) from a feasible point, changing
   one coordinate per step with rank-one Cholesky updates (append a row; delete a
   row by a rank-one update of the trailing block). Finite, and it handles a singular
   Q: when adding a coordinate makes the reduced Hessian singular, the new direction
   has zero curvature and we move along it (never uphill) until a bound is hit.

Singular Q. We factor ``Q~ = Q + rho 11'``: on the hyperplane sum(x)=1 the term adds
the constant rho/2, so the problem is unchanged, but Q~_FF is positive definite exactly
when the equality-constrained problem on F has a unique solution. The solver keeps
Q~_FF positive definite throughout, so it returns a *basic* optimum: one whose support
admits no flat feasible direction (a vertex of the optimal face). When Q is positive
definite the optimum is unique and this is it.

The KKT residual (see :func:`kkt_residual`) is checked on return.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cholesky, get_lapack_funcs, solve_triangular

_potrf, _potrs = get_lapack_funcs(("potrf", "potrs"), dtype=np.float64)

# Release/fix tolerances, relative to the problem's scale (see _scale).
_DUAL_TOL = 1e-12
_PRIMAL_TOL = 1e-13
_PIVOT_TOL = 1e-10
_MAX_BULK = 30
# Reuse the last factor when F lost at most 1/_REUSE_RATIO of its coordinates, and accept
# the result when stationarity on F holds to _REUSE_CHECK (relative): else refactor.
_REUSE_RATIO = 8
_REUSE_CHECK = 1e-12


@dataclass
class QPResult:
    x: np.ndarray
    nu: float  # multiplier of sum(x) = 1 for E (not for the rho-shifted problem)
    energy: float
    iterations: int
    factorizations: int
    kkt_residual: float
    phase: str  # "bulk" or "active-set": which phase certified the optimum

    @property
    def support_size(self) -> int:
        return int(np.count_nonzero(self.x > 0))


def _scale(Q: np.ndarray, c: np.ndarray) -> float:
    s = max(float(np.max(np.abs(np.diag(Q)))) if Q.size else 0.0,
            float(np.max(np.abs(c))) if c.size else 0.0)
    return s if s > 0 else 1.0


def kkt_residual(
    Q: np.ndarray,
    c: np.ndarray,
    x: np.ndarray,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    nu: float | None = None,
) -> float:
    """Largest violation of the KKT conditions, in probability units.

    ``max(|sum(x) - 1|, max bound violation, max_i |x_i - clip(x_i - (g_i - nu)/s, l_i, u_i)|)``
    with ``g = Qx - c`` and ``s = max(max|Q_ii|, max|c_i|)``: the natural (projected
    gradient) residual, zero exactly when x is feasible and, with multiplier nu,
    stationary on free coordinates, ``g_i >= nu`` at lower and ``g_i <= nu`` at upper
    bounds. When ``nu`` is not given we use the median of g over free coordinates (or
    the midpoint of the admissible interval when none is free).
    """
    n = len(x)
    lo = np.zeros(n) if lower is None else lower
    hi = np.full(n, np.inf) if upper is None else upper
    return _kkt_residual(Q @ x - c, _scale(Q, c), x, lo, hi, nu)


def _kkt_residual(g, s, x, lo, hi, nu) -> float:
    """:func:`kkt_residual` given the gradient g = Qx - c and the scale s."""
    if nu is None:
        free = (x > lo + 1e-12) & (x < hi - 1e-12)
        if free.any():
            nu = float(np.median(g[free]))
        else:
            top = g[x >= hi - 1e-12].max(initial=-np.inf)
            bot = g[x <= lo + 1e-12].min(initial=np.inf)
            nu = float(np.clip(0.5 * (top + bot), top, bot)) if np.isfinite(top + bot) else (
                float(top) if np.isfinite(top) else float(bot))
    primal = max(abs(float(x.sum()) - 1.0), float(np.max(lo - x, initial=0.0)),
                 float(np.max(x - hi, initial=0.0)))
    natural = np.abs(x - np.clip(x - (g - nu) / s, lo, hi))
    return max(primal, float(natural.max(initial=0.0)))


def check_bounds(n: int, lower: np.ndarray | None, upper: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Return (lower, upper) arrays (caps >= 1 become +inf); raise ValueError when no
    feasible point exists."""
    lo = np.zeros(n) if lower is None else np.maximum(np.asarray(lower, float), 0.0)
    # A cap >= 1 never binds on the simplex; +inf keeps it out of the active set.
    hi = np.full(n, np.inf) if upper is None else np.asarray(upper, float).copy()
    hi[hi >= 1.0] = np.inf
    if np.any(lo > hi):
        i = int(np.argmax(lo > hi))
        raise ValueError(f"task {i}: floor {lo[i]:g} exceeds cap {hi[i]:g}")
    if lo.sum() > 1 + 1e-12:
        raise ValueError(f"floors sum to {lo.sum():g} > 1")
    if hi.sum() < 1 - 1e-12:
        raise ValueError(f"caps sum to {hi.sum():g} < 1: no mixture fits under them")
    return lo, hi


def project_capped_simplex(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Euclidean projection of y onto {lo <= x <= hi, sum x = 1} (exact, by breakpoints)."""
    # x(t) = clip(y - t, lo, hi) is non-increasing and piecewise linear in t, with kinks
    # at the breakpoints; binary-search the piece whose sum crosses 1, then solve on it.
    hi = np.minimum(hi, 1.0 + lo.sum())  # equivalent on the simplex, and finite
    bps = np.unique(np.concatenate([y - lo, y - hi]))
    total = lambda t: np.clip(y - t, lo, hi).sum()
    a, b = 0, len(bps) - 1  # invariant: total(bps[a]) >= 1 (all at caps), total(bps[b]) <= 1
    if total(bps[b]) >= 1:
        return np.clip(y - bps[b], lo, hi)
    while b - a > 1:
        m = (a + b) // 2
        if total(bps[m]) >= 1:
            a = m
        else:
            b = m
    mid = 0.5 * (bps[a] + bps[b])
    inside = (y - mid > lo) & (y - mid < hi)
    x = np.clip(y - mid, lo, hi)
    if inside.any():
        t = (y[inside].sum() - (1.0 - x[~inside].sum())) / inside.sum()
        x[inside] = np.clip(y[inside] - t, lo[inside], hi[inside])
    return x


class _Factor:
    """Cholesky factor of Q~[idx, idx], grown and shrunk one coordinate at a time."""

    def __init__(self, Qt: np.ndarray, idx: np.ndarray, L: np.ndarray | None = None):
        n = Qt.shape[0]
        self.Qt = Qt
        self.L = np.zeros((n, n))
        self.idx: list[int] = []
        self.tol = _PIVOT_TOL * float(np.max(np.diag(Qt)))
        if L is not None:
            s = len(idx)
            self.L[:s, :s] = L
            self.idx = [int(i) for i in idx]

    @property
    def size(self) -> int:
        return len(self.idx)

    def column(self, j: int) -> np.ndarray:
        """w = L^-1 Q~[idx, j]."""
        s = self.size
        if s == 0:
            return np.zeros(0)
        return solve_triangular(self.L[:s, :s], self.Qt[self.idx, j], lower=True,
                                check_finite=False)

    def try_add(self, j: int) -> tuple[bool, np.ndarray]:
        w = self.column(j)
        pivot = float(self.Qt[j, j] - w @ w)
        if pivot <= self.tol:
            return False, w
        s = self.size
        self.L[s, :s] = w
        self.L[s, s] = np.sqrt(pivot)
        self.idx.append(j)
        return True, w

    def remove(self, j: int) -> None:
        k = self.idx.index(j)
        s = self.size
        L = self.L
        x = L[k + 1:s, k].copy()
        # Delete row/column k, then restore the trailing block: T T' + x x'.
        L[k:s - 1, :s] = L[k + 1:s, :s]
        L[:s - 1, k:s - 1] = L[:s - 1, k + 1:s]
        L[s - 1, :s] = 0.0
        L[:s, s - 1] = 0.0
        _chol_rank_one_update(L[k:s - 1, k:s - 1], x)
        del self.idx[k]

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        s = self.size
        Ls = self.L[:s, :s]
        y = solve_triangular(Ls, rhs, lower=True, check_finite=False)
        return solve_triangular(Ls, y, lower=True, trans="T", check_finite=False)


def _chol_rank_one_update(L: np.ndarray, x: np.ndarray) -> None:
    """In place: L L' + x x' = L_new L_new' (L lower triangular, a view)."""
    m = len(x)
    for k in range(m):
        lkk = L[k, k]
        r = np.hypot(lkk, x[k])
        cth, sth = r / lkk, x[k] / lkk
        L[k, k] = r
        if k + 1 < m:
            L[k + 1:, k] = (L[k + 1:, k] + sth * x[k + 1:]) / cth
            x[k + 1:] = cth * x[k + 1:] - sth * L[k + 1:, k]


def _eqp(Qt, c, x, free_idx, solve) -> tuple[np.ndarray, float]:
    """Minimiser over x_F (others fixed at their current values) on sum(x) = 1."""
    fixed = np.ones(len(x), bool)
    fixed[free_idx] = False
    nz = np.flatnonzero(fixed & (x != 0))
    rhs = c[free_idx] - (Qt[np.ix_(free_idx, nz)] @ x[nz] if len(nz) else 0.0)
    target = 1.0 - x[nz].sum()
    ones = np.ones(len(free_idx))
    both = solve(np.column_stack([rhs, ones]))
    a, b = both[:, 0], both[:, 1]
    nu = (target - a.sum()) / b.sum()
    return a + nu * b, float(nu)


def solve_qp(
    Q: np.ndarray,
    c: np.ndarray,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    *,
    warm_free: np.ndarray | None = None,
    max_iter: int | None = None,
) -> QPResult:
    """Exact minimiser of 1/2 x'Qx - c'x on {sum x = 1, lower <= x <= upper}.

    ``warm_free``: boolean guess of the free set (e.g. the previous solution's support
    on a path). Raises ValueError when the bounds admit no feasible point.
    """
    Q = np.asarray(Q, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    n = len(c)
    lo, hi = check_bounds(n, lower, upper)
    dmax = float(np.abs(np.diagonal(Q)).max(initial=0.0))
    scale = max(dmax, float(np.abs(c).max(initial=0.0))) or 1.0  # == _scale(Q, c)
    rho = dmax or 1.0
    dual_tol = _DUAL_TOL * scale
    iters = 0
    facts = 0

    # ---- Phase 1: bulk primal-dual active set. ----
    # Works on Q itself (Q~ = Q + rho 11' is never formed here): Q~_FF is the gathered
    # block plus rho, factored in place by LAPACK; Q~ x = Q x + rho sum(x).
    free = np.ones(n, bool) if warm_free is None else np.asarray(warm_free, bool).copy()
    at_hi = np.zeros(n, bool)
    seen: set[bytes] = set()
    x = x_feasible = None
    base = base_set = None  # last factorisation: (L of Q~_BB, B) and B as a mask
    reused = 0
    for _ in range(_MAX_BULK):
        if not free.any():
            break
        key = free.tobytes() + at_hi.tobytes()
        if key in seen:
            break
        seen.add(key)
        iters += 1
        idx = np.flatnonzero(free)
        step = None
        if base is not None and not (free & ~base_set).any():
            # F shrank by a few coordinates since the last factorisation: reuse it.
            step = _bulk_solve_reuse(Q, c, rho, base, base_set, free, at_hi, lo, hi, scale)
            if step is not None:
                reused += 1
        if step is None:
            step = _bulk_solve(Q, c, rho, idx, free, at_hi, lo, hi)
            if step is None:
                break
            facts += 1
            base, base_set = (step[3], idx), free.copy()
        xt, nut, g = step[:3]  # g = Q~ xt - c - nut
        to_lo = free & (xt < lo - _PRIMAL_TOL)
        to_hi = free & (xt > hi + _PRIMAL_TOL)
        rel = (~free) & ((~at_hi & (g < -dual_tol)) | (at_hi & (g > dual_tol)))
        any_fix = bool(to_lo.any() or to_hi.any())
        if not (any_fix or rel.any()):
            return _finish(Q, c, xt, lo, hi, nut - rho, iters, facts, "bulk", scale)
        if not any_fix:
            x_feasible = xt  # optimal on its face: the best start for phase 2
            free |= rel
            at_hi &= ~rel
        else:
            # Fix every out-of-bounds coordinate at once, but release nothing until the
            # solution on F is feasible: releasing and fixing together tends to oscillate.
            keep = free & ~to_lo & ~to_hi
            if not keep.any():  # never empty F: keep the coordinate nearest feasibility
                best = idx[np.argmax(np.minimum(xt[idx] - lo[idx], hi[idx] - xt[idx]))]
                keep[best] = True
                to_lo[best] = to_hi[best] = False
            free = keep
            at_hi |= to_hi
        x = xt

    Qt = Q + rho  # Q + rho 11'
    # ---- Phase 2: primal active set from a feasible point. ----
    if x_feasible is not None:
        x = np.clip(x_feasible, lo, hi)
    else:
        x = project_capped_simplex(np.full(n, 1.0 / n) if x is None else x, lo, hi)
    interior = np.flatnonzero((x > lo) & (x < hi))
    factor = _Factor(Qt, np.zeros(0, int))
    try:
        Lf = cholesky(Qt[np.ix_(interior, interior)], lower=True, check_finite=False)
        if len(interior) and np.min(np.diag(Lf)) ** 2 > factor.tol:
            factor = _Factor(Qt, interior, Lf)
            facts += 1
    except np.linalg.LinAlgError:
        pass
    g = Qt @ x - c
    if factor.size == 0:
        # Crash: admit interior coordinates one at a time, taking zero-curvature steps.
        for j in interior:
            if lo[j] < x[j] < hi[j]:
                g = _admit(factor, j, x, g, lo, hi, None)
    max_iter = max_iter or 50 * n + 100
    nu = 0.0
    while True:
        iters += 1
        if iters > max_iter:
            raise RuntimeError("active-set solver did not converge (internal error)")
        idx = np.asarray(factor.idx, int)
        if len(idx):
            xf, nu = _eqp(Qt, c, x, idx, factor.solve)
            step = xf - x[idx]
            if np.max(np.abs(step)) > _PRIMAL_TOL:
                alpha, block = _ratio(x[idx], step, lo[idx], hi[idx])
                delta = alpha * step
                x[idx] += delta
                g += Qt[:, idx] @ delta
                if block is not None:
                    j = int(idx[block])
                    x[j] = lo[j] if step[block] < 0 else hi[j]
                    factor.remove(j)
                    continue
        else:
            nu = float(np.median(g)) if n else 0.0
        # Stationary on F: look for a bound whose multiplier has the wrong sign.
        if len(idx):
            nu = float(np.mean(g[idx]))
        else:
            nu = _nu_no_free(g, x, lo, hi)
        red = g - nu
        in_f = np.zeros(n, bool)
        in_f[idx] = True
        at_upper = (~in_f) & (x >= hi)
        viol = np.where(in_f, 0.0, np.where(at_upper, np.maximum(red, 0.0),
                                            np.maximum(-red, 0.0)))
        j = int(np.argmax(viol))
        if viol[j] <= dual_tol:
            return _finish(Q, c, x, lo, hi, nu - rho, iters, facts, "active-set", scale)
        g = _admit(factor, j, x, g, lo, hi, -1.0 if at_upper[j] else 1.0)


def _bulk_solve(Q, c, rho, idx, free, at_hi, lo, hi):
    """Equality-constrained minimiser with F = idx free and the rest at their bounds.

    Returns (x, nu~, g) with g = Q~x - c - nu~, or None when Q~_FF is (numerically)
    singular. One gathered copy of Q_FF, factored in place (LAPACK potrf/potrs)."""
    n = len(c)
    m = len(idx)
    xt = np.where(at_hi, hi, lo)
    xt[idx] = 0.0
    if m == n:
        A = Q + rho
    else:
        A = Q.take(idx, 0).take(idx, 1)
        A += rho
    # A is symmetric, so its transpose is the same matrix in Fortran order: LAPACK
    # then factors it in place instead of copying it first.
    L, info = _potrf(A.T, lower=1, clean=0, overwrite_a=1)
    if info != 0:
        return None
    if np.diagonal(L).min() ** 2 <= _PIVOT_TOL * rho:
        return None
    rhs = np.empty((m, 2), order="F")
    rhs[:, 1] = 1.0
    nz = np.flatnonzero(xt) if m < n else idx[:0]
    if len(nz):
        fixed_sum = float(xt[nz].sum())
        rhs[:, 0] = c[idx] - (Q.take(nz, 1) @ xt[nz])[idx] - rho * fixed_sum
    else:
        fixed_sum = 0.0
        rhs[:, 0] = c if m == n else c[idx]
    both, info = _potrs(L, rhs, lower=1, overwrite_b=1)
    if info != 0:
        return None
    a, b = both[:, 0], both[:, 1]
    nu = ((1.0 - fixed_sum) - a.sum()) / b.sum()
    xt[idx] = a + nu * b
    g = Q @ xt
    g += rho * float(xt.sum()) - nu
    g -= c
    return xt, float(nu), g, L


def _bulk_solve_reuse(Q, c, rho, base, base_set, free, at_hi, lo, hi, scale):
    """As :func:`_bulk_solve` for F = B minus D, from the factor of Q~_BB (B from the
    last factorisation): minimise over x_B with x_D held at its bounds, the constraint
    x_D = v_D entering through the d x d Schur complement (Q~_BB^-1)_DD. Costs potrs with
    d + 2 right-hand sides instead of a new factorisation, so it is used only for small d,
    and its result is checked (stationarity on F); None means "refactor instead"."""
    L, bidx = base
    s = len(bidx)
    pos = np.flatnonzero(~free[bidx])  # positions of D in B
    d = len(pos)
    if d == 0 or d * _REUSE_RATIO > s:
        return None
    n = len(c)
    xt = np.where(at_hi, hi, lo)
    xt[bidx] = 0.0
    v = np.where(at_hi[bidx[pos]], hi[bidx[pos]], lo[bidx[pos]])
    rhs = np.zeros((s, d + 2), order="F")
    nz = np.flatnonzero(xt) if s < n else bidx[:0]
    fixed_sum = float(xt[nz].sum()) if len(nz) else 0.0
    rhs[:, 0] = c[bidx]
    if len(nz):
        rhs[:, 0] -= (Q.take(nz, 1) @ xt[nz])[bidx] + rho * fixed_sum
    rhs[:, 1] = 1.0
    rhs[pos, 2 + np.arange(d)] = 1.0
    sol, info = _potrs(L, rhs, lower=1, overwrite_b=1)
    if info != 0:
        return None
    W = sol[:, 2:]
    try:
        mu = np.linalg.solve(W[pos], np.column_stack([sol[pos, 0] - v, sol[pos, 1]]))
    except np.linalg.LinAlgError:
        return None
    ab = sol[:, :2] - W @ mu
    keep = np.ones(s, bool)
    keep[pos] = False
    a, b = ab[keep, 0], ab[keep, 1]
    nu = ((1.0 - fixed_sum - float(v.sum())) - a.sum()) / b.sum()
    xt[bidx[pos]] = v
    fidx = bidx[keep]
    xt[fidx] = a + nu * b
    g = Q @ xt
    g += rho * float(xt.sum()) - nu
    g -= c
    if not np.all(np.isfinite(g)) or np.abs(g[fidx]).max() > _REUSE_CHECK * scale:
        return None
    return xt, float(nu), g


def _nu_no_free(g, x, lo, hi) -> float:
    top = g[x >= hi].max(initial=-np.inf)
    bot = g[x <= lo].min(initial=np.inf)
    if np.isfinite(top) and np.isfinite(bot):
        return float(0.5 * (top + bot))
    return float(top if np.isfinite(top) else bot)


def _ratio(xv, step, lo, hi) -> tuple[float, int | None]:
    """Largest alpha in [0, 1] keeping xv + alpha*step within bounds, and the blocker."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lim = np.where(step < 0, (lo - xv) / step, np.where(step > 0, (hi - xv) / step, np.inf))
    lim = np.maximum(lim, 0.0)
    k = int(np.argmin(lim)) if len(lim) else 0
    if len(lim) and lim[k] < 1.0:
        return float(lim[k]), k
    return 1.0, None


def _admit(factor: _Factor, j: int, x, g, lo, hi, sign: float | None) -> np.ndarray:
    """Add coordinate j to the free set; if that makes Q~_FF singular, first move along
    the zero-curvature direction (downhill or flat) until some coordinate hits a bound."""
    Qt = factor.Qt
    while True:
        ok, w = factor.try_add(j)
        if ok:
            return g
        s = factor.size
        idx = np.asarray(factor.idx, int)
        d_f = -solve_triangular(factor.L[:s, :s], w, lower=True, trans="T",
                                check_finite=False) if s else np.zeros(0)
        slope = float(g[j] + g[idx] @ d_f)  # directional derivative along +e_j + d_f
        sgn = sign if sign is not None else (-1.0 if slope > 0 else 1.0)
        coords = np.append(idx, j)
        d = sgn * np.append(d_f, 1.0)
        alpha, block = _ratio(x[coords], d, lo[coords], hi[coords])
        if block is None:  # cannot happen on a bounded feasible set; be safe
            return g
        delta = alpha * d
        x[coords] += delta
        g += Qt[:, coords] @ delta
        b = int(coords[block])
        x[b] = lo[b] if d[block] < 0 else hi[b]
        if b == j:
            return g
        factor.remove(b)


def _finish(Q, c, x, lo, hi, nu, iters, facts, phase, scale) -> QPResult:
    x = np.clip(x, lo, hi)
    # Round-off may leave sum(x) off by ~1e-16 n; put the remainder on free coordinates.
    free = (x > lo) & (x < hi)
    if free.any():
        x[free] += (1.0 - x.sum()) / free.sum()
        x = np.clip(x, lo, hi)
    Qx = Q @ x
    energy = float(0.5 * x @ Qx - c @ x)
    kkt = _kkt_residual(Qx - c, scale, x, lo, hi, nu)
    return QPResult(x=x, nu=float(nu), energy=energy, iterations=iters,
                    factorizations=facts, kkt_residual=kkt, phase=phase)
