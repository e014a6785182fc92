"""Records the report and the benchmark read: evaluation results and checks.

Evaluation results are stored per model as ``eval/<name>.json`` in a run directory.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from taskpgm.errors import InputError
from taskpgm.io import atomic_write_json, read_json

METRICS = ("loss_per_token", "accuracy", "exact_match")


@dataclass
class TaskEval:
    """One model on one task: mean loss per response token and, where defined, accuracy
    (multiple-choice tasks, by option log-likelihood) or exact match (generative)."""

    task: str
    n: int
    loss_per_token: float
    accuracy: float | None = None
    exact_match: float | None = None

    def score(self) -> float | None:
        """The task's headline quality number: accuracy if defined, else exact match."""
        return self.accuracy if self.accuracy is not None else self.exact_match


@dataclass
class ModelEval:
    """One model (a strategy's model, or the base model) on the evaluation tasks."""

    name: str
    tasks: list[TaskEval]
    split: str = "eval"
    metadata: dict[str, Any] = field(default_factory=dict)

    def by_task(self) -> dict[str, TaskEval]:
        return {t.task: t for t in self.tasks}

    def mean(self, metric: str) -> float | None:
        """Unweighted mean over tasks (each task counts once, whatever its size)."""
        vals = [getattr(t, metric) for t in self.tasks]
        vals = [v for v in vals if v is not None and math.isfinite(v)]
        return sum(vals) / len(vals) if vals else None

    def mean_score(self) -> float | None:
        vals = [t.score() for t in self.tasks if t.score() is not None]
        return sum(vals) / len(vals) if vals else None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "split": self.split, "metadata": self.metadata,
                "tasks": [asdict(t) for t in self.tasks]}

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> ModelEval:
        raw = read_json(path)
        try:
            tasks = [TaskEval(**t) for t in raw["tasks"]]
            return cls(name=str(raw["name"]), tasks=tasks, split=str(raw.get("split", "eval")),
                       metadata=dict(raw.get("metadata") or {}))
        except (KeyError, TypeError) as exc:
            raise InputError(f"{path}: not an evaluation record ({exc})") from None


@dataclass
class Check:
    """An informativeness check printed with every run (see DESIGN.md).

    ``ok`` is None when the check could not be computed (e.g. no families in the pool) or
    is informational; ``warn`` marks an informational check whose detail needs reading
    (e.g. a strategy gives a whole family zero mass).
    """

    name: str
    ok: bool | None
    detail: str
    warn: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
