"""Choosing among trained mixtures by a validation split (the strategy ``auto``, D19).

Every candidate's proxy model has been scored on the same validation examples: per task,
the summed log-probability of each example's response and its number of response tokens.
A model's validation loss is the mean over tasks of each task's loss per token (every task
counts once, as in the evaluation). Each candidate's margin to a reference (``uniform``)
comes with a paired bootstrap interval over validation examples (resampled within each
task, the same draw for both models).

Two rules choose (D37). ``clear`` (the default): among the candidates whose whole interval
lies below zero (validation says they beat the reference beyond its own sampling noise),
the lowest loss; if there is none, the reference itself, so a run whose validation cannot
tell the mixtures apart keeps uniform rather than a coin-flip winner. ``lowest`` (D19):
the lowest loss, whatever its margin. Ties go to the earlier candidate.

Only numpy: the pipeline (taskpgm.pipeline.stages) does the scoring.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from taskpgm.errors import InputError

# Per candidate, per task: (logprob [m], n_tokens [m]) over the same m examples.
TaskScores = tuple[np.ndarray, np.ndarray]

BOOTSTRAP = 2000
# How auto chooses (D37): "clear" departs from the reference only on a clear validation
# margin; "lowest" takes the lowest validation loss (D19).
RULES: tuple[str, ...] = ("clear", "lowest")
DEFAULT_RULE = RULES[0]


@dataclass
class Selection:
    chosen: str
    losses: dict[str, float]  # candidate -> validation loss per token (mean over tasks)
    # candidate -> (mean margin to the reference, low, high): negative = better
    margins: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    reference: str | None = None
    rule: str = DEFAULT_RULE
    # Under "clear": no candidate beat the reference beyond noise, so the reference won.
    fell_back: bool = False


def task_losses(scores: Mapping[str, TaskScores], idx: Mapping[str, np.ndarray] | None = None
                ) -> np.ndarray:
    """Loss per token of each task; on resampled example indices (``idx``) a resample
    without response tokens gives NaN, on the full sample it is refused."""
    out = []
    for task, (lp, nt) in scores.items():
        sel = slice(None) if idx is None else idx[task]
        tokens = float(np.sum(nt[sel]))
        if tokens <= 0:
            if idx is None:
                raise InputError(f"validation task {task!r}: no response tokens to score")
            out.append(math.nan)
            continue
        out.append(-float(np.sum(lp[sel])) / tokens)
    return np.asarray(out)


def select(per_candidate: Mapping[str, Mapping[str, TaskScores]], *,
           reference: str | None = "uniform", seed: int = 0,
           bootstrap: int = BOOTSTRAP, level: float = 0.95,
           rule: str = DEFAULT_RULE) -> Selection:
    """Margins to ``reference`` with paired bootstrap intervals, and the choice by ``rule``
    (module docstring). Every candidate must be scored on the same tasks and examples."""
    names = list(per_candidate)
    if not names:
        raise InputError("auto: no candidates to choose from")
    if rule not in RULES:
        raise InputError(f"auto: unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    if reference not in per_candidate:
        reference = None
    if rule == "clear":
        _need_reference(reference)  # before any work
    tasks = list(per_candidate[names[0]])
    if not tasks:
        raise InputError("auto: no validation tasks")
    for n in names:
        if list(per_candidate[n]) != tasks:
            raise InputError(f"auto: candidate {n!r} was scored on other tasks")
        for t in tasks:
            if len(per_candidate[n][t][0]) != len(per_candidate[names[0]][t][0]):
                raise InputError(f"auto: candidate {n!r} has another number of validation "
                                 f"examples on {t!r}")
    losses = {n: float(np.mean(task_losses(per_candidate[n]))) for n in names}
    bad = next((n for n in names if not math.isfinite(losses[n])), None)
    if bad is not None:
        raise InputError(f"auto: candidate {bad!r} has a validation loss of {losses[bad]} "
                         "(a diverged model?); fix or drop it from params.candidates")
    sel = Selection(_lowest(losses, names), losses, rule=rule)
    if reference is None:
        return sel
    sel.reference = reference
    rng = np.random.default_rng(seed)
    sizes = {t: len(per_candidate[reference][t][0]) for t in tasks}
    draws = [{t: rng.integers(0, m, m) for t, m in sizes.items()} for _ in range(bootstrap)]
    # A resample that leaves a task without response tokens is dropped (NaN), for every
    # candidate alike, so the draws stay paired.
    ref_boot = np.array([np.mean(task_losses(per_candidate[reference], d)) for d in draws])
    alpha = (1 - level) / 2
    for n in names:
        if n == reference:
            continue
        boot = np.array([np.mean(task_losses(per_candidate[n], d)) for d in draws]) - ref_boot
        boot = boot[np.isfinite(boot)]
        if not len(boot):
            sel.margins[n] = (losses[n] - losses[reference], math.nan, math.nan)
            continue
        lo, hi = np.quantile(boot, [alpha, 1 - alpha])
        sel.margins[n] = (losses[n] - losses[reference], float(lo), float(hi))
    sel.chosen, sel.fell_back = choose(losses, sel.margins, reference, rule)
    return sel


def choose(losses: Mapping[str, float], margins: Mapping[str, tuple[float, float, float]],
           reference: str | None, rule: str) -> tuple[str, bool]:
    """The candidate ``rule`` picks from validation losses and margins (mean, low, high) to
    ``reference``, and whether ``clear`` fell back to the reference for want of a clear
    winner. Also replays a stored choice (benchmarks/auto_rules.py)."""
    names = list(losses)
    if rule == "lowest":
        return _lowest(losses, names), False
    _need_reference(reference if reference in losses else None)
    # A NaN bound (no usable resample) is not a clear margin.
    clear = [n for n in names if n != reference and n in margins and margins[n][2] < 0]
    return (_lowest(losses, clear), False) if clear else (reference, True)


def _need_reference(reference: str | None) -> None:
    if reference is None:
        raise InputError("auto: the rule 'clear' compares every candidate with a uniform "
                         "candidate, and there is none among the candidates; add one or "
                         "use the rule 'lowest'")


def _lowest(losses: Mapping[str, float], names: Sequence[str]) -> str:
    """The name with the lowest loss; ties go to the earlier name."""
    best = min(losses[n] for n in names)
    return next(n for n in names if losses[n] == best)


def disjoint_ids(validation: Mapping[str, Sequence[str]],
                 evaluation: Mapping[str, Sequence[str]]) -> None:
    """Refuse a validation example that is also an evaluation example of its task."""
    for task, ids in validation.items():
        both = set(ids) & set(evaluation.get(task, ()))
        if both:
            raise InputError(f"auto: validation example {min(both)!r} of task {task!r} "
                             "is also in the evaluation split; the evaluation split never "
                             "chooses a mixture")
