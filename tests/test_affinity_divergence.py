"""Top-k divergences (JSD, symmetric KL) and the cross-entropy gap, against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.special import log_softmax
from scipy.stats import entropy

from taskpgm.affinity import compute_affinity
from taskpgm.affinity.divergence import position_divergence
from taskpgm.affinity.synthetic import table_with_topk
from taskpgm.errors import InputError

V = 6


def _dists(seed, tasks=("a", "b", "c"), n_ex=3, scale=2.0):
    """Full next-token log-distributions for each (expert, task), shared inputs per task."""
    rng = np.random.default_rng(seed)
    out = {}
    for t in tasks:
        shape = [(int(rng.integers(1, 5)), V) for _ in range(n_ex)]
        base = [rng.normal(0, scale, s) for s in shape]
        for e in tasks:
            out[(e, t)] = [log_softmax(b + rng.normal(0, 1.0, b.shape), axis=1) for b in base]
    return out


def _reference(dists, tasks, fn):
    n = len(tasks)
    out = np.zeros((n, n))
    for i, a in enumerate(tasks):
        for j, b in enumerate(tasks):
            if i == j:
                continue
            vals = [fn(np.exp(pa[p]), np.exp(pb[p]))
                    for t in (a, b)
                    for pa, pb in zip(dists[(a, t)], dists[(b, t)], strict=True)
                    for p in range(len(pa))]
            out[i, j] = np.mean(vals)
    return out


def test_full_vocabulary_jsd_matches_scipy():
    dists = _dists(0)
    aff = compute_affinity(table_with_topk(dists, k=V), metric="jsd")
    ref = _reference(dists, ["a", "b", "c"], lambda p, q: jensenshannon(p, q) ** 2)
    np.testing.assert_allclose(-aff.matrix, ref, atol=1e-6)
    assert aff.kind == "jsd" and np.all(aff.matrix <= 0)


def test_full_vocabulary_skl_matches_scipy():
    dists = _dists(1)
    aff = compute_affinity(table_with_topk(dists, k=V), metric="skl")
    ref = _reference(dists, ["a", "b", "c"], lambda p, q: entropy(p, q) + entropy(q, p))
    np.testing.assert_allclose(-aff.matrix, ref, rtol=1e-5, atol=1e-6)


def test_shared_topk_equals_jsd_of_coarsened_distributions():
    # Same top-3 ids for both experts: exact JSD of (top-3 probs, everything else).
    lp_a = log_softmax(np.array([[5.0, 4.0, 3.0, 0.0, -1.0, -2.0]]), axis=1)
    lp_b = log_softmax(np.array([[3.0, 5.0, 4.0, 1.0, 0.5, 0.0]]), axis=1)
    ids = np.array([[0, 1, 2]])
    got = position_divergence(ids, lp_a[:, :3], ids[:, [1, 2, 0]], lp_b[:, [1, 2, 0]])
    pa, pb = np.exp(lp_a[0]), np.exp(lp_b[0])
    coarse = lambda p: np.r_[p[:3], p[3:].sum()]
    assert got[0] == pytest.approx(jensenshannon(coarse(pa), coarse(pb)) ** 2, abs=1e-9)


def test_disjoint_topk_is_far_apart_not_zero():
    lp = np.log(np.array([[0.5, 0.3, 0.1]]))
    d = position_divergence(np.array([[0, 1, 2]]), lp, np.array([[3, 4, 5]]), lp)
    assert 0.5 * np.log(2) < d[0] <= np.log(2)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, V), st.floats(0.1, 5.0))
def test_topk_jsd_properties(seed, k, scale):
    rng = np.random.default_rng(seed)
    la = log_softmax(rng.normal(0, scale, (4, V)), axis=1)
    lb = log_softmax(rng.normal(0, scale, (4, V)), axis=1)
    ia = np.argsort(-la, axis=1)[:, :k]
    ib = np.argsort(-lb, axis=1)[:, :k]
    ta, tb = np.take_along_axis(la, ia, 1), np.take_along_axis(lb, ib, 1)
    d_ab = position_divergence(ia, ta, ib, tb)
    d_ba = position_divergence(ib, tb, ia, ta)
    np.testing.assert_allclose(d_ab, d_ba, atol=1e-12)
    assert np.all(d_ab >= -1e-12) and np.all(d_ab <= np.log(2) + 1e-12)
    assert np.allclose(position_divergence(ia, ta, ia, ta), 0.0, atol=1e-12)
    if k == V:
        exact = [jensenshannon(np.exp(la[p]), np.exp(lb[p])) ** 2 for p in range(4)]
        np.testing.assert_allclose(d_ab, exact, atol=1e-9)


def test_ce_gap_matches_formula():
    rng = np.random.default_rng(3)
    from taskpgm.scores import ScoreTable

    tasks = ["x", "y", "z"]
    lp = {(e, t): rng.normal(-20, 5, 7) for e in tasks for t in tasks}
    ntok = {t: rng.integers(1, 9, 7) for t in tasks}
    table = ScoreTable.from_arrays(tasks, tasks, lp, ntok)
    aff = compute_affinity(table, metric="ce-gap")
    ce = {(e, t): -lp[(e, t)].sum() / ntok[t].sum() for e in tasks for t in tasks}
    for i, a in enumerate(tasks):
        for j, b in enumerate(tasks):
            if i != j:
                gap = 0.5 * ((ce[(b, a)] - ce[(a, a)]) + (ce[(a, b)] - ce[(b, b)]))
                assert aff.matrix[i, j] == pytest.approx(-gap, rel=1e-12)


def test_jsd_without_topk_data_is_one_line_error():
    from taskpgm.affinity.synthetic import low_rank_means, table_from_means

    with pytest.raises(InputError, match="has no top-k scores"):
        compute_affinity(table_from_means(low_rank_means(3), 4), metric="jsd")
