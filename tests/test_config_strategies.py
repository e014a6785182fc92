"""The default compared strategies: the calibrated default beside the paper's reference."""

from __future__ import annotations

import numpy as np
import pytest

from taskpgm.config import Config, StrategyConfig, config_from_dict, default_strategies
from taskpgm.errors import ConfigError
from taskpgm.mixture import STRATEGIES, solve


def test_default_strategies_keep_the_reference_beside_the_default():
    by_name = {s.name: s for s in default_strategies()}
    # D15-D16: the calibrated candidate passed its development rule and is the default;
    # the paper's reference is compared beside it.
    assert Config().mixture.kernel == "calibrated" and Config().mixture.unary == "auto"
    assert by_name["taskpgm"].params == {}  # the mixture section's defaults
    assert by_name["taskpgm-reference"].params == {"kernel": "shift", "unary": "rowsum"}
    assert "taskpgm-calibrated" not in by_name  # it is `taskpgm` now
    for name in ("family-balanced", "cluster-balanced", "mixmin"):
        assert by_name[name].method == name


def test_config_methods_are_the_registry_plus_the_pipelines_own():
    # dirichlet (a random mixture), auto (chooses among trained strategies) and regression
    # (trains its own proxies) need the pipeline; every other method is the library's.
    literal = set(StrategyConfig.model_fields["method"].annotation.__args__)
    assert literal == set(STRATEGIES) | {"dirichlet", "auto", "regression"}


def test_candidate_params_reach_the_solver_as_the_pipeline_passes_them():
    # As pipeline/stages.solve_strategy: the mixture section, then the strategy's params.
    cfg = Config()
    m = cfg.mixture
    opts = {"kernel": m.kernel, "unary": m.unary, "r_rel": m.r_rel, "beta": m.beta,
            "lam": m.lam, "budget_k": m.budget_k}
    opts.update(cfg.strategy("taskpgm").params)
    S = -np.abs(np.random.default_rng(0).normal(size=(6, 6)))
    S = S + S.T
    np.fill_diagonal(S, 0.0)
    mix = solve(S, method="taskpgm", **opts)
    assert mix.params["kernel"] == "calibrated" and mix.params["unary"] == "balanced"
    assert mix.diagnostics["kernel_info"]["kernel"] == "calibrated"


@pytest.mark.parametrize("strategy, needle", [
    ({"name": "a", "method": "taskpgm", "params": {"kernal": "exp"}}, "kernal"),
    ({"name": "a", "method": "temperature", "params": {"temprature": 2}}, "temprature"),
    ({"name": "a", "method": "uniform", "params": {"temperature": 2}}, "temperature"),
    ({"name": "a", "method": "given", "params": {}}, "weights"),
    ({"name": "a", "method": "mixmin", "params": {"targets": 3}}, "targets"),
])
def test_strategy_params_are_checked_when_the_config_loads(strategy, needle):
    with pytest.raises(ConfigError, match=needle):
        config_from_dict({"strategies": [strategy]})


def test_family_pattern_must_compile():
    with pytest.raises(ConfigError, match="family_pattern"):
        config_from_dict({"pool": {"source": "import", "paths": ["x"], "family_pattern": "(a"}})


def test_replicate_changes_the_sampling_seed_only():
    from taskpgm.pipeline.stages import PipelineContext, replicate_seed

    cfg = config_from_dict({"run": {"seed": 7}, "strategies": [
        {"name": "u", "method": "uniform"},
        {"name": "u1", "method": "uniform", "params": {"replicate": 1}},
        {"name": "u2", "method": "uniform", "params": {"replicate": 2}}]})
    ctx = PipelineContext(cfg)
    seeds = [replicate_seed(ctx, n) for n in ("u", "u1", "u2")]
    assert seeds[0] == 7 and len(set(seeds)) == 3
    with pytest.raises(ConfigError, match="replicate"):
        config_from_dict({"strategies": [{"name": "u", "method": "uniform",
                                          "params": {"replicate": -1}}]})


def _literal(model, field: str) -> set[str]:
    from typing import Literal, get_args, get_origin

    ann = model.model_fields[field].annotation
    choices: set[str] = set()
    for arm in (get_args(ann) if get_origin(ann) is not Literal else (ann,)):
        if get_origin(arm) is Literal:
            choices |= set(get_args(arm))
    return choices


def test_config_choices_are_the_library_registries():
    from taskpgm import config as c
    from taskpgm.affinity.completion import CURVE_STRATEGIES
    from taskpgm.affinity.compute import METRICS
    from taskpgm.affinity.pmi import NORMALIZATIONS
    from taskpgm.mixture import KERNELS, UNARIES
    from taskpgm.models.prompt_format import PROMPT_FORMATS
    from taskpgm.models.train import WEIGHTS_DTYPES
    from taskpgm.sample import ALLOCATIONS
    from taskpgm.tasks.pool import SPLITS
    from taskpgm.tasks.synth import SUITES

    expected = {
        (c.AffinityConfig, "metric"): METRICS,
        (c.AffinityConfig, "normalize"): NORMALIZATIONS,
        (c.MixtureConfig, "kernel"): KERNELS,
        (c.MixtureConfig, "unary"): UNARIES,
        (c.SampleConfig, "allocation"): ALLOCATIONS,
        (c.EvaluateConfig, "split"): SPLITS,
        (c.PoolConfig, "suite"): tuple(SUITES),
        (c.PoolConfig, "source"): c.POOL_SOURCES,
        (c.ScoringConfig, "executor"): c.EXECUTORS,
        (c.ExpertsConfig, "executor"): c.EXECUTORS,
        (c.StrategyConfig, "method"): (*STRATEGIES, *c.PIPELINE_METHODS),
        (c.ModelConfig, "prompt_format"): PROMPT_FORMATS,
        (c.ExpertsConfig, "weights_dtype"): WEIGHTS_DTYPES,
        (c.TrainConfig, "weights_dtype"): WEIGHTS_DTYPES,
        (c.ScoringConfig, "sampling"): CURVE_STRATEGIES,  # the one-round draws + adaptive
    }
    for (model, field), registry in expected.items():
        assert _literal(model, field) == set(registry), f"{model.__name__}.{field}"
    # Every Literal choice list of the config is one of the above (a new one needs a row).
    sections = [c.Config, *(f.annotation for f in c.Config.model_fields.values()
                           if isinstance(f.annotation, type)), c.StrategyConfig]
    for model in sections:
        for field, info in model.model_fields.items():
            choices = _literal(model, field)
            if choices and choices - {"heldout", "all"}:
                assert (model, field) in expected, f"{model.__name__}.{field} not checked"
            if (model, field) in expected and info.description and model is not c.StrategyConfig:
                for choice in expected[(model, field)]:
                    assert choice in info.description, (model.__name__, field, choice)


def test_scoring_executors_are_the_engines():
    pytest.importorskip("torch")
    from taskpgm.config import EXECUTORS
    from taskpgm.models.scoring import EXECUTORS as ENGINE

    assert EXECUTORS == ENGINE


def test_cli_choices_are_the_library_registries():
    import typing

    from taskpgm.affinity.compute import METRICS
    from taskpgm.affinity.pmi import NORMALIZATIONS
    from taskpgm.cli import affinity as ca
    from taskpgm.cli import solve as cs
    from taskpgm.mixture import KERNELS, UNARIES

    assert [m.value for m in ca.Metric] == list(METRICS)
    assert [m.value for m in ca.Normalize] == list(NORMALIZATIONS)
    hints = typing.get_type_hints(cs.solve_command, include_extras=True)
    for key, names in (("method", STRATEGIES), ("kernel", KERNELS), ("unary", UNARIES)):
        text = hints[key].__metadata__[0].help
        for name in names:
            assert name in text, (key, name)


@pytest.mark.parametrize("pool, needle", [
    ({"source": "bigbench", "tasks": ["x"], "suite": "redundancy"}, "pool.suite"),
    ({"source": "synthetic", "family_pattern": "^(a)"}, "family_pattern"),
])
def test_pool_settings_for_another_source_are_refused(pool, needle):
    with pytest.raises(ConfigError, match=needle):
        config_from_dict({"pool": pool})
