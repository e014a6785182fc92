"""Partial scoring: which pairs to score, completing M, and how close the result is."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
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
        rows, cols = mask.sum(axis=1), mask.sum(axis=0)
        assert rows.max() - rows.min() <= 1 and cols.max() - cols.min() <= 1


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
