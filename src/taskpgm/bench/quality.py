"""The quality benchmark: does a strategy's mixture beat uniform on held-out tasks?

Every strategy shares one harness (the pipeline): same pool, base model, budget,
sampler, trainer and evaluator; only the mixture differs. Each seed is a full
independent replicate (pool draw, model init, experts, sampling, training), and
differences to uniform are paired within a seed, then summarised over seeds with a
95% t-interval. Random Dirichlet mixtures are the "how good is an arbitrary mixture"
reference.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from taskpgm.config import Config, StrategyConfig
from taskpgm.io import atomic_write_bytes, atomic_write_json
from taskpgm.mixture.record import Mixture
from taskpgm.report.records import ModelEval

REFERENCE = "uniform"
REDUNDANCY_REFERENCE = "family-balanced"
DIRICHLET_GROUP = "dirichlet (mean)"


# Training replicates of a strategy are named <strategy>.rep<k> and averaged within a seed.
REPLICATE_TAG = ".rep"
REPLICATE_STRIDE = 1000  # replicate seeds k * 1000 never meet a strategy's own `replicate`


def bench_config(base: Config, seed: int, run_dir: Path, dirichlet: int,
                 replicates: int = 1) -> Config:
    """One seed's config: the strategies, ``replicates - 1`` extra training replicates of
    each (same mixture, other sampling/training seeds: averaging them lowers the training
    noise that dominates small proxies), and ``dirichlet`` random mixtures."""
    cfg = base.model_copy(deep=True)
    cfg.run.seed = seed
    cfg.run.dir = str(run_dir)
    cfg.report.influence = False
    # Not of regression: each of its replicates would train its N proxies again.
    extra = [StrategyConfig(name=f"{st.name}{REPLICATE_TAG}{k}", method=st.method,
                            params={**st.params, "replicate": int(st.params.get("replicate", 0))
                                    + REPLICATE_STRIDE * k})
             for st in cfg.strategies for k in range(1, replicates)
             if st.method != "regression"]
    cfg.strategies = list(cfg.strategies) + extra + [
        StrategyConfig(name=f"dirichlet-{k + 1}", method="dirichlet",
                       params={"alpha": 1.0, "draw": k})
        for k in range(dirichlet)
    ]
    return cfg


@dataclass
class Row:
    strategy: str
    metric: str
    per_seed: list[float]
    mean: float
    diff_mean: float | None  # paired difference to uniform, averaged over seeds
    diff_low: float | None  # 95% t-interval of the paired difference
    diff_high: float | None
    wins: int | None  # seeds where the strategy beat uniform
    # Share of family-balanced's mean gain over uniform this strategy captures (loss only,
    # and only where family-balanced does beat uniform: otherwise the share is undefined).
    share_of_family_gain: float | None = None


def t_interval(diffs: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided t-interval of paired differences (n >= 2)."""
    from scipy import stats

    d = np.asarray(diffs, dtype=np.float64)
    m = float(d.mean())
    if len(d) < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return m, m - half, m + half


def _group(name: str) -> str:
    """The strategy a model belongs to (training replicates and Dirichlet draws pooled)."""
    if name.startswith("dirichlet-"):
        return DIRICHLET_GROUP
    head, tag, k = name.rpartition(REPLICATE_TAG)
    return head if tag and k.isdigit() else name


def summarise(per_seed: dict[int, dict[str, ModelEval]]) -> list[Row]:
    """Rows per (strategy, metric); Dirichlet draws and training replicates are averaged
    within a seed first."""
    seeds = sorted(per_seed)
    values: dict[str, dict[str, list[float]]] = {}
    for metric, get in (("loss_per_token", lambda e: e.mean("loss_per_token")),
                        ("score", lambda e: e.mean_score())):
        table: dict[str, list[float]] = {}
        for s in seeds:
            groups: dict[str, list[float | None]] = {}
            for n, e in per_seed[s].items():
                groups.setdefault(_group(n), []).append(get(e))
            row = {g: None if any(v is None for v in vs) else float(np.mean(vs))
                   for g, vs in groups.items()}
            for n, v in row.items():
                table.setdefault(n, []).append(float("nan") if v is None else float(v))
        values[metric] = table
    rows = []
    for metric, table in values.items():
        ref = np.asarray(table.get(REFERENCE, []))
        lower_better = metric == "loss_per_token"
        for name, vals in table.items():
            v = np.asarray(vals)
            if name == REFERENCE or len(ref) != len(v) or np.isnan(v).any():
                rows.append(Row(name, metric, vals, float(np.mean(v)), None, None, None, None))
                continue
            m, lo, hi = t_interval(v - ref)
            # Ties (e.g. UniMax equal to uniform when its epoch cap does not bind) are not wins.
            gain = (ref - v) if lower_better else (v - ref)
            wins = int((gain > 1e-9).sum())
            rows.append(Row(name, metric, vals, float(np.mean(v)), m, lo, hi, wins))
    ref_gain = next((r.diff_mean for r in rows if r.metric == "loss_per_token"
                     and r.strategy == REDUNDANCY_REFERENCE), None)
    if ref_gain is not None and ref_gain < 0:
        for r in rows:
            if r.metric == "loss_per_token" and r.diff_mean is not None:
                r.share_of_family_gain = r.diff_mean / ref_gain
    return rows


def redundancy_check(rows: list[Row]) -> dict[str, Any]:
    """Can this suite reward redundancy-awareness at all? Only if the mixture that uses
    the known family structure beats uniform (paired interval below 0)."""
    fb = next((r for r in rows if r.metric == "loss_per_token"
               and r.strategy == REDUNDANCY_REFERENCE), None)
    name = "family-balanced beats uniform (over seeds)"
    if fb is None or fb.diff_mean is None:
        return {"name": name, "ok": None, "detail": "no family-balanced strategy in this run"}
    ok = bool(fb.diff_high is not None and fb.diff_high < 0)
    detail = (f"family-balanced - uniform = {fb.diff_mean:+.4f} [{fb.diff_low:+.4f}, "
              f"{fb.diff_high:+.4f}] nats/token")
    if not ok:
        detail += ("; this suite cannot show a redundancy-aware method beating uniform, "
                   "whatever the method does")
    return {"name": name, "ok": ok, "detail": detail}


def plot(rows: list[Row], n_seeds: int) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, metric, label in ((axes[0], "loss_per_token", "held-out loss/token - uniform"),
                              (axes[1], "score", "held-out accuracy/EM - uniform")):
        sel = [r for r in rows if r.metric == metric and r.diff_mean is not None]
        y = np.arange(len(sel))
        ax.errorbar([r.diff_mean for r in sel], y,
                    xerr=[[r.diff_mean - r.diff_low for r in sel],
                          [r.diff_high - r.diff_mean for r in sel]],
                    fmt="o", capsize=3)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks(y, [r.strategy for r in sel])
        ax.set_xlabel(label)
        ax.invert_yaxis()
    fig.suptitle(f"Paired difference to uniform, mean and 95% t-interval over {n_seeds} seeds")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def group_mass_summary(roots: dict[int, Path], strategies: list[str]) -> dict[str, Any]:
    """Per strategy: mean over seeds of the smallest family mass and of L1 to family-
    balanced (does a strategy drop a family? does it follow the template counts?)."""
    from taskpgm.tasks.pool import Pool

    acc: dict[str, dict[str, list[float]]] = {}
    for root in roots.values():
        pool = Pool.load(root / "pool")
        fam = {t.name: t.family or t.name for t in pool.train_tasks()}
        for name in strategies:
            m = Mixture.load(root / "mixtures" / f"{name}.json")
            mass: dict[str, float] = {}
            for t, w in zip(m.tasks, m.weights, strict=True):
                mass[fam[t]] = mass.get(fam[t], 0.0) + float(w)
            k = len(mass)
            a = acc.setdefault(name, {"min_family_mass": [], "l1_to_family_balanced": []})
            a["min_family_mass"].append(min(mass.values()))
            a["l1_to_family_balanced"].append(sum(abs(v - 1.0 / k) for v in mass.values()))
    return {name: {k: float(np.mean(v)) for k, v in d.items()} for name, d in acc.items()}


def training_costs(roots: dict[int, Path], strategies: list[str]) -> dict[str, Any]:
    """Per strategy: proxy trainings it needs (1: its own model; auto: its candidates',
    trained anyway; regression: its proxies + its own, or its own alone where another
    regression strategy trained the same proxies) and, for regression, the mean
    over seeds of its fit's held-out rank correlation."""
    out: dict[str, Any] = {}
    for name in strategies:
        mixes = [Mixture.load(r / "mixtures" / f"{name}.json") for r in roots.values()]
        m = mixes[0]
        if m.method == "auto":
            cost = f"{len(m.params.get('candidates', []))} (shared)"
        elif m.method == "regression":
            owner = m.params.get("proxies", name)
            runs = int(m.params.get("runs", 0))
            cost = f"{runs + 1}" if owner == name else f"1 + {runs} shared with {owner}"
        else:
            cost = "1"
        rho = [x.diagnostics.get("cv_spearman_mean") for x in mixes]
        rho = [r for r in rho if r is not None and np.isfinite(r)]
        out[name] = {"trainings": cost,
                     "cv_spearman": float(np.mean(rho)) if rho else None}
        if m.method == "auto":
            chosen: dict[str, int] = {}
            for x in mixes:
                chosen[x.params["chosen"]] = chosen.get(x.params["chosen"], 0) + 1
            out[name]["chosen"] = chosen
    return out


def summarise_seeds(roots: dict[int, Path], strategies: list[str],
                    out: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The paired summary over finished seed runs (seed -> run directory); ``strategies``
    name those whose family masses are summarised. Writes quality.json and quality.png
    under ``out``."""
    from taskpgm.config import load_config
    from taskpgm.io import read_json

    per_seed: dict[int, dict[str, ModelEval]] = {}
    checks: dict[int, Any] = {}
    for s, root in roots.items():
        # The seed's own config names its models (replicates and Dirichlet draws included).
        names = [st.name for st in load_config(root / "config.yaml").strategies]
        per_seed[s] = {n: ModelEval.load(root / "eval" / f"{n}.json") for n in names}
        per_seed[s]["BASE model"] = ModelEval.load(root / "eval" / "base.json")
        if (root / "checks.json").is_file():
            checks[s] = read_json(root / "checks.json")
    rows = summarise(per_seed)
    result = {
        "benchmark": "quality",
        "seeds": list(roots),
        **meta,
        "reference": REFERENCE,
        "rows": [asdict(r) for r in rows],
        "checks": {str(k): v for k, v in checks.items()},
        "redundancy_check": redundancy_check(rows),
        "group_mass": group_mass_summary(roots, strategies),
        "costs": training_costs(roots, strategies),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "quality.json", result)
    atomic_write_bytes(out / "quality.png", plot(rows, len(roots)))
    return result


def run_quality(base: Config, out: str | Path, seeds: list[int], dirichlet: int = 3,
                progress: bool = False, console=None, replicates: int = 1) -> dict[str, Any]:
    """Run the pipeline once per seed under ``out/seed<k>`` (resumable) and summarise."""
    from taskpgm.pipeline import run_pipeline

    out = Path(out)
    for s in seeds:
        run_pipeline(bench_config(base, s, out / f"seed{s}", dirichlet, replicates),
                     console=console, progress=progress)
    meta = {"dirichlet_draws": dirichlet, "replicates": replicates,
            "config": base.model_dump(mode="json")}
    return summarise_seeds({s: out / f"seed{s}" for s in seeds},
                           [st.name for st in base.strategies], out, meta)


def collect_quality(folders: list[str | Path], out: str | Path) -> dict[str, Any]:
    """Summarise finished seeds that ran elsewhere (other machines, other processes):
    every ``seed<k>`` directory under ``folders`` that holds eval/, mixtures/,
    pool/pool.json and config.yaml. Runs nothing; a seed found twice is an error, and so
    is a seed whose strategies differ from the first one's."""
    from taskpgm.config import load_config
    from taskpgm.errors import InputError

    roots: dict[int, Path] = {}
    strategies: list[str] | None = None
    for folder in folders:
        found = sorted(Path(folder).glob("seed*/config.yaml"))
        if not found:
            raise InputError(f"{folder}: no seed<k>/config.yaml under it")
        for cfg_path in found:
            root = cfg_path.parent
            try:
                seed = int(root.name.removeprefix("seed"))
            except ValueError:
                continue
            if seed in roots:
                raise InputError(f"{root}: seed {seed} is also in {roots[seed]}")
            names = [st.name for st in load_config(cfg_path).strategies
                     if REPLICATE_TAG not in st.name and st.method != "dirichlet"]
            if strategies is None:
                strategies = names
            elif names != strategies:
                raise InputError(f"{cfg_path}: other strategies than the first seed's "
                                 f"({', '.join(names)})")
            for need in (root / "eval" / "base.json", root / "pool" / "pool.json"):
                if not need.is_file():
                    raise InputError(f"{need}: not found (seed {seed} did not finish)")
            roots[seed] = root
    if not roots:
        raise InputError(f"{', '.join(map(str, folders))}: no seed<k>/ run directory (k an "
                         "integer) under them")
    roots = dict(sorted(roots.items()))
    return summarise_seeds(roots, strategies or [], out, {"collected_from": [str(f) for f in folders]})
