"""``taskpgm solve`` with the reference mixtures: given, family-balanced, cluster-balanced."""

from __future__ import annotations

import numpy as np
import pytest

from taskpgm.affinity.io import AffinityMatrix, save_affinity
from taskpgm.mixture import Mixture
from taskpgm.tasks.pool import PoolManifest, TaskInfo, write_manifest


def _pool(tmp_path):
    root = tmp_path / "pool"
    root.mkdir()
    fams = {"a1": "a", "a2": "a", "a3": "a", "b1": "b", "c1": None}
    tasks = [TaskInfo(name=t, family=f, counts={"train": 10, "probe": 2})
             for t, f in fams.items()]
    write_manifest(root, PoolManifest(tasks=tasks))
    return root


def test_family_balanced_from_the_pool(cli, tmp_path):
    out = tmp_path / "m.json"
    code, _, err = cli("solve", "--pool", _pool(tmp_path), "--method", "family-balanced",
                       "--out", out)
    assert code == 0, err
    assert Mixture.load(out).weights == pytest.approx([1 / 9] * 3 + [1 / 3, 1 / 3])
    code, _, err = cli("solve", "--names", _names(tmp_path), "--method", "family-balanced")
    assert code == 2 and "--pool" in err and "Traceback" not in err


def _names(tmp_path):
    p = tmp_path / "names.txt"
    p.write_text("a1\na2\n")
    return p


def test_given_weights_round_trip_and_refusals(cli, tmp_path):
    pool = _pool(tmp_path)
    w = tmp_path / "w.csv"
    w.write_text("a1,1\na2,1\na3,1\nb1,3\nc1,4\n")
    out = tmp_path / "m.json"
    code, _, err = cli("solve", "--pool", pool, "--method", "given", "--weights", w,
                       "--out", out)
    assert code == 0, err
    mix = Mixture.load(out)
    assert mix.weights == pytest.approx([0.1, 0.1, 0.1, 0.3, 0.4])
    # A mixture.json is a valid weights file too (compare a hand-made mixture).
    code, _, err = cli("solve", "--pool", pool, "--method", "given", "--weights", out,
                       "--out", tmp_path / "again.json")
    assert code == 0, err
    assert Mixture.load(tmp_path / "again.json").weights == pytest.approx(mix.weights)
    bad = tmp_path / "bad.csv"
    bad.write_text("a1,1\na2,x\n")
    code, _, err = cli("solve", "--pool", pool, "--method", "given", "--weights", bad)
    assert code == 2 and "bad.csv:2" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("solve", "--pool", pool, "--method", "given")
    assert code == 2 and "weights" in err
    code, _, err = cli("solve", "--pool", pool, "--method", "uniform", "--temperature", "2")
    assert code == 2 and "does not apply" in err


def test_cluster_balanced_from_an_affinity(cli, tmp_path):
    names = ["x1", "x2", "x3", "y1", "z1"]
    S = np.full((5, 5), -2.0)
    S[:3, :3] = -0.01
    np.fill_diagonal(S, 0.0)
    aff = tmp_path / "aff.npz"
    save_affinity(aff, AffinityMatrix(names, S, "pmi"))
    out = tmp_path / "m.json"
    code, _, err = cli("solve", "--affinity", aff, "--method", "cluster-balanced",
                       "--out", out)
    assert code == 0, err
    mix = Mixture.load(out)
    assert mix.weights == pytest.approx([1 / 9] * 3 + [1 / 3, 1 / 3])
    assert mix.diagnostics["clusters"] == [0, 0, 0, 1, 2]
