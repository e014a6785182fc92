"""Report figures (matplotlib, Agg backend), each returned as PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from taskpgm.affinity.io import AffinityMatrix
from taskpgm.mixture.record import Mixture


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    # Fixed metadata so equal figures give equal bytes.
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)
    return buf.getvalue()


def cluster_order(aff: AffinityMatrix) -> list[int]:
    """Leaf order of average-linkage clustering on the symmetrised affinity.

    Affinities are similarities (PMI: 0 = interchangeable experts, more negative = more
    different), so the distance is ``max(S) - S``, symmetrised, with a zero diagonal.
    """
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    s = np.asarray(aff.matrix, dtype=np.float64)
    n = s.shape[0]
    if n < 3:
        return list(range(n))
    s = 0.5 * (s + s.T)
    d = s.max() - s
    np.fill_diagonal(d, 0.0)
    d = np.maximum(d, 0.0)
    return [int(i) for i in leaves_list(linkage(squareform(d, checks=False), method="average"))]


# Up to this many tasks an estimated entry gets a dot. Beyond, dots (or fading) would
# turn the heatmap into speckle, so it stays in full colour and a small panel beside it
# shows which entries were estimated (readable at n ~ 300).
DOTS_UP_TO = 60


def estimated_entries(names: Sequence[str], unscored: Sequence[Sequence[str]]) -> np.ndarray:
    """Affinity entries resting on an estimated score: S[i, j] reads M[i, j] and M[j, i],
    so it is estimated when either pair was not scored."""
    index = {t: i for i, t in enumerate(names)}
    est = np.zeros((len(names), len(names)), dtype=bool)
    for e, t in unscored:
        if e in index and t in index:
            est[index[e], index[t]] = est[index[t], index[e]] = True
    return est


def affinity_heatmap(aff: AffinityMatrix, order: Sequence[int],
                     estimated: np.ndarray | None = None) -> bytes:
    """The affinity in cluster order; ``estimated`` (n x n) marks completed entries."""
    plt = _plt()
    n = aff.n
    size = min(4 + 0.22 * n, 16)
    m = np.asarray(aff.matrix)[np.ix_(order, order)]
    est = None if estimated is None or not estimated.any() else \
        np.asarray(estimated, dtype=bool)[np.ix_(order, order)]
    panel = est is not None and n > DOTS_UP_TO
    if panel:
        fig, (ax, side) = plt.subplots(1, 2, figsize=(size * 1.3 + 1.5, size),
                                       gridspec_kw={"width_ratios": [4, 1.3]})
    else:
        fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(m, cmap="viridis", interpolation="nearest")
    if est is not None and not panel:
        rows, cols = np.nonzero(est)
        ax.scatter(cols, rows, s=max(2.0, 240.0 / max(n, 1)), c="white",
                   edgecolors="black", linewidths=0.3, marker="o")
    labels = [aff.names[i] for i in order]
    if n <= 80:
        ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(n), labels, fontsize=7)
    title = f"Task affinity ({aff.kind}), cluster order"
    if est is not None and not panel:
        title += "\ndot = estimated (completed) entry"
    ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.8)
    if panel:
        side.imshow(est, cmap="Greys", vmin=0, vmax=1.6, interpolation="nearest")
        side.set_title("estimated entries (grey),\nsame order", fontsize=9)
        side.set_xticks([])
        side.set_yticks([])
    return _png(fig)


def mixture_bars(mixtures: dict[str, Mixture], tasks: Sequence[str]) -> bytes:
    """One panel per strategy, tasks on a shared x axis in cluster order."""
    plt = _plt()
    k = max(len(mixtures), 1)
    n = len(tasks)
    fig, axes = plt.subplots(k, 1, figsize=(max(6, 0.28 * n + 2), 1.5 * k + 1), sharex=True,
                             squeeze=False)
    for ax, (name, mix) in zip(axes[:, 0], mixtures.items(), strict=False):
        w = mix.as_dict()
        ax.bar(range(n), [w.get(t, 0.0) for t in tasks], color="tab:blue")
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.axhline(1.0 / max(n, 1), color="grey", lw=0.6, ls="--")
    axes[-1, 0].set_xticks(range(n), list(tasks), rotation=90, fontsize=7)
    axes[0, 0].set_title("Mixture weights per strategy (dashed: uniform)")
    return _png(fig)


@dataclass
class PathData:
    """The TaskPGM optimum as r = beta/lambda varies: ``weights[i]`` is the mixture at ``r[i]``."""

    r: np.ndarray
    weights: np.ndarray
    tasks: list[str]


def path_plot(path: PathData) -> bytes:
    plt = _plt()
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    w = np.asarray(path.weights)
    order = np.argsort(-w.max(axis=0))
    for j in order[:12]:
        ax.plot(path.r, w[:, j], lw=1.4, label=path.tasks[j])
    for j in order[12:]:
        ax.plot(path.r, w[:, j], lw=0.6, color="grey", alpha=0.6)
    ax.set_xscale("log")
    ax.set_ylabel("weight")
    ax.legend(fontsize=6, ncol=2, loc="upper left")
    ax.set_title("r-path: mixture as r = beta/lambda varies")
    ax2.step(path.r, (w > 1e-9).sum(axis=1), where="mid")
    ax2.set_ylabel("support size")
    ax2.set_xlabel("r = beta / lambda")
    return _png(fig)


@dataclass
class InfluenceRow:
    """Leave-one-task-out: how the optimum moves when ``task`` is removed from the pool."""

    task: str
    weight: float
    l1_change: float  # L1 distance between the other tasks' weights before and after
    # Optimal energy without the task minus with it. The kernel and (rowsum) utilities are
    # rebuilt from the reduced matrix, so this can be negative.
    energy_change: float


def influence_plot(rows: Sequence[InfluenceRow]) -> bytes:
    plt = _plt()
    rows = sorted(rows, key=lambda r: -r.l1_change)
    n = len(rows)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 0.22 * n + 1.5), sharey=True)
    y = np.arange(n)
    a1.barh(y, [r.l1_change for r in rows], color="tab:orange")
    a1.set_yticks(y, [r.task for r in rows], fontsize=7)
    a1.invert_yaxis()
    a1.set_xlabel("L1 change of the other weights")
    a2.barh(y, [r.energy_change for r in rows], color="tab:green")
    a2.set_xlabel("energy change when removed")
    fig.suptitle("Task influence (leave one task out)")
    return _png(fig)


def eval_bars(names: Sequence[str], losses: Sequence[float | None], base_loss: float | None
              ) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(names) + 2), 3.2))
    vals = [np.nan if v is None else v for v in losses]
    ax.bar(range(len(names)), vals, color="tab:purple")
    finite = [v for v in vals if np.isfinite(v)]
    if finite:
        # Zoom on the strategies; the base model is usually far above them.
        lo, hi = min(finite), max(finite)
        pad = 0.15 * (hi - lo) + 1e-3
        ax.set_ylim(lo - pad, hi + pad)
        if base_loss is not None and lo - pad <= base_loss <= hi + pad:
            ax.axhline(base_loss, color="red", ls="--", lw=1, label="base model")
            ax.legend(fontsize=8)
    if base_loss is not None:
        ax.text(0.99, 0.97, f"base model: {base_loss:.3f}", transform=ax.transAxes,
                ha="right", va="top", fontsize=8, color="red")
    ax.set_xticks(range(len(names)), list(names), rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("held-out loss / token")
    ax.set_title("Mean held-out loss per token (lower is better)")
    return _png(fig)


def group_mass_bars(gm, top: int = 12) -> bytes:
    """Stacked bars: one bar per strategy, one segment per group (the ``top`` groups by
    largest mass under any strategy, the rest summed as "other", in grey)."""
    from taskpgm.report.groups import shorten

    plt = _plt()
    labels, mass = gm.top(top)
    by_label = {g.label: g for g in gm.groups}
    legend = []
    for lab in labels:
        g = by_label.get(lab)
        if gm.kind == "cluster" and g is not None:
            lab = f"{lab}: {shorten(g.members, 2)}"
        legend.append(lab if len(lab) <= 48 else lab[:45] + "...")
    k = len(gm.strategies)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * k + 2.5), 4.2))
    cmap = plt.get_cmap("tab20")
    bottom = np.zeros(k)
    has_other = len(labels) < len(gm.groups)
    for i, lab in enumerate(legend):
        other = has_other and i == len(legend) - 1
        color = "lightgrey" if other else cmap(i % 20)
        ax.bar(range(k), mass[i], bottom=bottom, color=color, edgecolor="white", lw=0.4,
               label=lab)
        bottom += mass[i]
    ax.set_xticks(range(k), list(gm.strategies), rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, max(1.0, float(bottom.max()) if k else 1.0) * 1.02)
    ax.set_ylabel(f"mass per {gm.kind}")
    ax.set_title(f"Mixture mass per {gm.kind} ({len(gm.groups)} {gm.plural})")
    handles, names = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], names[::-1], fontsize=6, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _png(fig)


def validation_curve(name: str, losses: dict[str, float], chosen: str | None) -> bytes | None:
    """An auto strategy's validation loss along its r-path candidates (``<name>.r<value>``)
    with every other candidate as a horizontal line; None without r-path candidates."""
    prefix = f"{name}.r"
    points = sorted((float(c[len(prefix):]), v) for c, v in losses.items()
                    if c.startswith(prefix))
    if not points:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    r, v = zip(*points, strict=True)
    ax.plot(r, v, "o-", color="#0969da", label="TaskPGM along r_rel")
    for i, (cand, loss) in enumerate(sorted((c, v) for c, v in losses.items()
                                            if not c.startswith(prefix))):
        ax.axhline(loss, lw=0.8, ls="--", color=f"C{(i + 1) % 10}", label=cand)
    if chosen is not None and chosen.startswith(prefix):
        ax.plot([float(chosen[len(prefix):])], [losses[chosen]], "*", ms=14, color="#cf222e",
                label="chosen")
    ax.set_xlabel("r_rel")
    ax.set_ylabel("validation loss / token")
    ax.set_title(f"{name}: validation loss of each candidate's model")
    ax.legend(fontsize=6, ncol=2)
    return _png(fig)
