"""CLI command: ``taskpgm score`` — every expert scores every task's probe split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taskpgm.cli.common import console


def score(
    pool: Annotated[Path, typer.Option("--pool", help="Task pool directory.")],
    experts: Annotated[Path, typer.Option("--experts", help="Experts directory (one per task).")],
    out: Annotated[Path, typer.Option("--out", help="Scores directory (resumed if present).")],
    base: Annotated[Path | None, typer.Option(
        "--base", help="Also score the base model, as expert 'base'.")] = None,
    executor: Annotated[str, typer.Option(help="local or ray (one Ray task per expert).")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (default: start a local one).")] = None,
    topk: Annotated[int, typer.Option(min=0, help="Also store top-k next-token log-probs (for --metric jsd/skl).")] = 0,
    max_batch_tokens: Annotated[int, typer.Option(min=1, help="Padded tokens per forward pass.")] = 8192,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if present).")] = None,
    gpus_per_task: Annotated[float, typer.Option(help="GPUs per Ray task.")] = 0.0,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
    prompt_format: Annotated[str, typer.Option(
        "--prompt-format", help="How examples become text: use the experts' own (default auto).")
    ] = "auto",
    separator: Annotated[str, typer.Option(
        "--separator", help="Prompt format 'separator': the experts' own (default a newline).")
    ] = "\n",
) -> None:
    """Score the pool's probe examples with every expert; only missing shards are computed."""
    from taskpgm.models.scoring import ScoreSettings, score_pool

    table = score_pool(pool, experts, out, executor=executor, topk=topk, include_base=base,
                       address=address, max_batch_tokens=max_batch_tokens, device=device,
                       gpus_per_task=gpus_per_task, progress=progress,
                       settings=ScoreSettings(topk=topk, prompt_format=prompt_format,
                                              separator=separator))
    run = table.manifest.metadata.get("run", {}) if table.manifest else {}
    console.print(f"scores in {out}: {len(table.experts)} experts x {len(table.tasks)} tasks "
                  f"({run.get('shards_computed', 0)} shards computed this run)")


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the main app."""
    app.command("score")(score)
