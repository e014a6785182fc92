"""Experts trained on Ray (``experts.executor: ray``, local cluster, 2 CPUs) are the bytes
local training writes; switching the executor retrains nothing; a killed worker costs
only its expert, which a re-run trains."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from taskpgm.config import config_from_dict
from taskpgm.errors import ConfigError, TaskPGMError

pytest.importorskip("torch")

TASKS = ("upper", "reverse", "copy")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny dir pool (three training tasks, "last" held out) and a tiny base model."""
    from taskpgm.models.tiny import TinyConfig, build_tiny_model
    from taskpgm.models.toy import write_toy_pool

    tmp = tmp_path_factory.mktemp("inputs")
    pool = write_toy_pool(tmp / "pool", (*TASKS, "last"), heldout=("last",), n_train=8,
                          n_probe=3, n_eval=2)
    base = build_tiny_model(pool, tmp / "base", seed=0, config=TinyConfig(
        vocab_size=128, n_layer=1, n_embd=32, n_head=2, n_positions=64))
    return pool, base


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray cluster whose workers kill themselves (os._exit: a lost worker, not an
    exception) when asked to train an expert named by a file in the returned folder."""
    ray = pytest.importorskip("ray")
    kill = tmp_path_factory.mktemp("kill")

    def setup_hook(kill=str(kill)):
        from taskpgm.models import train

        real = train.train_model

        def train_model(*args, **kwargs):
            if os.path.exists(os.path.join(kill, (kwargs.get("extra_info") or {})["task"])):
                os._exit(1)
            return real(*args, **kwargs)
        train.train_model = train_model

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": setup_hook})
    yield kill
    ray.shutdown()


def _cfg(run: Path, pool: Path, base: Path, **experts):
    return config_from_dict({
        "run": {"dir": str(run), "seed": 0}, "pool": {"source": "dir", "path": str(pool)},
        "model": {"base": str(base)}, "experts": {"steps": 2, "batch_size": 4, **experts},
        "affinity": {"bootstrap": 0}, "sample": {"budget": 20},
        "evaluate": {"max_examples": 2}, "report": {"enabled": False}, "strategies": []},
        "test.yaml")


def _run(cfg):
    from taskpgm.pipeline import run_pipeline

    return run_pipeline(cfg, progress=False)


def _files(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file()}


def _stats(d: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(d).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.ray
def test_ray_experts_are_the_bytes_local_training_writes(tmp_path, inputs, cluster):
    from taskpgm.models.train import train_experts

    pool, base = inputs
    kw = {"steps": 2, "batch_size": 4, "seed": 3, "progress": False,
          "extra": {t: {"identity": f"id-{t}"} for t in TASKS}}
    train_experts(pool, base, tmp_path / "local", **kw)
    results = train_experts(pool, base, tmp_path / "ray", executor="ray", **kw)
    assert sorted(results) == sorted(TASKS) and all(r is not None for r in results.values())
    local, remote = _files(tmp_path / "local"), _files(tmp_path / "ray")
    assert sorted(local) == sorted(remote)
    assert {f"{t}/model.safetensors" for t in TASKS} <= set(local)
    for rel in local:
        assert local[rel] == remote[rel], rel


@pytest.mark.slow
def test_switching_the_executor_on_a_finished_run_trains_nothing(tmp_path, inputs,
                                                                 monkeypatch):
    from taskpgm.models import experts_ray
    from taskpgm.pipeline.identity import identities
    from taskpgm.pipeline.stages import PipelineContext

    pool, base = inputs
    run = tmp_path / "run"
    _run(_cfg(run, pool, base))
    before = _stats(run / "experts")

    def no_ray(*_a, **_k):
        raise AssertionError("trained on Ray")
    monkeypatch.setattr(experts_ray, "train_on_ray", no_ray)
    ray_cfg = _cfg(run, pool, base, executor="ray", ray_address="ray://nowhere:1")
    # The same identities: an expert is the same whether trained here or on Ray.
    assert identities(PipelineContext(ray_cfg, run)).experts == \
        identities(PipelineContext(_cfg(run, pool, base), run)).experts
    summary = _run(ray_cfg)
    assert summary.ran == []
    assert _stats(run / "experts") == before
    # Nor does moving the scoring to Ray: where a shard is computed does not change it.
    data = ray_cfg.model_dump(mode="json")
    data["scoring"].update(executor="ray", ray_address="ray://nowhere:1")
    assert _run(config_from_dict(data, "test.yaml")).ran == []


@pytest.mark.slow
@pytest.mark.ray
def test_a_killed_worker_costs_only_its_expert(tmp_path, inputs, cluster):
    pool, base = inputs
    local, run = tmp_path / "local", tmp_path / "run"
    _run(_cfg(local, pool, base))
    cfg = _cfg(run, pool, base, executor="ray")
    (cluster / "reverse").touch()
    try:
        with pytest.raises(TaskPGMError) as err:
            _run(cfg)
    finally:
        (cluster / "reverse").unlink()
    msg = str(err.value)
    assert len(msg.splitlines()) == 1 and "reverse" in msg and "1 of 3" in msg
    assert "upper" not in msg and "copy" not in msg
    assert not (run / "experts" / "reverse").exists()
    kept = {t: _stats(run / "experts" / t) for t in ("upper", "copy")}
    assert all(kept.values())

    _run(cfg)  # resumes: trains reverse only
    assert {t: _stats(run / "experts" / t) for t in ("upper", "copy")} == kept
    # Every expert, the one trained after the kill included, is the local run's bytes.
    assert _files(run / "experts") == _files(local / "experts")


def test_config_refuses_an_unknown_expert_executor():
    with pytest.raises(ConfigError, match=r"experts\.executor"):
        config_from_dict({"experts": {"executor": "spark"}}, "test.yaml")


def test_cli_refuses_an_unknown_expert_executor(tmp_path, cli):
    code, _, err = cli("experts", "train", "--pool", tmp_path / "pool", "--base",
                       tmp_path / "base", "--out", tmp_path / "e", "--executor", "spark")
    assert code == 2 and "unknown executor" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "e").exists()
