"""Stage fingerprints and resume logic of the pipeline runner (no models involved)."""

from __future__ import annotations

import json
import shutil

import pytest

from taskpgm.config import Config
from taskpgm.pipeline import make_runner
from taskpgm.pipeline.framework import Runner, Stage, fingerprints


def _chain(log: list[str], tmp_path, payloads: dict[str, object]) -> list[Stage]:
    def make(name: str):
        def run() -> None:
            log.append(name)
            (tmp_path / f"{name}.out").write_text(name)
        return run

    return [
        Stage("a", make("a"), payloads.get("a"), outputs=("a.out",)),
        Stage("b", make("b"), payloads.get("b"), deps=("a",), outputs=("b.out",)),
        Stage("c", make("c"), payloads.get("c"), deps=("b",), outputs=("c.out",)),
        Stage("d", make("d"), payloads.get("d"), deps=("a",), outputs=("d.out",)),
    ]


def test_rerun_skips_everything(tmp_path):
    log: list[str] = []
    Runner(tmp_path, _chain(log, tmp_path, {})).run()
    assert log == ["a", "b", "c", "d"]
    log.clear()
    summary = Runner(tmp_path, _chain(log, tmp_path, {})).run()
    assert log == [] and summary.skipped == ["a", "b", "c", "d"]


def test_changed_payload_reruns_only_that_stage_and_downstream(tmp_path):
    log: list[str] = []
    Runner(tmp_path, _chain(log, tmp_path, {"b": 1})).run()
    log.clear()
    Runner(tmp_path, _chain(log, tmp_path, {"b": 2})).run()
    assert log == ["b", "c"]  # "a" upstream and "d" on another branch untouched


def test_interrupted_stage_resumes_only_if_resumable(tmp_path):
    calls: list[str] = []

    def boom() -> None:
        (tmp_path / "partial").mkdir(exist_ok=True)
        (tmp_path / "partial" / "shard1").write_text("x")
        raise KeyboardInterrupt

    def finish() -> None:
        calls.append("kept" if (tmp_path / "partial" / "shard1").exists() else "fresh")
        (tmp_path / "partial").mkdir(exist_ok=True)

    for resumable, expect in ((True, "kept"), (False, "fresh")):
        calls.clear()
        (tmp_path / "stages.json").unlink(missing_ok=True)
        shutil.rmtree(tmp_path / "partial", ignore_errors=True)
        with pytest.raises(KeyboardInterrupt):
            Runner(tmp_path, [Stage("s", boom, outputs=("partial",), resumable=resumable)]).run()
        rec = json.loads((tmp_path / "stages.json").read_text())
        assert rec["stages"]["s"]["status"] == "running"
        Runner(tmp_path, [Stage("s", finish, outputs=("partial",), resumable=resumable)]).run()
        assert calls == [expect]


def test_missing_output_reruns_stage_and_downstream(tmp_path):
    log: list[str] = []
    Runner(tmp_path, _chain(log, tmp_path, {})).run()
    (tmp_path / "b.out").unlink()
    log.clear()
    Runner(tmp_path, _chain(log, tmp_path, {})).run()
    assert log == ["b", "c"]


def test_fingerprint_depends_on_upstream():
    def noop() -> None:
        return None

    fa = fingerprints([Stage("a", noop, 1), Stage("b", noop, 0, deps=("a",))])
    fb = fingerprints([Stage("a", noop, 2), Stage("b", noop, 0, deps=("a",))])
    assert fa["a"] != fb["a"] and fa["b"] != fb["b"]


def _fps(cfg: Config, tmp_path) -> dict[str, str]:
    _, runner = make_runner(cfg, tmp_path)
    return runner.fingerprints


@pytest.mark.parametrize(
    "section, field, value, first_changed",
    [
        ("train", "steps", 7, "train:uniform"),
        ("sample", "budget", 123, "mixture"),
        ("evaluate", "max_examples", 5, "eval:uniform"),
        ("affinity", "normalize", "sequence", "affinity"),
        ("experts", "steps", 3, "experts"),
        ("report", "path_points", 9, "report"),
    ],
)
def test_config_change_invalidates_only_downstream_stages(tmp_path, section, field, value,
                                                          first_changed):
    cfg = Config()
    before = _fps(cfg, tmp_path)
    changed = cfg.model_copy(deep=True)
    setattr(getattr(changed, section), field, value)
    after = _fps(changed, tmp_path)
    order = list(before)
    diff = [s for s in order if before[s] != after[s]]
    assert diff, "a config change must change some fingerprint"
    assert diff[0] == first_changed
    # Everything before the first changed stage in topological order is untouched.
    assert all(before[s] == after[s] for s in order[: order.index(first_changed)])


def test_one_strategy_change_leaves_the_others_alone(tmp_path):
    cfg = Config()
    before = _fps(cfg, tmp_path)
    changed = cfg.model_copy(deep=True)
    changed.strategies[2].params = {"temperature": 5.0}
    after = _fps(changed, tmp_path)
    diff = {s for s in before if before[s] != after[s]}
    name = changed.strategies[2].name
    # taskpgm-auto chooses among the strategies' trained models, so it chooses again.
    auto = "taskpgm-auto"
    assert diff == {f"mixture:{name}", f"data:{name}", f"train:{name}", f"eval:{name}", "report",
                    f"mixture:{auto}", f"data:{auto}", f"train:{auto}", f"eval:{auto}"}


def test_run_dir_is_not_part_of_any_fingerprint(tmp_path):
    a = Config()
    b = a.model_copy(deep=True)
    b.run.dir = "elsewhere"
    assert _fps(a, tmp_path) == _fps(b, tmp_path)


def test_interrupted_resumable_stage_starts_afresh_when_upstream_reruns(tmp_path):
    seen: list[bool] = []

    def up() -> None:
        (tmp_path / "up").write_text("u")

    def boom() -> None:
        (tmp_path / "part").write_text("p")
        raise KeyboardInterrupt

    def finish() -> None:
        seen.append((tmp_path / "part").exists())
        (tmp_path / "part").write_text("done")

    def stages(run) -> list[Stage]:
        return [Stage("up", up, outputs=("up",)),
                Stage("down", run, deps=("up",), outputs=("part",), resumable=True)]

    with pytest.raises(KeyboardInterrupt):
        Runner(tmp_path, stages(boom)).run()
    (tmp_path / "up").unlink()  # the upstream output vanished: it re-runs
    Runner(tmp_path, stages(finish)).run()
    assert seen == [False]


def test_auto_rule_written_out_is_the_default_and_another_rule_chooses_again(tmp_path):
    cfg = Config()
    before = _fps(cfg, tmp_path)
    auto = next(s for s in cfg.strategies if s.method == "auto")
    explicit = cfg.model_copy(deep=True)
    next(s for s in explicit.strategies if s.name == auto.name).params = {"rule": "clear"}
    assert _fps(explicit, tmp_path) == before
    other = cfg.model_copy(deep=True)
    next(s for s in other.strategies if s.name == auto.name).params = {"rule": "lowest"}
    after = _fps(other, tmp_path)
    # Only the auto strategy's own stages (it chooses again) and the report.
    assert {s for s in before if before[s] != after[s]} == {
        f"{k}:{auto.name}" for k in ("mixture", "data", "train", "eval")} | {"report"}
