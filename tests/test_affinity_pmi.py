"""PMI affinity: known truth, invariants, intervals, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from taskpgm.affinity import compute_affinity, pmi_from_means
from taskpgm.affinity.synthetic import low_rank_means, table_from_means
from taskpgm.errors import ConfigError, InputError
from taskpgm.scores import ScoreTable, Shard


def _direct_pmi(table: ScoreTable, tasks, normalize="sequence") -> np.ndarray:
    """Independent reference: the DESIGN.md formula, pair by pair, from per-example scores."""

    def lp(e, t):
        s = table.shard(e, t)
        return s.logprob / s.n_tokens if normalize == "token" else s.logprob

    n = len(tasks)
    out = np.zeros((n, n))
    for i, a in enumerate(tasks):
        for j, b in enumerate(tasks):
            if i != j:
                out[i, j] = 0.5 * (np.mean(lp(a, b) - lp(b, b)) + np.mean(lp(b, a) - lp(a, a)))
    return out


def test_identical_experts_give_zero_pmi():
    rng = np.random.default_rng(0)
    tasks = ["a", "b", "c"]
    scores = {t: rng.normal(-20, 4, 30) for t in tasks}
    table = ScoreTable.from_arrays(tasks, tasks, {(e, t): scores[t] for e in tasks for t in tasks})
    aff = compute_affinity(table)
    assert np.array_equal(aff.matrix, np.zeros((3, 3)))


@pytest.mark.parametrize("normalize", ["sequence", "token"])
def test_matches_pairwise_formula(normalize):
    table = table_from_means(low_rank_means(7, seed=3), n_examples=[5, 9, 12, 3, 8, 8, 20], seed=1)
    aff = compute_affinity(table, normalize=normalize)
    np.testing.assert_allclose(aff.matrix, _direct_pmi(table, table.tasks, normalize), atol=1e-9)
    assert aff.kind == "pmi" and aff.names == table.tasks


def test_better_transfer_means_higher_affinity():
    # Expert b is as good as a on a's task; expert c is much worse: S_ab > S_ac.
    m = np.array([[-10.0, -12.0, -30.0], [-10.0, -8.0, -30.0], [-40.0, -40.0, -5.0]])
    aff = compute_affinity(table_from_means(m, 10))
    assert aff.matrix[0, 1] > aff.matrix[0, 2]


def test_base_expert_is_ignored_and_heldout_task_skipped():
    m = low_rank_means(4, seed=0)
    table = table_from_means(m, 6, extra_experts={"base": m.mean(axis=0)})
    ho = "heldout"
    table.tasks.append(ho)
    for e in table.experts:
        table._shards[(e, ho)] = Shard(["x"], np.array([-3.0]), np.array([2], dtype=np.int32))
    aff = compute_affinity(table)
    assert aff.names == table.tasks[:4]
    assert aff.provenance["skipped_tasks"] == [ho]
    np.testing.assert_allclose(aff.matrix, pmi_from_means(m), atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(2, 3), st.integers(2, 6), st.integers(2, 6)),
              elements=st.floats(-1e4, 1e4)))
def test_pmi_is_symmetric_with_zero_diagonal(batch):
    n = min(batch.shape[1:])
    m = batch[:, :n, :n]
    s = pmi_from_means(m)
    assert np.array_equal(s, np.swapaxes(s, -1, -2))
    assert np.all(np.diagonal(s, axis1=-2, axis2=-1) == 0)
    # Invariant to a per-task shift of all experts' scores (task difficulty cancels).
    shift = np.linspace(-50, 50, n)
    np.testing.assert_allclose(pmi_from_means(m + shift[None, None, :]), s,
                               atol=1e-9 * (1 + np.abs(m).max()))


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 5), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_compute_matches_reference_on_random_tables(n, m, seed):
    rng = np.random.default_rng(seed)
    table = table_from_means(rng.normal(-20, 10, (n, n)), m, noise=2.0, seed=seed)
    np.testing.assert_allclose(compute_affinity(table).matrix, _direct_pmi(table, table.tasks),
                               atol=1e-8)


def test_bootstrap_interval_brackets_estimate_and_is_deterministic():
    table = table_from_means(low_rank_means(6, seed=2), 40, noise=3.0, seed=2)
    a1 = compute_affinity(table, bootstrap=200, seed=5)
    a2 = compute_affinity(table, bootstrap=200, seed=5)
    assert np.array_equal(a1.lower, a2.lower) and np.array_equal(a1.upper, a2.upper)
    off = ~np.eye(6, dtype=bool)
    assert np.all(a1.lower[off] < a1.upper[off])
    inside = (a1.lower <= a1.matrix + 1e-12) & (a1.matrix <= a1.upper + 1e-12)
    assert inside[off].mean() > 0.9
    assert np.array_equal(a1.lower, a1.lower.T)


def test_bootstrap_width_shrinks_with_more_examples():
    m = low_rank_means(5, seed=4)
    small = compute_affinity(table_from_means(m, 10, noise=3.0, seed=1), bootstrap=200)
    large = compute_affinity(table_from_means(m, 400, noise=3.0, seed=1), bootstrap=200)
    off = ~np.eye(5, dtype=bool)
    assert np.median((large.upper - large.lower)[off]) < np.median((small.upper - small.lower)[off])


def test_noisy_scores_raise_wide_interval_warning():
    m = low_rank_means(6, seed=0) * 0.01  # entries barely differ, noise dominates
    aff = compute_affinity(table_from_means(m, 5, noise=10.0, seed=0), bootstrap=100)
    assert any("wide bootstrap intervals" in w for w in aff.provenance["warnings"])
    assert aff.provenance["wide_intervals"]["count"] > 0


def test_missing_pair_names_first_missing_pair():
    table = table_from_means(low_rank_means(3), 5)
    del table._shards[("task001", "task002")]
    with pytest.raises(InputError, match=r"expert 'task001' on task 'task002' \(1 of 9"):
        compute_affinity(table)


def test_non_finite_score_is_named():
    table = table_from_means(low_rank_means(3), 5)
    table.shard("task002", "task000").logprob[3] = np.nan
    with pytest.raises(InputError, match=r"'task002' on task 'task000', example 'task000-3'"):
        compute_affinity(table)


def test_mismatched_names_and_examples():
    table = table_from_means(low_rank_means(3), 5)
    table.experts.append("stranger")
    with pytest.raises(InputError, match="expert 'stranger' is named after no task"):
        compute_affinity(table)
    table = table_from_means(low_rank_means(3), 5)
    s = table.shard("task001", "task000")
    table._shards[("task001", "task000")] = Shard(list("vwxyz"), s.logprob, s.n_tokens)
    with pytest.raises(InputError, match="different probe examples of task 'task000'"):
        compute_affinity(table)


def test_bad_options():
    table = table_from_means(low_rank_means(3), 5)
    with pytest.raises(ConfigError):
        compute_affinity(table, metric="cosine")
    with pytest.raises(ConfigError):
        compute_affinity(table, metric="jsd", bootstrap=10)


def test_bootstrap_with_one_example_per_task_has_zero_width():
    # Resampling one example always returns it: every replicate equals the estimate.
    aff = compute_affinity(table_from_means(low_rank_means(4, seed=1), 1), bootstrap=20)
    np.testing.assert_allclose(aff.lower, aff.matrix, atol=1e-12)
    np.testing.assert_allclose(aff.upper, aff.matrix, atol=1e-12)
