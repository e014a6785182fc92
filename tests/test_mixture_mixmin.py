"""MixMin against a brute-force simplex grid, an independent solver (SLSQP), and hand cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize
from scipy.special import logsumexp

from taskpgm.errors import InputError
from taskpgm.mixture.mixmin import mixmin_logprobs, mixmin_weights
from taskpgm.scores import ScoreTable


# -- independent references ----------------------------------------------------------
def loss(A, w, q=None):
    """L(w) = -sum_x q_x log sum_i w_i exp(A_ix), written directly with scipy's logsumexp."""
    q = np.full(A.shape[1], 1.0 / A.shape[1]) if q is None else q / q.sum()
    w = np.atleast_2d(w)  # [k, n]: k candidate mixtures at once
    return -(logsumexp(A[None, :, :], axis=1, b=w[:, :, None]) @ q)


def certificate(A, w, q=None):
    """g.w - min g with g = grad L(w), via posteriors exp(A_ix - log mixture_x)."""
    q = np.full(A.shape[1], 1.0 / A.shape[1]) if q is None else q / q.sum()
    log_mix = logsumexp(A, axis=0, b=w[:, None])
    g = -(np.exp(A - log_mix) @ q)
    return g @ w - g.min()


def simplex_grid(steps):
    i, j = np.meshgrid(np.arange(steps + 1), np.arange(steps + 1), indexing="ij")
    keep = i + j <= steps
    i, j = i[keep], j[keep]
    return np.stack([i, j, steps - i - j], axis=1) / steps


def slsqp(A, q=None):
    n = A.shape[0]
    qn = np.full(A.shape[1], 1.0 / A.shape[1]) if q is None else q / q.sum()

    def f(w):
        log_mix = logsumexp(A, axis=0, b=np.maximum(w, 0)[:, None])
        return -(log_mix @ qn), -(np.exp(A - log_mix) @ qn)

    out = minimize(f, np.full(n, 1.0 / n), jac=True, method="SLSQP", bounds=[(0, 1)] * n,
                   constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
                   options={"ftol": 1e-15, "maxiter": 2000})
    w = np.maximum(out.x, 0)
    w /= w.sum()
    return float(loss(A, w, q)[0])


def mixtures_of(components, k, rng):
    """k experts, each a random mixture of the given components' likelihoods."""
    M = rng.dirichlet(np.ones(len(components)), size=k)
    return logsumexp(np.log(M)[:, :, None] + components[None], axis=1)


# -- brute force -------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(8))
def test_matches_brute_force_grid_on_three_experts(seed):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(3, 40))
    grid = simplex_grid(200)
    grid_loss = loss(A, grid)
    res = mixmin_weights(A)
    assert res.converged
    assert res.loss <= grid_loss.min() + res.gap + 1e-12  # the certificate: L - min L <= gap
    assert res.loss == pytest.approx(float(loss(A, res.weights)[0]), abs=1e-12)
    assert np.abs(res.weights - grid[np.argmin(grid_loss)]).max() <= 2.0 / 200


# -- independent solver --------------------------------------------------------------------
@st.composite
def instances(draw):
    n = draw(st.integers(2, 8))
    m = draw(st.integers(2, 60))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([0.1, 1.0, 5.0]))
    kind = draw(st.sampled_from(["noise", "shared", "mixtures"]))
    if kind == "noise":
        A = rng.normal(size=(n, m)) * scale
    elif kind == "shared":  # one difficulty per example, small expert effects
        A = rng.normal(size=m) * scale + rng.normal(size=(n, m)) * 0.1 * scale
    else:  # experts that mix a few components: rank-deficient likelihoods
        A = mixtures_of(rng.normal(size=(2, m)) * scale, n, rng)
    q = rng.uniform(0.1, 1.0, size=m) if draw(st.booleans()) else None
    return A, q


@settings(max_examples=40, deadline=None)
@given(instances())
def test_agrees_with_slsqp(inst):
    A, q = inst
    res = mixmin_weights(A, example_weights=q)
    ref = slsqp(A, q)
    assert res.converged
    assert res.loss <= ref + res.gap + 1e-12  # the certificate: L - min L <= gap
    assert res.loss == pytest.approx(ref, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(instances(), st.sampled_from([1e-6, 1e-8, 1e-10]))
def test_certificate_and_simplex(inst, tol):
    A, q = inst
    res = mixmin_weights(A, example_weights=q, tol=tol)
    w = res.weights
    assert res.converged
    assert 0.0 <= res.gap <= tol
    assert np.all(w >= 0) and abs(w.sum() - 1.0) <= 1e-12
    assert res.gap == pytest.approx(certificate(A, w, q), abs=1e-12)
    assert res.loss == pytest.approx(float(loss(A, w, q)[0]), abs=1e-12)


def test_rank_deficient_experts_reach_the_component_optimum():
    # 3 pure components plus 30 experts that are mixtures of them: any ensemble of the
    # mixtures is an ensemble of the components, so min L over all 33 = min over the 3.
    rng = np.random.default_rng(7)
    comps = rng.normal(-1.5, 1.0, size=(3, 3200))
    A = np.vstack([comps, mixtures_of(comps, 30, rng)])
    res = mixmin_weights(A)
    assert res.converged and res.iterations < 200
    assert res.loss == pytest.approx(slsqp(comps), abs=1e-7)


# -- hand-computed cases ------------------------------------------------------------------
def test_dominating_expert_gets_all_weight():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(4, 50))
    A[2] = A.max(axis=0) + 0.5  # best on every example
    res = mixmin_weights(A)
    assert res.weights[2] == pytest.approx(1.0, abs=1e-6)
    assert res.loss == pytest.approx(-A[2].mean(), abs=1e-8)


def test_identical_experts_lose_like_one_of_them():
    a = np.random.default_rng(1).normal(size=30)
    res = mixmin_weights(np.vstack([a, a, a]))
    assert res.loss == pytest.approx(-a.mean(), abs=1e-12)
    assert res.converged and res.iterations == 0  # uniform already has gap 0


def test_symmetric_split_gives_half_half():
    x, y = -0.3, -2.1  # A is best on the first half, B on the second, symmetrically
    A = np.array([[x] * 5 + [y] * 5, [y] * 5 + [x] * 5])
    res = mixmin_weights(A)
    np.testing.assert_allclose(res.weights, [0.5, 0.5], atol=1e-6)
    assert res.loss == pytest.approx(-np.log(0.5 * np.exp(x) + 0.5 * np.exp(y)), abs=1e-12)


def test_likelihoods_far_beyond_exp_range():
    # exp(-2000) is 0 in floating point: L(w) = -(log w_0 + log w_1) / 2 exactly.
    A = np.array([[0.0, -2000.0], [-2000.0, 0.0], [-5000.0, -5000.0]])
    res = mixmin_weights(A)
    assert res.converged
    np.testing.assert_allclose(res.weights, [0.5, 0.5, 0.0], atol=1e-6)
    assert res.loss == pytest.approx(np.log(2.0), abs=1e-8)


def test_single_expert():
    res = mixmin_weights(np.array([[-1.0, -3.0]]))
    assert res.weights.tolist() == [1.0] and res.loss == pytest.approx(2.0)
    assert res.gap == 0.0 and res.converged


# -- invariances ----------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(instances(), st.floats(-1000, 1000), st.integers(0, 10**6))
def test_shifting_one_example_changes_nothing_but_the_loss(inst, c, which):
    # Exact invariance: the gradient, hence the certificate, of any w is unchanged. The
    # solver returns *a* point with gap <= tol (not bit-identical weights across runs on
    # flat problems), so the shifted run's weights must be certified for the original.
    A, q = inst
    x = which % A.shape[1]
    B = A.copy()
    B[:, x] += c
    r1 = mixmin_weights(A, example_weights=q)
    r2 = mixmin_weights(B, example_weights=q)
    qn = np.full(A.shape[1], 1.0 / A.shape[1]) if q is None else q / q.sum()
    assert r2.converged
    assert certificate(A, r2.weights, q) == pytest.approx(r2.gap, abs=1e-12)
    assert float(loss(A, r2.weights, q)[0]) == pytest.approx(r2.loss + qn[x] * c, abs=1e-9)
    assert r2.loss == pytest.approx(r1.loss - qn[x] * c, abs=r1.gap + r2.gap + 1e-9)


def test_shifting_examples_keeps_the_argmin_of_a_well_conditioned_problem():
    rng = np.random.default_rng(11)
    A = rng.normal(size=(6, 400))  # independent experts: a strongly convex L
    shifts = rng.uniform(-1000, 1000, size=400)
    r1 = mixmin_weights(A, tol=1e-12)
    r2 = mixmin_weights(A + shifts, tol=1e-12)
    np.testing.assert_allclose(r2.weights, r1.weights, atol=1e-6)
    assert r2.loss == pytest.approx(r1.loss - shifts.mean(), abs=1e-9)


def test_zero_weight_examples_are_ignored():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(5, 40))
    q = rng.uniform(0.5, 1.0, size=40)
    q[::3] = 0.0
    r1 = mixmin_weights(A, example_weights=q)
    r2 = mixmin_weights(A[:, q > 0], example_weights=q[q > 0])
    np.testing.assert_allclose(r1.weights, r2.weights, atol=1e-12)
    assert r1.loss == pytest.approx(r2.loss, abs=1e-12)


# -- from a ScoreTable ---------------------------------------------------------------------------
def _table():
    lp = {
        ("a", "t1"): np.array([-2.0, -8.0]),
        ("b", "t1"): np.array([-4.0, -6.0]),
        ("c", "t1"): np.array([-1.0, -3.0]),
        ("a", "t2"): np.array([-1.0, -2.0, -3.0, -4.0]),
        ("b", "t2"): np.array([-5.0, -6.0, -7.0, -8.0]),
        ("c", "t2"): np.array([-9.0, -10.0, -20.0, -30.0]),
    }
    n_tok = {"t1": np.array([2, 4]), "t2": np.array([1, 0, 5, 10])}
    return ScoreTable.from_arrays(["a", "b", "c"], ["t1", "t2"], lp, n_tok)


def test_logprobs_per_token_and_equal_task_weights():
    logp, q = mixmin_logprobs(_table(), ["c", "a"], ["t2", "t1"])
    expected = np.array([
        [-9.0, -10.0, -4.0, -3.0, -0.5, -0.75],  # c: t2 / [1, 1 (0 clamped), 5, 10], t1 / [2, 4]
        [-1.0, -2.0, -0.6, -0.4, -1.0, -2.0],  # a
    ])
    np.testing.assert_allclose(logp, expected)
    np.testing.assert_allclose(q, [1 / 8] * 4 + [1 / 4] * 2)


def test_each_target_task_counts_equally():
    # Task t1 (1 example) is won by expert a, task t2 (9 examples) by b: equal task
    # weights give (1/2, 1/2); uniform example weights would give (1/10, 9/10).
    lp = {("a", "t1"): [0.0], ("b", "t1"): [-50.0],
          ("a", "t2"): [-50.0] * 9, ("b", "t2"): [0.0] * 9}
    table = ScoreTable.from_arrays(["a", "b"], ["t1", "t2"], lp)
    logp, q = mixmin_logprobs(table, ["a", "b"], ["t1", "t2"])
    np.testing.assert_allclose(mixmin_weights(logp, example_weights=q).weights, [0.5, 0.5],
                               atol=1e-6)
    np.testing.assert_allclose(mixmin_weights(logp).weights, [0.1, 0.9], atol=1e-6)


# -- bad input -----------------------------------------------------------------------------------
def test_non_finite_score_names_expert_and_task():
    lp = {("a", "t1"): [-1.0, -2.0], ("b", "t1"): [-1.0, np.nan]}
    table = ScoreTable.from_arrays(["a", "b"], ["t1"], lp)
    with pytest.raises(InputError, match=r"'b'.*'t1'"):
        mixmin_logprobs(table, ["a", "b"], ["t1"])


@pytest.mark.parametrize(
    ("experts", "targets", "match"),
    [([], ["t1"], "at least one expert"), (["a"], [], "at least one target"),
     (["a"], ["nope"], "'nope'"), (["zz"], ["t1"], "'zz'")],
)
def test_logprobs_bad_names(experts, targets, match):
    with pytest.raises(InputError, match=match):
        mixmin_logprobs(_table(), experts, targets)


@pytest.mark.parametrize(
    ("logp", "kwargs", "match"),
    [
        (np.zeros(4), {}, "2-D"),
        (np.zeros((0, 4)), {}, "at least one expert"),
        (np.zeros((2, 0)), {}, "at least one target example"),
        (np.array([[0.0, -np.inf], [0.0, 0.0]]), {}, r"logp\[0, 1\]"),
        (np.zeros((2, 3)), {"example_weights": np.ones(4)}, "shape"),
        (np.zeros((2, 3)), {"example_weights": np.array([1.0, -1.0, 1.0])}, ">= 0"),
        (np.zeros((2, 3)), {"example_weights": np.array([1.0, np.nan, 1.0])}, "finite"),
        (np.zeros((2, 3)), {"example_weights": np.zeros(3)}, "sum to 0"),
        (np.zeros((2, 3)), {"tol": -1.0}, "tol"),
        (np.zeros((2, 3)), {"max_iter": -1}, "max_iter"),
    ],
)
def test_weights_bad_input(logp, kwargs, match):
    with pytest.raises(InputError, match=match):
        mixmin_weights(logp, **kwargs)
