"""The calibrated kernel, balanced utilities and the reference mixtures (D12, issue 9)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskpgm.affinity.io import AffinityMatrix
from taskpgm.affinity.redundancy import noise_from_intervals, redundancy_clusters
from taskpgm.errors import InputError
from taskpgm.mixture import build_kernel, kkt_residual, solve


def block_affinity(counts, seed=0, across=-2.0, noise=0.02):
    """PMI-like matrix: 0 within a family (plus noise, sometimes positive), ``across``
    between families."""
    rng = np.random.default_rng(seed)
    fam = np.repeat(np.arange(len(counts)), counts)
    S = np.where(fam[:, None] == fam[None, :], 0.0, across)
    S = S + rng.normal(0.0, noise, S.shape)
    S = 0.5 * (S + S.T)
    np.fill_diagonal(S, 0.0)
    return S, fam


def family_mass(w, fam):
    return np.array([w[fam == f].sum() for f in range(fam.max() + 1)])


def test_calibrated_mixture_balances_families_where_the_reference_follows_templates():
    counts = [1, 1, 2, 3, 4, 5, 7, 10]
    S, fam = block_affinity(counts)
    calibrated = family_mass(solve(S).weights, fam)  # the default (D16)
    assert solve(S).params["kernel"] == "calibrated"
    reference = family_mass(solve(S, kernel="shift", unary="rowsum").weights, fam)
    # family-balanced would give 1/8 each; uniform over tasks gives count/33.
    assert np.abs(calibrated - 1 / 8).max() < 0.03
    assert reference[-1] > 2 * reference[0]  # the reference pays for templates
    assert calibrated.min() > 0.09  # no family is dropped


def test_positive_noise_inside_a_cluster_never_drops_it():
    # PMI noise above 0 inside a cluster: exp-style kernels put the off-diagonal above the
    # diagonal and remove the whole cluster; the calibrated kernel reads it as 0.
    S, fam = block_affinity([3, 3, 3], noise=0.0)
    S[0, 1] = S[1, 0] = 0.3
    K = build_kernel(S, "calibrated").matrix
    assert np.all(K[~np.eye(len(K), dtype=bool)] <= np.diag(K).min() + 1e-12)
    w = solve(S, kernel="calibrated").weights
    assert family_mass(w, fam).min() > 0.25
    assert np.all(w > 0)  # mass spread over every member


def test_close_but_distinct_skills_keep_their_mass():
    # Two skills at -0.24 (vs -2 between the others) are distinguishable: not merged.
    S, fam = block_affinity([2, 2, 2, 2], noise=0.0)
    S[np.ix_(fam == 0, fam == 1)] = -0.24
    S[np.ix_(fam == 1, fam == 0)] = -0.24
    m = family_mass(solve(S, kernel="calibrated").weights, fam)
    assert m[0] > 0.2 and m[1] > 0.2


def test_no_redundancy_gives_uniform():
    rng = np.random.default_rng(3)
    S = -rng.uniform(1.5, 3.0, (9, 9))
    S = 0.5 * (S + S.T)
    np.fill_diagonal(S, 0.0)
    assert solve(S, kernel="calibrated").weights == pytest.approx(np.full(9, 1 / 9), abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 25), st.integers(0, 10**6), st.floats(0.05, 1.0))
def test_calibrated_kernel_is_psd_and_solution_is_exact(n, seed, r_rel):
    rng = np.random.default_rng(seed)
    S = rng.normal(-1.0, 1.0, (n, n))
    np.fill_diagonal(S, 0.0)
    K = build_kernel(S, "calibrated").matrix
    assert np.allclose(K, K.T)
    assert np.linalg.eigvalsh(K).min() >= -1e-10
    m = solve(S, kernel="calibrated", r_rel=r_rel)
    assert m.weights.min() >= 0 and m.weights.sum() == pytest.approx(1.0)
    u = m.diagnostics  # recompute the KKT residual independently of the solver
    from taskpgm.mixture.unary import balanced_reference

    c = r_rel * K @ balanced_reference(K)
    assert kkt_residual(K, c, m.weights) <= 1e-8
    assert u["kkt_residual"] <= 1e-8


def test_balanced_utilities_at_r_rel_1_give_the_inverse_density_mixture():
    # Unconstrained optimum p = r_rel q + (1 - r_rel) p_div: at r_rel = 1 exactly q.
    S, _ = block_affinity([1, 2, 4], noise=0.0)
    K = build_kernel(S, "calibrated").matrix
    q = 1.0 / K.sum(axis=1)
    q /= q.sum()
    assert solve(S, kernel="calibrated", r_rel=1.0).weights == pytest.approx(q, abs=1e-9)


def test_noise_widens_what_counts_as_redundant():
    S, _ = block_affinity([2, 2], noise=0.0, across=-2.0)
    S[0, 1] = S[1, 0] = -0.5  # a family whose templates differ by 0.5
    assert len(set(redundancy_clusters(S))) == 3  # 0.5 >> 5% of the median distance
    assert len(set(redundancy_clusters(S, noise=0.3))) == 2  # within 2 standard errors


def test_noise_is_read_from_bootstrap_intervals():
    S, _ = block_affinity([2, 2], noise=0.0)
    S[0, 1] = S[1, 0] = -0.5
    half = np.full(S.shape, 0.3 * 1.959964)
    aff = AffinityMatrix([f"t{i}" for i in range(4)], S, "pmi", S - half, S + half,
                         {"interval_level": 0.95})
    assert noise_from_intervals(aff.lower, aff.upper)[0, 1] == pytest.approx(0.3, rel=1e-6)
    m = solve(aff, method="cluster-balanced")
    assert m.diagnostics["groups"] == 2
    assert m.weights == pytest.approx([0.25] * 4)


def test_family_balanced_hand_computed():
    names = ["a1", "a2", "a3", "b1", "c1"]
    fams = {"a1": "a", "a2": "a", "a3": "a", "b1": "b", "c1": None}
    m = solve(None, names=names, method="family-balanced", families=fams)
    assert m.weights == pytest.approx([1 / 9, 1 / 9, 1 / 9, 1 / 3, 1 / 3])
    with pytest.raises(InputError, match="no entry for task 'a2'"):
        solve(None, names=names, method="family-balanced", families={"a1": "a"})
    with pytest.raises(InputError, match="family labels"):
        solve(None, names=names, method="family-balanced")


def test_given_weights_from_mapping_csv_and_mixture_json(tmp_path):
    names = ["x", "y", "z"]
    m = solve(None, names=names, method="given", weights={"x": 2, "y": 1, "z": 1})
    assert m.weights == pytest.approx([0.5, 0.25, 0.25])
    csv = tmp_path / "w.csv"
    csv.write_text("task,weight\nx,1\ny,3\nz,0\n")
    assert solve(None, names=names, method="given", weights=str(csv)).weights == \
        pytest.approx([0.25, 0.75, 0.0])
    m.save(tmp_path / "m.json")
    again = solve(None, names=names, method="given", weights=tmp_path / "m.json")
    assert again.weights == pytest.approx(m.weights)
    (tmp_path / "bad.json").write_text(json.dumps({"x": 1, "y": -1, "z": 1}))
    with pytest.raises(InputError, match="negative"):
        solve(None, names=names, method="given", weights=str(tmp_path / "bad.json"))
    with pytest.raises(InputError, match="unknown task 'w'"):
        solve(None, names=names, method="given", weights={"x": 1, "y": 1, "z": 1, "w": 1})


def test_misspelt_or_misplaced_options_are_refused():
    S, _ = block_affinity([2, 2])
    with pytest.raises(InputError, match="unknown option 'kernal'"):
        solve(S, kernal="exp")
    with pytest.raises(InputError, match="does not apply"):
        solve(S, method="uniform", temperature=3.0)
    with pytest.raises(InputError, match="calibrated"):
        solve(S, kernel="shift", ridge=0.5)
    with pytest.raises(InputError, match="calibrated"):
        solve(S, kernel="exp", bandwidth=0.1)
    with pytest.raises(InputError, match="bandwidth"):
        solve(S, bandwidth=0.0)
    with pytest.raises(InputError, match="positive row sums"):
        solve(S, kernel="shift", unary="balanced")


def test_measured_utilities_are_scaled_to_the_kernel_in_use():
    from taskpgm.affinity.utilities import scale_like_rowsum
    from taskpgm.mixture import build_problem, make_inputs

    S, _ = block_affinity([1, 2, 4])
    u = np.linspace(-0.3, 0.5, len(S))  # nats/token gains, as the utilities stage measures
    for kernel in ("shift", "calibrated"):
        prob = build_problem(make_inputs(S, kernel=kernel, unary="given", utilities=u,
                                         scale_utilities=True))
        assert np.std(prob.u) == pytest.approx(np.std(prob.K.sum(axis=1)), rel=1e-9)
    # For shift the kernel's row sums spread like the affinity's: the reference scaling.
    shift = build_problem(make_inputs(S, kernel="shift", unary="given", utilities=u,
                                      scale_utilities=True))
    assert shift.u == pytest.approx(scale_like_rowsum(u, S), abs=1e-9)


def test_the_bandwidth_decides_whether_a_template_apart_is_a_near_copy():
    # Two skills 4 nats apart; one skill's third template sits 0.3 nats from its other two.
    # Median distance 4 (16 of 30 ordered pairs lie across skills), so a bandwidth of 5%
    # is 0.2 nats (t = 1.5: beyond the cluster cut 1.18, its own cluster) and 10% is 0.4
    # nats (t = 0.75: a near-copy, one cluster per skill).
    S = np.full((6, 6), -4.0)
    S[:3, :3] = 0.0
    S[3:, 3:] = 0.0
    S[2, :2] = S[:2, 2] = -0.3
    np.fill_diagonal(S, 0.0)
    assert redundancy_clusters(S, bandwidth=0.05).tolist() == [0, 0, 1, 2, 2, 2]
    assert redundancy_clusters(S).tolist() == [0, 0, 0, 1, 1, 1]  # the default, 10% (D26)
    k5 = build_kernel(S, "calibrated", bandwidth=0.05).matrix
    k10 = build_kernel(S, "calibrated").matrix
    assert k10[0, 2] > k5[0, 2]  # the template apart counts as more of a copy
    # The narrow bandwidth pays the first skill for its template apart (q counts it as
    # a region of its own: 0.59); the wider one brings the two skills near even (0.53).
    wide = solve(S, bandwidth=0.10, r_rel=1.0).weights
    narrow = solve(S, bandwidth=0.05, r_rel=1.0).weights
    assert 0.5 < sum(wide[:3]) < 0.55
    assert sum(narrow[:3]) > sum(wide[:3]) + 0.05
    assert solve(S, bandwidth=0.10).params["bandwidth"] == 0.10
    cb = solve(S, method="cluster-balanced", bandwidth=0.10)
    assert cb.weights == pytest.approx([1 / 6] * 6)
    assert cb.params["bandwidth"] == 0.10
