"""The regression mixer (RegMix / olmix log-linear): the fit recovers a known law, the
optimum matches a brute-force grid, olmix-style CSVs round-trip and bad cells are one
line naming file, row and column."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from taskpgm.errors import InputError
from taskpgm.mixture.regression import (
    LogLinearLaw,
    ProxyRuns,
    cross_validated_spearman,
    design_runs,
    fit_log_linear,
    load_runs,
    minimise_laws,
    onto_capped_simplex,
    regression_weights,
    save_runs,
)


def _known(n=4, runs=40, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    law = LogLinearLaw(math.log(1.2), np.array([-1.5, 0.4, -0.3, 0.8])[:n])
    W = design_runs(np.ones(n), runs, seed=seed)
    y = law.predict(W) + rng.normal(0, noise, runs)
    return law, W, y


def test_the_fit_recovers_a_known_log_linear_law():
    law, W, y = _known()
    fit = fit_log_linear(W, y)
    # t is identified only up to a constant (weights sum to 1 and exp(t.p) has no
    # intercept: adding a to every t_i multiplies exp(t.p) by e^a); compare predictions on
    # fresh mixtures and the floor.
    fresh = design_runs(np.ones(4), 50, seed=99)
    assert np.allclose(fit.predict(fresh), law.predict(fresh), rtol=1e-4)
    assert abs(fit.log_c - law.log_c) < 1e-3


def test_the_huber_fit_ignores_an_outlier_run():
    law, W, y = _known(runs=30, noise=0.002)
    y[3] += 2.0  # one broken proxy run
    fit = fit_log_linear(W, y, delta=0.01)
    fresh = design_runs(np.ones(4), 50, seed=98)
    assert np.max(np.abs(fit.predict(fresh) - law.predict(fresh))) < 0.02


def test_held_out_rank_correlation_is_high_for_a_true_law_and_low_for_noise():
    _, W, y = _known(runs=30, noise=0.001)
    assert cross_validated_spearman(W, y[:, None])[0] > 0.9
    noise = np.random.default_rng(1).normal(2.0, 0.1, 30)
    assert cross_validated_spearman(W, noise[:, None])[0] < 0.6


def test_the_mixture_matches_a_brute_force_grid_on_three_tasks():
    laws = [LogLinearLaw(0.0, np.array([-1.0, 0.5, 0.2])),
            LogLinearLaw(-0.5, np.array([0.3, -0.8, 0.1]))]
    prior = np.array([0.5, 0.3, 0.2])
    kl = 0.05
    grid = [(a, b, 1 - a - b) for a in np.linspace(0, 1, 401) for b in np.linspace(0, 1, 401)
            if a + b <= 1]
    P = np.array(grid)

    def objective(P):
        Pc = np.maximum(P, 1e-12)
        return (np.mean([law.predict(P) for law in laws], axis=0)
                + kl * np.sum(Pc * np.log(Pc / prior), axis=1))

    best = P[np.argmin(objective(P))]
    w = minimise_laws(laws, prior, kl=kl)
    assert np.isclose(w.sum(), 1) and (w >= 0).all()
    assert objective(w[None])[0] <= objective(best[None])[0] + 1e-6
    assert np.abs(w - best).sum() < 0.01
    capped = minimise_laws(laws, prior, kl=kl, caps=np.array([0.2, 1.0, 1.0]))
    assert capped[0] <= 0.2 + 1e-9 and np.isclose(capped.sum(), 1)
    with pytest.raises(InputError, match="caps sum"):
        minimise_laws(laws, prior, caps=np.array([0.2, 0.2, 0.2]))


def test_design_draws_around_the_prior_with_a_floor_and_the_same_seed_same_runs():
    prior = np.array([100.0, 10.0, 1.0, 1.0])
    W = design_runs(prior, 20, seed=3)
    assert W.shape == (20, 4) and np.allclose(W.sum(axis=1), 1)
    assert (W >= 0.1 / 4 / 1.1).all()  # floored (then renormalised)
    assert np.array_equal(W, design_runs(prior, 20, seed=3))
    assert not np.array_equal(W, design_runs(prior, 20, seed=4))


def test_runs_round_trip_and_fit_end_to_end(tmp_path):
    _, W, y = _known(runs=12)
    runs = ProxyRuns([f"r{i}" for i in range(12)], ["a", "b", "c", "d"], W, ["loss"],
                     y[:, None], [f"run {i}" for i in range(12)])
    save_runs(tmp_path, runs)
    back = load_runs(tmp_path)
    assert back.run_ids == runs.run_ids and back.names == runs.names
    assert back.tasks == runs.tasks and back.metrics == ["loss"]
    assert np.array_equal(back.weights, runs.weights) and np.array_equal(back.values,
                                                                           runs.values)
    fit = regression_weights(back)
    # The law's own minimiser is near the task with the most negative t (a); with the KL
    # term towards uniform it keeps every task.
    assert fit.weights.argmax() == 0 and (fit.weights > 0).all() and fit.n_runs == 12
    assert fit.spearman["loss"] > 0.8


@pytest.mark.parametrize("ratios, metrics, msg", [
    ("run_id,a,b\nr1,0.5,0.5\n", "run_id,loss\nr1,x\n", r"metrics.csv: row 1, column 'loss': not a number"),
    ("run_id,a,b\nr1,0.5,0.6\n", "run_id,loss\nr1,1\n", r"ratios.csv: row 1: weights sum to 1.1000"),
    ("run_id,a,b\nr1,1.5,-0.5\n", "run_id,loss\nr1,1\n", r"ratios.csv: row 1, column 'b': negative"),
    ("run_id,a,b\nr1,0.5,0.5\nr2,0.5,0.5\n", "run_id,loss\nr1,1\n", r"row 2: run 'r2' has no row"),
    ("run_id,a,b\nr1,0.5,0.5\n", "run_id,loss\nr1,1\nr9,2\n", r"run 'r9' has no row in ratios"),
    ("run_id,a,b\nr1,0.5,0.5\nr1,0.5,0.5\n", "run_id,loss\nr1,1\n", "appears twice"),
    ("id,a,b\nr1,0.5,0.5\n", "run_id,loss\nr1,1\n", "no 'run_id' column"),
    ("run_id,a,b\nr1,0.5,0.5\n", "run_id,loss\nr1,nan\n", "missing or not finite"),
])
def test_bad_runs_are_one_line_naming_file_row_and_column(tmp_path, ratios, metrics, msg):
    (tmp_path / "ratios.csv").write_text(ratios)
    (tmp_path / "metrics.csv").write_text(metrics)
    with pytest.raises(InputError, match=msg):
        load_runs(tmp_path)


def test_missing_files_and_unknown_metrics_are_refused(tmp_path):
    with pytest.raises(InputError, match="ratios.csv: not found"):
        load_runs(tmp_path)
    runs = ProxyRuns(["a", "b"], ["x", "y"], [[0.5, 0.5], [0.2, 0.8]], ["m"], [[1.0], [2.0]])
    with pytest.raises(InputError, match="no metric 'nope'"):
        regression_weights(runs, metrics=["nope"])


def test_cli_designs_fits_and_refuses_bad_input(tmp_path, cli):
    import csv
    import importlib.util
    import json

    code, _, _ = cli("runs", "design", "--tasks", "a,b,c,d", "--runs", "24",
                       "--out", tmp_path / "runs")
    assert code == 0 and not (tmp_path / "runs" / "metrics.csv").exists()
    rows = list(csv.DictReader((tmp_path / "runs" / "ratios.csv").open()))
    assert len(rows) == 24 and list(rows[0])[:2] == ["run_id", "name"]
    law = _known()[0]
    W = np.array([[float(r[t]) for t in "abcd"] for r in rows])
    with (tmp_path / "runs" / "metrics.csv").open("w") as f:
        f.write("run_id,loss\n" + "".join(f"{r['run_id']},{float(v)!r}\n"
                                           for r, v in zip(rows, law.predict(W))))
    code, _, err = cli("runs", "fit", tmp_path / "runs", "--out", tmp_path / "mix.json")
    assert code == 0, err
    mix = json.loads((tmp_path / "mix.json").read_text())
    assert mix["method"] == "regression" and mix["tasks"] == ["a", "b", "c", "d"]
    assert mix["diagnostics"]["cv_spearman"]["loss"] > 0.9
    assert np.argmax(mix["weights"]) == 0  # the law rewards task a most
    # Bad input: one line, exit 2, nothing written.
    code, _, err = cli("runs", "fit", tmp_path / "runs", "--metric", "acc",
                       "--out", tmp_path / "other.json")
    assert code == 2 and "no metric 'acc'" in err and not (tmp_path / "other.json").exists()
    assert len(err.strip().splitlines()) == 1
    code, _, err = cli("runs", "design", "--runs", "3", "--out", tmp_path / "x")
    assert code == 2 and "--pool POOL or --tasks" in err
    code, _, err = cli("runs", "fit", tmp_path / "runs", "--max-epochs", "2")
    assert code == 2 and "--max-epochs needs --pool" in err
    code, _, err = cli("runs", "fit", tmp_path / "runs", "--fit", "trees",
                       "--out", tmp_path / "other.json")
    assert code == 2 and "fit must be one of log-linear, gbm, got 'trees'" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "other.json").exists()
    if importlib.util.find_spec("sklearn") is not None:
        code, _, err = cli("runs", "fit", tmp_path / "runs", "--fit", "gbm",
                           "--out", tmp_path / "gbm.json")
        assert code == 0, err
        gbm = json.loads((tmp_path / "gbm.json").read_text())
        assert gbm["params"]["fit"] == "gbm" and gbm["diagnostics"]["laws"]["loss"] == {
            "fit": "gbm"}
        assert np.isclose(sum(gbm["weights"]), 1)


def _reg_config(tmp_path, runs=4):
    from conftest import tiny_run_config

    return tiny_run_config(tmp_path, [{"name": "uniform", "method": "uniform"},
                                      {"name": "reg", "method": "regression",
                                       "params": {"runs": runs}}],
                           experts_steps=2, budget=120, train_steps=3, max_examples=10)


def test_config_checks_regression_params_before_any_work():
    from taskpgm.config import config_from_dict
    from taskpgm.errors import ConfigError

    for params, msg in [({"runs": 1}, "at least 2 proxy runs"),
                        ({"runs": -3}, r"params.runs .*must be"),
                        ({"kl": -1}, r"params.kl .*must be"),
                        ({"proxies": 4}, "unknown param 'proxies'")]:
        with pytest.raises(ConfigError, match=msg):
            config_from_dict({"strategies": [{"name": "r", "method": "regression",
                                              "params": params}]})


@pytest.mark.slow
def test_regression_trains_its_proxies_resumes_and_keeps_them_in_olmix_layout(tmp_path,
                                                                             monkeypatch):
    pytest.importorskip("torch")
    import taskpgm.models.train as train_mod
    from taskpgm.mixture.record import Mixture
    from taskpgm.pipeline import run_pipeline

    real = train_mod.train_model
    calls: list[str] = []

    def failing(base, data, out, **kw):
        calls.append(str(out))
        if len([c for c in calls if "proxies" in c]) == 3:
            raise RuntimeError("killed")
        return real(base, data, out, **kw)

    monkeypatch.setattr(train_mod, "train_model", failing)
    with pytest.raises(RuntimeError, match="killed"):
        run_pipeline(_reg_config(tmp_path), progress=False)
    monkeypatch.setattr(train_mod, "train_model", real)
    counted: list[str] = []

    def counting(base, data, out, **kw):
        counted.append(str(out))
        return real(base, data, out, **kw)

    monkeypatch.setattr(train_mod, "train_model", counting)
    run_pipeline(_reg_config(tmp_path), progress=False)
    # Two proxies had finished before the failure: only the other two are trained again.
    assert sorted(p.split("/proxies/reg/")[1] for p in counted if "/proxies/" in p) == [
        "run0002/model", "run0003/model"]
    root = tmp_path / "run"
    runs = load_runs(root / "runs" / "reg")
    assert runs.run_ids == [f"run{k:04d}" for k in range(4)] and runs.weights.shape[0] == 4
    assert all(m.startswith("loss:") for m in runs.metrics)
    mix = Mixture.load(root / "mixtures" / "reg.json")
    assert mix.method == "regression" and mix.diagnostics["proxy_trainings"] == 4
    assert np.isclose(mix.weights.sum(), 1) and set(mix.diagnostics["cv_spearman"]) == set(
        runs.metrics)


def test_plan_states_the_proxy_trainings_before_any_work(tmp_path):
    from taskpgm.pipeline import plan_pipeline

    items = {it.stage.name: it for it in plan_pipeline(_reg_config(tmp_path, runs=7))}
    assert "trains 7 proxy models" in items["proxies:reg"].reason
    assert "time unknown until one has run" in items["proxies:reg"].reason
    cfg = _reg_config(tmp_path)
    cfg.strategies[1].params = {}
    items = {it.stage.name: it for it in plan_pipeline(cfg)}
    assert "4 proxy models per training task" in items["proxies:reg"].reason
    assert not (tmp_path / "run").exists()  # a plan writes nothing


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 10.0), min_size=2, max_size=8),
       st.lists(st.floats(0.05, 1.0), min_size=8, max_size=8))
@example(w=[1.0, 5e-324], caps=[0.5] + [1.0] * 7)  # a subnormal weight once underflowed to 0
def test_projection_onto_the_capped_simplex_respects_every_cap(w, caps):
    caps = np.array(caps[:len(w)])
    if caps.sum() < 1:
        with pytest.raises(InputError, match="caps sum"):
            onto_capped_simplex(np.array(w), caps)
        return
    p = onto_capped_simplex(np.array(w), caps)
    assert np.isclose(p.sum(), 1) and (p >= 0).all() and (p <= caps + 1e-12).all()
    # Weights below their caps keep their proportions (when some weight was positive).
    free = p < caps - 1e-9
    pos = free & (np.array(w) > 1e-100)  # tiny inputs: their ratios are float noise
    if pos.sum() > 1:
        ratio = p[pos] / np.array(w)[pos]
        assert np.allclose(ratio, ratio[0])


def test_designs_stay_under_epoch_caps():
    caps = np.array([0.1, 0.5, 0.5, 0.5])
    W = design_runs(np.array([100.0, 1.0, 1.0, 1.0]), 30, seed=2, caps=caps)
    assert (W <= caps + 1e-12).all() and np.allclose(W.sum(axis=1), 1)
    with pytest.raises(InputError, match="floor must be >= 0"):
        design_runs(np.ones(3), 3, floor=-0.1)


def test_non_positive_metrics_are_refused():
    runs = ProxyRuns(["a", "b"], ["x", "y"], [[0.5, 0.5], [0.2, 0.8]], ["acc"],
                     [[-0.3], [-0.4]])
    with pytest.raises(InputError, match="values <= 0"):
        regression_weights(runs)


def test_design_refuses_to_write_beside_old_runs(tmp_path, cli):
    assert cli("runs", "design", "--tasks", "a,b", "--runs", "4", "--out", tmp_path)[0] == 0
    (tmp_path / "metrics.csv").write_text("run_id,loss\nrun0000,1\n")
    code, _, err = cli("runs", "design", "--tasks", "a,b", "--runs", "4", "--seed", "1",
                       "--out", tmp_path)
    assert code == 2 and "exists" in err and (tmp_path / "metrics.csv").exists()
    code, _, _ = cli("runs", "design", "--tasks", "a,b", "--runs", "4", "--seed", "1",
                     "--out", tmp_path, "--force")
    assert code == 0 and not (tmp_path / "metrics.csv").exists()


@pytest.mark.slow
def test_refitting_trains_no_proxy_again(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import taskpgm.models.train as train_mod
    from taskpgm.pipeline import run_pipeline

    run_pipeline(_reg_config(tmp_path, runs=3), progress=False)
    real, trained = train_mod.train_model, []

    def counting(base, data, out, **kw):
        trained.append(str(out))
        return real(base, data, out, **kw)

    monkeypatch.setattr(train_mod, "train_model", counting)
    cfg = _reg_config(tmp_path, runs=3)
    cfg.strategies[1].params["kl"] = 0.5
    run_pipeline(cfg, progress=False)
    # A new KL term refits the law and retrains the regression's own model, nothing else.
    assert [p.split("/run/")[1] for p in trained] == ["models/reg"]


def _threshold_loss(P):
    """A loss no log-linear law fits: flat once task a has half the mass, quadratic in b."""
    P = np.atleast_2d(P)
    return 2 - 1.5 * np.minimum(P[:, 0], 0.5) + 0.8 * P[:, 1] ** 2 + 0.3 * np.abs(P[:, 2] - 0.2)


def test_the_boosted_fit_finds_a_near_optimal_mixture_where_the_log_linear_law_cannot():
    pytest.importorskip("sklearn")
    W = design_runs(np.ones(4), 80, seed=0)
    runs = ProxyRuns([f"r{i}" for i in range(80)], list("abcd"), W, ["loss"],
                     _threshold_loss(W)[:, None])
    gbm = regression_weights(runs, fit="gbm", kl=0.0)
    linear = regression_weights(runs, fit="log-linear", kl=0.0)
    optimum = 1.25  # a >= 0.5, b = 0, c = 0.2
    assert _threshold_loss(gbm.weights)[0] < optimum + 0.02
    assert _threshold_loss(gbm.weights)[0] < _threshold_loss(linear.weights)[0] - 0.03
    assert gbm.spearman["loss"] > 0.9
    # Same seed, same mixture; the caps hold.
    assert np.array_equal(gbm.weights, regression_weights(runs, fit="gbm", kl=0.0).weights)
    capped = regression_weights(runs, fit="gbm", kl=0.0, caps=np.array([0.3, 1, 1, 1]))
    assert capped.weights[0] <= 0.3 + 1e-9 and np.isclose(capped.weights.sum(), 1)


def test_an_unknown_fit_or_a_missing_library_is_refused_before_any_work(monkeypatch):
    import importlib.util

    from taskpgm.config import config_from_dict
    from taskpgm.errors import ConfigError

    def cfg(fit):
        return config_from_dict({"strategies": [{"name": "r", "method": "regression",
                                                 "params": {"fit": fit}}]})
    with pytest.raises(ConfigError, match=r"params.fit .*one of log-linear, gbm, got 'trees'"):
        cfg("trees")
    if importlib.util.find_spec("sklearn") is not None:
        assert cfg("gbm").strategies[0].params["fit"] == "gbm"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sklearn" else real(name, *a))
    with pytest.raises(ConfigError, match=r"params.fit .*needs scikit-learn"):
        cfg("gbm")
    runs = ProxyRuns(["a", "b"], ["x", "y"], np.eye(2), ["loss"], np.ones((2, 1)))
    with pytest.raises(InputError, match="needs scikit-learn"):
        regression_weights(runs, fit="gbm")


def test_two_regression_strategies_with_the_same_proxies_train_them_once(tmp_path,
                                                                        monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    import taskpgm.models.train as train_mod
    from conftest import tiny_run_config
    from taskpgm.mixture.record import Mixture
    from taskpgm.pipeline import plan_pipeline, run_pipeline

    cfg = tiny_run_config(tmp_path, [
        {"name": "uniform", "method": "uniform"},
        {"name": "reg", "method": "regression", "params": {"runs": 3}},
        {"name": "reg-gbm", "method": "regression", "params": {"runs": 3, "fit": "gbm"}},
        {"name": "reg-more", "method": "regression", "params": {"runs": 4}}],
        experts_steps=2, budget=120, train_steps=3, max_examples=10)
    plan = {it.stage.name: it for it in plan_pipeline(cfg)}
    assert {"proxies:reg", "proxies:reg-more"} <= set(plan) and "proxies:reg-gbm" not in plan
    assert "fits on the proxies of 'reg'" in plan["mixture:reg-gbm"].reason
    real, trained = train_mod.train_model, []

    def counting(base, data, out, **kw):
        trained.append(str(out).split("/run/")[1])
        return real(base, data, out, **kw)

    monkeypatch.setattr(train_mod, "train_model", counting)
    run_pipeline(cfg, progress=False)
    proxies = sorted(p for p in trained if p.startswith("proxies/"))
    assert proxies == sorted([f"proxies/reg/run{k:04d}/model" for k in range(3)] + [
        f"proxies/reg-more/run{k:04d}/model" for k in range(4)])
    root = tmp_path / "run"
    # Both fits read the same proxy runs; the gbm one says how it fitted.
    assert (root / "runs" / "reg" / "ratios.csv").read_bytes() == \
        (root / "runs" / "reg-gbm" / "ratios.csv").read_bytes()
    gbm = Mixture.load(root / "mixtures" / "reg-gbm.json")
    assert gbm.params["fit"] == "gbm" and gbm.params["proxies"] == "reg"
