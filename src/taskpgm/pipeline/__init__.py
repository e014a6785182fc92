"""Run the whole taskpgm pipeline from one config, resumably.

``run_pipeline(cfg)`` saves the resolved config as ``run/config.yaml``, builds the stage
graph (:mod:`taskpgm.pipeline.stages`) and runs it with the fingerprinting runner
(:mod:`taskpgm.pipeline.framework`): finished stages whose inputs did not change are
skipped, an interrupted stage resumes, and a changed config field re-runs only the
stages that read it and those downstream.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from taskpgm.config import Config, dump_config
from taskpgm.errors import InputError
from taskpgm.io import atomic_write_text
from taskpgm.pipeline import ownership
from taskpgm.pipeline.framework import STAGES_FILE, PlanItem, Runner, RunSummary, Stage
from taskpgm.pipeline.lock import LOCK_FILE, run_lock
from taskpgm.pipeline.stages import (
    BASE_EVAL,
    PipelineContext,
    RunPaths,
    build_stages,
    preflight,
)
from taskpgm.portable import run_root


def make_runner(cfg: Config, run_dir: str | Path | None = None, progress: bool = True
                ) -> tuple[PipelineContext, Runner]:
    ctx = PipelineContext(cfg, run_dir, progress=progress)
    return ctx, Runner(ctx.paths.root, build_stages(ctx))


def run_pipeline(cfg: Config, run_dir: str | Path | None = None, *,
                 console: Console | None = None, progress: bool = True,
                 after: Callable[[PipelineContext], None] | None = None) -> RunSummary:
    """Run every stage that is not up to date; ``after`` runs while the lock is still
    held (so what it reads, e.g. the results it prints, is this run's)."""
    console = console or Console(highlight=False)
    root = Path(run_dir) if run_dir is not None else Path(cfg.run.dir)
    _check_run_dir(root)
    root.mkdir(parents=True, exist_ok=True)
    with run_lock(root):
        # A killed run's half-written record or config copy (never the current ones).
        ownership.remove_sibling_temps(root, (STAGES_FILE, "config.yaml", LOCK_FILE))
        # Read the record only under the lock: another run may just have finished.
        ctx, runner = make_runner(cfg, root, progress)
        check_plan(ctx, runner, runner.plan())
        atomic_write_text(ctx.paths.config, recorded_config_text(cfg))
        with run_root(root):
            summary = _run(runner, console)
        if after is not None:
            after(ctx)
        return summary


def recorded_config_text(cfg: Config) -> str:
    """run/config.yaml: the config with every input path made absolute, so the record
    (and ``taskpgm report RUN``) means the same files from any working directory."""
    def absolute(p: str | None) -> str | None:
        return None if p is None else str(Path(p).absolute())

    data = cfg.model_dump(mode="python")
    pool = data["pool"]
    pool["path"] = absolute(pool["path"])
    pool["paths"] = [absolute(p) for p in pool["paths"]]
    if data["model"]["base"] != "tiny":
        data["model"]["base"] = absolute(data["model"]["base"])
    data["mixture"]["utilities"] = absolute(data["mixture"]["utilities"])
    for st in data["strategies"]:
        for key in ("weights", "utilities"):
            if isinstance(st["params"].get(key), str):
                st["params"][key] = absolute(st["params"][key])
    return dump_config(Config.model_validate(data))


def finished_run(run_dir: Path, cfg: Config) -> PipelineContext:
    """The context of a run directory whose every stage but the report is up to date;
    otherwise one line naming the first stage that is not (the report must never mix
    a half-finished run's files)."""
    ctx, runner = make_runner(cfg, run_dir, progress=False)
    for item in runner.plan():
        if item.action != "skip" and item.stage.name != "report":
            raise InputError(f"{run_dir}: not finished (stage {item.stage.name}: "
                             f"{item.reason}); run `taskpgm run {ctx.paths.config}` first")
    return ctx


def plan_pipeline(cfg: Config, run_dir: str | Path | None = None) -> list[PlanItem]:
    """What a run would do, after every check a run would make before its first stage
    (``taskpgm run --plan``); runs nothing, writes nothing."""
    ctx, runner = make_runner(cfg, run_dir, progress=False)
    _check_run_dir(ctx.paths.root)
    items = runner.plan()
    check_plan(ctx, runner, items)
    return items


def _check_run_dir(root: Path) -> None:
    for p in (root, *root.absolute().parents):
        if p.exists() and not p.is_dir():
            where = "" if p == root else f" ({p} is a file)"
            raise InputError(f"{root}: run.dir is not a directory{where}")


def check_plan(ctx: PipelineContext, runner: Runner, items: list[PlanItem]) -> None:
    """Refuse before any work: files the run would delete but did not write, and (when
    the pool is already there to read) task names and splits later stages need."""
    runner.check(items)
    if (cache := ctx.cfg.cache.dir) is not None:
        c, root = Path(cache).absolute().resolve(), ctx.paths.root.absolute().resolve()
        if c.exists() and not c.is_dir():
            raise InputError(f"{cache}: cache.dir is not a directory")
        if c == root or c.is_relative_to(root):
            raise InputError(f"{cache}: cache.dir is inside the run directory {root}; a "
                             "cache shared between runs lives outside every run directory")
    if ctx.cfg.model.base != "tiny":
        from taskpgm.models.local import check_model_dir

        try:
            check_model_dir(ctx.cfg.model.base)
        except InputError as exc:
            raise InputError(f"model.base: {exc}") from None
    pool_item = next(i for i in items if i.stage.name == "pool")
    if ctx.cfg.pool.source == "dir" or pool_item.action == "skip":
        preflight(ctx)
    if ctx.paths.config.is_file() and not runner.record_path.exists() and \
            ctx.paths.config.read_bytes() != recorded_config_text(ctx.cfg).encode("utf-8"):
        # A directory that has never held a run: a different config.yaml there is the
        # user's own (e.g. `taskpgm run my.yaml --dir .`); overwriting it would lose it.
        raise InputError(f"{ctx.paths.config}: exists and was not written by a taskpgm run; "
                         "move it away or choose another run.dir")


def _run(runner: Runner, console: Console) -> RunSummary:

    def on_event(kind: str, item: PlanItem, seconds: float | None) -> None:
        name = item.stage.name
        if kind == "skip":
            console.print(f"[dim]- {name}: up to date, skipped[/dim]")
        elif kind == "start":
            console.print(f"[bold]> {name}[/bold] [dim]({item.reason})[/dim]")
        else:
            console.print(f"[green]  {name} done[/green] in {seconds:.1f}s")

    return runner.run(on_event)


__all__ = [
    "BASE_EVAL",
    "PipelineContext",
    "RunPaths",
    "RunSummary",
    "Runner",
    "Stage",
    "finished_run",
    "make_runner",
    "plan_pipeline",
    "recorded_config_text",
    "run_pipeline",
]
