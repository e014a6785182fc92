"""``taskpgm solve``: outputs, the r-path, and clean refusals of bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from taskpgm.affinity.io import AffinityMatrix, save_affinity
from taskpgm.mixture import Mixture


@pytest.fixture
def aff_npz(tmp_path):
    rng = np.random.default_rng(0)
    S = -np.abs(rng.normal(size=(5, 5)))
    S = S + S.T
    np.fill_diagonal(S, 0)
    path = tmp_path / "aff.npz"
    save_affinity(path, AffinityMatrix([f"t{i}" for i in range(5)], S))
    return path


def test_solve_writes_mixture_json_deterministically(cli, aff_npz, tmp_path):
    out = tmp_path / "mixture.json"
    code, stdout, _ = cli("solve", "--affinity", aff_npz, "--out", out)
    assert code == 0 and "kkt_residual" in stdout
    mix = Mixture.load(out)
    assert mix.tasks == [f"t{i}" for i in range(5)]
    raw = json.loads(out.read_text())
    for key in ("energy", "kkt_residual", "support_size"):
        assert key in raw["diagnostics"]
    first = out.read_bytes()
    cli("solve", "--affinity", aff_npz, "--out", out)
    assert out.read_bytes() == first


def test_solve_path_and_budget(cli, aff_npz, tmp_path):
    out = tmp_path / "path.json"
    code, stdout, _ = cli("solve", "--affinity", aff_npz, "--path", "--r-values", "0.2,1",
                          "--out", out)
    assert code == 0 and "r-path" in stdout
    pts = json.loads(out.read_text())["points"]
    # r = 1/n: q = 1/(K 1), uniform up to the kernel's tails between these five distinct
    # tasks (exp(-t^2/2) at t >= 4 is below 4e-4).
    assert pts[0]["weights"] == pytest.approx([0.2] * 5, abs=1e-4)
    code, _, _ = cli("solve", "--affinity", aff_npz, "--budget-k", "2", "--out", tmp_path / "g")
    assert code == 0
    assert np.count_nonzero(Mixture.load(tmp_path / "g").weights) <= 2


def test_solve_baseline_from_sizes_csv(cli, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    sizes = tmp_path / "sizes.csv"
    sizes.write_text("name,size\na,100\nb,900\n")
    out = tmp_path / "m.json"
    code, _, err = cli("solve", "--names", names, "--sizes", sizes, "--method", "temperature",
                       "--temperature", "2", "--out", out)
    assert code == 0, err
    assert Mixture.load(out).weights == pytest.approx([0.25, 0.75])


@pytest.mark.parametrize("args,match", [
    (["--beta", "0"], "beta"),
    (["--lam", "-2"], "lam"),
    (["--budget-k", "6"], "exceeds the number of tasks"),
    (["--unary", "target", "--targets", "t1,zz"], "target task 'zz' has no row"),
    (["--method", "size"], "needs task sizes"),
    (["--kernel", "none"], "PSD"),
    (["--kernel", "bogus"], "unknown kernel"),
])
def test_solve_refuses_bad_options(cli, aff_npz, tmp_path, args, match):
    out = tmp_path / "m.json"
    code, _, err = cli("solve", "--affinity", aff_npz, "--out", out, *args)
    assert code == 2
    assert err.startswith("error:") and match in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_solve_refuses_bad_files(cli, tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((2, 3)))
    code, _, err = cli("solve", "--affinity", bad)
    assert code == 2 and "square" in err
    nan = tmp_path / "nan.npy"
    m = np.zeros((3, 3))
    m[0, 1] = np.inf
    np.save(nan, m)
    code, _, err = cli("solve", "--affinity", nan)
    assert code == 2 and "non-finite" in err
    names = tmp_path / "n.txt"
    names.write_text("a\nb\n")
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((3, 3)))
    code, _, err = cli("solve", "--affinity", good, "--names", names)
    assert code == 2 and "names" in err


def test_solve_refuses_infeasible_caps(cli, aff_npz, tmp_path):
    caps = tmp_path / "caps.json"
    caps.write_text(json.dumps({f"t{i}": 0.1 for i in range(5)}))
    code, _, err = cli("solve", "--affinity", aff_npz, "--caps", caps)
    assert code == 2 and "infeasible caps" in err
    caps.write_text('{"t0": "x"}')
    code, _, err = cli("solve", "--affinity", aff_npz, "--caps", caps)
    assert code == 2 and "not a number" in err


def _pool(tmp_path, counts, heldout=()):
    from taskpgm.tasks.pool import PoolManifest, TaskInfo, write_manifest

    root = tmp_path / "pool"
    root.mkdir()
    tasks = [TaskInfo(name=t, counts={"train": c, "probe": 2}) for t, c in counts.items()]
    tasks += [TaskInfo(name=t, role="heldout", counts={"eval": 3}) for t in heldout]
    write_manifest(root, PoolManifest(tasks=tasks))
    return root


def test_pool_gives_sizes_for_size_baselines_and_names(cli, tmp_path):
    counts = {"a": 10, "b": 30, "c": 60}
    pool = _pool(tmp_path, counts, heldout=("h",))
    out = tmp_path / "m.json"
    code, _, err = cli("solve", "--pool", pool, "--method", "size", "--out", out)
    assert code == 0, err
    mix = Mixture.load(out)
    assert mix.tasks == ["a", "b", "c"]  # training tasks only, in pool order
    assert mix.weights == pytest.approx([0.1, 0.3, 0.6])
    # With an affinity: the sizes follow the affinity's (sub)set and order of tasks.
    S = -np.abs(np.random.default_rng(1).normal(size=(2, 2)))
    np.fill_diagonal(S, 0)
    aff = tmp_path / "aff.npz"
    save_affinity(aff, AffinityMatrix(["c", "a"], S))
    code, _, err = cli("solve", "--affinity", aff, "--pool", pool, "--method", "size",
                       "--out", out)
    assert code == 0, err
    mix = Mixture.load(out)
    assert mix.tasks == ["c", "a"] and mix.weights == pytest.approx([60 / 70, 10 / 70])
    # A bare .npy takes the pool's training task names.
    npy = tmp_path / "aff.npy"
    np.save(npy, -np.ones((3, 3)) + np.eye(3))
    code, _, err = cli("solve", "--affinity", npy, "--pool", pool, "--method", "unimax",
                       "--unimax-budget", "60", "--max-epochs", "1", "--out", out)
    assert code == 0, err
    assert Mixture.load(out).tasks == ["a", "b", "c"]


def test_pool_refuses_tasks_that_are_not_training_tasks(cli, tmp_path):
    pool = _pool(tmp_path, {"a": 10, "b": 30}, heldout=("h",))
    S = np.zeros((2, 2))
    for names in (["a", "h"], ["a", "zz"]):
        aff = tmp_path / f"aff_{names[1]}.npz"
        save_affinity(aff, AffinityMatrix(names, S))
        code, _, err = cli("solve", "--affinity", aff, "--pool", pool, "--method", "size")
        assert code == 2
        assert f"{names[1]!r} is not a training task of pool" in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    sizes = tmp_path / "sizes.json"
    sizes.write_text('{"a": 1, "b": 2}')
    code, _, err = cli("solve", "--pool", pool, "--sizes", sizes, "--method", "size")
    assert code == 2 and "not both" in err


def test_cli_simplex_shift_kernel_reports_its_shift(cli, aff_npz, tmp_path):
    out = tmp_path / "m.json"
    code, stdout, err = cli("solve", "--affinity", aff_npz, "--kernel", "simplex-shift",
                            "--out", out)
    assert code == 0, err
    info = json.loads(out.read_text())["diagnostics"]["kernel_info"]
    assert info["kernel"] == "simplex-shift" and info["rho"] >= 0
    assert "kernel_info.rho" in stdout
