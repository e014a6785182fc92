"""`auto` (D19): the mixture whose trained model has the lowest validation loss, with
paired bootstrap margins to uniform; the validation split never meets the evaluation
split; the config refuses what it cannot run."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskpgm.config import config_from_dict
from taskpgm.errors import ConfigError, InputError
from taskpgm.mixture.auto import disjoint_ids, select, task_losses


def _scores(per_example_loss: list[float], tokens: list[int]):
    nt = np.asarray(tokens)
    return (-np.asarray(per_example_loss) * nt, nt)


def test_loss_is_the_mean_over_tasks_of_each_tasks_loss_per_token():
    # Task a: (2*1 + 4*3) / (1 + 3) = 3.5 per token; task b: 1.0. Mean over tasks: 2.25,
    # not the pooled (2 + 12 + 2) / 6 = 2.67: every task counts once, as in evaluation.
    scores = {"a": _scores([2.0, 4.0], [1, 3]), "b": _scores([1.0, 1.0], [1, 1])}
    assert np.allclose(task_losses(scores), [3.5, 1.0])
    sel = select({"only": scores}, reference=None, rule="lowest")
    assert sel.chosen == "only" and np.isclose(sel.losses["only"], 2.25)


def test_the_lowest_validation_loss_wins_and_ties_go_to_the_earlier_candidate():
    a = {"t": _scores([1.0, 2.0], [1, 1])}
    b = {"t": _scores([0.5, 2.0], [1, 1])}
    assert select({"uniform": a, "b": b}, rule="lowest").chosen == "b"
    assert select({"uniform": a, "same": a}, rule="lowest").chosen == "uniform"
    assert select({"same": a, "uniform": a}, rule="lowest").chosen == "same"


def _noisy(base, shift, spread):
    # Per-example differences to base alternate +-spread around shift: the mean margin is
    # exactly shift, its sampling noise about spread / sqrt(n).
    signs = np.resize([1.0, -1.0], base.size)
    return {"t": _scores(list(base + shift + spread * signs), [1] * base.size)}


def test_clear_leaves_uniform_only_on_a_margin_beyond_the_validation_noise():
    base = np.random.default_rng(0).uniform(1.0, 3.0, size=200)
    ref = {"t": _scores(list(base), [1] * 200)}
    # "slight" is lowest on average but within noise; "clear" is better beyond it.
    slight, clear = _noisy(base, -0.06, 1.5), _noisy(base, -0.05, 0.05)
    sel = select({"uniform": ref, "slight": slight, "clear": clear}, bootstrap=500)
    assert sel.losses["slight"] < sel.losses["clear"] < sel.losses["uniform"]
    assert sel.margins["slight"][1] < 0 < sel.margins["slight"][2]
    assert sel.margins["clear"][2] < 0
    assert (sel.chosen, sel.fell_back, sel.rule) == ("clear", False, "clear")
    # The lowest rule takes the coin flip.
    assert select({"uniform": ref, "slight": slight, "clear": clear}, bootstrap=500,
                  rule="lowest").chosen == "slight"
    # Nothing beats uniform beyond noise: uniform stays, wherever it is in the order.
    sel = select({"slight": slight, "uniform": ref}, bootstrap=500)
    assert (sel.chosen, sel.fell_back) == ("uniform", True)
    # Of two clear winners, the lower loss.
    clearer = _noisy(base, -0.2, 0.05)
    assert select({"uniform": ref, "clear": clear, "clearer": clearer},
                  bootstrap=500).chosen == "clearer"


def test_clear_needs_a_uniform_candidate_and_rules_are_checked():
    a = {"t": _scores([1.0, 2.0], [1, 1])}
    with pytest.raises(InputError, match="no uniform candidate|there is none"):
        select({"x": a, "y": a}, reference=None)
    with pytest.raises(InputError, match="unknown rule 'best'"):
        select({"uniform": a, "y": a}, rule="best")
    assert select({"x": a, "y": a}, reference=None, rule="lowest").chosen == "x"


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(-0.5, 0.5))
def test_margins_are_paired_and_bracket_the_observed_margin(seed, shift):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.5, 3.0, size=40)
    tokens = rng.integers(1, 6, size=40)
    ref = {"t": _scores(list(base), list(tokens))}
    # The same examples, each shifted by the same amount: a paired bootstrap has no
    # spread at all, however large the examples' own spread.
    cand = {"t": _scores(list(base + shift), list(tokens))}
    sel = select({"uniform": ref, "c": cand}, seed=seed, bootstrap=200)
    m, lo, hi = sel.margins["c"]
    assert np.isclose(m, shift) and np.isclose(lo, shift) and np.isclose(hi, shift)
    noisy = {"t": _scores(list(base + shift + rng.normal(0, 0.3, 40)), list(tokens))}
    m, lo, hi = select({"uniform": ref, "c": noisy}, seed=seed, bootstrap=200).margins["c"]
    assert lo <= m <= hi and hi - lo > 0


def test_candidates_scored_on_other_tasks_or_examples_are_refused():
    a = {"t": _scores([1.0, 2.0], [1, 1])}
    with pytest.raises(InputError, match="other tasks"):
        select({"uniform": a, "b": {"u": _scores([1.0, 2.0], [1, 1])}})
    with pytest.raises(InputError, match="number of validation"):
        select({"uniform": a, "b": {"t": _scores([1.0], [1])}})
    with pytest.raises(InputError, match="no candidates"):
        select({})


def test_a_validation_example_in_the_evaluation_split_is_refused():
    disjoint_ids({"t": ["t:probe:1"]}, {"t": ["t:eval:1"]})
    with pytest.raises(InputError, match="'x' of task 't' is also in the evaluation split"):
        disjoint_ids({"t": ["x", "y"]}, {"t": ["x"]})


def _cfg(strategies, **extra):
    return config_from_dict({"strategies": strategies, **extra}, "cfg.yaml")


def test_config_checks_auto_before_any_work():
    uni = {"name": "uniform", "method": "uniform"}
    ok = _cfg([{"name": "a", "method": "auto"}, uni,
               {"name": "r", "method": "uniform", "params": {"replicate": 1}},
               {"name": "d", "method": "dirichlet"}, {"name": "t", "method": "taskpgm"}])
    from taskpgm.config import auto_candidates

    # Default candidates: neither random, nor replicates, nor auto itself.
    assert auto_candidates(ok, ok.strategy("a")) == ["uniform", "t"]
    # Without uniform among them, only the lowest rule can choose.
    _cfg([{"name": "a", "method": "auto", "params": {"rule": "lowest"}},
          {"name": "s", "method": "size"}])
    for strategies, extra, msg in [
        ([{"name": "a", "method": "auto", "params": {"candidates": ["nope"]}}, uni], {},
         r"strategies\[0\].params.candidates .*no strategy named 'nope'"),
        ([{"name": "a", "method": "auto", "params": {"candidates": ["b"]}},
          {"name": "b", "method": "auto"}, uni], {}, "'b' is itself an auto strategy"),
        ([{"name": "a", "method": "auto", "params": {"candidates": "uniform"}}, uni], {},
         "a non-empty list of strategy names"),
        ([{"name": "a", "method": "auto", "params": {"candidats": ["uniform"]}}, uni], {},
         "unknown param 'candidats'"),
        ([{"name": "a", "method": "auto"}], {}, "no other strategy to choose among"),
        ([{"name": "a", "method": "auto"}, uni], {"evaluate": {"split": "probe"}},
         "evaluate.split cannot be 'probe'"),
        ([{"name": "a", "method": "auto", "params": {"rule": "Clear"}}, uni], {},
         r"strategies\[0\].params.rule .*choose one of clear, lowest"),
        ([{"name": "a", "method": "auto"}, {"name": "s", "method": "size"}], {},
         r"strategies\[0\].params.rule .*a strategy of method 'uniform' must be a candidate"),
        ([{"name": "a", "method": "auto", "params": {"candidates": ["s"]}}, uni,
          {"name": "s", "method": "size"}], {}, "must be a candidate"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            _cfg(strategies, **extra)


@pytest.mark.slow
def test_auto_keeps_the_candidate_with_the_lowest_validation_loss(tmp_path, monkeypatch):
    from pathlib import Path

    pytest.importorskip("torch")
    from conftest import tiny_run_config
    from taskpgm.mixture.record import Mixture
    from taskpgm.pipeline import run_pipeline
    from taskpgm.report.records import ModelEval
    from taskpgm.tasks.pool import Pool

    cfg = tiny_run_config(tmp_path, [{"name": "best", "method": "auto"},
                                     {"name": "uniform", "method": "uniform"},
                                     {"name": "size", "method": "size"},
                                     {"name": "fb", "method": "family-balanced"}])
    import taskpgm.models.train as train_mod

    real, trained = train_mod.train_model, []

    def counting(base, data, out, **kw):
        trained.append(Path(out).name)
        return real(base, data, out, **kw)

    monkeypatch.setattr(train_mod, "train_model", counting)
    run_pipeline(cfg, progress=False)
    # auto takes the chosen candidate's model over: nothing is trained for it.
    # (The experts train through the same function, each into experts/<task>.)
    assert sorted(n for n in trained if n in ("best", "fb", "size", "uniform")) == [
        "fb", "size", "uniform"]
    root = tmp_path / "run"
    mix = Mixture.load(root / "mixtures" / "best.json")
    losses = mix.diagnostics["validation_loss"]
    assert set(losses) == {"uniform", "size", "fb"}
    # The default rule (D37): the lowest loss among clear winners over uniform, else uniform.
    margins = mix.diagnostics["margin_to_reference"]
    clear = [n for n in ("size", "fb") if margins[n]["high"] < 0]
    assert mix.params["rule"] == "clear"
    assert mix.params["chosen"] == (min(clear, key=losses.get) if clear else "uniform")
    assert mix.diagnostics["fell_back"] == (not clear)
    # benchmarks/auto_rules.py replays the same choice from the stored figures alone.
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "auto_rules.py"
    spec = importlib.util.spec_from_file_location("auto_rules", script)
    auto_rules = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(auto_rules)
    assert auto_rules.replay(mix, "clear") == mix.params["chosen"]
    assert auto_rules.replay(mix, "lowest") == min(losses, key=losses.get)
    # The line `taskpgm run` prints after the results table names the choice.
    from taskpgm.pipeline.demo import auto_lines
    from taskpgm.pipeline.stages import PipelineContext

    [line] = auto_lines(PipelineContext(cfg, root))
    assert line.startswith("best: ") and str(root / "mixtures" / "best.json") in line
    assert ("keeps uniform" in line) == (not clear)
    assert clear == [] or f"chose {mix.params['chosen']}: validation loss" in line
    chosen = Mixture.load(root / "mixtures" / f"{mix.params['chosen']}.json")
    assert chosen.tasks == mix.tasks and np.array_equal(chosen.weights, mix.weights)
    # The margins are to uniform, and uniform has none to itself.
    assert set(mix.diagnostics["margin_to_reference"]) == {"size", "fb"}
    # Validated on the held-out tasks' probe examples, evaluated on their eval examples:
    # not one example in both.
    pool = Pool.load(root / "pool")
    assert mix.params["validation"]["tasks"] == [t.name for t in pool.heldout_tasks()]
    for t in mix.params["validation"]["tasks"]:
        probe = {e.id for e in pool.examples(t, "probe")}
        evals = {e.id for e in pool.examples(t, "eval")}
        assert probe and evals and not probe & evals
    # Same mixture, same seeds: auto's model is the chosen candidate's, evaluation too.
    a = ModelEval.load(root / "eval" / "best.json").by_task()
    b = ModelEval.load(root / "eval" / f"{mix.params['chosen']}.json").by_task()
    assert {t: r.loss_per_token for t, r in a.items()} == {t: r.loss_per_token
                                                          for t, r in b.items()}


def test_r_path_adds_one_taskpgm_candidate_per_value_once():
    import yaml

    from taskpgm.config import auto_candidates, dump_config

    uni = {"name": "uniform", "method": "uniform"}
    cfg = _cfg([uni, {"name": "a", "method": "auto", "params": {"r_path": [0.25, "1"]}}])
    assert [s.name for s in cfg.strategies] == ["uniform", "a", "a.r0.25", "a.r1"]
    assert cfg.strategy("a.r0.25").method == "taskpgm"
    assert cfg.strategy("a.r1").params == {"r_rel": 1.0}
    assert auto_candidates(cfg, cfg.strategy("a")) == ["uniform", "a.r0.25", "a.r1"]
    # The run's saved config already holds them: loading it adds nothing twice.
    again = config_from_dict(yaml.safe_load(dump_config(cfg)))
    assert [s.name for s in again.strategies] == [s.name for s in cfg.strategies]
    explicit = _cfg([uni, {"name": "a", "method": "auto",
                           "params": {"candidates": ["uniform"], "r_path": [0.5]}}])
    assert explicit.strategy("a").params["candidates"] == ["uniform", "a.r0.5"]
    for bad in ([], [-1], ["x"], 0.5):
        with pytest.raises(ConfigError, match=r"params.r_path .*numbers >= 0"):
            _cfg([uni, {"name": "a", "method": "auto", "params": {"r_path": bad}}])


def test_a_diverged_candidate_is_one_line_and_empty_resamples_do_not_crash():
    good = {"t": _scores([1.0, 2.0], [1, 1])}
    nan = {"t": (np.array([np.nan, -1.0]), np.array([1, 1]))}
    for order in (("x", "uniform"), ("uniform", "x")):
        cands = {order[0]: nan if order[0] == "x" else good,
                 order[1]: nan if order[1] == "x" else good}
        with pytest.raises(InputError, match="candidate 'x' has a validation loss of nan"):
            select(cands)
    # One example of two has no response tokens: many resamples hold only it.
    a = {"t": (np.array([-1.0, 0.0]), np.array([1, 0]))}
    b = {"t": (np.array([-0.5, 0.0]), np.array([1, 0]))}
    sel = select({"uniform": a, "b": b}, bootstrap=300)
    m, lo, hi = sel.margins["b"]
    assert sel.chosen == "b" and np.isclose(m, -0.5) and lo <= m <= hi


def test_null_params_mean_their_defaults_and_probe_evaluation_drops_the_default_auto():
    cfg = _cfg([{"name": "uniform", "method": "uniform", "params": {"replicate": None}},
                {"name": "a", "method": "auto", "params": {"targets": None}},
                {"name": "r", "method": "regression", "params": {"kl": None, "runs": None}}])
    assert [s.params for s in cfg.strategies] == [{}, {}, {}]
    probe = config_from_dict({"evaluate": {"split": "probe"}})
    assert "auto" not in {s.method for s in probe.strategies} and probe.strategies


def test_r_path_refuses_collisions_bad_names_and_leaves_replicates_alone():
    uni = {"name": "uniform", "method": "uniform"}
    for r_path, msg in [([0.1234561, 0.1234564], "two values give the same strategy"),
                        ([1e6], "not a valid name")]:
        with pytest.raises(ConfigError, match=msg):
            _cfg([uni, {"name": "a", "method": "auto", "params": {"r_path": r_path}}])
    with pytest.raises(ConfigError, match="already exists and is not the r-path point"):
        _cfg([{"name": "a.r1", "method": "uniform"},
              {"name": "a", "method": "auto", "params": {"r_path": [1]}}])
    cfg = _cfg([uni, {"name": "a", "method": "auto", "params": {"r_path": [1]}},
                {"name": "a.rep1", "method": "auto",
                 "params": {"r_path": [1], "replicate": 1000}}])
    assert [s.name for s in cfg.strategies] == ["uniform", "a", "a.rep1", "a.r1"]


def test_the_validation_curve_is_drawn_only_along_r_path_candidates():
    pytest.importorskip("matplotlib")
    from taskpgm.report.figures import validation_curve

    assert validation_curve("a", {"uniform": 1.0, "fb": 0.9}, "fb") is None
    png = validation_curve("a", {"uniform": 1.0, "a.r0.5": 0.95, "a.r1": 0.97}, "a.r0.5")
    assert png is not None and png.startswith(b"\x89PNG")


def test_the_report_says_how_auto_chose():
    from taskpgm.mixture.record import Mixture
    from taskpgm.report.html import _auto_tables

    def table(params, diagnostics):
        mix = Mixture("auto", ["a", "b"], np.array([0.5, 0.5]),
                      params={"chosen": "uniform", "candidates": ["uniform", "s"],
                              "validation": {"split": "probe", "tasks": ["h"]}, **params},
                      diagnostics={"validation_loss": {"uniform": 1.0, "s": 0.99},
                                   "reference": "uniform",
                                   "margin_to_reference": {"s": {"mean": -0.01, "low": -0.03,
                                                                 "high": 0.01}},
                                   **diagnostics})
        return "".join(_auto_tables({"auto": mix}))

    # A mixture saved before rules existed chose by the lowest loss.
    assert "Lowest validation loss per token wins." in table({}, {})
    kept = table({"rule": "clear"}, {"fell_back": True})
    assert "No candidate beat uniform beyond the validation split's noise" in kept
    assert "uniform (chosen)" in kept
    assert "whole margin interval to uniform is below 0" in table({"rule": "clear"}, {"fell_back": False})
