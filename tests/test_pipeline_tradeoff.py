"""The pipeline passes TaskPGM's trade-off (r_rel, or beta/lam) through to the solver."""

from __future__ import annotations

import numpy as np
import pytest

from taskpgm.affinity.io import AffinityMatrix, save_affinity
from taskpgm.config import Config, StrategyConfig
from taskpgm.pipeline.stages import PipelineContext, solve_strategy
from taskpgm.tasks.synth import build_synthetic_pool


@pytest.fixture
def ctx(tmp_path):
    cfg = Config()
    cfg.run.dir = str(tmp_path / "run")
    c = PipelineContext(cfg)
    build_synthetic_pool(c.paths.pool, seed=0, families=("reverse", "code"), scale=0.02)
    names = c.train_task_names()
    rng = np.random.default_rng(0)
    S = -np.abs(rng.normal(size=(len(names), len(names))))
    S = S + S.T
    np.fill_diagonal(S, 0.0)
    c.paths.affinity.parent.mkdir(parents=True, exist_ok=True)
    save_affinity(c.paths.affinity, AffinityMatrix(names, S))
    return c


def test_section_default_and_strategy_overrides(ctx):
    n = len(ctx.train_task_names())
    default = solve_strategy(ctx, StrategyConfig(name="a", method="taskpgm"))
    # The default's balanced utilities: r_rel 1 (D26); the reference's rowsum: 0.5.
    assert default.params["r_rel"] == pytest.approx(1.0)
    assert default.params["r"] == pytest.approx(1.0 / n)
    ref = solve_strategy(ctx, StrategyConfig(name="r", method="taskpgm",
                                             params={"kernel": "shift", "unary": "rowsum"}))
    assert ref.params["r_rel"] == pytest.approx(0.5)
    # A strategy's beta replaces the section's r_rel instead of clashing with it.
    old = solve_strategy(ctx, StrategyConfig(name="b", method="taskpgm", params={"beta": 1.0}))
    assert old.params["r"] == pytest.approx(1.0)
    # r_rel = 1 with rowsum utilities (the reference kernel's) is uniform.
    uni = solve_strategy(ctx, StrategyConfig(name="c", method="taskpgm",
                                             params={"r_rel": 1.0, "kernel": "shift"}))
    assert uni.weights == pytest.approx(np.full(n, 1.0 / n), abs=1e-9)


def test_check_reports_distance_of_taskpgm_mixtures_from_uniform():
    from taskpgm.mixture.record import Mixture
    from taskpgm.pipeline.reporting import check_mixtures_move

    tasks = ["a1", "a2", "a3", "b1"]
    fams = {"a1": "a", "a2": "a", "a3": "a", "b1": "b"}
    mixes = {"uniform": Mixture("uniform", tasks, np.full(4, 0.25)),
             "pgm": Mixture("taskpgm", tasks, np.array([1 / 6, 1 / 6, 1 / 6, 0.5]))}
    c = check_mixtures_move(mixes, fams)
    # Only the affinity-based mixture is reported: 3 x 1/12 + 1/4 = 0.5 over tasks, and
    # family a moves 0.75 -> 0.5, family b 0.25 -> 0.5, so 0.5 over families too.
    assert c.ok is None and "uniform:" not in c.detail
    assert "pgm: L1 to uniform 0.500 over tasks, 0.500 over families" in c.detail
    assert check_mixtures_move({"u": mixes["uniform"]}, fams).detail.startswith("no affinity")


def test_the_sections_bandwidth_reaches_every_calibrated_strategy_and_the_clusters(ctx):
    from taskpgm.config import config_from_dict
    from taskpgm.errors import ConfigError

    ctx.cfg.mixture.bandwidth = 0.3
    main = solve_strategy(ctx, StrategyConfig(name="mixture", method="taskpgm"))
    assert main.params["bandwidth"] == 0.3
    own = solve_strategy(ctx, StrategyConfig(name="a", method="taskpgm",
                                             params={"bandwidth": 0.05}))
    assert own.params["bandwidth"] == 0.05  # a strategy's own wins
    ref = solve_strategy(ctx, StrategyConfig(name="r", method="taskpgm",
                                             params={"kernel": "shift", "unary": "rowsum"}))
    assert "bandwidth" not in ref.params  # not a calibrated kernel: not passed on
    wide = solve_strategy(ctx, StrategyConfig(name="c", method="cluster-balanced"))
    ctx.cfg.mixture.bandwidth = None
    default = solve_strategy(ctx, StrategyConfig(name="c", method="cluster-balanced"))
    assert wide.params["bandwidth"] == 0.3 and "bandwidth" not in default.params
    # 0.3 of the median distance merges more than the default 0.10 on this matrix.
    assert wide.diagnostics["groups"] < default.diagnostics["groups"]
    with pytest.raises(ConfigError, match="mixture.bandwidth is an option of kernel"):
        config_from_dict({"mixture": {"kernel": "shift", "bandwidth": 0.1}}, "c.yaml")
