"""Mass per group of tasks (families, or clusters of redundant tasks) for every strategy.

A per-task table says little on a pool of 300 tasks; what a redundancy-aware mixture
should do is visible per group: does it keep every family, does it spread a cluster of
near-copies' mass rather than pile it up?

- families come from the pool's ``family`` labels (a task without one is its own family);
- clusters from :func:`taskpgm.affinity.redundancy.redundancy_clusters` on the affinity,
  with the entries' noise from its bootstrap intervals when it has them (the clusters
  the ``cluster-balanced`` strategy uses).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from taskpgm.affinity.io import AffinityMatrix
from taskpgm.mixture.record import Mixture

# Weight at or below this counts as zero (as for "tasks in mixture" elsewhere).
ZERO = 1e-9
NOT_IN_AFFINITY = "(not in the affinity)"


@dataclass
class Group:
    label: str
    members: list[str]


@dataclass
class GroupMass:
    """``mass[g, s]``: total weight strategy ``strategies[s]`` puts on group ``g``;
    ``active[g, s]``: how many of the group's tasks get a positive weight."""

    kind: str  # "family" or "cluster"
    groups: list[Group]
    strategies: list[str]
    mass: np.ndarray
    active: np.ndarray

    @property
    def plural(self) -> str:
        return {"family": "families", "cluster": "clusters"}.get(self.kind, "groups")

    @property
    def sizes(self) -> list[int]:
        return [len(g.members) for g in self.groups]

    def column(self, strategy: str) -> dict[str, float]:
        j = self.strategies.index(strategy)
        return {g.label: float(self.mass[i, j]) for i, g in enumerate(self.groups)}

    def top(self, k: int) -> tuple[list[str], np.ndarray]:
        """The ``k`` groups with the largest mass under any strategy (in row order, which
        is already by decreasing max mass), and the rest summed as ``other``."""
        labels = [g.label for g in self.groups]
        if len(labels) <= k + 1:  # "other" for a single group would only rename it
            return labels, self.mass.copy()
        rest = self.mass[k:].sum(axis=0, keepdims=True)
        return labels[:k] + [f"other ({len(labels) - k} {self.plural})"], \
            np.vstack([self.mass[:k], rest])


def has_family_labels(tasks: Sequence[str], families: Mapping[str, str | None] | None) -> bool:
    return families is not None and any(families.get(t) for t in tasks)


def family_groups(tasks: Sequence[str], families: Mapping[str, str | None]) -> list[Group]:
    """One group per family label, in order of first appearance; an unlabelled task is a
    family of its own (labelled ``<task> (no family)``)."""
    out: dict[tuple[bool, str], Group] = {}
    for t in tasks:
        fam = families.get(t)
        key = (True, fam) if fam else (False, t)
        if key not in out:
            out[key] = Group(fam if fam else f"{t} (no family)", [])
        out[key].members.append(t)
    return list(out.values())


def affinity_noise(aff: AffinityMatrix) -> np.ndarray | None:
    """Standard errors of the affinity's entries from its bootstrap intervals (None when
    it has none): what :func:`taskpgm.mixture.solve` uses for the calibrated kernel."""
    if aff.lower is None or aff.upper is None:
        return None
    from taskpgm.affinity.redundancy import noise_from_intervals

    level = float(aff.provenance.get("interval_level", 0.95))
    return noise_from_intervals(aff.lower, aff.upper, level)


def cluster_groups(aff: AffinityMatrix, tasks: Sequence[str] = (),
                   bandwidth: float | None = None) -> list[Group]:
    """Clusters of redundant tasks in the affinity (numbered from 1 by first member);
    ``tasks`` outside the affinity form one extra group so every mass is counted."""
    from taskpgm.affinity.redundancy import redundancy_clusters

    labels = redundancy_clusters(np.asarray(aff.matrix, dtype=np.float64), affinity_noise(aff),
                                 bandwidth)
    groups = [Group(f"c{k + 1}", []) for k in range(int(labels.max()) + 1)]
    for t, c in zip(aff.names, labels, strict=True):
        groups[int(c)].members.append(t)
    known = set(aff.names)
    extra = [t for t in tasks if t not in known]
    if extra:
        groups.append(Group(NOT_IN_AFFINITY, extra))
    return groups


def group_mass(mixtures: Mapping[str, Mixture], groups: Sequence[Group], kind: str
               ) -> GroupMass:
    """Mass per group and strategy; rows by decreasing largest mass (ties: group order)."""
    names = list(mixtures)
    mass = np.zeros((len(groups), len(names)))
    active = np.zeros((len(groups), len(names)), dtype=np.int64)
    for j, name in enumerate(names):
        w = mixtures[name].as_dict()
        for i, g in enumerate(groups):
            vals = np.array([w.get(t, 0.0) for t in g.members])
            mass[i, j] = float(vals.sum())
            active[i, j] = int((vals > ZERO).sum())
    key = mass.max(axis=1) if names else np.zeros(len(groups))
    order = sorted(range(len(groups)), key=lambda i: (-round(float(key[i]), 12), i))
    return GroupMass(kind, [groups[i] for i in order], names, mass[order], active[order])


def shorten(names: Sequence[str], k: int = 4) -> str:
    """``a, b, c, d, ... (+N more)``."""
    names = list(names)
    head = ", ".join(names[:k])
    return head if len(names) <= k else f"{head}, ... (+{len(names) - k} more)"
