"""scoring.fraction < 1 in the pipeline: only the planned (expert, task) pairs are scored
(diagonal, base row and held-out targets always), the affinity completes the rest and
records which pairs were estimated; settings that need the missing scores are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from taskpgm.config import config_from_dict
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
    assert f"{len(unscored)} of {n * n} (expert, task) pairs were not scored" in \
        (run / "report.html").read_text()
    mix = json.loads((run / "mixture.json").read_text())
    assert abs(sum(mix["weights"]) - 1) < 1e-9 and len(mix["weights"]) == n


def test_settings_that_need_every_score_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="scoring.fraction < 1 completes"):
        config_from_dict({**CFG, "affinity": {"bootstrap": 10}}, "c.yaml")
    with pytest.raises(ConfigError, match="scoring.fraction < 1 completes"):
        config_from_dict({**CFG, "affinity": {"metric": "ce-gap"}}, "c.yaml")
    assert config_from_dict(CFG, "c.yaml").affinity.bootstrap == 0  # none by default


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
