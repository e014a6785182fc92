"""The default compared strategies: TaskPGM with the reference and the simplex shift."""

from __future__ import annotations

import numpy as np

from taskpgm.config import Config, default_strategies
from taskpgm.mixture import solve


def test_default_strategies_compare_simplex_shift_beside_the_reference():
    by_name = {s.name: s for s in default_strategies()}
    ref, simp = by_name["taskpgm"], by_name["taskpgm-simplex"]
    assert ref.method == simp.method == "taskpgm"
    assert ref.params.get("kernel", Config().mixture.kernel) == "shift"  # reference default
    assert simp.params == {"kernel": "simplex-shift", "unary": "rowsum"}
    # No trade-off of its own: it uses mixture.r_rel like the reference strategy.
    assert not {"r_rel", "beta", "lam"} & set(simp.params)
    assert Config().mixture.kernel == "shift"


def test_simplex_strategy_params_reach_the_solver_as_the_pipeline_passes_them():
    # As pipeline/stages.solve_strategy: the mixture section, then the strategy's params.
    cfg = Config()
    m = cfg.mixture
    opts = {"kernel": m.kernel, "unary": m.unary, "r_rel": m.r_rel, "beta": m.beta,
            "lam": m.lam, "budget_k": m.budget_k}
    opts.update(cfg.strategy("taskpgm-simplex").params)
    S = -np.abs(np.random.default_rng(0).normal(size=(6, 6)))
    S = S + S.T
    np.fill_diagonal(S, 0.0)
    mix = solve(S, method="taskpgm", **opts)
    assert mix.params["kernel"] == "simplex-shift"
    assert mix.diagnostics["kernel_info"]["kernel"] == "simplex-shift"
