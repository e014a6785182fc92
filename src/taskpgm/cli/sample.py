"""CLI command: ``taskpgm sample`` (materialise a mixture as training data)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taskpgm.choices import EXPORT_FORMATS
from taskpgm.cli.common import console


def sample(
    pool: Annotated[Path, typer.Option(help="Pool directory.")],
    mixture: Annotated[Path, typer.Option(help="mixture.json from `taskpgm solve`.")],
    budget: Annotated[int, typer.Option(help="Exact number of training examples.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")],
    seed: Annotated[int, typer.Option(min=0, help="Random seed (same seed, same bytes).")] = 0,
    allocation: Annotated[str, typer.Option(help="largest_remainder or multinomial.")] = "largest_remainder",
    max_epochs: Annotated[int | None, typer.Option(help="At most this many passes over a task.")] = None,
    format: Annotated[str, typer.Option("--format", help=f"{', '.join(EXPORT_FORMATS)}.")] = "jsonl",
    separator: Annotated[str, typer.Option(
        "--separator", help="Exports put this between a prompt and a response that meet "
        "without whitespace, as the experts were trained (default a newline).")] = "\n",
) -> None:
    """Draw exactly BUDGET examples from the pool in the mixture's proportions."""
    from taskpgm.sample import materialise

    manifest = materialise(pool, mixture, budget, out, seed=seed, allocation=allocation,
                           max_epochs=max_epochs, format=format, separator=separator)
    used = manifest.counts()
    console.print(f"wrote {manifest.budget} examples from {len(used)} tasks to {out} "
                  f"(max epochs used: {max((t.epochs for t in manifest.tasks), default=0)})")


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the main app."""
    app.command("sample")(sample)
