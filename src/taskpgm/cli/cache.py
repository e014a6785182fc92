"""``taskpgm cache``: look after a shared ``cache.dir``.

    taskpgm cache info DIR                       # entries and bytes per kind
    taskpgm cache prune DIR --unused-days 30     # remove what no run used for 30 days
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taskpgm.cli.common import console
from taskpgm.errors import InputError

cache_app = typer.Typer(help="Look after a shared cache.dir (experts and score shards by "
                        "identity).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    from taskpgm.cli.solve import flag_errors

    for name, fn in (("info", info), ("prune", prune)):
        cache_app.command(name=name)(flag_errors(fn))
    app.add_typer(cache_app, name="cache")


def _open(directory: Path):
    from taskpgm.pipeline.cache import KINDS, Cache

    if not directory.is_dir():
        raise InputError(f"{directory}: cache directory not found")
    if not any((directory / k).is_dir() for k in KINDS):
        raise InputError(f"{directory}: not a taskpgm cache (no {' or '.join(KINDS)}/ "
                         "folder)")
    return Cache(directory)


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def info(directory: Annotated[Path, typer.Argument(help="The cache.dir.")]) -> None:
    """Entries and their size per kind, and what killed writers left behind."""
    from taskpgm.pipeline.cache import KINDS

    survey = _open(directory).survey()
    for kind in KINDS:
        console.print(f"{kind}: {survey.entries.get(kind, 0)} entries, "
                      f"{_mb(survey.bytes.get(kind, 0))} (hard links to runs' files count in "
                      "full)", soft_wrap=True)
    console.print(f"leftover temporaries of killed writers: {len(survey.stale_temps)}, "
                  f"{_mb(sum(s for _, s in survey.stale_temps))}", soft_wrap=True)


def prune(
    directory: Annotated[Path, typer.Argument(help="The cache.dir.")],
    unused_days: Annotated[float, typer.Option(
        help="Remove entries no run has fetched or stored for this many days (0: all).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would go.")
                       ] = False,
) -> None:
    """Remove entries unused for --unused-days, and killed writers' leftovers. A run that
    needs a removed entry trains or scores it again; a run reading one meanwhile misses
    it rather than reading half of it."""
    import math

    if not (math.isfinite(unused_days) and unused_days >= 0):
        raise InputError(f"--unused-days must be a number >= 0, got {unused_days}")
    cache = _open(directory)
    survey = cache.survey(unused_days=unused_days)
    doomed = survey.unused + survey.stale_temps
    verb = "would remove" if dry_run else "removed"
    if not dry_run:
        for path, _ in doomed:
            cache.remove(path)
    console.print(f"{verb} {len(survey.unused)} entries unused for {unused_days:g} days and "
                  f"{len(survey.stale_temps)} leftover temporaries, "
                  f"{_mb(sum(s for _, s in doomed))}; kept "
                  f"{sum(survey.entries.values()) - len(survey.unused)} entries",
                  soft_wrap=True)
