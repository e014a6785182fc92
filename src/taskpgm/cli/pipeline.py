"""CLI commands: ``init``, ``run``, ``demo``, ``report`` (the end-to-end pipeline)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taskpgm.cli.common import console
from taskpgm.errors import InputError


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the main app."""
    app.command("init")(init)
    app.command("run")(run)
    app.command("demo")(demo)
    app.command("report")(report)


def init(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the config.")] = Path(
        "config.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write an annotated YAML config with every field and its default."""
    from taskpgm.config import annotated_yaml
    from taskpgm.io import atomic_write_text

    if out.exists() and not force:
        raise InputError(f"{out}: already exists (pass --force to overwrite)")
    atomic_write_text(out, annotated_yaml())
    console.print(f"wrote {out}; edit it, then run: taskpgm run {out}")


def run(
    config: Annotated[Path, typer.Argument(help="The YAML config (see `taskpgm init`).")],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a field, e.g. --set sample.budget=800 (repeatable).")] = None,
    run_dir: Annotated[Path | None, typer.Option("--dir", help="Run directory (default: "
                                                 "run.dir of the config).")] = None,
    plan: Annotated[bool, typer.Option("--plan", help="Show what would run, run nothing.")
                    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """Run the pipeline: pool, experts, scores, affinity, mixtures, data, training, eval, report."""
    from taskpgm.config import load_config

    cfg = load_config(config, set_ or [])
    if run_dir is not None:
        cfg.run.dir = str(run_dir)
    _execute(cfg, plan=plan, progress=not quiet)


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory.")] = Path("demo-run"),
    seed: Annotated[int, typer.Option(help="Seed of the suite, models and sampling.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """The built-in synthetic suite and tiny model, end to end, every strategy on one budget."""
    from taskpgm.pipeline.demo import demo_config

    _execute(demo_config(out, seed), plan=False, progress=not quiet)


def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by `taskpgm run`.")],
) -> None:
    """Rebuild report.html (and its PNGs) from a finished run directory."""
    from taskpgm.config import load_config
    from taskpgm.pipeline import finished_run
    from taskpgm.pipeline.lock import run_lock
    from taskpgm.pipeline.reporting import report_for_run

    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise InputError(f"{cfg_path}: not found; is {run_dir} a taskpgm run directory?")
    cfg = load_config(cfg_path)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: not a directory")
    # Under the run lock, and only from a run whose stages are all up to date.
    with run_lock(run_dir):
        ctx = finished_run(run_dir, cfg)
        out = report_for_run(ctx)
    console.print(f"wrote {out}")


def _execute(cfg, *, plan: bool, progress: bool) -> None:
    from taskpgm.pipeline import plan_pipeline, run_pipeline

    if plan:
        for item in plan_pipeline(cfg):
            console.print(f"{item.action:>6}  {item.stage.name}  [dim]{item.reason}[/dim]")
        return
    run_pipeline(cfg, console=console, progress=progress, after=_print_results)


def _print_results(ctx) -> None:
    from taskpgm.pipeline.demo import auto_lines, checks_table, results_table

    table = results_table(ctx)
    if table is not None:
        console.print(table)
    for line in auto_lines(ctx):
        console.print(line, markup=False)
    checks = checks_table(ctx.paths.root)
    if checks is not None:
        console.print(checks)
    if ctx.paths.report.is_file():
        console.print(f"report: {ctx.paths.report}")
