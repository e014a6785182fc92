"""The ``Mixture`` record every strategy returns, and its ``mixture.json`` form."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from taskpgm.errors import InputError
from taskpgm.io import atomic_write_json, read_json


@dataclass
class Mixture:
    """Proportions over named tasks.

    ``weights`` is a probability vector aligned with ``tasks``. ``params`` records how it
    was made (method options); ``diagnostics`` what the solver reports (for TaskPGM at
    least ``energy``, ``kkt_residual`` and ``support_size``).
    """

    method: str
    tasks: list[str]
    weights: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, dtype=np.float64)
        if self.weights.shape != (len(self.tasks),):
            raise ValueError("weights and tasks differ in length")

    def as_dict(self) -> dict[str, float]:
        return {t: float(w) for t, w in zip(self.tasks, self.weights, strict=True)}

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "taskpgm-mixture",
            "version": 1,
            "method": self.method,
            "tasks": list(self.tasks),
            "weights": [float(w) for w in self.weights],
            "params": _jsonable(self.params),
            "diagnostics": _jsonable(self.diagnostics),
        }

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Mixture:
        raw = read_json(path)
        if not isinstance(raw, dict):
            raise InputError(f"{path}: a mixture file must hold a JSON object")
        for key in ("method", "tasks", "weights"):
            if key not in raw:
                raise InputError(f"{path}: missing field {key!r}")
        tasks, weights = raw["tasks"], raw["weights"]
        if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
            raise InputError(f"{path}: field 'tasks' must be a list of names")
        if len(set(tasks)) != len(tasks):
            raise InputError(f"{path}: field 'tasks' names a task twice")
        if not isinstance(weights, list) or len(weights) != len(tasks):
            raise InputError(f"{path}: field 'weights' must be a list as long as 'tasks'")
        try:
            w = np.asarray(weights, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{path}: field 'weights' must hold numbers") from None
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise InputError(f"{path}: field 'weights' must be finite and non-negative")
        total = w.sum()
        if not np.isclose(total, 1.0, atol=1e-6):
            raise InputError(f"{path}: field 'weights' sums to {total:.6g}, not 1")
        return cls(
            method=str(raw["method"]),
            tasks=list(tasks),
            weights=w,
            params=dict(raw.get("params") or {}),
            diagnostics=dict(raw.get("diagnostics") or {}),
        )


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays inside params/diagnostics to plain JSON values."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
