"""Partial scoring: which pairs to score, completing M, and how close the result is."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from taskpgm.affinity import compute_affinity, pmi_from_means
from taskpgm.affinity.completion import (
    adaptive_pairs,
    complete_means,
    completion_curve,
    sample_mask,
)
from taskpgm.affinity.synthetic import low_rank_means, table_from_means
from taskpgm.errors import InputError


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 40), st.floats(0.05, 1.0), st.sampled_from(["random", "balanced", "pairs"]),
       st.integers(0, 1000))
def test_sample_mask_size_and_diagonal(n, fraction, strategy, seed):
    mask = sample_mask(n, fraction, seed=seed, strategy=strategy)
    assert mask.diagonal().all()
    expected = min(max(round(fraction * n * n), n), n * n)
    assert abs(int(mask.sum()) - expected) <= (1 if strategy == "pairs" else 0)
    if strategy == "pairs":
        assert np.array_equal(mask, mask.T)
    if strategy == "balanced":
        # Every expert and every task anchored by about half the average share or more.
        off = mask & ~np.eye(n, dtype=bool)
        per_row = (int(mask.sum()) - n) // n
        assert off.sum(axis=1).min() >= per_row // 2
        assert off.sum(axis=0).min() >= min(n - 1, per_row - per_row // 2)


@settings(max_examples=25, deadline=None)
@given(st.integers(40, 120), st.sampled_from([0.2, 0.3, 0.5]),
       st.sampled_from(["random", "balanced", "pairs"]), st.integers(0, 1000),
       st.integers(1, 8), st.integers(0, 8))
@example(n=40, fraction=0.2, strategy="balanced", seed=254, added=8, removed=8)
def test_sample_mask_keeps_its_pairs_when_the_pool_changes(n, fraction, strategy, seed,
                                                          added, removed):
    """Pairs are keyed by names: a pool that gains and loses a few tasks (and is
    reordered) keeps almost every pair it had scored among the tasks it kept."""
    names = [f"task{i}" for i in range(n)]
    before = sample_mask(n, fraction, seed=seed, strategy=strategy, names=names)
    kept = names[removed:]
    after_names = list(reversed(kept + [f"new{i}" for i in range(added)]))
    after = sample_mask(len(after_names), fraction, seed=seed, strategy=strategy,
                        names=after_names)
    pos = {t: i for i, t in enumerate(after_names)}
    old = [(e, t) for e in kept for t in kept if e != t and before[names.index(e), names.index(t)]]
    still = sum(after[pos[e], pos[t]] for e, t in old)
    # balanced loses the most: a changed share per row moves its row/column split (0.80
    # at 40 tasks, 8 added and 8 removed, at 20%; 0.95 or more above 80 tasks); random
    # and pairs kept 0.94 or more in 300 random draws.
    least = 0.75 if strategy == "balanced" else 0.85
    assert still >= least * len(old)
    # Keyed by positions instead (no names), about `fraction` of them would be kept.
    shuffled = sample_mask(len(after_names), fraction, seed=seed, strategy=strategy)
    assert sum(shuffled[pos[e], pos[t]] for e, t in old) < least * len(old)


def test_sample_mask_names_must_match_and_be_distinct():
    with pytest.raises(InputError, match="3 distinct names"):
        sample_mask(3, 0.5, names=["a", "b"])
    with pytest.raises(InputError, match="3 distinct names"):
        sample_mask(3, 0.5, names=["a", "b", "a"])


def test_completion_recovers_low_rank_means():
    m = low_rank_means(40, rank=2, seed=0)
    mask = sample_mask(40, 0.5, seed=1)
    comp = complete_means(np.where(mask, m, np.nan), mask, seed=0)
    assert np.array_equal(comp.means[mask], m[mask])
    err = np.abs(comp.means - m)[~mask]
    assert np.sqrt(np.mean(err**2)) < 0.5 * comp.info["holdout_rmse_additive_only"]
    assert 1 <= comp.info["rank"] <= 10


def test_completion_curve_improves_with_fraction_and_is_exact_at_one():
    m = low_rank_means(40, rank=2, seed=2)
    mixture = lambda s: np.exp(s.mean(axis=1)) / np.exp(s.mean(axis=1)).sum()
    rows = completion_curve(m, fractions=(1.0, 0.7, 0.3), seed=0, mixture_fn=mixture)
    assert rows[0]["pearson"] == pytest.approx(1.0) and rows[0]["mixture_l1"] == 0.0
    assert rows[1]["pearson"] > 0.95
    assert rows[1]["m_rel_error_unscored"] < rows[2]["m_rel_error_unscored"]


def test_compute_affinity_with_missing_pairs_and_complete():
    m = low_rank_means(25, rank=2, seed=3)
    table = table_from_means(m, 20, noise=0.5, seed=0)
    mask = sample_mask(25, 0.6, seed=0)
    for i, e in enumerate(table.tasks):
        for j, t in enumerate(table.tasks):
            if not mask[i, j]:
                del table._shards[(e, t)]
    with pytest.raises(InputError, match="pass complete=True"):
        compute_affinity(table)
    aff = compute_affinity(table, complete=True)
    assert aff.provenance["completion"]["n_missing_pairs"] == int((~mask).sum())
    full = pmi_from_means(m)
    iu = np.triu_indices(25, 1)
    assert np.corrcoef(aff.matrix[iu], full[iu])[0, 1] > 0.9


def test_bootstrap_under_completion_keeps_measured_intervals_and_widens_estimated_ones(
        monkeypatch):
    from scipy.stats import norm

    m = low_rank_means(25, rank=2, seed=3)
    table = table_from_means(m, 20, noise=0.5, seed=0)
    full = compute_affinity(table, bootstrap=30, seed=0)
    mask = sample_mask(25, 0.5, seed=0)
    for i, e in enumerate(table.tasks):
        for j, t in enumerate(table.tasks):
            if not mask[i, j]:
                del table._shards[(e, t)]
    aff = compute_affinity(table, complete=True, bootstrap=30, seed=0)
    # An entry whose two pairs were both scored: the same value and the same bootstrap
    # interval as with every pair scored (each task's resample does not depend on
    # which experts were scored on it).
    both = mask & mask.T
    assert np.array_equal(aff.matrix[both], full.matrix[both])
    assert np.array_equal(aff.lower[both], full.lower[both])
    assert np.array_equal(aff.upper[both], full.upper[both])
    # An entry using k estimated pairs: at least the completion's error on each side.
    k = (~mask).astype(int) + (~mask).T.astype(int)
    m_error = aff.provenance["completion"]["interval_m_error"]["value"]
    assert m_error == aff.provenance["completion"]["estimated_error"]["m_rmse"] > 0
    half = norm.ppf(0.975) * 0.5 * m_error * np.sqrt(k)
    assert np.all(aff.upper - aff.matrix >= half - 1e-12)
    assert np.all(aff.matrix - aff.lower >= half - 1e-12)
    # ...and wide enough to hold the fully scored value (bootstrap-only intervals of the
    # measured parts cover 0.78 of these here).
    est = k > 0
    covered = (full.matrix >= aff.lower) & (full.matrix <= aff.upper)
    assert covered[est].mean() >= 0.85
    # The wide-interval warning says which of its pairs the completion widened (only
    # entries that use an estimated pair can be), and the full-scoring one says none.
    flagged = {(a, b) for a, b, *_ in aff.provenance["wide_intervals"]["widest"]}
    names = list(table.tasks)
    assert any(est[names.index(a), names.index(b)] for a, b in flagged)
    warn = next(w for w in aff.provenance["warnings"] if "wide" in w)
    assert "widened by the completion's error" in warn
    assert not any("completion" in w for w in full.provenance["warnings"])
    # The bootstrap part alone is about as wide as with every pair scored: an estimated
    # pair moves with its task's resample (held still, its gap carried the whole spread
    # of the task's own mean: 3.5x as wide here).
    from taskpgm.affinity import compute

    monkeypatch.setattr(compute, "widen_for_completion", lambda m, lo, hi, *a: (lo, hi))
    boot = compute_affinity(table, complete=True, bootstrap=30, seed=0)
    width = (boot.upper - boot.lower)[est].mean()
    assert width <= 1.5 * (full.upper - full.lower)[est].mean()


def test_completion_needs_the_diagonal():
    table = table_from_means(low_rank_means(4), 5)
    del table._shards[("task002", "task002")]
    with pytest.raises(InputError, match="'task002' on its own task"):
        compute_affinity(table, complete=True)


def test_adaptive_pairs_picks_unscored_pairs_where_halves_disagree():
    m = low_rank_means(30, rank=3, seed=5)
    mask = sample_mask(30, 0.3, seed=0, strategy="balanced")
    new = adaptive_pairs(m, mask, 50, seed=0)
    assert new.sum() == 50 and not (new & mask).any()
    rows = completion_curve(m, fractions=(0.5,), strategy="adaptive", seed=0)
    assert rows[0]["scored_fraction"] == pytest.approx(0.5, abs=0.01)
    assert rows[0]["pearson"] > 0.9


def test_the_completion_error_falls_back_to_the_spread_when_nothing_can_be_hidden():
    from taskpgm.affinity.compute import completion_m_error

    m = np.array([[0.0, -1.0, np.nan], [-3.0, 0.0, np.nan], [np.nan, np.nan, 0.0]])
    measured = np.isfinite(m)
    value, source = completion_m_error({}, m, measured)
    assert value == pytest.approx(1.0) and source.startswith("spread")  # std of -1, -3
    assert completion_m_error({"m_rmse": 0.2}, m, measured) == (0.2, "leave-some-out")
