"""Run the whole taskpgm pipeline from one config, resumably.

``run_pipeline(cfg)`` saves the resolved config as ``run/config.yaml``, builds the stage
graph (:mod:`taskpgm.pipeline.stages`) and runs it with the fingerprinting runner
(:mod:`taskpgm.pipeline.framework`): finished stages whose inputs did not change are
skipped, an interrupted stage resumes, and a changed config field re-runs only the
stages that read it and those downstream.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from taskpgm.config import Config, save_config
from taskpgm.pipeline.framework import PlanItem, Runner, RunSummary, Stage
from taskpgm.pipeline.stages import BASE_EVAL, PipelineContext, RunPaths, build_stages


def make_runner(cfg: Config, run_dir: str | Path | None = None, progress: bool = True
                ) -> tuple[PipelineContext, Runner]:
    ctx = PipelineContext(cfg, run_dir, progress=progress)
    return ctx, Runner(ctx.paths.root, build_stages(ctx))


def run_pipeline(cfg: Config, run_dir: str | Path | None = None, *,
                 console: Console | None = None, progress: bool = True) -> RunSummary:
    console = console or Console(highlight=False)
    ctx, runner = make_runner(cfg, run_dir, progress)
    ctx.paths.root.mkdir(parents=True, exist_ok=True)
    save_config(cfg, ctx.paths.config)

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
    "make_runner",
    "run_pipeline",
]
