"""CLI command: ``taskpgm affinity`` (scores -> affinity.npz)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from taskpgm.choices import METRICS, NORMALIZATIONS

# The choices are the library's registries (member names: the value with '-' as '_').
Metric = Enum("Metric", {m.replace("-", "_"): m for m in METRICS}, type=str)
Normalize = Enum("Normalize", {m: m for m in NORMALIZATIONS}, type=str)


def affinity(
    scores: Annotated[Path, typer.Option("--scores", help="Scores directory (taskpgm score).")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the affinity .npz.")],
    metric: Annotated[Metric, typer.Option("--metric", help="Affinity metric.")] = Metric.pmi,
    normalize: Annotated[Normalize, typer.Option(
        "--normalize", help="PMI: sum log-likelihood over the response, or per token.",
    )] = Normalize.sequence,
    bootstrap: Annotated[int, typer.Option(
        "--bootstrap", min=0, help="Bootstrap replicates for per-entry intervals (PMI).",
    )] = 0,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed for bootstrap and completion.")] = 0,
    complete: Annotated[bool, typer.Option(
        "--complete", help="Estimate unscored (expert, task) pairs (low-rank completion).",
    )] = False,
) -> None:
    """Task affinity matrix from every expert's scores on every task's probe set."""
    import numpy as np
    from rich.progress import Progress
    from rich.table import Table

    from taskpgm.affinity import compute_affinity, save_affinity
    from taskpgm.cli.common import console, err_console
    from taskpgm.errors import InputError
    from taskpgm.scores import ScoreTable

    if out.suffix.lower() != ".npz":
        raise InputError(f"{out}: --out must end in .npz")
    table = ScoreTable.load(scores)
    # Off when stderr is not a terminal: a transient bar there leaves only blank lines.
    with Progress(console=err_console, transient=True,
                  disable=not err_console.is_terminal) as bar:
        n = len(table.tasks)
        job = bar.add_task(f"affinity ({metric.value})", total=n)
        aff = compute_affinity(
            table, metric=metric.value, normalize=normalize.value, bootstrap=bootstrap,
            seed=seed, complete=complete, progress=lambda: bar.advance(job),
        )
    save_affinity(out, aff)

    m = aff.matrix
    off = m[~np.eye(aff.n, dtype=bool)]
    summary = Table(title=f"affinity -> {out}", show_header=False)
    summary.add_row("metric", aff.kind + (f" ({normalize.value})" if aff.kind == "pmi" else ""))
    summary.add_row("tasks", str(aff.n))
    if aff.provenance.get("skipped_tasks"):
        summary.add_row("skipped (no expert)", str(len(aff.provenance["skipped_tasks"])))
    summary.add_row("off-diagonal range", f"[{off.min():.4g}, {off.max():.4g}]")
    summary.add_row("off-diagonal mean", f"{off.mean():.4g}")
    if aff.lower is not None and aff.upper is not None:
        width = (aff.upper - aff.lower)[~np.eye(aff.n, dtype=bool)]
        summary.add_row(
            f"{aff.provenance.get('interval_level', 0.95):.0%} interval width",
            f"median {np.median(width):.4g}, max {width.max():.4g}",
        )
    if "completion" in aff.provenance:
        c = aff.provenance["completion"]
        summary.add_row(
            "completed pairs",
            f"{c['n_missing_pairs']} (rank {c['rank']}, held-out RMSE {c['holdout_rmse']:.3g})",
        )
    console.print(summary)
    for w in aff.provenance.get("warnings", []):
        err_console.print(f"[yellow]warning:[/yellow] {w}", soft_wrap=True)


def utilities(
    scores: Annotated[Path, typer.Option("--scores", help="Scores directory (taskpgm score --base ...).")],
    targets: Annotated[str, typer.Option(
        "--targets", help="Comma-separated target tasks (e.g. held-out tasks you evaluate on).",
    )],
    out: Annotated[Path, typer.Option("--out", help="Where to write {task: utility} JSON.")],
) -> None:
    """Target-aware utilities: each expert's per-token gain over the base model on the targets.

    Feed the file to 'taskpgm solve --unary given --utilities FILE'. Works for targets
    without an expert of their own (held-out tasks), unlike '--unary target'.
    """
    from taskpgm.affinity.utilities import base_expert_name, target_utilities
    from taskpgm.cli.common import console
    from taskpgm.io import atomic_write_json
    from taskpgm.scores import ScoreTable

    table = ScoreTable.load(scores)
    names = [t.strip() for t in targets.split(",") if t.strip()]
    base = base_expert_name(table)
    train = [e for e in table.experts if e != base and e in table.tasks]
    u = target_utilities(table, train, names)
    atomic_write_json(out, {t: float(v) for t, v in zip(train, u, strict=True)})
    console.print(f"wrote {out}: utilities of {len(train)} tasks for targets {', '.join(names)}")


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the main app."""
    from taskpgm.cli.solve import flag_errors

    # The library names its parameters (complete=True); here the user set flags.
    app.command(name="affinity")(flag_errors(affinity))
    app.command(name="utilities")(utilities)
