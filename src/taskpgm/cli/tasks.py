"""CLI commands: ``taskpgm tasks import|bigbench|synth|stats``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taskpgm.cli.common import console, err_console

tasks_app = typer.Typer(help="Build and inspect task pools.", no_args_is_help=True)

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Pool directory to write.")]
ProbeFrac = Annotated[float, typer.Option(help="Fraction of each task for the probe split.")]
EvalFrac = Annotated[float, typer.Option(help="Fraction of each task for the eval split.")]
ProbeMax = Annotated[int, typer.Option(help="At most this many probe examples per task.")]
Strict = Annotated[bool, typer.Option(help="Leakage between splits is an error, not removed.")]


def _report(pool_dir: Path, n_tasks: int, duplicates: int = 0, leaked: int = 0,
            leaked_prompts: list[str] | None = None) -> None:
    console.print(f"wrote pool {pool_dir} ({n_tasks} tasks)")
    if duplicates:
        err_console.print(f"removed {duplicates} duplicate examples")
    if leaked:
        err_console.print(f"removed {leaked} examples whose prompt was also in another split:")
        for p in leaked_prompts or []:
            err_console.print(f"  {p}")


@tasks_app.command("import")
def import_cmd(
    sources: Annotated[list[Path], typer.Argument(help="JSONL/JSON files, directories, or a saved HF dataset.")],
    out: OutOpt,
    task_column: Annotated[str | None, typer.Option(help="HF dataset column naming the task.")] = None,
    prompt_field: Annotated[str | None, typer.Option(help="Field/column holding the prompt.")] = None,
    response_field: Annotated[str | None, typer.Option(help="Field/column holding the response.")] = None,
    family_pattern: Annotated[str | None, typer.Option(
        help="Regex searched in each task name: its first group (else the whole match) is the "
        "task's family; unmatched names are their own family. E.g. '^(.*)_template_\\d+$'.")] = None,
    family_field: Annotated[str | None, typer.Option(
        help="Field/column of the records naming the task's family (all rows of a task must agree).")] = None,
    probe_fraction: ProbeFrac = 0.1,
    eval_fraction: EvalFrac = 0.1,
    probe_max: ProbeMax = 100,
    strict: Strict = False,
) -> None:
    """Import tasks from JSONL/JSON files or a Hugging Face dataset saved on disk."""
    from taskpgm.errors import InputError
    from taskpgm.tasks.importers import ColumnMap, compile_family_pattern, import_sources
    from taskpgm.tasks.splits import SplitConfig

    if family_pattern is not None and family_field is not None:
        raise InputError("--family-pattern and --family-field exclude each other; give one")
    pattern = (compile_family_pattern(family_pattern, "--family-pattern")
               if family_pattern is not None else None)
    cfg = SplitConfig(probe_fraction=probe_fraction, eval_fraction=eval_fraction,
                      probe_max=probe_max, strict=strict)
    result = import_sources(sources, out, split=cfg, task_column=task_column,
                            columns=ColumnMap(prompt=prompt_field, response=response_field),
                            family_pattern=pattern, family_field=family_field)
    r = result.report
    _report(out, len(result.pool.names), r.duplicates, r.leaked, r.leaked_prompts)


@tasks_app.command("bigbench")
def bigbench_cmd(
    out: OutOpt,
    tasks: Annotated[list[str] | None, typer.Option("--tasks", help="BIG-bench task names (training).")] = None,
    heldout: Annotated[list[str] | None, typer.Option(help="BIG-bench tasks held out for evaluation.")] = None,
    default_suite: Annotated[bool, typer.Option(help="Use the default suite (train tasks + BBH held out).")] = False,
    sdist: Annotated[Path | None, typer.Option(help="A local bigbench sdist instead of the cache.")] = None,
    max_examples: Annotated[int | None, typer.Option(help="Keep at most this many examples per task.")] = None,
    probe_fraction: ProbeFrac = 0.1,
    eval_fraction: EvalFrac = 0.1,
    probe_max: ProbeMax = 100,
) -> None:
    """Build a pool from BIG-bench JSON tasks (downloads the bigbench sdist once)."""
    from taskpgm.errors import InputError
    from taskpgm.tasks.bigbench import build_bigbench_pool
    from taskpgm.tasks.bigbench import default_suite as suite
    from taskpgm.tasks.splits import SplitConfig

    train, held = list(tasks or []), list(heldout or [])
    if default_suite:
        s = suite()
        train, held = train + s["train"], held + s["heldout"]
    if not train and not held:
        raise InputError("name tasks with --tasks (or --heldout, or --default-suite)")
    cfg = SplitConfig(probe_fraction=probe_fraction, eval_fraction=eval_fraction, probe_max=probe_max)
    pool = build_bigbench_pool(train, out, heldout=held, split=cfg, sdist=sdist,
                               max_examples=max_examples)
    _report(out, len(pool.names))


@tasks_app.command("synth")
def synth_cmd(
    out: OutOpt,
    seed: Annotated[int, typer.Option(min=0, help="Random seed (same seed, same bytes).")] = 0,
    families: Annotated[list[str] | None, typer.Option("--family", help="Skill families to include.")] = None,
    scale: Annotated[float, typer.Option(help="Multiply every training split's size.")] = 1.0,
    suite: Annotated[str, typer.Option(help="default (4 families, 1-5 templates) or "
                                       "redundancy (8 skills, 1-10 near-identical "
                                       "templates, 2 held out per skill).")] = "default",
) -> None:
    """Write a built-in synthetic suite (skill families x template variants)."""
    from taskpgm.tasks.synth import build_synthetic_pool

    pool = build_synthetic_pool(out, seed=seed, families=families or None, scale=scale,
                                suite=suite)
    _report(out, len(pool.names))


@tasks_app.command("stats")
def stats_cmd(pool_dir: Annotated[Path, typer.Argument(help="Pool directory.")]) -> None:
    """Show a table of the pool's tasks: role, family, split sizes, mean lengths."""
    from rich.console import Console
    from rich.table import Table

    from taskpgm.tasks.pool import Pool
    from taskpgm.tasks.stats import pool_stats

    rows = pool_stats(Pool.load(pool_dir))
    table = Table(title=f"pool {pool_dir}")
    for col in ("task", "role", "family", "kind", "train", "probe", "eval",
                "prompt chars", "resp chars", "prompt words", "resp words"):
        table.add_column(col, justify="left" if col in ("task", "role", "family", "kind") else "right")
    for r in rows:
        table.add_row(r.name, r.role, r.family or "-", r.kind, *(str(r.counts[s]) for s in ("train", "probe", "eval")),
                      f"{r.prompt_chars:.1f}", f"{r.response_chars:.1f}",
                      f"{r.prompt_words:.1f}", f"{r.response_words:.1f}")
    # A wide console so task names are never cut, even when stdout is not a terminal.
    Console(highlight=False, width=max(console.width, 160)).print(table)


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the main app."""
    app.add_typer(tasks_app, name="tasks")
