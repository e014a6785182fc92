"""Size-only baselines, checked against worked examples from their papers."""

from __future__ import annotations

import numpy as np
import pytest

from taskpgm.errors import InputError
from taskpgm.mixture import solve
from taskpgm.mixture.baselines import (
    capped_weights,
    temperature_weights,
    unimax_allocation,
)


def test_temperature_interpolates_between_size_and_uniform():
    sizes = np.array([100.0, 900.0])
    # T = 2: p ~ sqrt(n) -> 10 : 30.
    assert temperature_weights(sizes, 2.0) == pytest.approx([0.25, 0.75])
    assert temperature_weights(sizes, 1.0) == pytest.approx([0.1, 0.9])
    assert temperature_weights(sizes, 1e9) == pytest.approx([0.5, 0.5])


def test_t5_examples_proportional_with_cap():
    # Raffel et al. (2020) sec. 3.5.2: r_m = min(e_m, K) / sum_n min(e_n, K).
    sizes = np.array([2**10, 2**20, 2**22])
    w = capped_weights(sizes, 2**21)
    assert w == pytest.approx(np.array([2**10, 2**20, 2**21]) / (2**10 + 2**20 + 2**21))


def test_unimax_algorithm_one():
    # Chung et al. (2023), Alg. 1: smallest first, min(N * size, remaining / remaining tasks).
    alloc = unimax_allocation(np.array([1000.0, 10.0, 100.0]), budget=300, max_epochs=1)
    assert alloc == pytest.approx([190.0, 10.0, 100.0])
    # With 4 epochs allowed the small task is repeated up to 4x.
    alloc4 = unimax_allocation(np.array([10.0, 100.0, 1000.0]), budget=300, max_epochs=4)
    assert alloc4 == pytest.approx([40.0, 130.0, 130.0])
    # A budget covering N epochs of everything gives N epochs of everything.
    big = unimax_allocation(np.array([10.0, 100.0]), budget=1e6, max_epochs=2)
    assert big == pytest.approx([20.0, 200.0])


def test_solve_dispatches_baselines_by_name():
    sizes = {"a": 10, "b": 30, "c": 60}
    assert solve(None, method="uniform", sizes=sizes).weights == pytest.approx([1 / 3] * 3)
    assert solve(None, method="size", sizes=sizes).weights == pytest.approx([0.1, 0.3, 0.6])
    m = solve(None, method="unimax", sizes=sizes, unimax_budget=60, max_epochs=1)
    assert m.weights == pytest.approx([10 / 60, 25 / 60, 25 / 60])
    assert m.method == "unimax" and m.params["max_epochs"] == 1


def test_size_baselines_need_sizes_and_params():
    with pytest.raises(InputError, match="needs task sizes"):
        solve(np.zeros((2, 2)), method="size")
    # The library names the parameter; only the CLI names the flag (issue 10).
    with pytest.raises(InputError, match="parameter 'temperature'"):
        solve(None, method="temperature", sizes={"a": 1, "b": 2})
    with pytest.raises(InputError, match="no value for task 'b'"):
        solve(None, names=["a", "b"], method="size", sizes={"a": 1})
