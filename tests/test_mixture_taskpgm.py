"""TaskPGM end to end through ``solve``: kernels, unaries, paper mode, path, greedy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import taskpgm
from taskpgm.affinity.io import AffinityMatrix
from taskpgm.errors import InputError
from taskpgm.mixture import (
    KERNELS,
    STRATEGIES,
    build_kernel,
    greedy_select,
    kkt_residual,
    r_path,
    solve,
    solve_qp,
)


def random_affinity(n, seed):
    rng = np.random.default_rng(seed)
    S = -np.abs(rng.normal(size=(n, n)))
    S = S + S.T
    np.fill_diagonal(S, 0.0)
    return S


@pytest.mark.parametrize("kind", [k for k in KERNELS if k != "none"])
def test_kernels_are_psd_and_symmetric(kind):
    K = build_kernel(random_affinity(30, 1), kind).matrix
    assert np.allclose(K, K.T)
    assert np.linalg.eigvalsh(K)[0] > 0


def test_kernel_none_refuses_non_psd():
    with pytest.raises(InputError, match="PSD"):
        build_kernel(random_affinity(5, 2), "none")
    with pytest.raises(InputError, match="symmetric"):
        build_kernel(np.array([[1.0, 2.0], [0.0, 1.0]]), "none")


@pytest.mark.parametrize("kind", ["shift", "simplex-shift", "clip", "exp", "laplacian"])
def test_real_matrix_every_kernel_solves_and_beats_paper_mode(pmi316_path, kind):
    S = np.load(pmi316_path)
    # beta = 1 (r = 1): with the default r_rel the laplacian energies are ~1e-17, below
    # what a relative comparison can resolve.
    exact = solve(S, kernel=kind, beta=1.0)
    paper = solve(S, kernel=kind, method="taskpgm-paper", beta=1.0)
    assert exact.diagnostics["kkt_residual"] <= 1e-9
    assert abs(exact.weights.sum() - 1) < 1e-12 and exact.weights.min() >= 0
    e, ep = exact.diagnostics["energy"], paper.diagnostics["energy"]
    assert e <= ep + 1e-9 * abs(ep)
    if not np.array_equal(exact.weights > 0, paper.weights > 0):
        assert e < ep - 1e-9 * abs(ep)
    assert "projection" in paper.diagnostics["procedure"]


def test_real_matrix_shift_kernel_differs_from_paper(pmi316_path):
    # A fact about the real matrix worth pinning: projection is not the optimum there.
    S = np.load(pmi316_path)
    exact = solve(S, beta=1.0)
    paper = solve(S, method="taskpgm-paper", beta=1.0)
    assert paper.diagnostics["kkt_residual"] > 1e-6
    assert exact.diagnostics["energy"] < paper.diagnostics["energy"]


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 25), st.integers(0, 10**6), st.sampled_from(["shift", "simplex-shift", "clip", "exp"]))
def test_rowsum_with_r_one_over_n_is_uniform(n, seed, kind):
    S = random_affinity(n, seed)
    m = solve(S, kernel=kind, beta=1.0 / n, lam=1.0)
    assert m.weights == pytest.approx(np.full(n, 1.0 / n), abs=1e-9)
    # Only r = beta/lambda matters with rowsum utilities.
    m2 = solve(S, kernel=kind, beta=3.0 / n, lam=3.0)
    assert m2.weights == pytest.approx(m.weights, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 25), st.integers(0, 10**6), st.sampled_from(["shift", "clip", "exp"]))
def test_r_rel_is_r_in_units_of_one_over_n(n, seed, kind):
    S = random_affinity(n, seed)
    # r_rel = 1 is the uniform point whatever n is; r_rel = x is beta = x/n, lam = 1.
    assert solve(S, kernel=kind, r_rel=1.0).weights == pytest.approx(np.full(n, 1 / n),
                                                                     abs=1e-9)
    a = solve(S, kernel=kind, r_rel=0.3)
    b = solve(S, kernel=kind, beta=0.3 / n, lam=1.0)
    assert a.weights == pytest.approx(b.weights, abs=1e-12)
    assert a.params["r_rel"] == pytest.approx(0.3) and a.params["r"] == pytest.approx(0.3 / n)


def test_default_trade_off_is_r_rel_half_between_diversity_and_uniform():
    from taskpgm.mixture.api import R_REL_DEFAULT
    from taskpgm.mixture.unary import balanced_reference

    n = 6
    S = random_affinity(n, 3)
    m = solve(S, kernel="shift")
    assert R_REL_DEFAULT == 0.5 and m.params["r_rel"] == pytest.approx(0.5)
    assert m.params["beta"] == pytest.approx(0.5 / n) and m.params["lam"] == 1.0
    # The default (calibrated kernel, balanced utilities) sits at the representativeness
    # end, r_rel = 1: the inverse kernel density q itself (D26).
    d = solve(S)
    assert d.params["unary"] == "balanced" and d.params["r_rel"] == pytest.approx(1.0)
    from taskpgm.mixture import build_kernel

    q = balanced_reference(build_kernel(S, "calibrated").matrix)
    assert d.weights == pytest.approx(q, abs=1e-8)
    # Giving only beta keeps the old meaning (lam = 1).
    assert solve(S, beta=2.0).params["r"] == pytest.approx(2.0)
    # Without binding bounds the rowsum optimum is the affine mix of uniform and the
    # pure-diversity point: p(r_rel) = r_rel/n + (1 - r_rel) p_div. A well-conditioned
    # kernel keeps every weight positive, so the closed form applies.
    K = np.eye(n) + 0.1 * np.ones((n, n)) + np.diag(np.linspace(0, 0.5, n))
    p_div = np.linalg.solve(K, np.ones(n))
    p_div /= p_div.sum()
    got = solve(K, kernel="none", r_rel=0.5).weights
    assert got == pytest.approx(0.5 / n + 0.5 * p_div, abs=1e-10)


@pytest.mark.parametrize("kwargs", [{"r_rel": 0.5, "beta": 1.0}, {"r_rel": 0.5, "lam": 2.0}])
def test_r_rel_and_beta_lam_together_are_refused(kwargs):
    with pytest.raises(InputError, match="not both"):
        solve(random_affinity(4, 0), **kwargs)


def test_target_unary_puts_mass_near_targets():
    names = ["a1", "a2", "b1", "b2"]
    S = np.array([[0, -0.1, -5, -5], [-0.1, 0, -5, -5], [-5, -5, 0, -0.1],
                  [-5, -5, -0.1, 0]], dtype=float)
    m = solve(S, names=names, kernel="exp", unary="target", targets=["b1"], beta=5.0)
    w = m.as_dict()
    assert w["b1"] + w["b2"] > w["a1"] + w["a2"]
    with pytest.raises(InputError, match="target task 'zz' has no row"):
        solve(S, names=names, unary="target", targets=["zz"])


def test_given_utilities_and_caps():
    S = random_affinity(6, 3)
    names = [f"t{i}" for i in range(6)]
    util = {n: float(i) for i, n in enumerate(names)}
    caps = {n: 0.3 for n in names}
    m = solve(S, names=names, unary="given", utilities=util, beta=1000.0, caps=caps)
    assert m.weights.max() <= 0.3 + 1e-12
    assert m.diagnostics["kkt_residual"] <= 1e-9
    assert m.as_dict()["t5"] == pytest.approx(0.3)
    with pytest.raises(InputError, match="infeasible caps"):
        solve(S, names=names, caps={n: 0.1 for n in names})
    with pytest.raises(InputError, match="no value for task"):
        solve(S, names=names, unary="given", utilities={"t0": 1.0})


@pytest.mark.parametrize("kwargs,match", [
    ({"beta": 0.0}, "beta"), ({"lam": -1.0}, "lam"), ({"budget_k": 9}, "exceeds"),
    # r_rel = 0 is the pure-diversity end (allowed, issue 10); below 0 is not.
    ({"r_rel": -0.5}, "r_rel"), ({"r_rel": float("nan")}, "r_rel"),
    ({"method": "nope"}, "unknown method"), ({"kernel": "nope"}, "unknown kernel"),
])
def test_bad_arguments_are_input_errors(kwargs, match):
    with pytest.raises(InputError, match=match):
        solve(random_affinity(4, 0), **kwargs)


def test_bad_matrices_are_input_errors():
    with pytest.raises(InputError, match="square"):
        solve(np.zeros((2, 3)))
    bad = np.zeros((3, 3))
    bad[1, 2] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        solve(bad)
    with pytest.raises(InputError, match="names"):
        solve(np.zeros((3, 3)), names=["a", "b"])


def test_affinity_matrix_record_and_top_level_alias():
    aff = AffinityMatrix(["x", "y", "z"], random_affinity(3, 5))
    m = taskpgm.solve(aff)
    assert m.tasks == ["x", "y", "z"] and m.method == "taskpgm"
    assert set(STRATEGIES) == {"taskpgm", "taskpgm-paper", "uniform", "size", "temperature",
                               "capped", "unimax", "given", "family-balanced",
                               "cluster-balanced", "mixmin"}


def test_r_path_matches_independent_solves_and_hits_uniform():
    n = 12
    S = random_affinity(n, 7)
    rs = [0.1 / n, 1.0 / n, 10.0 / n, 1.0]
    path = r_path(S, rs=rs, kernel="shift")  # auto utilities: the paper's rowsum
    K = build_kernel(S, "shift").matrix
    for r, w, e in zip(rs, path.weights, path.energies, strict=True):
        fresh = solve_qp(K, r * K.sum(axis=1))
        assert e == pytest.approx(fresh.energy, rel=1e-10, abs=1e-12)
        assert kkt_residual(K, r * K.sum(axis=1), w) <= 1e-9
    assert path.weights[1] == pytest.approx(np.full(n, 1.0 / n), abs=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.integers(3, 20), st.integers(0, 10**6), st.floats(0.01, 20.0))
def test_greedy_objective_never_increases_and_is_exact(n, seed, rn):
    K = build_kernel(random_affinity(n, seed)).matrix
    c = (rn / n) * K.sum(axis=1)
    k = max(1, n // 2)
    res = greedy_select(K, c, k=k)
    assert 1 <= len(res.order) <= k and len(set(res.order)) == len(res.order)
    assert np.all(np.diff(res.energies) <= 1e-12 * max(1.0, abs(res.energies[0])))
    assert np.count_nonzero(res.x) <= k and abs(res.x.sum() - 1) < 1e-12
    # The final mixture is the exact optimum on the chosen tasks.
    sub = res.order
    ref = solve_qp(K[np.ix_(sub, sub)], c[sub])
    assert res.energies[-1] == pytest.approx(ref.energy, rel=1e-9, abs=1e-12)
    # Never better than the unrestricted optimum.
    assert res.energies[-1] >= solve_qp(K, c).energy - 1e-9


def test_greedy_first_pick_is_the_best_single_task_and_cost_budget():
    K = build_kernel(random_affinity(8, 11)).matrix
    c = K.sum(axis=1)
    res = greedy_select(K, c, k=3)
    single = 0.5 * np.diag(K) - c
    assert res.order[0] == int(np.argmin(single))
    costs = np.arange(1.0, 9.0)
    m = solve(random_affinity(8, 11), costs=costs, cost_budget=5.0, beta=1.0)
    picked = [int(t[4:]) for t in m.diagnostics["picked"]]
    assert costs[picked].sum() <= 5.0


def test_cli_r_rel_default_flag_and_conflict(cli, tmp_path):
    from taskpgm.affinity.io import save_affinity
    from taskpgm.mixture.record import Mixture

    path = tmp_path / "aff.npz"
    save_affinity(path, AffinityMatrix([f"t{i}" for i in range(5)], random_affinity(5, 1)))
    out = tmp_path / "m.json"
    assert cli("solve", "--affinity", path, "--out", out)[0] == 0
    # The documented defaults: 1 with the default's balanced utilities, 0.5 with rowsum.
    assert Mixture.load(out).params["r_rel"] == pytest.approx(1.0)
    assert cli("solve", "--affinity", path, "--kernel", "shift", "--out", out)[0] == 0
    assert Mixture.load(out).params["r_rel"] == pytest.approx(0.5)
    assert cli("solve", "--affinity", path, "--kernel", "shift", "--r-rel", "1",
               "--out", out)[0] == 0
    assert Mixture.load(out).weights == pytest.approx(np.full(5, 0.2), abs=1e-9)
    code, _, err = cli("solve", "--affinity", path, "--r-rel", "0.5", "--beta", "2")
    assert code == 2 and "not both" in err and "Traceback" not in err
