"""The ``simplex-shift`` kernel: sized on the zero-sum subspace, only constants change on
the simplex, convex there, exact against Clarabel, and far smaller on the real PMI matrix."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.linalg import null_space

from taskpgm.mixture import build_kernel, kkt_residual, solve

cp = pytest.importorskip("cvxpy")


@st.composite
def affinities(draw):
    """Random symmetric, usually indefinite S: PMI-like (<= 0 off the diagonal) or normal."""
    n = draw(st.integers(2, 10))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1e-2, 1.0, 30.0]))
    if draw(st.booleans()):
        S = -np.abs(rng.normal(size=(n, n))) * scale
        np.fill_diagonal(S, 0.0)
    else:
        S = rng.normal(size=(n, n)) * scale  # not symmetric: the kernel symmetrises
    return S


def _floor(S, draw_rel):
    """An explicit floor relative to the scale of S (None: the kernel's default)."""
    if draw_rel is None:
        return None
    return draw_rel * max(1e-12, float(np.max(np.abs(np.linalg.eigvalsh(0.5 * (S + S.T))))))


def _energy(K, p, lam, beta):
    return 0.5 * lam * p @ K @ p - beta * (K @ np.ones(len(p))) @ p


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(affinities(), st.sampled_from([None, 1e-3, 1e-1]), st.integers(0, 2**32 - 1),
       st.floats(0.1, 10.0), st.floats(0.01, 10.0))
def test_only_constants_change_on_the_simplex_and_the_qp_is_convex_there(S, rel, seed,
                                                                         lam, beta):
    n = len(S)
    f = _floor(S, rel)
    kern = build_kernel(S, "simplex-shift", floor=f)
    K, info = kern.matrix, kern.info
    A = 0.5 * (S + S.T)
    c, rho, f = info["shift"], info["rho"], info["floor"]
    Kc = A + c * np.eye(n)
    # K is sym(S) + c I + rho 11' exactly, with rho >= 0.
    assert rho >= 0
    assert np.allclose(K, Kc + rho, rtol=0, atol=1e-12 * (1 + np.abs(Kc).max() + rho))
    # Energies of two simplex points differ by the same amount as under sym(S) + c I
    # (rowsum utilities from each matrix): only constants were added on the simplex.
    rng = np.random.default_rng(seed)
    p1, p2 = rng.dirichlet(np.ones(n)), rng.dirichlet(np.full(n, 0.3))
    d_ss = _energy(K, p1, lam, beta) - _energy(K, p2, lam, beta)
    d_c = _energy(Kc, p1, lam, beta) - _energy(Kc, p2, lam, beta)
    mag = (lam + beta * n) * (np.abs(Kc).max() + rho * n) + 1.0
    assert d_ss == pytest.approx(d_c, abs=1e-11 * mag)
    # c is |lambda_min| of sym(S) on the zero-sum subspace plus the floor (not of sym(S)).
    V = null_space(np.ones((1, n)))
    w_sub = np.linalg.eigvalsh(V.T @ A @ V)
    assert c == pytest.approx(max(0.0, -w_sub[0]) + f, rel=1e-9, abs=1e-12)
    # Convex on the simplex: K's curvature on zero-sum directions is >= floor.
    wk = np.linalg.eigvalsh(V.T @ K @ V)
    tol = 1e-9 * (np.abs(A).max() + c)
    assert wk[0] >= f - tol
    # PSD on the full space with the smallest rho: lambda_min(K) = floor/2 when rho > 0.
    w = np.linalg.eigvalsh(K)
    tol_full = 1e-9 * (np.abs(A).max() + c) + 1e-13 * rho * n
    assert w[0] >= 0.5 * f - tol_full
    if rho > 0:
        assert w[0] == pytest.approx(0.5 * f, abs=tol_full + 1e-6 * f)
        if f > 1e3 * tol_full:  # resolvable: a smaller rho would not do
            smaller = np.linalg.eigvalsh(K - 0.5 * rho)  # rho 11' halved
            assert smaller[0] < 0.5 * f - tol_full


def _reference_energy_nullspace(Kc, lam, beta):
    """Clarabel on the equivalent PSD problem: p = 1/n + V z, M = V'KcV PSD."""
    n = len(Kc)
    V = null_space(np.ones((1, n)))
    M = V.T @ Kc @ V
    M = 0.5 * (M + M.T)
    p0 = np.full(n, 1.0 / n)
    u = Kc @ np.ones(n)
    z = cp.Variable(n - 1)
    p = p0 + V @ z
    obj = (0.5 * lam * cp.quad_form(z, cp.psd_wrap(M)) + lam * (V.T @ Kc @ p0) @ z
           - beta * u @ p + 0.5 * lam * p0 @ Kc @ p0)
    prob = cp.Problem(cp.Minimize(obj), [p >= 0])
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    return prob.value


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(affinities(), st.sampled_from([None, 1e-2]), st.sampled_from([0.05, 0.5, 2.0, 20.0]))
def test_exact_solver_matches_clarabel_on_the_equivalent_psd_problem(S, rel, r_rel):
    n = len(S)
    f = _floor(S, rel)
    mix = solve(S, kernel="simplex-shift", kernel_floor=f, r_rel=r_rel)
    x = mix.weights
    info = mix.diagnostics["kernel_info"]
    assert info["kernel"] == "simplex-shift" and {"shift", "rho", "eig_min_subspace"} <= set(info)
    assert abs(x.sum() - 1) <= 1e-12 and x.min() >= 0
    assert mix.diagnostics["kkt_residual"] <= 1e-9
    lam, beta = mix.params["lam"], mix.params["beta"]
    Kc = 0.5 * (S + S.T) + info["shift"] * np.eye(n)
    # KKT again on the rho-free matrix (its own, smaller scale): same optimum.
    assert kkt_residual(lam * Kc, beta * Kc.sum(axis=1), x) <= 1e-9
    ref = _reference_energy_nullspace(Kc, lam, beta)
    ours = _energy(Kc, x, lam, beta)
    assert ours == pytest.approx(ref, abs=1e-7 * max(1.0, abs(ref)))


def _family_pmi(sizes=(5, 3, 3), within=-0.2, across=-2.6):
    fam = np.repeat(np.arange(len(sizes)), sizes)
    S = np.where(fam[:, None] == fam[None, :], within, across)
    np.fill_diagonal(S, 0.0)
    return S, fam


def test_diversity_point_balances_families_under_simplex_shift_not_shift():
    # The demo's structure: a 5-template family and two 3-template ones.
    S, fam = _family_pmi()
    big = {}
    for kind in ("shift", "simplex-shift"):
        m = solve(S, kernel=kind, r_rel=1e-3)
        big[kind] = m.weights[fam == 0].sum()
        assert m.diagnostics["kkt_residual"] <= 1e-9
    ks = build_kernel(S, "shift").info["shift"]
    kss = build_kernel(S, "simplex-shift").info["shift"]
    assert kss < 0.1 * ks
    assert big["shift"] > 0.4  # near uniform over tasks (5/11 = 0.45)
    assert abs(big["simplex-shift"] - 1 / 3) < 0.05  # near balanced over 3 families


def test_real_matrix_simplex_shift_solves_with_a_much_smaller_shift(pmi316_path):
    S = np.load(pmi316_path)
    ref = build_kernel(S, "shift").info
    mix = solve(S, kernel="simplex-shift")
    info = mix.diagnostics["kernel_info"]
    assert mix.diagnostics["kkt_residual"] <= 1e-9
    assert abs(mix.weights.sum() - 1) < 1e-12 and mix.weights.min() >= 0
    # 316 tasks: 776 (all of sym(S)) against 141 (the zero-sum subspace).
    assert info["shift"] < 0.25 * ref["shift"]
    assert info["eig_min_before"] == pytest.approx(ref["eig_min_before"], rel=1e-12)
    assert -info["eig_min_subspace"] < 0.25 * -ref["eig_min_before"]
    Kc = 0.5 * (S + S.T) + info["shift"] * np.eye(len(S))
    lam, beta = mix.params["lam"], mix.params["beta"]
    assert kkt_residual(lam * Kc, beta * Kc.sum(axis=1), mix.weights) <= 1e-9
    # A different kernel on the simplex, so a different mixture.
    assert np.abs(mix.weights - solve(S, kernel="shift").weights).max() > 1e-3
