"""The run config: round trips, annotated template, one-line errors naming key and file."""

from __future__ import annotations

import pytest
import yaml

from taskpgm.config import (
    Config,
    annotated_yaml,
    config_from_dict,
    dump_config,
    load_config,
    save_config,
)
from taskpgm.errors import ConfigError


def test_annotated_template_loads_to_the_defaults_and_comments_every_field(tmp_path):
    text = annotated_yaml()
    assert config_from_dict(yaml.safe_load(text)) == Config()
    # Every field of every top-level section is preceded by a comment line.
    lines = text.splitlines()
    for section in Config.model_fields:
        if section == "strategies":
            continue
        start = lines.index(f"{section}:")
        for name in Config.model_fields[section].annotation.model_fields:
            if name == "tiny":
                continue
            idx = next(k for k in range(start, len(lines)) if lines[k].startswith(f"  {name}:"))
            assert lines[idx - 1].strip().startswith("#"), f"no comment above {section}.{name}"


def test_round_trip_of_a_modified_config(tmp_path):
    cfg = Config()
    cfg.mixture.r_rel = None
    cfg.mixture.beta = 0.25
    cfg.mixture.targets = ["a", "b"]
    cfg.sample.budget = 1234
    cfg.strategies = cfg.strategies[:2]
    path = tmp_path / "c.yaml"
    save_config(cfg, path)
    assert load_config(path) == cfg
    assert dump_config(load_config(path)) == dump_config(cfg)


def test_trade_off_defaults_to_r_rel_and_beta_alone_replaces_it(tmp_path):
    # r_rel null: the utilities' default, 1 with balanced (the default's), 0.5 otherwise.
    assert Config().mixture.r_rel is None and Config().mixture.beta is None
    import numpy as np

    from taskpgm.mixture import make_inputs

    S = np.array([[0.0, -1.0, -2.0], [-1.0, 0.0, -1.5], [-2.0, -1.5, 0.0]])
    for unary, r_rel in (("auto", 1.0), ("balanced", 1.0), ("rowsum", 0.5)):
        inp = make_inputs(S, unary=unary)
        assert inp.beta / inp.lam * 3 == pytest.approx(r_rel)
    assert make_inputs(S, r_rel=0.25).beta * 3 == pytest.approx(0.25)
    path = tmp_path / "c.yaml"
    path.write_text("mixture:\n  beta: 0.1\n")
    m = load_config(path).mixture
    assert m.r_rel is None and m.beta == 0.1 and m.lam is None
    # The saved form keeps r_rel: null, so it loads back to the same config.
    save_config(load_config(path), path)
    assert load_config(path).mixture == m


def test_init_cli_writes_a_loadable_file_and_refuses_to_overwrite(cli, tmp_path):
    out = tmp_path / "config.yaml"
    code, _, _ = cli("init", "--out", out)
    assert code == 0 and load_config(out) == Config()
    code, _, err = cli("init", "--out", out)
    assert code == 2 and "already exists" in err


@pytest.mark.parametrize(
    "text, message",
    [
        ("mixture:\n  betta: 1\n", "unknown key 'mixture.betta'"),
        ("mixtures: {}\n", "unknown key 'mixtures'"),
        ("model:\n  tiny:\n    layers: 3\n", "unknown key 'model.tiny.layers'"),
        ("strategies:\n- name: u\n  method: uniform\n  weight: 2\n",
         "unknown key 'strategies.0.weight'"),
        ("mixture:\n  beta: -1\n", "field 'mixture.beta'"),
        # r_rel = 0 is the pure-diversity end (allowed); below 0 means nothing.
        ("mixture:\n  r_rel: -0.5\n", "field 'mixture.r_rel'"),
        ("mixture:\n  r_rel: 0.5\n  lam: 2\n", "mixture.r_rel or mixture.beta/lam, not both"),
        ("mixture:\n  kernel: magic\n", "field 'mixture.kernel'"),
        ("strategies:\n- name: u\n  method: uniform\n- name: u\n  method: size\n",
         "strategy name 'u' appears twice"),
        ("pool:\n  source: dir\n", "pool.path is not set"),
        ("run: [1, 2\n", "c.yaml:"),
        ("- just a list\n", "mapping of sections"),
    ],
)
def test_bad_config_is_one_line_naming_file_and_key(tmp_path, cli, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert message in msg and str(path) in msg and "\n" not in msg
    code, _, err = cli("run", path)
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err
    assert err.count("\n") == 1


def test_overrides_are_validated_like_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sample:\n  budget: 10\n")
    cfg = load_config(path, ["sample.budget=99", "mixture.targets=[x, y]"])
    assert cfg.sample.budget == 99 and cfg.mixture.targets == ["x", "y"]
    with pytest.raises(ConfigError, match="unknown key 'sample.budgett'"):
        load_config(path, ["sample.budgett=5"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(path, ["sample.budget"])


def test_missing_config_file(cli, tmp_path):
    code, _, err = cli("run", tmp_path / "nope.yaml")
    assert code == 2 and "config file not found" in err


def test_report_cli_refuses_a_directory_that_is_not_a_run(cli, tmp_path):
    code, _, err = cli("report", tmp_path)
    assert code == 2 and "not a taskpgm run directory" not in err.splitlines()[0][:5]
    assert "config.yaml: not found" in err


def test_run_plan_runs_nothing(cli, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"run: {{dir: {tmp_path / 'run'}}}\n")
    code, out, _ = cli("run", path, "--plan")
    assert code == 0 and "pool" in out and "report" in out
    assert not (tmp_path / "run").exists()


def test_gpus_per_task_needs_ray_and_changes_no_fingerprint():
    from taskpgm.config import config_from_dict, expert_settings, scoring_settings
    from taskpgm.errors import ConfigError

    for section in ("experts", "scoring"):
        with pytest.raises(ConfigError, match=f"{section}.gpus_per_task reserves GPUs"):
            config_from_dict({section: {"gpus_per_task": 1}}, "c.yaml")
        with pytest.raises(ConfigError, match=f"{section}.gpus_per_task"):
            config_from_dict({section: {"executor": "ray", "gpus_per_task": -1}}, "c.yaml")
    plain = config_from_dict({}, "c.yaml")
    gpus = config_from_dict({"experts": {"executor": "ray", "gpus_per_task": 0.5},
                             "scoring": {"executor": "ray", "gpus_per_task": 1}}, "c.yaml")
    assert gpus.experts.gpus_per_task == 0.5 and gpus.scoring.gpus_per_task == 1
    # Where a unit runs is not what it computes: identities and fingerprints ignore it.
    assert expert_settings(gpus) == expert_settings(plain)
    assert scoring_settings(gpus) == scoring_settings(plain)


def test_the_pipeline_hands_gpus_per_task_to_the_trainer_and_the_scorer(tmp_path, monkeypatch):
    from taskpgm.config import config_from_dict
    from taskpgm.models import scoring, train
    from taskpgm.pipeline.stages import PipelineContext, stage_experts, stage_scores

    cfg = config_from_dict({"run": {"dir": str(tmp_path / "run")},
                            "experts": {"executor": "ray", "gpus_per_task": 0.5},
                            "scoring": {"executor": "ray", "gpus_per_task": 2}}, "c.yaml")
    seen = {}

    class Stop(Exception):
        pass

    def fake(name):
        def run(*args, **kwargs):
            seen[name] = kwargs.get("gpus_per_task")
            raise Stop
        return run

    monkeypatch.setattr(train, "train_experts", fake("train"))
    monkeypatch.setattr(scoring, "score_pool", fake("score"))
    from types import SimpleNamespace

    from taskpgm.pipeline import reuse

    monkeypatch.setattr(reuse, "identities", lambda ctx: SimpleNamespace(experts={}))
    monkeypatch.setattr(reuse, "fetch_experts", lambda ctx, ids: 0)
    monkeypatch.setattr(reuse, "fetch_shards", lambda ctx, ids: 0)
    ctx = PipelineContext(cfg)
    monkeypatch.setattr(PipelineContext, "pool", lambda self: None)
    for stage in (stage_experts, stage_scores):
        with pytest.raises(Stop):
            stage(ctx)
    assert seen == {"train": 0.5, "score": 2}
