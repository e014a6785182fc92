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
    assert pts[0]["weights"] == pytest.approx([0.2] * 5, abs=1e-9)  # r = 1/n: uniform
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
