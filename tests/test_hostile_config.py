"""Hostile cases of issue 10, "config/registry drift": each failed before the fix.

Every choice the config offers must be one the library knows (one registry per choice),
every option it carries must be read, typed and range-checked when the config loads
(one line naming the field), and library errors name the parameter, not a CLI flag.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest

from taskpgm.config import Config, config_from_dict
from taskpgm.errors import ConfigError, InputError
from taskpgm.mixture import r_path, solve

MIXTURE_SRC = Path(inspect.getfile(solve)).parent  # the taskpgm.mixture package imported


def _refused(data: dict, *needles: str) -> str:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    msg = str(info.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


# -- 1. config choices are the library's registries ---------------------------------------

def test_affinity_metric_ce_is_refused_at_load_with_the_library_choices():
    from taskpgm.affinity.compute import METRICS

    msg = _refused({"affinity": {"metric": "ce"}}, "affinity.metric")
    for m in METRICS:
        assert m in msg


def test_affinity_metric_ce_gap_is_accepted():
    assert config_from_dict({"affinity": {"metric": "ce-gap"}}).affinity.metric == "ce-gap"


def test_affinity_settings_a_later_stage_would_refuse_are_refused_at_load():
    # ce-gap has no bootstrap intervals: without an explicit bootstrap it gets none
    # (the affinity stage refused the pmi default of 100 after experts and scores).
    assert config_from_dict({"affinity": {"metric": "ce-gap"}}).affinity.bootstrap == 0
    assert Config().affinity.bootstrap == 100
    _refused({"affinity": {"metric": "ce-gap", "bootstrap": 10}}, "affinity.bootstrap")
    # jsd/skl read top-k distributions the scoring stage only keeps with topk > 0.
    _refused({"affinity": {"metric": "jsd"}}, "scoring.topk")
    assert config_from_dict({"affinity": {"metric": "skl"}, "scoring": {"topk": 8}})


def test_every_library_option_has_a_type():
    from taskpgm.mixture.api import OPTION_TYPES, STRATEGY_OPTIONS

    assert set(OPTION_TYPES) == set(STRATEGY_OPTIONS)


def test_the_registries_are_the_light_choice_tables():
    # One definition per list (taskpgm.choices); the implementing modules re-export it.
    from taskpgm import choices
    from taskpgm.affinity import compute, pmi
    from taskpgm.mixture import api, kernels, unary

    assert compute.METRICS is choices.METRICS and pmi.NORMALIZATIONS is choices.NORMALIZATIONS
    assert kernels.KERNELS is choices.KERNELS and unary.UNARIES is choices.UNARIES
    assert api.OPTION_TYPES is choices.OPTION_TYPES
    assert list(api.STRATEGIES) == list(choices.METHOD_OPTIONS) == list(choices.METHODS)
    assert set(api._RUNNERS) == set(choices.METHOD_OPTIONS)  # no implementation left out
    for name, options in choices.METHOD_OPTIONS.items():
        assert api.STRATEGIES[name].options == options, name


def test_unknown_synthetic_family_is_refused_at_load():
    _refused({"pool": {"families": ["reverse", "nope"]}}, "pool.families", "'nope'")
    # A skill of the redundancy suite is not a family of the default one.
    _refused({"pool": {"families": ["copy"]}}, "pool.families", "suite 'default'")
    assert config_from_dict({"pool": {"suite": "redundancy", "families": ["copy"]}})


# -- 2. mixture.utilities is read and checked ---------------------------------------------

def test_unary_given_without_utilities_is_refused_at_load():
    _refused({"mixture": {"unary": "given"}}, "mixture.utilities")


def test_unary_given_with_a_missing_utilities_file_is_refused_at_load(tmp_path):
    _refused({"mixture": {"unary": "given", "utilities": str(tmp_path / "u.json")}},
             "mixture.utilities", "not found")


def test_strategy_unary_given_needs_utilities_too(tmp_path):
    _refused({"strategies": [{"name": "g", "method": "taskpgm",
                              "params": {"unary": "given"}}]},
             "strategies[0].params.utilities")
    _refused({"strategies": [{"name": "g", "method": "taskpgm",
                              "params": {"unary": "given",
                                         "utilities": str(tmp_path / "nope.csv")}}]},
             "strategies[0].params.utilities", "not found")
    # The section's file serves a strategy that only switches the unary to 'given'.
    u = tmp_path / "u.json"
    u.write_text("[1, 2]")
    cfg = config_from_dict({"mixture": {"utilities": str(u)}, "strategies": [
        {"name": "g", "method": "taskpgm", "params": {"unary": "given"}}]})
    assert cfg.strategies[0].params == {"unary": "given"}


@pytest.mark.parametrize("text, name", [
    ('[0.5, 1.5, -1]', "u.json"),
    ('{"c": -1, "a": 0.5, "b": 1.5}', "u.json"),
    ("task,utility\na,0.5\nb,1.5\nc,-1\n", "u.csv"),
])
def test_utilities_file_formats_load_in_task_order(tmp_path, text, name):
    from taskpgm.mixture.utilities_file import load_utilities_file

    path = tmp_path / name
    path.write_text(text)
    u = load_utilities_file(path, ["a", "b", "c"])
    assert u.dtype == np.float64 and u.tolist() == [0.5, 1.5, -1.0]


def test_utilities_file_errors_name_the_file(tmp_path):
    from taskpgm.mixture.utilities_file import load_utilities_file

    path = tmp_path / "u.csv"
    path.write_text("a,1\nb,x\n")
    with pytest.raises(InputError, match="u.csv:2"):
        load_utilities_file(path, ["a", "b"])
    path.write_text("a,1\n")
    with pytest.raises(InputError, match="no value for task 'b'"):
        load_utilities_file(path, ["a", "b"])
    with pytest.raises(InputError, match="not found"):
        load_utilities_file(tmp_path / "missing.json", ["a", "b"])


@pytest.mark.parametrize("data, line", [
    # A header after blank lines is still the header; blank lines count.
    (b"\n\nname,value\na,1\n\n\nb,x\n", 7),
    # CRLF line ends, blank lines between.
    (b"a,1\r\n\r\n\r\nb,x\r\n", 4),
    # A form feed is not a line end (str.splitlines() counted it as one).
    (b"a,1\n\x0c\nb,x\n", 3),
    # A quoted name spanning two lines: the next row starts on line 3.
    (b'"a\nb",1\nc,x\n', 3),
    # Whitespace-separated lines.
    (b"a 1\n\n   \nb x\n", 4),
])
def test_values_file_errors_name_the_line_an_editor_shows(tmp_path, data, line):
    from taskpgm.mixture.unary import read_values

    path = tmp_path / "caps.csv"
    path.write_bytes(data)
    with pytest.raises(InputError, match=rf"caps\.csv:{line}: 'x' is not a number$"):
        read_values(path, "caps")


def test_values_file_with_a_bad_byte_names_its_line(tmp_path):
    from taskpgm.mixture.unary import read_values
    from taskpgm.mixture.utilities_file import load_utilities_file

    path = tmp_path / "u.csv"
    path.write_bytes(b"a,1\n\nb,2\nc,\xff3\n")
    msg = r"u\.csv:4: not UTF-8 text \(byte 0xff at column 3\)"
    with pytest.raises(InputError, match=msg):
        read_values(path, "utilities")
    with pytest.raises(InputError, match=msg):
        load_utilities_file(path, ["a", "b", "c"])
    # A bad byte in a JSON weights file too (method 'given').
    weights = tmp_path / "w.json"
    weights.write_bytes(b'{"a": 1,\n "b": 2,\n "\xe9": 3}\n')
    with pytest.raises(InputError, match=r"w\.json:3: not UTF-8"):
        solve(None, names=["a", "b"], method="given", weights=str(weights))


def test_values_file_with_a_bom_reads_as_json_and_csv(tmp_path):
    from taskpgm.mixture.unary import read_values

    path = tmp_path / "v.json"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1, "b": 2}')
    assert read_values(path) == {"a": 1.0, "b": 2.0}
    path = tmp_path / "v.csv"
    path.write_bytes(b"\xef\xbb\xbfname,value\na,1\n")
    assert read_values(path) == {"a": 1.0}


def test_cli_names_the_line_of_a_bad_sizes_file(tmp_path, cli):
    sizes = tmp_path / "sizes.csv"
    sizes.write_bytes(b"task,size\n\na,10\n\nb,\xff\n")
    code, _, err = cli("solve", "--method", "size", "--sizes", sizes)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "sizes.csv:5: not UTF-8" in err, err
    sizes.write_bytes(b"task,size\n\na,10\n\nb,ten\n")
    code, _, err = cli("solve", "--method", "size", "--sizes", sizes)
    assert code == 2 and "sizes.csv:5: 'ten' is not a number" in err, err


def test_given_utilities_from_a_file_reach_the_solver(tmp_path):
    # As pipeline/stages.solve_strategy does once it reads mixture.utilities.
    from taskpgm.mixture.utilities_file import load_utilities_file

    path = tmp_path / "u.json"
    path.write_text(json.dumps({"a": 0.0, "b": 0.0, "c": 5.0}))
    cfg = config_from_dict({"mixture": {"unary": "given", "utilities": str(path), "r_rel": 2.0}})
    u = load_utilities_file(cfg.mixture.utilities, ["a", "b", "c"])
    mix = solve(np.zeros((3, 3)), names=["a", "b", "c"], unary=cfg.mixture.unary, utilities=u,
                r_rel=cfg.mixture.r_rel, kernel="shift", kernel_floor=1.0)
    assert mix.weights.argmax() == 2


# -- 3. scoring.batch_size is used ------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_scoring(tmp_path_factory):
    pytest.importorskip("torch")
    from taskpgm.models.tiny import TinyConfig, build_tiny_model
    from taskpgm.models.toy import write_toy_pool
    from taskpgm.tasks.pool import Pool

    root = tmp_path_factory.mktemp("hostile-scoring")
    pool = Pool.load(write_toy_pool(root / "pool", ("upper", "reverse"), n_train=8,
                                    n_probe=12, n_eval=2))
    cfg = TinyConfig(vocab_size=300, n_layer=1, n_embd=16, n_head=2, n_positions=64)
    experts = root / "experts"
    for i, name in enumerate(("upper", "reverse")):
        build_tiny_model(pool, experts / name, seed=i, config=cfg)
    return pool, experts, root


def test_scoring_batch_size_bounds_the_rows_of_every_forward_pass(tiny_scoring):
    from taskpgm.models.encode import encode_pairs
    from taskpgm.models.load import load_model
    from taskpgm.models.scoring import score_encoded

    pool, experts, _ = tiny_scoring
    loaded = load_model(experts / "upper", device="cpu")
    pairs = [(e.prompt, e.response) for e in pool.examples("upper", "probe")]
    encs = encode_pairs(loaded.tokenizer, pairs, append_eos=True, max_length=64)
    sizes: list[int] = []
    one = score_encoded(loaded.model, encs, pad_id=loaded.tokenizer.pad_token_id,
                        batch_size=3, on_batch=sizes.append)
    assert max(sizes) <= 3 and sum(sizes) == len(encs)
    whole = score_encoded(loaded.model, encs, pad_id=loaded.tokenizer.pad_token_id)
    np.testing.assert_allclose(one.logprob, whole.logprob, rtol=1e-5, atol=1e-5)


def test_score_pool_takes_the_config_batch_size_and_its_default_changes_no_byte(tiny_scoring):
    from taskpgm.models.scoring import score_pool

    pool, experts, root = tiny_scoring
    default = Config().scoring.batch_size
    score_pool(pool, experts, root / "s-engine", progress=False)
    score_pool(pool, experts, root / "s-config", batch_size=default, progress=False)
    score_pool(pool, experts, root / "s-one", batch_size=1, progress=False)
    shards = sorted(p.relative_to(root / "s-engine")
                    for p in (root / "s-engine").rglob("*.parquet"))
    assert shards
    for rel in shards:
        # A probe set no larger than the default batch is scored in the same passes.
        assert (root / "s-config" / rel).read_bytes() == (root / "s-engine" / rel).read_bytes()
    with pytest.raises(InputError, match="batch_size"):
        score_pool(pool, experts, root / "s-bad", batch_size=0, progress=False)


def test_evaluate_model_takes_a_batch_size(tiny_scoring):
    from taskpgm.models.evaluate import evaluate_model

    pool, experts, _ = tiny_scoring
    a = evaluate_model(experts / "upper", pool, ["upper"], split="probe", batch_size=2,
                       max_new_tokens=2)["upper"]
    b = evaluate_model(experts / "upper", pool, ["upper"], split="probe",
                       max_new_tokens=2)["upper"]
    assert a.loss_per_token == pytest.approx(b.loss_per_token, rel=1e-5)


# -- 4. one source of the training and tiny-model defaults ------------------------------

def test_library_training_defaults_are_the_config_defaults():
    pytest.importorskip("torch")
    from taskpgm.models import train as tr

    cfg = Config()
    lib = tr.TrainConfig()
    for key in ("steps", "lr", "batch_size", "lora"):
        assert getattr(lib, key) == getattr(cfg.train, key) == getattr(cfg.experts, key), key
    for fn in (tr.train_model, tr.train_experts):
        params = inspect.signature(fn).parameters
        for key in ("steps", "lr", "batch_size", "lora"):
            assert params[key].default == getattr(cfg.train, key), (fn.__name__, key)


def test_cli_training_defaults_are_the_config_defaults():
    from taskpgm.cli import models as cm

    cfg = Config()
    for fn, section in ((cm.train, cfg.train), (cm.experts_train, cfg.experts)):
        params = inspect.signature(fn).parameters
        for key in ("steps", "lr", "batch_size", "lora"):
            assert params[key].default == getattr(section, key), (fn.__name__, key)


def test_tiny_model_defaults_and_flags_are_the_config_keys():
    from taskpgm.cli import models as cm
    from taskpgm.config import TinyModelConfig

    cfg = TinyModelConfig()
    params = inspect.signature(cm.tiny).parameters
    for key in ("n_layer", "n_embd", "n_head", "vocab_size"):
        assert params[key].default == getattr(cfg, key), key
    pytest.importorskip("torch")
    from taskpgm.models.tiny import TinyConfig

    lib = TinyConfig()
    for key in ("n_layer", "n_embd", "n_head", "vocab_size"):
        assert getattr(lib, key) == getattr(cfg, key), key


def test_models_tiny_takes_the_config_key_names_as_flags(tmp_path, cli):
    pytest.importorskip("torch")
    from taskpgm.models.toy import write_toy_pool

    pool = write_toy_pool(tmp_path / "pool", ("upper",), n_train=8, n_probe=2, n_eval=2)
    code, _, err = cli("models", "tiny", "--pool", pool, "--out", tmp_path / "m",
                       "--n-layer", 1, "--n-embd", 16, "--n-head", 2, "--vocab-size", 300,
                       "--n-positions", 32)
    assert code == 0, err
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (cfg["n_layer"], cfg["n_embd"], cfg["n_head"], cfg["n_positions"]) == (1, 16, 2, 32)


def test_tiny_shape_that_cannot_make_a_model_is_refused_at_load():
    _refused({"model": {"tiny": {"n_embd": 64, "n_head": 3}}}, "model.tiny.n_head")


# -- 5. r_rel = 0 is the pure-diversity end --------------------------------------------

def test_r_rel_zero_loads_and_negative_is_refused():
    assert config_from_dict({"mixture": {"r_rel": 0}}).mixture.r_rel == 0
    _refused({"mixture": {"r_rel": -0.5}}, "mixture.r_rel")
    assert config_from_dict({"strategies": [
        {"name": "d", "method": "taskpgm", "params": {"r_rel": 0}}]}).strategies[0]
    _refused({"strategies": [{"name": "d", "method": "taskpgm", "params": {"r_rel": -1}}]},
             "strategies[0].params.r_rel")


def test_r_rel_zero_is_the_minimum_of_p_K_p_on_the_simplex():
    # Hand-computed: K = diag(d) gives p_i proportional to 1/d_i.
    S = np.diag([1.0, 2.0, 4.0])
    mix = solve(S, kernel="none", r_rel=0)
    np.testing.assert_allclose(mix.weights, [4 / 7, 2 / 7, 1 / 7], atol=1e-12)
    assert mix.params["r_rel"] == 0


@pytest.mark.parametrize("kernel", ["shift", "calibrated", "clip"])
def test_r_rel_zero_matches_slsqp(kernel):
    from scipy.optimize import minimize

    rng = np.random.default_rng(3)
    S = -np.abs(rng.normal(size=(7, 7)))
    S = S + S.T
    np.fill_diagonal(S, 0.0)
    mix = solve(S, kernel=kernel, r_rel=0)
    K = _kernel(S, kernel)
    w = mix.weights
    assert np.all(w >= 0) and w.sum() == pytest.approx(1.0)
    ref = minimize(lambda p: 0.5 * p @ K @ p, np.full(7, 1 / 7), jac=lambda p: K @ p,
                   bounds=[(0, 1)] * 7, method="SLSQP",
                   constraints=[{"type": "eq", "fun": lambda p: p.sum() - 1}],
                   options={"ftol": 1e-14, "maxiter": 500})
    assert 0.5 * w @ K @ w <= ref.fun + 1e-9
    assert mix.diagnostics["kkt_residual"] < 1e-8


def _kernel(S, kind):
    from taskpgm.mixture.kernels import build_kernel

    return build_kernel(S, kind).matrix


def test_r_rel_zero_in_the_paper_procedure_budget_and_path():
    S = np.diag([1.0, 2.0, 4.0])
    np.testing.assert_allclose(solve(S, method="taskpgm-paper", kernel="none", r_rel=0).weights,
                               [4 / 7, 2 / 7, 1 / 7], atol=1e-12)
    assert solve(S, kernel="none", r_rel=0, budget_k=2).weights[2] == 0
    path = r_path(S, rs=[0.0, 0.1], kernel="none")
    np.testing.assert_allclose(path.weights[0], [4 / 7, 2 / 7, 1 / 7], atol=1e-12)
    with pytest.raises(InputError, match="r_rel"):
        solve(S, kernel="none", r_rel=-1)


# -- 6. strategy params are typed and range-checked at load -----------------------------

@pytest.mark.parametrize("method, params, field", [
    ("dirichlet", {"alpha": -1}, "alpha"),
    ("dirichlet", {"alpha": "abc"}, "alpha"),
    ("dirichlet", {"alpha": 0}, "alpha"),
    ("dirichlet", {"draw": -1}, "draw"),
    ("dirichlet", {"draw": 1.5}, "draw"),
    ("dirichlet", {"draw": True}, "draw"),
    ("temperature", {"temperature": "abc"}, "temperature"),
    ("temperature", {"temperature": 0}, "temperature"),
    ("temperature", {"temperature": float("nan")}, "temperature"),
    ("capped", {"cap": -3}, "cap"),
    ("unimax", {"max_epochs": "abc"}, "max_epochs"),
    ("unimax", {"unimax_budget": 0}, "unimax_budget"),
    ("taskpgm", {"kernel_floor": -1}, "kernel_floor"),
    ("taskpgm", {"sigma": "abc"}, "sigma"),
    ("taskpgm", {"ridge": -0.1}, "ridge"),
    ("taskpgm", {"bandwidth": 0}, "bandwidth"),
    ("taskpgm", {"bandwidth": "wide"}, "bandwidth"),
    ("taskpgm", {"kernel": "shift", "bandwidth": 0.1}, "bandwidth"),
    ("cluster-balanced", {"bandwidth": -1}, "bandwidth"),
    ("taskpgm", {"scale_utilities": "yes"}, "scale_utilities"),
    ("taskpgm", {"cost_budget": -5}, "cost_budget"),
    ("taskpgm", {"costs": {"a": "x"}}, "costs"),
    ("taskpgm", {"kernel": "magic"}, "kernel"),
    ("taskpgm", {"unary": "bogus"}, "unary"),
    ("taskpgm", {"budget_k": 0}, "budget_k"),
    ("taskpgm", {"beta": "abc"}, "beta"),
    ("taskpgm-paper", {"lam": 0}, "lam"),
    ("given", {"weights": 3}, "weights"),
])
def test_bad_strategy_params_are_one_line_at_load(method, params, field):
    _refused({"strategies": [{"name": "u", "method": "uniform"},
                             {"name": "s", "method": method, "params": params}]},
             f"strategies[1].params.{field}")


@pytest.mark.parametrize("method, key", [("temperature", "temperature"), ("capped", "cap"),
                                         ("unimax", "max_epochs"), ("given", "weights")])
def test_params_a_method_cannot_run_without_are_required_at_load(method, key):
    _refused({"strategies": [{"name": "s", "method": method}]},
             f"strategies[0].params.{key}", "needs")


@pytest.mark.parametrize("method, key", [("family-balanced", "families"),
                                         ("mixmin", "scores")])
def test_params_the_pipeline_supplies_are_not_silently_overridden(method, key):
    _refused({"strategies": [{"name": "s", "method": method, "params": {key: "x"}}]},
             f"strategies[0].params.{key}")


def test_good_strategy_params_still_load():
    cfg = config_from_dict({"strategies": [
        {"name": "d", "method": "dirichlet", "params": {"alpha": 0.5, "draw": 3}},
        {"name": "t", "method": "temperature", "params": {"temperature": 2}},
        {"name": "c", "method": "capped", "params": {"cap": 100}},
        {"name": "x", "method": "taskpgm", "params": {"kernel": "exp", "sigma": 2,
                                                      "beta": 0.5, "budget_k": 2}},
    ]})
    assert [s.name for s in cfg.strategies] == ["d", "t", "c", "x"]


def test_python_api_refuses_mistyped_options_in_one_line():
    sizes = {"a": 1, "b": 2}
    with pytest.raises(InputError, match="temperature"):
        solve(None, method="temperature", sizes=sizes, temperature="abc")
    with pytest.raises(InputError, match="cap"):
        solve(None, method="capped", sizes=sizes, cap=-1)


# -- 7. library errors name the parameter, the CLI names the flag ---------------------

def test_library_errors_name_the_parameter_not_a_flag():
    sizes = {"a": 1, "b": 2}
    cases = [
        lambda: solve(None, method="temperature", sizes=sizes),
        lambda: solve(None, method="capped", sizes=sizes),
        lambda: solve(None, method="unimax", sizes=sizes, max_epochs=1),
        lambda: solve(None, names=["a", "b"], method="size"),
        lambda: solve(None, names=["a", "b"], method="given"),
        lambda: solve(None, names=["a", "b"], method="family-balanced"),
        lambda: solve(None, names=["a", "b"], method="taskpgm"),
        lambda: solve(np.zeros((2, 2)), unary="given"),
        lambda: solve(np.zeros((2, 2)), unary="target"),
    ]
    for case in cases:
        with pytest.raises(InputError) as info:
            case()
        assert not re.search(r"--[a-z]", str(info.value)), str(info.value)
    with pytest.raises(InputError, match="'temperature'"):
        solve(None, method="temperature", sizes=sizes)
    with pytest.raises(InputError, match="'utilities'"):
        solve(np.zeros((2, 2)), unary="given")


def test_no_message_in_the_mixture_library_names_a_cli_flag():
    flagged = []
    for path in sorted(MIXTURE_SRC.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and re.search(r"(^|[\s(''])--[a-z]", node.value) \
                    and not _is_docstring(tree, node):
                flagged.append(f"{path.name}:{node.lineno}: {node.value!r}")
    assert not flagged, "\n".join(flagged)


def _is_docstring(tree, node) -> bool:
    for parent in ast.walk(tree):
        body = getattr(parent, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and body[0].value is node:
            return True
    return False


def test_cli_maps_parameters_back_to_flags(tmp_path, cli):
    sizes = tmp_path / "sizes.json"
    sizes.write_text(json.dumps({"a": 1, "b": 2}))
    code, _, err = cli("solve", "--method", "temperature", "--sizes", sizes)
    assert code == 2 and "--temperature" in err and len(err.strip().splitlines()) == 1
    aff = tmp_path / "a.npy"
    np.save(aff, np.zeros((2, 2)))
    code, _, err = cli("solve", "--affinity", aff, "--unary", "given")
    assert code == 2 and "--utilities" in err and len(err.strip().splitlines()) == 1


def test_max_batch_tokens_reach_scoring_and_evaluation(tmp_path, monkeypatch):
    """The config's token budgets are what the scores and eval stages pass on."""
    import taskpgm.models.evaluate as evaluate_mod
    import taskpgm.models.scoring as scoring_mod
    from taskpgm.pipeline import make_runner

    seen = {}
    monkeypatch.setattr(scoring_mod, "score_pool",
                        lambda *a, **k: seen.setdefault("scores", k["max_batch_tokens"]))
    monkeypatch.setattr(evaluate_mod, "evaluate_model",
                        lambda *a, **k: seen.setdefault("eval", k["max_batch_tokens"]) and {})
    # (the eval stage then records an evaluation of no tasks)
    cfg = config_from_dict({"run": {"dir": str(tmp_path / "run")},
                            "pool": {"families": ["reverse", "code"], "scale": 0.02},
                            "scoring": {"max_batch_tokens": 321},
                            "evaluate": {"max_batch_tokens": 123}})
    ctx, runner = make_runner(cfg, progress=False)
    stages = {s.name: s for s in runner.stages}
    stages["pool"].run()
    stages["base"].run()
    ctx.paths.experts.mkdir(parents=True)
    stages["scores"].run()
    stages["eval:base"].run()
    assert seen == {"scores": 321, "eval": 123}
    _refused({"scoring": {"max_batch_tokens": 0}}, "max_batch_tokens")
