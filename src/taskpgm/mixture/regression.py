"""A regression mixer: fit loss(mixture) on proxy runs, then minimise the fit.

The standard learned mixer users compare against (RegMix, Liu et al., ICLR 2025; olmix's
log-linear law, after Ye et al.'s data mixing laws): N proxy models are trained on
mixtures drawn around a prior, each metric (a target's loss, lower is better) is fitted as

    loss_k(p) = exp(c_k) + exp(t_k . p)

by a Huber-robust least-squares fit (scipy's ``least_squares``, several starts), and the
mixture minimises the mean predicted loss over the simplex plus ``kl`` times KL(p || prior),
optionally under per-task caps (epoch limits). Each law is convex in p, so the problem is
convex and SLSQP finds its optimum. ``fit="gbm"`` fits gradient-boosted trees instead
(scikit-learn's HistGradientBoostingRegressor; RegMix's own choice is LightGBM), which
assume no functional form; their prediction is piecewise constant, so the mixture is
RegMix's: the mean of the best 1% of many candidate mixtures drawn like the proxies. Tiny proxies can rank mixtures poorly, so the fit
reports its cross-validated rank correlation (Spearman, predicted vs measured on held-out
runs): a mixture from a fit that cannot rank its own runs should not be trusted.

Runs are exchanged in olmix's layout: a folder with ``ratios.csv`` (``run_id``, optional
``name``, one column per task: the run's mixture weights) and ``metrics.csv`` (``run_id``,
optional ``name``, one column per metric), joined on ``run_id``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from taskpgm.errors import InputError
from taskpgm.io import atomic_write_bytes

FITS = ("log-linear", "gbm")
GBM_CANDIDATES = 10_000  # candidate mixtures the boosted fit is minimised over
GBM_TOP = 100  # ...of which the best this many are averaged (RegMix: top 100 of 1M)
RATIOS = "ratios.csv"
METRICS = "metrics.csv"
_ID_COLUMNS = ("run_id", "name")
# olmix accepts weights that sum to 1 within this tolerance (and so do we; then rescaled).
SUM_TOLERANCE = 0.01


@dataclass
class ProxyRuns:
    """Mixture weights and measured metrics of N proxy runs (lower metric = better)."""

    run_ids: list[str]
    tasks: list[str]
    weights: np.ndarray  # [N, n], rows on the simplex
    metrics: list[str]
    values: np.ndarray  # [N, m]
    names: list[str] = field(default_factory=list)  # display names (default: run ids)

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, dtype=np.float64)
        self.values = np.asarray(self.values, dtype=np.float64)
        if not self.names:
            self.names = list(self.run_ids)


# -- olmix-style CSV exchange -------------------------------------------------------------

def _read_table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        raise InputError(f"{path}: not found (a runs folder holds {RATIOS} and {METRICS})")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text))
    header = list(reader.fieldnames or [])
    if "run_id" not in header:
        raise InputError(f"{path}: no 'run_id' column (columns: {', '.join(header) or 'none'})")
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise InputError(f"{path}: column {dup!r} appears twice")
    rows = list(reader)
    if not rows:
        raise InputError(f"{path}: no runs")
    return header, rows


def _number(path: Path, row: int, col: str, value: str | None) -> float:
    try:
        x = float(value) if value not in (None, "") else math.nan
    except ValueError:
        raise InputError(f"{path}: row {row}, column {col!r}: not a number ({value!r})") from None
    if not math.isfinite(x):
        raise InputError(f"{path}: row {row}, column {col!r}: missing or not finite ({value!r})")
    return x


def _run_ids(path: Path, rows: list[dict[str, str]]) -> list[tuple[str, dict[str, str]]]:
    """(run_id, row) per row; an empty or repeated run_id is one line naming the row."""
    out, seen = [], set()
    for i, r in enumerate(rows, 1):
        rid = (r.get("run_id") or "").strip()
        if not rid:
            raise InputError(f"{path}: row {i}: empty run_id")
        if rid in seen:
            raise InputError(f"{path}: row {i}: run_id {rid!r} appears twice")
        seen.add(rid)
        out.append((rid, r))
    return out


def load_runs(folder: str | Path) -> ProxyRuns:
    """Read ``ratios.csv`` and ``metrics.csv``; every bad cell is one line naming file,
    row (1 = first data row) and column."""
    folder = Path(folder)
    rpath, mpath = folder / RATIOS, folder / METRICS
    rhead, rrows = _read_table(rpath)
    mhead, mrows = _read_table(mpath)
    tasks = [c for c in rhead if c not in _ID_COLUMNS]
    metrics = [c for c in mhead if c not in _ID_COLUMNS]
    if not tasks:
        raise InputError(f"{rpath}: no task columns beside run_id")
    if not metrics:
        raise InputError(f"{mpath}: no metric columns beside run_id")
    by_id = {rid: (i, r) for i, (rid, r) in enumerate(_run_ids(mpath, mrows), 1)}
    ids, names, weights, values = [], [], [], []
    seen: set[str] = set()
    for i, (rid, r) in enumerate(_run_ids(rpath, rrows), 1):
        seen.add(rid)
        if rid not in by_id:
            raise InputError(f"{rpath}: row {i}: run {rid!r} has no row in {METRICS}")
        w = np.array([_number(rpath, i, t, r.get(t)) for t in tasks])
        if (w < 0).any():
            bad = tasks[int(np.argmax(w < 0))]
            raise InputError(f"{rpath}: row {i}, column {bad!r}: negative weight")
        if abs(w.sum() - 1.0) > SUM_TOLERANCE:
            raise InputError(f"{rpath}: row {i}: weights sum to {w.sum():.4f}, not 1")
        mi, mr = by_id[rid]
        ids.append(rid)
        names.append((r.get("name") or "").strip() or rid)
        # Within the tolerance, rescaled; exactly on the simplex (to float noise), as read.
        weights.append(w if abs(w.sum() - 1.0) < 1e-12 else w / w.sum())
        values.append([_number(mpath, mi, m, mr.get(m)) for m in metrics])
    missing = sorted(set(by_id) - seen)
    if missing:
        raise InputError(f"{mpath}: run {missing[0]!r} has no row in {RATIOS}")
    return ProxyRuns(ids, tasks, np.array(weights), metrics, np.array(values), names)


def save_runs(folder: str | Path, runs: ProxyRuns, *, with_metrics: bool = True) -> None:
    """Write ``ratios.csv`` and ``metrics.csv`` (each atomically), olmix's layout;
    ``with_metrics=False``: the ratios only (a design, before any run was measured)."""
    folder = Path(folder)
    tables = [(RATIOS, runs.tasks, runs.weights)]
    if with_metrics:
        tables.append((METRICS, runs.metrics, runs.values))
    for fname, cols, table in tables:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["run_id", "name", *cols])
        for rid, name, row in zip(runs.run_ids, runs.names, table, strict=True):
            w.writerow([rid, name, *(repr(float(x)) for x in row)])
        atomic_write_bytes(folder / fname, buf.getvalue().encode())


# -- designing proxy runs -----------------------------------------------------------------

def checked_caps(caps) -> np.ndarray:
    """Per-task caps (each at most 1) that leave room for a mixture: they sum to >= 1."""
    caps = np.minimum(np.asarray(caps, dtype=np.float64), 1.0)
    if caps.sum() < 1 - 1e-9:
        raise InputError(f"the caps sum to {caps.sum():.4f} < 1; no mixture fits them")
    return caps


def onto_capped_simplex(w: np.ndarray, caps: np.ndarray | None) -> np.ndarray:
    """``w`` (>= 0, any sum) rescaled onto the simplex with every weight at most its cap:
    capped weights are fixed at their caps and the rest rescaled over what is left,
    until none exceeds its cap (the caps must sum to >= 1)."""
    w = np.maximum(np.asarray(w, dtype=np.float64), 0.0)
    w = w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))
    if caps is None:
        return w
    caps = checked_caps(caps)
    fixed = np.zeros(len(w), dtype=bool)
    for _ in range(len(w)):
        free = ~fixed
        left = 1.0 - caps[fixed].sum()
        base = w[free]
        w = w.copy()
        w[fixed] = caps[fixed]
        # Normalise before scaling: base * left underflows for subnormal weights.
        w[free] = base / base.sum() * left if base.sum() > 0 else (
            caps[free] * left / caps[free].sum())
        over = free & (w > caps + 1e-15)
        if not over.any():
            break
        fixed |= over
    return np.minimum(w, caps)


def design_runs(prior: Sequence[float], n_runs: int, *, seed: int = 0,
                floor: float | None = None, caps: np.ndarray | None = None) -> np.ndarray:
    """RegMix's recipe: Dirichlet draws around ``prior ** 0.5`` (renormalised), with a
    concentration log-spaced over [0.1, 5] x n so some runs are near the prior and some
    far; each weight floored at ``floor`` (default 0.1/n) and renormalised, so small tasks
    are never zeroed and the fit sees every task; then held under ``caps`` (epoch limits),
    so every design can be sampled."""
    p = np.asarray(prior, dtype=np.float64)
    if p.ndim != 1 or len(p) < 2 or (p < 0).any() or not p.sum() > 0:
        raise InputError("design: prior must be >= 0 with a positive sum over >= 2 tasks")
    if n_runs < 1:
        raise InputError(f"design: number of runs must be >= 1, got {n_runs}")
    n = len(p)
    base = np.sqrt(p / p.sum())
    base = base / base.sum()
    floor = 0.1 / n if floor is None else float(floor)
    if not (math.isfinite(floor) and 0 <= floor and floor * n < 1):
        raise InputError(f"design: floor must be >= 0 and floor x {n} tasks below 1, "
                         f"got {floor}")
    rng = np.random.default_rng(seed)
    scales = np.geomspace(0.1, 5.0, n_runs) * n
    out = np.empty((n_runs, n))
    for k, s in enumerate(scales):
        w = rng.dirichlet(np.maximum(base * s, 1e-3))
        w = np.maximum(w, floor)
        out[k] = onto_capped_simplex(w / w.sum(), caps)
    return out


# -- the log-linear law -------------------------------------------------------------------

@dataclass
class LogLinearLaw:
    """loss(p) = exp(log_c) + exp(t . p)."""

    log_c: float
    t: np.ndarray

    def predict(self, weights: np.ndarray) -> np.ndarray:
        return math.exp(self.log_c) + np.exp(np.asarray(weights) @ self.t)


def fit_log_linear(weights: np.ndarray, y: np.ndarray, *, delta: float = 0.02,
                   seed: int = 0, starts: int = 12) -> LogLinearLaw:
    """Huber-robust least squares (``scipy.optimize.least_squares``, ``loss='huber'``,
    ``f_scale=delta``) from several starts; the lowest robust cost wins."""
    from scipy.optimize import least_squares

    W, y = np.asarray(weights, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = W.shape[1]

    def resid(x):
        return np.exp(x[0]) + np.exp(np.clip(W @ x[1:], -50, 50)) - y

    def jac(x):
        e = np.exp(np.clip(W @ x[1:], -50, 50))
        return np.column_stack([np.full(len(y), np.exp(x[0])), W * e[:, None]])

    rng = np.random.default_rng(seed)
    inits = []
    # A linear start: log(y - c) ~ W t for a floor c below every measured loss.
    for frac in (0.5, 0.9):
        c = frac * float(y.min())
        t0, *_ = np.linalg.lstsq(W, np.log(np.maximum(y - c, 1e-6)), rcond=None)
        inits.append(np.concatenate([[math.log(max(c, 1e-6))], t0]))
    for log_c in np.linspace(-2, 1.5, max(1, starts - len(inits))):
        inits.append(np.concatenate([[log_c], rng.uniform(-1, 0.1, n)]))
    best = None
    for x0 in inits:
        res = least_squares(resid, x0, jac=jac, loss="huber", f_scale=delta, max_nfev=2000)
        if best is None or res.cost < best.cost:
            best = res
    assert best is not None
    return LogLinearLaw(float(best.x[0]), best.x[1:].copy())


@dataclass
class BoostedLaw:
    """loss(p) predicted by gradient-boosted trees (no functional form)."""

    model: Any

    def predict(self, weights: np.ndarray) -> np.ndarray:
        return self.model.predict(np.atleast_2d(np.asarray(weights, dtype=np.float64)))


def check_fit(fit: str) -> None:
    """``fit`` is one of FITS, and gbm's library is installed: refused before any work."""
    if not isinstance(fit, str) or fit not in FITS:
        raise InputError(f"regression: fit must be one of {', '.join(FITS)}, got {fit!r}")
    if fit == "gbm":
        import importlib.util

        if importlib.util.find_spec("sklearn") is None:
            raise InputError("regression: fit 'gbm' needs scikit-learn "
                             "(pip install 'taskpgm[gbm]')")


def fit_boosted(weights: np.ndarray, y: np.ndarray, *, seed: int = 0) -> BoostedLaw:
    """Gradient-boosted trees on the mixture weights (squared error, deterministic: no
    early stopping or subsampling). Leaves hold at least a tenth of the runs, so a few
    dozen runs still split."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    W, y = np.asarray(weights, dtype=np.float64), np.asarray(y, dtype=np.float64)
    model = HistGradientBoostingRegressor(
        max_iter=200, learning_rate=0.05, max_leaf_nodes=8,
        min_samples_leaf=max(2, len(y) // 10), early_stopping=False, random_state=seed)
    return BoostedLaw(model.fit(W, y))


def fit_law(weights: np.ndarray, y: np.ndarray, *, fit: str = "log-linear",
            delta: float = 0.02, seed: int = 0):
    """The ``fit`` law of one metric."""
    if fit == "gbm":
        return fit_boosted(weights, y, seed=seed)
    return fit_log_linear(weights, y, delta=delta, seed=seed)


def cross_validated_spearman(weights: np.ndarray, values: np.ndarray, *, folds: int = 5,
                             seed: int = 0, delta: float = 0.02,
                             fit: str = "log-linear") -> list[float]:
    """Per metric: Spearman correlation between measured values and values predicted by
    a law fitted without them (k-fold over runs; NaN with fewer than 4 runs)."""
    from scipy.stats import spearmanr

    W, V = np.asarray(weights), np.asarray(values)
    N = len(W)
    if N < 4:
        return [math.nan] * V.shape[1]
    k = min(folds, N)
    order = np.random.default_rng(seed).permutation(N)
    out = []
    for j in range(V.shape[1]):
        pred = np.empty(N)
        for f in range(k):
            test = order[f::k]
            train = np.setdiff1d(order, test)
            law = fit_law(W[train], V[train, j], fit=fit, delta=delta, seed=seed)
            pred[test] = law.predict(W[test])
        rho = spearmanr(pred, V[:, j]).statistic
        out.append(float(rho) if np.isfinite(rho) else math.nan)
    return out


# -- the mixture --------------------------------------------------------------------------

def minimise_laws(laws: Sequence[LogLinearLaw], prior: np.ndarray, *, kl: float = 0.05,
                  caps: np.ndarray | None = None) -> np.ndarray:
    """argmin over the simplex (and ``p <= caps``) of mean_k law_k(p) + kl KL(p || prior)."""
    from scipy.optimize import minimize

    prior = np.asarray(prior, dtype=np.float64)
    prior = prior / prior.sum()
    n = len(prior)
    T = np.stack([law.t for law in laws])  # [m, n]
    hi = np.ones(n) if caps is None else checked_caps(caps)
    eps = 1e-12
    safe_prior = np.maximum(prior, eps)

    def f(p):
        p = np.maximum(p, eps)
        e = np.exp(np.clip(T @ p, -50, 50))
        val = e.mean() + kl * float(np.sum(p * np.log(p / safe_prior)))
        grad = (e[:, None] * T).mean(axis=0) + kl * (np.log(p / safe_prior) + 1.0)
        return val, grad

    x0 = np.minimum(prior, hi)
    x0 = x0 / x0.sum() if x0.sum() > 0 else np.full(n, 1.0 / n)
    cons = [{"type": "eq", "fun": lambda p: p.sum() - 1.0, "jac": lambda p: np.ones_like(p)}]
    best = None
    # Several starts (the prior, uniform, each vertex-leaning corner is too many): SLSQP
    # can stop early on steep laws; keep the best feasible answer.
    for start in (x0, onto_capped_simplex(np.ones(n), hi)):
        res = minimize(f, start, jac=True, method="SLSQP", bounds=[(0.0, h) for h in hi],
                       constraints=cons, options={"maxiter": 1000, "ftol": 1e-12})
        w = onto_capped_simplex(np.clip(res.x, 0.0, None), hi)
        val = f(w)[0]
        if best is None or val < best[0]:
            best = (val, w, res.success)
    if not best[2]:
        res = minimize(f, best[1], jac=True, method="trust-constr",
                       bounds=[(0.0, h) for h in hi],
                       constraints=[{"type": "eq", "fun": lambda p: p.sum() - 1.0}])
        w = onto_capped_simplex(np.clip(res.x, 0.0, None), hi)
        if f(w)[0] < best[0]:
            best = (f(w)[0], w, res.success)
    return best[1]


def minimise_boosted(laws: Sequence[BoostedLaw], prior: np.ndarray, *, kl: float = 0.05,
                     caps: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """RegMix's search: ``GBM_CANDIDATES`` mixtures drawn like the proxies (and the prior),
    each scored by mean_k law_k(p) + kl KL(p || prior); the mean of the best
    ``GBM_TOP``, held under the caps."""
    prior = np.asarray(prior, dtype=np.float64)
    prior = prior / prior.sum()
    hi = None if caps is None else checked_caps(caps)
    # No floor: unlike the proxies, a candidate may leave a harmful task out entirely.
    cand = np.vstack([design_runs(prior, GBM_CANDIDATES, seed=seed + 1, floor=0.0, caps=hi),
                      onto_capped_simplex(prior, hi)[None]])
    pred = np.mean([law.predict(cand) for law in laws], axis=0)
    safe = np.maximum(prior, 1e-12)
    logs = np.log(np.maximum(cand, 1e-300) / safe)
    score = pred + kl * np.sum(np.where(cand > 0, cand * logs, 0.0), axis=1)
    best = np.argsort(score, kind="stable")[:GBM_TOP]
    return onto_capped_simplex(cand[best].mean(axis=0), hi)


@dataclass
class RegressionFit:
    weights: np.ndarray
    laws: dict[str, Any]  # LogLinearLaw, or BoostedLaw with fit="gbm"
    spearman: dict[str, float | None]  # cross-validated, per metric (None: not computable)
    n_runs: int


def regression_weights(runs: ProxyRuns, *, metrics: Sequence[str] | None = None,
                       prior: np.ndarray | None = None, kl: float = 0.05,
                       caps: np.ndarray | None = None, delta: float = 0.02,
                       seed: int = 0, fit: str = "log-linear") -> RegressionFit:
    """Fit every metric's law on all runs and minimise their mean (prior: uniform)."""
    check_fit(fit)
    names = list(metrics) if metrics else list(runs.metrics)
    unknown = [m for m in names if m not in runs.metrics]
    if unknown:
        raise InputError(f"regression: no metric {unknown[0]!r} in the runs (have: "
                         f"{', '.join(runs.metrics)})")
    if len(runs.run_ids) < 2:
        raise InputError("regression: at least 2 proxy runs are needed to fit")
    if not (kl >= 0 and math.isfinite(kl)):
        raise InputError(f"regression: kl must be a finite number >= 0, got {kl}")
    cols = [runs.metrics.index(m) for m in names]
    for m, j in zip(names, cols, strict=True):
        if fit == "log-linear" and (runs.values[:, j] <= 0).any():
            raise InputError(f"regression: metric {m!r} has values <= 0; the law "
                             "exp(c) + exp(t.p) models a positive loss (lower is better): "
                             "use a loss, or e.g. 1 - accuracy")
    n = len(runs.tasks)
    prior = np.full(n, 1.0 / n) if prior is None else np.asarray(prior, dtype=np.float64)
    if prior.shape != (n,) or (prior < 0).any() or not prior.sum() > 0:
        raise InputError(f"regression: the prior must be {n} weights >= 0 with a positive sum")
    laws = {m: fit_law(runs.weights, runs.values[:, j], fit=fit, delta=delta, seed=seed)
            for m, j in zip(names, cols, strict=True)}
    rho = cross_validated_spearman(runs.weights, runs.values[:, cols], seed=seed, delta=delta,
                                   fit=fit)
    if fit == "gbm":
        w = minimise_boosted(list(laws.values()), prior, kl=kl, caps=caps, seed=seed)
    else:
        w = minimise_laws(list(laws.values()), prior, kl=kl, caps=caps)
    # JSON has no NaN: a correlation that cannot be computed (< 4 runs, constant
    # predictions) is None.
    spearman = {m: (float(r) if math.isfinite(r) else None)
                for m, r in zip(names, rho, strict=True)}
    return RegressionFit(w, laws, spearman, len(runs.run_ids))


def mean_spearman(spearman: dict[str, float | None]) -> float | None:
    """Mean of the finite held-out rank correlations (None when there are none)."""
    vals = [r for r in spearman.values() if r is not None]
    return float(np.mean(vals)) if vals else None
