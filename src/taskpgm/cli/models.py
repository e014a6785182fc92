"""CLI commands: ``taskpgm models tiny``, ``taskpgm models eval``, ``taskpgm experts train``,
``taskpgm train``.

torch and transformers are imported inside the commands, so ``taskpgm --help`` and the
numeric commands stay fast and torch-free.

Defaults and flag names are the run config's (:mod:`taskpgm.config`): ``models tiny``
takes the ``model.tiny`` keys as flags (``--n-layer``, ``--n-embd``, ``--n-head``,
``--vocab-size``; the old ``--layers``, ``--dim``, ``--heads``, ``--vocab`` still work),
``experts train`` the ``experts`` section's defaults and ``train`` the ``train`` section's.
Both read the default values from :mod:`taskpgm.choices`, so building the command line
does not load the config (pydantic).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taskpgm.choices import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_LORA,
    DEFAULT_LR,
    DEFAULT_STEPS,
    EXECUTORS,
    PROMPT_FORMATS,
    TINY_N_EMBD,
    TINY_N_HEAD,
    TINY_N_LAYER,
    TINY_VOCAB_SIZE,
)
from taskpgm.cli.common import console

models_app = typer.Typer(help="Build, load and evaluate causal language models.",
                         no_args_is_help=True)
experts_app = typer.Typer(help="Fine-tune one expert per training task.", no_args_is_help=True)

PoolOpt = Annotated[Path, typer.Option("--pool", help="Task pool directory.")]
BaseOpt = Annotated[Path, typer.Option("--base", help="Base model directory (Hugging Face format).")]
StepsOpt = Annotated[int, typer.Option("--steps", help="Optimizer steps.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Examples per step.")]
LrOpt = Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW, warmup + decay).")]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, help="Random seed (same seed, same bytes).")]
LoraOpt = Annotated[bool, typer.Option("--lora/--full", help="Train LoRA adapters or all weights.")]
ScheduleOpt = Annotated[str, typer.Option("--schedule", help="Learning-rate decay: cosine or linear.")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]
FormatOpt = Annotated[str, typer.Option(
    "--prompt-format", help=f"How examples become text ({', '.join(PROMPT_FORMATS)}; "
    "config model.prompt_format): the same for training, scoring and evaluation.")]
SepOpt = Annotated[str, typer.Option(
    "--separator", help="Put between prompt and response when neither has whitespace there "
    "(prompt format 'separator'; default a newline).")]


@models_app.command("tiny")
def tiny(
    pool: PoolOpt,
    out: Annotated[Path, typer.Option("--out", help="Output model directory.")],
    seed: SeedOpt = 0,
    n_layer: Annotated[int, typer.Option(
        "--n-layer", "--layers", help="Transformer layers (model.tiny.n_layer).")] = TINY_N_LAYER,
    n_embd: Annotated[int, typer.Option(
        "--n-embd", "--dim", help="Hidden size, a multiple of --n-head (model.tiny.n_embd).")
    ] = TINY_N_EMBD,
    n_head: Annotated[int, typer.Option(
        "--n-head", "--heads", help="Attention heads (model.tiny.n_head).")] = TINY_N_HEAD,
    vocab_size: Annotated[int, typer.Option(
        "--vocab-size", "--vocab", help="Target BPE vocabulary size (model.tiny.vocab_size).")
    ] = TINY_VOCAB_SIZE,
    n_positions: Annotated[int, typer.Option(
        "--n-positions", "--positions", help="Context length (no config key).")] = 256,
) -> None:
    """Build the embedded tiny GPT-2 with a tokenizer trained on the pool (no download)."""
    from taskpgm.models.tiny import TinyConfig, build_tiny_model

    cfg = TinyConfig(vocab_size=vocab_size, n_layer=n_layer, n_embd=n_embd, n_head=n_head,
                     n_positions=n_positions)
    path = build_tiny_model(pool, out, seed=seed, config=cfg)
    console.print(f"tiny model written to {path}")


@models_app.command("eval")
def eval_model(
    model: Annotated[Path, typer.Option("--model", help="Model directory.")],
    pool: PoolOpt,
    split: Annotated[str, typer.Option(help="Split to evaluate on: train, probe or eval.")] = "eval",
    tasks: Annotated[str | None, typer.Option(help="Comma-separated task names (default all).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write results as JSON here.")] = None,
    max_new_tokens: Annotated[int, typer.Option(
        min=1, help="Greedy decoding length limit (generative tasks).")] = 32,
    max_batch_tokens: Annotated[int, typer.Option(
        min=1, help="Padded tokens per forward pass (bounds memory).")] = 8192,
    batch_size: Annotated[int | None, typer.Option(
        min=1, help="At most this many examples per forward pass.")] = None,
    prompt_format: FormatOpt = "auto",
    separator: SepOpt = "\n",
) -> None:
    """Loss per token, exact match (generative) and accuracy (multiple choice) per task."""
    from taskpgm.errors import InputError
    from taskpgm.io import atomic_write_json
    from taskpgm.models.evaluate import evaluate_model
    from taskpgm.tasks.pool import SPLITS

    if split not in SPLITS:
        raise InputError(f"--split {split!r}: unknown split (use {', '.join(SPLITS)})")


    names = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    res = evaluate_model(model, pool, names, split, max_new_tokens=max_new_tokens,
                         max_batch_tokens=max_batch_tokens, batch_size=batch_size,
                         prompt_format=prompt_format, separator=separator)
    for r in res.values():
        metric = (f"exact_match {r.exact_match:.3f}" if r.exact_match is not None
                  else f"accuracy {r.accuracy:.3f} (norm {r.accuracy_norm:.3f})")
        console.print(f"{r.task}: loss/token {r.loss_per_token:.4f}  {metric}")
    if out is not None:
        atomic_write_json(out, {k: v.to_dict() for k, v in res.items()})


@experts_app.command("train")
def experts_train(
    pool: PoolOpt,
    base: BaseOpt,
    out: Annotated[Path, typer.Option("--out", help="Experts directory (one sub-directory per task).")],
    lora: LoraOpt = DEFAULT_LORA,
    steps: StepsOpt = DEFAULT_STEPS,
    batch_size: BatchOpt = DEFAULT_BATCH_SIZE,
    lr: LrOpt = DEFAULT_LR,
    seed: SeedOpt = 0,
    schedule: ScheduleOpt = "cosine",
    tasks: Annotated[str | None, typer.Option(help="Comma-separated tasks (default: role 'train').")] = None,
    progress: ProgressOpt = True,
    prompt_format: FormatOpt = "auto",
    separator: SepOpt = "\n",
    executor: Annotated[str, typer.Option(
        "--executor", help=f"{' or '.join(EXECUTORS)} (one Ray task per expert; the same "
        "bytes as local; config experts.executor).")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", "--address", help="Ray cluster address (default: start a local one; "
        "config experts.ray_address).")] = None,
    gpus_per_task: Annotated[float, typer.Option(
        "--gpus-per-task", min=0, help="GPUs per Ray task (executor ray).")] = 0.0,
) -> None:
    """Train one expert per training task; experts already finished are skipped."""
    from taskpgm.cli.common import err_console
    from taskpgm.models.train import TrainConfig, settings_mismatch, train_experts

    names = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    if names is not None:
        names = list(dict.fromkeys(names))  # a task named twice is trained once
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, lora=lora, schedule=schedule,
                      prompt_format=prompt_format, separator=separator)
    results = train_experts(pool, base, out, tasks=names, config=cfg, seed=seed,
                            progress=progress, executor=executor, address=ray_address,
                            gpus_per_task=gpus_per_task)
    for name, r in results.items():
        if r is None:
            console.print(f"{name}: already trained, skipped")
            diffs = settings_mismatch(out / name, base, cfg)
            if diffs:
                err_console.print(f"[yellow]warning:[/yellow] {out / name} was trained with "
                                  f"{', '.join(diffs)}; delete it to retrain", soft_wrap=True)
        else:
            console.print(f"{name}: loss {r.first_loss:.3f} -> {r.final_loss:.3f} "
                          f"({r.steps} steps, {r.seconds:.1f}s)")


def train(
    data: Annotated[Path, typer.Option("--data", help="Directory with train.jsonl (or a JSONL file).")],
    base: BaseOpt,
    out: Annotated[Path, typer.Option("--out", help="Output model directory.")],
    lora: LoraOpt = DEFAULT_LORA,
    steps: StepsOpt = DEFAULT_STEPS,
    batch_size: BatchOpt = DEFAULT_BATCH_SIZE,
    lr: LrOpt = DEFAULT_LR,
    seed: SeedOpt = 0,
    schedule: ScheduleOpt = "cosine",
    progress: ProgressOpt = True,
    prompt_format: FormatOpt = "auto",
    separator: SepOpt = "\n",
) -> None:
    """Fine-tune a model on prompt/response data (e.g. a materialised mixture)."""
    from taskpgm.models.train import TrainConfig, train_model

    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, lora=lora,
                      schedule=schedule, prompt_format=prompt_format, separator=separator)
    r = train_model(base, data, out, config=cfg, lora=lora, progress=progress,
                    extra_info={"data": str(data)})
    console.print(f"model written to {out}: loss {r.first_loss:.3f} -> {r.final_loss:.3f} "
                  f"({r.steps} steps, {r.seconds:.1f}s)")


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the main app."""
    app.add_typer(models_app, name="models")
    app.add_typer(experts_app, name="experts")
    app.command("train")(train)
