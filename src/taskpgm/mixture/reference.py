"""Reference mixtures that say whether a pool can reward redundancy-awareness at all.

- ``given``: a user's own mixture (a mixture.json or a ``task,weight`` file), so a
  hand-made mixture is compared on the same harness as every strategy.
- ``family-balanced``: uniform over family labels, then uniform over a family's tasks.
  With known labels this is what a redundancy-aware mixture should at least match.
- ``cluster-balanced``: the same over clusters found in the affinity
  (:func:`taskpgm.affinity.redundancy.redundancy_clusters`), for pools without labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from taskpgm.errors import InputError


def group_balanced_weights(groups: Sequence[object]) -> np.ndarray:
    """1 / (number of groups * size of the task's group) for each task."""
    labels = list(groups)
    counts: dict[object, int] = {}
    for g in labels:
        counts[g] = counts.get(g, 0) + 1
    return np.array([1.0 / (len(counts) * counts[g]) for g in labels])


def family_labels(names: Sequence[str], families: Mapping[str, str | None] | None) -> list[str]:
    """Each task's family; a task without a label is a family of its own."""
    if families is None:
        raise InputError("method 'family-balanced' needs family labels (parameter "
                         "'families': a mapping task -> family, e.g. from a pool whose "
                         "pool.json sets 'family')")
    if not isinstance(families, Mapping):
        raise InputError("families must be a mapping task -> family label")
    missing = [n for n in names if n not in families]
    if missing:
        raise InputError(f"families: no entry for task {missing[0]!r} ({len(missing)} missing)")
    out = []
    for n in names:
        fam = families[n]
        if fam is not None and not isinstance(fam, str):
            raise InputError(f"families: label of task {n!r} must be a string, got {fam!r}")
        # A prefix keeps an unlabelled task from sharing a family named like itself.
        out.append(fam if fam else f"\0{n}")
    return out


def given_weights(weights, names: Sequence[str]) -> tuple[np.ndarray, str | None]:
    """A user's mixture aligned with ``names``: a mapping, a sequence, or a file path
    (mixture.json, or JSON/CSV ``task,weight``). Weights are normalised to sum 1."""
    from taskpgm.mixture.unary import align_values, read_values

    source = None
    if weights is None:
        raise InputError("method 'given' needs parameter 'weights' (a file, a mapping "
                         "task -> weight or a list)")
    if isinstance(weights, (str, Path)):
        source = str(weights)
        weights = _read_weights(Path(weights), read_values)
    arr = align_values(weights, names, f"weights{' ' + source if source else ''}")
    if np.any(arr < 0):
        i = int(np.argmax(arr < 0))
        raise InputError(f"weights: task {names[i]!r} has a negative weight ({arr[i]})")
    total = float(arr.sum())
    if total <= 0:
        raise InputError("weights: every weight is 0")
    return arr / total, source


def _read_weights(path: Path, read_values):
    from taskpgm.io import read_json

    if not path.is_file():
        raise InputError(f"{path}: weights file not found")
    if path.suffix.lower() == ".json":
        # Malformed JSON and bytes that are not UTF-8 are reported with their line.
        raw = read_json(path)
        if isinstance(raw, dict) and raw.get("format") == "taskpgm-mixture":
            from taskpgm.mixture.record import Mixture

            return Mixture.load(path).as_dict()
    return read_values(path, "weights")
