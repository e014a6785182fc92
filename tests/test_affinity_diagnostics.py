"""Degenerate-structure warnings, including the real 316-task matrix's zero block."""

from __future__ import annotations

import numpy as np

from taskpgm.affinity.diagnostics import degenerate_warnings, zero_block


def test_real_matrix_zero_block_is_found(pmi316_path):
    s = np.load(pmi316_path)
    names = [f"t{i}" for i in range(s.shape[0])]
    zeros_per_row = (s == 0).sum(axis=1)
    heavy = set(np.flatnonzero(zeros_per_row > s.shape[0] // 8).tolist())
    block = set(zero_block(s).tolist())
    assert 70 <= len(block) <= 90
    assert heavy <= block
    warnings = degenerate_warnings(s, names)
    assert any(f"block of {len(block)} tasks" in w for w in warnings)


def test_clean_matrix_has_no_warnings():
    rng = np.random.default_rng(0)
    a = rng.normal(-3, 1, (30, 30))
    a = (a + a.T) / 2
    np.fill_diagonal(a, 0)
    assert degenerate_warnings(a, [f"t{i}" for i in range(30)]) == []
    assert len(zero_block(a)) == 0


def test_constant_rows_nan_and_planted_block_are_named():
    rng = np.random.default_rng(1)
    n = 12
    a = rng.normal(-3, 1, (n, n))
    a = (a + a.T) / 2
    a[2, :] = a[:, 2] = -1.0
    block = [5, 7, 8, 10]
    a[np.ix_(block, block)] = 0.0
    a[0, 11] = a[11, 0] = np.nan
    np.fill_diagonal(a, 0)
    names = [f"task{i}" for i in range(n)]
    text = "\n".join(degenerate_warnings(a, names))
    assert "2 non-finite entries" in text and "task11" in text
    assert "constant row" in text and "task2" in text
    assert "block of 4 tasks" in text and "task5, task7, task8, task10" in text
