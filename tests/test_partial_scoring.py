"""scoring.fraction < 1 in the pipeline: only the planned (expert, task) pairs are scored
(diagonal, base row and held-out targets always), the affinity completes the rest and
records which pairs were estimated; settings that need the missing scores are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from taskpgm.config import StrategyConfig, config_from_dict
from taskpgm.errors import ConfigError

CFG = {
    "pool": {"source": "synthetic", "families": ["reverse", "code", "sort"], "scale": 0.1},
    "model": {"tiny": {"n_layer": 1, "n_embd": 32, "n_head": 2, "vocab_size": 128}},
    "experts": {"steps": 3, "batch_size": 4}, "scoring": {"fraction": 0.5},
    "sample": {"budget": 40}, "train": {"steps": 3, "batch_size": 4},
    "evaluate": {"max_examples": 4},
    "strategies": [{"name": "uniform", "method": "uniform"},
                   {"name": "taskpgm", "method": "taskpgm"},
                   {"name": "mm", "method": "mixmin"}],
}


@pytest.mark.slow
def test_half_the_pairs_are_scored_and_the_rest_completed(tmp_path):
    pytest.importorskip("torch")
    from taskpgm.pipeline import run_pipeline
    from taskpgm.scores import shard_path

    cfg = config_from_dict({**CFG, "run": {"dir": str(tmp_path / "run")}}, "c.yaml")
    run_pipeline(cfg, progress=False)
    run = tmp_path / "run"
    pool = json.loads((run / "pool" / "pool.json").read_text())["tasks"]
    train = [t["name"] for t in pool if t["role"] == "train"]
    heldout = [t["name"] for t in pool if t["role"] == "heldout"]
    aff = np.load(run / "affinity.npz")
    unscored = json.loads(str(aff["provenance"]))["unscored_pairs"]
    n = len(train)
    assert 0.3 * n * n < len(unscored) < 0.7 * n * n
    for e, t in unscored:
        assert e != t and not shard_path(run / "scores", e, t).is_file()
    for t in train + heldout:  # base row and held-out targets: always scored
        assert shard_path(run / "scores", "base", t).is_file()
    for e in train:
        assert shard_path(run / "scores", e, e).is_file()
        for t in heldout:
            assert shard_path(run / "scores", e, t).is_file()
    assert np.isfinite(aff["matrix"]).all()
    # Bootstrap intervals by default, widened by the completion's error where it estimated.
    assert np.isfinite(aff["lower"]).all() and np.isfinite(aff["upper"]).all()
    index = {t: i for i, t in enumerate(train)}
    for e, t in unscored:
        i, j = index[e], index[t]
        assert aff["lower"][i, j] < aff["matrix"][i, j] < aff["upper"][i, j]
    assert f"{len(unscored)} of {n * n} (expert, task) pairs were not scored" in \
        (run / "report.html").read_text()
    mix = json.loads((run / "mixture.json").read_text())
    assert abs(sum(mix["weights"]) - 1) < 1e-9 and len(mix["weights"]) == n
    # The split-half check: the same mixture from half the scored pairs, and how far it is.
    half = np.load(run / "affinity_half.npz")
    split = json.loads(str(half["provenance"]))["split_half"]
    scored_off = n * (n - 1) - len(unscored)
    assert split == {"dropped_pairs": scored_off // 2, "of_scored": scored_off}
    assert not np.array_equal(half["matrix"], aff["matrix"])
    l1 = mix["diagnostics"]["split_half_l1"]
    # The recorded distance is the main mixture's solved again on the half affinity.
    from taskpgm.mixture.record import Mixture
    from taskpgm.pipeline.stages import SPLIT_HALF_WARN, PipelineContext, solve_strategy

    main = StrategyConfig(name="mixture", method="taskpgm", params={})
    again = solve_strategy(PipelineContext(cfg), main, affinity=run / "affinity_half.npz")
    assert l1 == pytest.approx(float(np.abs(Mixture.load(run / "mixture.json").weights
                                            - again.weights).sum()), abs=1e-12) and l1 > 0
    checks = {c["name"]: c for c in json.loads((run / "checks.json").read_text())}
    check = checks["partial scoring has settled the mixture"]
    assert check["ok"] is (l1 <= SPLIT_HALF_WARN) and f"L1 {l1:.3f}" in check["detail"]
    # Switched to full scoring: the rest is scored and the split-half file goes.
    full = config_from_dict({**CFG, "scoring": {"fraction": 1.0},
                             "run": {"dir": str(run)}}, "c.yaml")
    run_pipeline(full, progress=False)
    assert not (run / "affinity_half.npz").exists()
    assert "split_half_l1" not in json.loads((run / "mixture.json").read_text())["diagnostics"]
    assert "unscored_pairs" not in json.loads(str(np.load(run / "affinity.npz")["provenance"]))


def test_the_split_half_check_warns_above_its_threshold():
    from taskpgm.mixture.record import Mixture
    from taskpgm.pipeline.reporting import check_partial_scoring_settled

    def check(l1):
        return check_partial_scoring_settled(Mixture("taskpgm", ["a", "b"], [0.5, 0.5],
                                                     diagnostics={"split_half_l1": l1}))
    assert check(0.05).ok is True
    bad = check(0.3)
    assert bad.ok is False and "scoring.fraction" in bad.detail
    assert check_partial_scoring_settled(Mixture("taskpgm", ["a"], [1.0])).ok is None


def test_settings_that_need_every_score_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="scoring.fraction < 1 completes"):
        config_from_dict({**CFG, "affinity": {"metric": "ce-gap"}}, "c.yaml")
    # Intervals stay on by default: estimated entries carry the completion's error.
    assert config_from_dict(CFG, "c.yaml").affinity.bootstrap == 100


@pytest.mark.slow
def test_training_targets_under_partial_scoring_are_refused_before_the_experts(tmp_path,
                                                                              capsys):
    pytest.importorskip("torch")
    import yaml

    from taskpgm.cli import run as cli_run

    cfg = {**CFG, "run": {"dir": str(tmp_path / "run")},
           "strategies": [{"name": "mm", "method": "mixmin", "params": {"targets": "train"}}]}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert cli_run(["run", str(path), "--quiet"]) == 2
    assert "is a target (mixture.targets or a mixmin" in capsys.readouterr().err
    assert not (tmp_path / "run" / "experts").exists()


def test_a_fraction_too_small_to_complete_is_refused_before_the_experts(tmp_path, capsys):
    pytest.importorskip("torch")
    import yaml

    from taskpgm.cli import run as cli_run

    cfg = {**CFG, "run": {"dir": str(tmp_path / "run")},
           "pool": {"source": "synthetic", "families": ["reverse", "code"], "scale": 0.05},
           "scoring": {"fraction": 0.2}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert cli_run(["run", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "scoring.fraction 0.2 plans 1 of the 30 off-diagonal" in err
    assert "use scoring.fraction >= 0.27" in err
    assert not (tmp_path / "run" / "experts").exists()


def test_the_split_half_drops_whole_task_pairs_under_pairs_sampling():
    from taskpgm.pipeline.stages import split_half_dropped

    names = [f"t{i}" for i in range(8)]
    scored = [(a, b) for a in names for b in names if a < b]
    scored = sorted(scored + [(b, a) for a, b in scored])
    dropped = split_half_dropped(scored, "pairs", seed=3)
    assert len(dropped) == len(scored) // 2
    assert all((b, a) in dropped for a, b in dropped)  # both directions together
    directed = split_half_dropped(scored, "balanced", seed=3)
    assert len(directed) == len(scored) // 2
    assert any((b, a) not in directed for a, b in directed)  # pair by pair otherwise
    assert dropped == split_half_dropped(scored, "pairs", seed=3)  # seeded
