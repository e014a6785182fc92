"""Materialising mixtures: exact counts, epochs, caps, seeds, bad input."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskpgm.errors import InputError
from taskpgm.mixture.record import Mixture
from taskpgm.sample import allocate, epoch_plan, materialise
from taskpgm.tasks.synth import build_synthetic_pool


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    return build_synthetic_pool(tmp_path_factory.mktemp("pool") / "pool", seed=3, scale=0.2)


def _mix(path, tasks, weights):
    Mixture("test", list(tasks), np.asarray(weights, float)).save(path)
    return path


@given(st.lists(st.floats(0, 10), min_size=1, max_size=30).filter(lambda w: sum(w) > 1e-3),
       st.integers(0, 10_000))
@settings(max_examples=200, deadline=None)
def test_largest_remainder_is_exact_and_within_one(weights, budget):
    w = np.asarray(weights)
    counts = allocate(w, budget)
    assert counts.sum() == budget and np.all(counts >= 0)
    assert np.all(np.abs(counts - w / w.sum() * budget) < 1.0 + 1e-9)


def test_multinomial_is_exact_and_seeded():
    w = np.array([0.5, 0.3, 0.2])
    a, b = allocate(w, 1000, "multinomial", seed=4), allocate(w, 1000, "multinomial", seed=4)
    assert a.sum() == 1000 and np.array_equal(a, b)


@given(st.integers(1, 50), st.integers(0, 400), st.integers(0, 2**31))
@settings(max_examples=100, deadline=None)
def test_epoch_plan_uses_every_example_before_repeating(available, count, seed):
    plan = epoch_plan(count, available, np.random.default_rng(seed))
    assert len(plan) == count
    uses = np.bincount(plan, minlength=available)
    assert uses.max() - uses.min() <= 1  # without replacement until exhausted, per epoch
    full = count // available
    assert np.all(uses >= full)


def test_sample_counts_epochs_and_manifest(pool, tmp_path):
    names = [t.name for t in pool.train_tasks()]
    w = np.linspace(1, 2, len(names))
    mix = _mix(tmp_path / "mix.json", names[1:], w[1:] / w[1:].sum())  # first task omitted
    m = materialise(pool, mix, 1234, tmp_path / "data", seed=7)
    rows = [json.loads(line) for line in (tmp_path / "data" / "train.jsonl").open()]
    assert len(rows) == 1234
    counted = Counter(r["task"] for r in rows)
    assert counted == Counter(m.counts())
    assert names[0] not in counted
    for t in m.tasks:
        if t.count:
            ids = Counter(r["id"] for r in rows if r["task"] == t.task)
            assert max(ids.values()) == t.epochs and len(ids) == min(t.count, t.available)
    man = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert man["seed"] == 7 and len(man["pool_sha256"]) == 64 and man["budget"] == 1234


def test_same_seed_same_bytes_other_seed_differs(pool, tmp_path):
    names = [t.name for t in pool.train_tasks()]
    mix = _mix(tmp_path / "mix.json", names, np.full(len(names), 1 / len(names)))
    for d in ("a", "b"):
        materialise(pool, mix, 500, tmp_path / d, seed=1, allocation="multinomial")
    materialise(pool, mix, 500, tmp_path / "c", seed=2, allocation="multinomial")
    for f in ("train.jsonl",):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
        assert (tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes()


def test_bad_inputs_named_and_nothing_written(pool, tmp_path, cli):
    names = [t.name for t in pool.train_tasks()]
    good = _mix(tmp_path / "good.json", names, np.full(len(names), 1 / len(names)))
    out = tmp_path / "data"
    cases = [
        (_mix(tmp_path / "unknown.json", ["nope_v1"], [1.0]), 10, None, "task 'nope_v1' is not in pool"),
        (good, 10**6, 2, "not reachable"),
        (_mix(tmp_path / "held.json", ["reverse_heldout"], [1.0]), 10, None, "no training examples"),
    ]
    for mix, budget, cap, message in cases:
        with pytest.raises(InputError, match=message):
            materialise(pool, mix, budget, out, max_epochs=cap)
        assert not out.exists()
        args = ["sample", "--pool", pool.root, "--mixture", mix, "--budget", budget, "--out", out]
        code, _, err = cli(*args, *(["--max-epochs", cap] if cap else []))
        assert code == 2 and err.startswith("error: ") and "Traceback" not in err
    (tmp_path / "broken.json").write_text('{"method": "x", "tasks": ["a"]}')
    code, _, err = cli("sample", "--pool", pool.root, "--mixture", tmp_path / "broken.json",
                       "--budget", 5, "--out", out)
    assert code == 2 and "missing field 'weights'" in err


def test_allocation_ignores_float_noise_in_weights():
    from taskpgm.sample import allocate

    n = 12
    exact = np.full(n, 1.0 / n)
    noisy = exact + np.array([(-1) ** i * 4e-17 for i in range(n)])
    assert np.array_equal(allocate(exact, 1000, "largest_remainder"),
                          allocate(noisy, 1000, "largest_remainder"))
