"""The quality benchmark's statistics: paired differences to uniform and t-intervals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from taskpgm.bench.quality import DIRICHLET_GROUP, summarise, t_interval
from taskpgm.report.records import ModelEval, TaskEval


def _ev(name: str, loss: float, acc: float) -> ModelEval:
    return ModelEval(name, [TaskEval("h", 10, loss, accuracy=acc)])


def test_t_interval_matches_scipy():
    d = np.array([0.1, -0.05, 0.2, 0.07])
    m, lo, hi = t_interval(d)
    ref = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert np.isclose(m, d.mean()) and np.allclose([lo, hi], ref)


def test_summarise_pairs_within_seed_and_averages_dirichlet_draws():
    # A seed effect shared by all strategies must cancel in the paired difference.
    per_seed = {}
    for s, shift in enumerate([0.0, 1.0, 2.0]):
        per_seed[s] = {
            "uniform": _ev("uniform", 3.0 + shift, 0.5),
            "good": _ev("good", 2.9 + shift, 0.6),
            "dirichlet-1": _ev("d1", 3.2 + shift, 0.4),
            "dirichlet-2": _ev("d2", 3.0 + shift, 0.4),
        }
    rows = {(r.strategy, r.metric): r for r in summarise(per_seed)}
    good = rows[("good", "loss_per_token")]
    assert np.isclose(good.diff_mean, -0.1) and good.wins == 3
    assert np.isclose(good.diff_low, -0.1) and np.isclose(good.diff_high, -0.1)
    d = rows[(DIRICHLET_GROUP, "loss_per_token")]
    assert np.isclose(d.diff_mean, 0.1) and d.wins == 0
    acc = rows[("good", "score")]
    assert np.isclose(acc.diff_mean, 0.1) and acc.wins == 3
    assert rows[("uniform", "loss_per_token")].diff_mean is None


def test_ties_are_not_wins():
    per_seed = {s: {"uniform": _ev("u", 3.0 + s, 0.5), "same": _ev("s", 3.0 + s, 0.5)}
                for s in range(3)}
    rows = {(r.strategy, r.metric): r for r in summarise(per_seed)}
    assert rows[("same", "loss_per_token")].wins == 0 and rows[("same", "score")].wins == 0


def test_replicates_are_averaged_within_a_seed_and_share_of_family_gain():
    from pathlib import Path

    from taskpgm.bench.quality import bench_config, redundancy_check
    from taskpgm.config import Config

    cfg = bench_config(Config(), 3, Path("x"), dirichlet=0, replicates=3)
    reps = {s.name: s.params.get("replicate") for s in cfg.strategies}
    assert reps["uniform.rep1"] == 1000 and reps["uniform.rep2"] == 2000
    assert reps["uniform-resampled.rep1"] == 1001  # never the seed of another replicate
    per_seed = {}
    for s, shift in enumerate([0.0, 1.0]):
        per_seed[s] = {
            "uniform": _ev("u", 3.0 + shift, 0.5),
            "uniform.rep1": _ev("u", 3.2 + shift, 0.5),  # uniform's mean: 3.1 + shift
            "family-balanced": _ev("f", 2.9 + shift, 0.5),
            "family-balanced.rep1": _ev("f", 2.9 + shift, 0.5),
            "half": _ev("h", 3.0 + shift, 0.5),
        }
    rows = {(r.strategy, r.metric): r for r in summarise(per_seed)}
    assert ("uniform.rep1", "loss_per_token") not in rows
    fb = rows[("family-balanced", "loss_per_token")]
    assert np.isclose(fb.diff_mean, -0.2) and np.isclose(fb.share_of_family_gain, 1.0)
    assert np.isclose(rows[("half", "loss_per_token")].share_of_family_gain, 0.5)
    assert redundancy_check(list(rows.values()))["ok"] is True


def _seed_dir(root, seed: int, losses: dict[str, float]):
    """A finished seed run as the benchmark leaves it: config, pool.json, mixtures, evals."""
    from taskpgm.bench.quality import bench_config
    from taskpgm.config import Config, StrategyConfig, save_config
    from taskpgm.mixture.record import Mixture
    from taskpgm.tasks.pool import PoolManifest, TaskInfo

    base = Config()
    base.strategies = [StrategyConfig(name=n, method="uniform") for n in losses]
    d = root / f"seed{seed}"
    cfg = bench_config(base, seed, d, dirichlet=0)
    (d / "pool").mkdir(parents=True)
    (d / "pool" / "pool.json").write_text(PoolManifest(tasks=[
        TaskInfo(name="a1", family="a"), TaskInfo(name="a2", family="a"),
        TaskInfo(name="b1", family="b")]).model_dump_json())
    save_config(cfg, d / "config.yaml")
    for n, loss in {**losses, "base": 9.0}.items():
        _ev(n, loss, 0.5).save(d / "eval" / f"{n}.json")
        if n != "base":
            Mixture("uniform", ["a1", "a2", "b1"], np.full(3, 1 / 3)).save(
                d / "mixtures" / f"{n}.json")
    return d


def test_collect_summarises_seeds_run_elsewhere_like_one_run(tmp_path):
    import pytest

    from taskpgm.bench.quality import collect_quality
    from taskpgm.errors import InputError

    for s, shift in ((1, 0.0), (2, 0.5)):
        _seed_dir(tmp_path / "here", s, {"uniform": 3.0 + shift, "good": 2.8 + shift + s / 10})
    _seed_dir(tmp_path / "there", 7, {"uniform": 4.0, "good": 3.7})
    res = collect_quality([tmp_path / "here", tmp_path / "there"], tmp_path / "out")
    assert res["seeds"] == [1, 2, 7] and (tmp_path / "out" / "quality.json").is_file()
    good = next(r for r in res["rows"] if r["strategy"] == "good"
                and r["metric"] == "loss_per_token")
    assert np.allclose(good["per_seed"], [2.9, 3.5, 3.7])
    assert np.isclose(good["diff_mean"], np.mean([-0.1, 0.0, -0.3])) and good["wins"] == 2
    # Family masses come from each seed's pool.json: family a holds 2 of 3 tasks.
    assert np.isclose(res["group_mass"]["good"]["min_family_mass"], 1 / 3)
    # A seed found twice, or a seed that did not finish, is refused.
    _seed_dir(tmp_path / "again", 2, {"uniform": 3.0, "good": 2.8})
    with pytest.raises(InputError, match="seed 2 is also in"):
        collect_quality([tmp_path / "here", tmp_path / "again"], tmp_path / "out2")
    (tmp_path / "there" / "seed7" / "eval" / "base.json").unlink()
    with pytest.raises(InputError, match="did not finish"):
        collect_quality([tmp_path / "there"], tmp_path / "out3")


@pytest.mark.parametrize("add, message", [
    ("{not json", "--add"),
    ('{"name": "uniform", "method": "uniform"}', "already exists"),
    ('{"name": "c9", "method": "taskpgm", "params": {"bandwith": 0.1}}', "bandwith"),
    ('{"name": "c9", "method": "taskpgm", "params": {"kernel": "shift", "bandwidth": 0.1}}',
     "bandwidth"),
])
def test_quality_add_refuses_a_bad_candidate_before_any_run(tmp_path, add, message):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"
    out = subprocess.run([sys.executable, str(script), "--seeds", "0", "--out",
                          str(tmp_path / "q"), "--add", add], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "q").exists()


def test_training_costs_count_shared_proxies_once(tmp_path):
    from taskpgm.bench.quality import training_costs
    from taskpgm.mixture.record import Mixture

    root = tmp_path / "seed0"
    (root / "mixtures").mkdir(parents=True)
    for name, params in [("uniform", {}),
                         ("reg", {"runs": 22, "proxies": "reg"}),
                         ("reg-gbm", {"runs": 22, "proxies": "reg", "fit": "gbm"})]:
        method = "uniform" if name == "uniform" else "regression"
        Mixture(method, ["a", "b"], [0.5, 0.5], params=params,
                diagnostics={"cv_spearman_mean": 0.4} if method == "regression" else {}
                ).save(root / "mixtures" / f"{name}.json")
    costs = training_costs({0: root}, ["uniform", "reg", "reg-gbm"])
    assert costs["uniform"]["trainings"] == "1" and costs["reg"]["trainings"] == "23"
    assert costs["reg-gbm"]["trainings"] == "1 + 22 shared with reg"
    assert costs["reg-gbm"]["cv_spearman"] == 0.4
