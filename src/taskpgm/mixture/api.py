"""``solve``: one entry point over every mixing strategy, and the strategy registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve

from taskpgm.affinity.io import AffinityMatrix, validate_matrix
from taskpgm.choices import DEFAULT_KERNEL, METHOD_OPTIONS, OPTION_TYPES, as_number, parse_option
from taskpgm.errors import InputError
from taskpgm.mixture import baselines
from taskpgm.mixture.greedy import greedy_select
from taskpgm.mixture.kernels import build_kernel
from taskpgm.mixture.qp import check_bounds, kkt_residual, project_capped_simplex, solve_qp
from taskpgm.mixture.record import Mixture
from taskpgm.mixture.reference import family_labels, given_weights, group_balanced_weights
from taskpgm.mixture.unary import align_values, unary_utilities

# Default trade-off, as r = beta/lam in units of 1/n (r = R_REL_DEFAULT / n). With rowsum
# utilities and no binding bounds the optimum is r_rel * uniform + (1 - r_rel) * the pure
# diversity point argmin p'Kp, so 0.5 weighs the two ends equally: chosen on that
# principle, not by tuning on any evaluation (docs/DECISIONS.md D8). r_rel = 0 is the pure
# diversity end itself (the unary term vanishes: min p'Kp on the simplex).
R_REL_DEFAULT = 0.5
# With balanced utilities (the default's, with the calibrated kernel) the default is the
# representativeness end, r_rel = 1: the optimum is q = 1/(K 1) itself, which counts every
# group of near-copies once and gives every task mass. The diversity end argmin p'Kp is
# ill-posed inside such a group (K nearly singular there) and piled a family onto one of
# its templates, or gave tasks zero mass (183 of the 316-task PMI matrix); chosen by
# docs/DECISIONS.md D25's rule on development seeds (D26).
R_REL_BALANCED = 1.0


def default_r_rel(unary: str) -> float:
    """The trade-off used when neither r_rel nor beta/lam is given, for these utilities."""
    return R_REL_BALANCED if unary == "balanced" else R_REL_DEFAULT

PAPER_LABEL = ("reference procedure: equality-only closed form, then Euclidean projection "
               "onto the simplex (not the constrained optimum)")


@dataclass
class MixtureInputs:
    """Everything a strategy may use, validated and aligned with ``names``."""

    names: list[str]
    affinity: np.ndarray | None
    sizes: np.ndarray | None
    kernel: str = DEFAULT_KERNEL
    unary: str = "rowsum"
    targets: list[str] | None = None
    utilities: Any = None
    beta: float = 1.0
    lam: float = 1.0
    budget_k: int | None = None
    caps: np.ndarray | None = None
    floors: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)
    # Standard error of each affinity entry (from bootstrap intervals), when known.
    noise: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class Strategy:
    name: str
    run: Callable[[MixtureInputs], Mixture]
    needs_affinity: bool
    needs_sizes: bool
    description: str
    # Extra keyword options (``**params`` of solve) the strategy reads; any other given
    # option is an error rather than silently ignored.
    options: tuple[str, ...] = ()


# ---------------------------------------------------------------- TaskPGM problem
@dataclass
class EnergyProblem:
    K: np.ndarray
    u: np.ndarray
    Q: np.ndarray  # lam K
    c: np.ndarray  # beta u
    lower: np.ndarray
    upper: np.ndarray
    kernel_info: dict[str, Any]


def build_problem(inp: MixtureInputs) -> EnergyProblem:
    if inp.affinity is None:
        raise InputError("TaskPGM needs an affinity matrix (parameter 'affinity')")
    calibrated = inp.kernel == "calibrated"
    kern = build_kernel(inp.affinity, inp.kernel, floor=inp.params.get("kernel_floor"),
                        sigma=inp.params.get("sigma"),
                        noise=inp.noise if calibrated else None,
                        ridge=inp.params.get("ridge"),
                        bandwidth=inp.params.get("bandwidth"))
    u = unary_utilities(kern.matrix, inp.names, inp.unary, targets=inp.targets,
                        utilities=inp.utilities)
    if inp.params.get("scale_utilities"):
        # Measured utilities (nats/token) on the scale of this kernel's rowsum utilities,
        # so r_rel sets a tilt of the same size whatever the kernel (D4).
        from taskpgm.affinity.utilities import scale_like_rowsum

        u = scale_like_rowsum(u, kern.matrix)
    try:
        lo, hi = check_bounds(inp.n, inp.floors, inp.caps)
    except ValueError as exc:
        raise InputError(f"infeasible caps/floors: {exc}") from None
    return EnergyProblem(kern.matrix, u, inp.lam * kern.matrix, inp.beta * u, lo, hi,
                         {"kernel": kern.name, **kern.info})


def _common_params(inp: MixtureInputs) -> dict[str, Any]:
    out: dict[str, Any] = {"kernel": inp.kernel, "unary": inp.unary, "beta": inp.beta,
                           "lam": inp.lam, "r": inp.beta / inp.lam,
                           "r_rel": inp.beta / inp.lam * inp.n}
    if inp.targets:
        out["targets"] = list(inp.targets)
    if inp.caps is not None:
        out["caps"] = inp.caps
    if inp.floors is not None:
        out["floors"] = inp.floors
    for key in ("kernel_floor", "sigma", "ridge", "bandwidth", "scale_utilities"):
        if inp.params.get(key) is not None:
            out[key] = inp.params[key]
    return out


def _run_taskpgm(inp: MixtureInputs) -> Mixture:
    prob = build_problem(inp)
    if inp.budget_k is not None or inp.params.get("cost_budget") is not None:
        return _run_greedy(inp, prob)
    res = solve_qp(prob.Q, prob.c, prob.lower, prob.upper)
    diag = {"energy": res.energy, "kkt_residual": res.kkt_residual,
            "support_size": res.support_size, "iterations": res.iterations,
            "factorizations": res.factorizations, "certified_by": res.phase,
            "multiplier": res.nu, "kernel_info": prob.kernel_info}
    return Mixture("taskpgm", list(inp.names), res.x, _common_params(inp), diag)


def _run_greedy(inp: MixtureInputs, prob: EnergyProblem) -> Mixture:
    if inp.caps is not None or inp.floors is not None:
        raise InputError("budgeted selection (parameter 'budget_k', or parameter "
                         "'cost_budget') does not take parameter 'caps' or parameter 'floors'")
    costs = inp.params.get("costs")
    cost_arr = None if costs is None else align_values(costs, inp.names, "costs")
    if cost_arr is not None and np.any(cost_arr <= 0):
        raise InputError("costs: every task cost must be > 0")
    res = greedy_select(prob.Q, prob.c, k=inp.budget_k, costs=cost_arr,
                        cost_budget=inp.params.get("cost_budget"))
    if not res.order:
        raise InputError("cost budget is smaller than every task's cost")
    diag = {"energy": res.energies[-1], "kkt_residual": res.kkt_residual,
            "support_size": int(np.count_nonzero(res.x > 0)),
            "picked": [inp.names[i] for i in res.order], "energy_after_pick": res.energies,
            "exact_evaluations": res.exact_evaluations, "kernel_info": prob.kernel_info}
    params = _common_params(inp)
    params.update({"budget_k": inp.budget_k, "cost_budget": inp.params.get("cost_budget")})
    return Mixture("taskpgm", list(inp.names), res.x, params, diag)


def paper_weights(Q: np.ndarray, c: np.ndarray, lower=None, upper=None) -> np.ndarray:
    """The reference procedure: p = K^-1 (c + nu 1) with sum(p) = 1, then projection."""
    try:
        fac = cho_factor(Q, lower=True, check_finite=False)
    except LinAlgError:
        raise InputError("taskpgm-paper needs a positive definite kernel; use kernel "
                         "'shift' or 'clip' (which add a floor)") from None
    a = cho_solve(fac, c, check_finite=False)
    b = cho_solve(fac, np.ones(len(c)), check_finite=False)
    p = a + (1.0 - a.sum()) / b.sum() * b
    lo, hi = check_bounds(len(c), lower, upper)
    return project_capped_simplex(p, lo, hi)


def _run_paper(inp: MixtureInputs) -> Mixture:
    if inp.budget_k is not None:
        raise InputError("taskpgm-paper has no budgeted variant; use method 'taskpgm'")
    prob = build_problem(inp)
    p = paper_weights(prob.Q, prob.c, prob.lower, prob.upper)
    energy = float(0.5 * p @ prob.Q @ p - prob.c @ p)
    diag = {"energy": energy,
            "kkt_residual": kkt_residual(prob.Q, prob.c, p, prob.lower, prob.upper),
            "support_size": int(np.count_nonzero(p > 0)), "procedure": PAPER_LABEL,
            "kernel_info": prob.kernel_info}
    return Mixture("taskpgm-paper", list(inp.names), p, _common_params(inp), diag)


# ---------------------------------------------------------------- size baselines
def _need_sizes(inp: MixtureInputs, method: str) -> np.ndarray:
    if inp.sizes is None:
        raise InputError(f"method {method!r} needs task sizes (parameter 'sizes')")
    return inp.sizes


def _param(inp: MixtureInputs, key: str, method: str, meaning: str) -> float:
    v = inp.params.get(key)
    if v is None:
        raise InputError(f"method {method!r} needs parameter {key!r} ({meaning})")
    return float(v)


def _baseline(method: str, weights: np.ndarray, inp: MixtureInputs,
              params: dict[str, Any]) -> Mixture:
    return Mixture(method, list(inp.names), weights, params,
                   {"support_size": int(np.count_nonzero(weights > 0))})


def _run_uniform(inp: MixtureInputs) -> Mixture:
    return _baseline("uniform", baselines.uniform_weights(inp.n), inp, {})


def _run_size(inp: MixtureInputs) -> Mixture:
    return _baseline("size", baselines.size_weights(_need_sizes(inp, "size")), inp, {})


def _run_temperature(inp: MixtureInputs) -> Mixture:
    t = _param(inp, "temperature", "temperature", "the temperature T > 0")
    w = baselines.temperature_weights(_need_sizes(inp, "temperature"), t)
    return _baseline("temperature", w, inp, {"temperature": t})


def _run_capped(inp: MixtureInputs) -> Mixture:
    cap = _param(inp, "cap", "capped", "the T5 mixing limit K, in examples")
    w = baselines.capped_weights(_need_sizes(inp, "capped"), cap)
    return _baseline("capped", w, inp, {"cap": cap})


def _run_unimax(inp: MixtureInputs) -> Mixture:
    budget = _param(inp, "unimax_budget", "unimax", "the budget B, in examples")
    epochs = _param(inp, "max_epochs", "unimax", "at most N epochs of any task")
    sizes = _need_sizes(inp, "unimax")
    alloc = baselines.unimax_allocation(sizes, budget, epochs)
    m = _baseline("unimax", alloc / alloc.sum(), inp,
                  {"unimax_budget": budget, "max_epochs": epochs})
    m.diagnostics["allocated_examples"] = alloc
    return m


# ---------------------------------------------------------------- reference mixtures
def _run_given(inp: MixtureInputs) -> Mixture:
    w, source = given_weights(inp.params.get("weights"), inp.names)
    return _baseline("given", w, inp, {"weights_from": source} if source else {})


def _run_family_balanced(inp: MixtureInputs) -> Mixture:
    labels = family_labels(inp.names, inp.params.get("families"))
    m = _baseline("family-balanced", group_balanced_weights(labels), inp, {})
    m.diagnostics["groups"] = len(set(labels))
    return m


def _run_cluster_balanced(inp: MixtureInputs) -> Mixture:
    from taskpgm.affinity.redundancy import redundancy_clusters

    if inp.affinity is None:
        raise InputError("method 'cluster-balanced' needs an affinity matrix "
                         "(parameter 'affinity')")
    labels = redundancy_clusters(inp.affinity, inp.noise, inp.params.get("bandwidth"))
    m = _baseline("cluster-balanced", group_balanced_weights(labels.tolist()), inp,
                  {"noise": "per-entry" if inp.noise is not None else "unknown",
                   **({"bandwidth": inp.params["bandwidth"]}
                      if inp.params.get("bandwidth") is not None else {})})
    m.diagnostics.update({"groups": int(labels.max()) + 1, "clusters": labels.tolist()})
    return m


def _run_mixmin(inp: MixtureInputs) -> Mixture:
    from taskpgm.mixture.mixmin import mixmin_logprobs, mixmin_weights
    from taskpgm.scores import ScoreTable

    scores = inp.params.get("scores")
    if scores is None:
        raise InputError("method 'mixmin' needs the experts' scores (parameter 'scores': a "
                         "scores directory or a ScoreTable)")
    table = scores if isinstance(scores, ScoreTable) else ScoreTable.load(scores)
    targets = list(inp.targets) if inp.targets else list(inp.names)
    logp, example_weights = mixmin_logprobs(table, inp.names, targets)
    res = mixmin_weights(logp, example_weights=example_weights)
    params: dict[str, Any] = {"targets": targets}
    if not isinstance(scores, ScoreTable):
        params["scores"] = str(scores)
    m = _baseline("mixmin", res.weights, inp, params)
    # The interior-point solver leaves unused experts at ~1e-8, not exactly 0.
    m.diagnostics.update({"support_size": int(np.count_nonzero(res.weights > 1e-6)),
                          "loss": res.loss, "gap": res.gap, "iterations": res.iterations,
                          "converged": res.converged})
    return m


# How each strategy runs: (implementation, needs_affinity, needs_sizes, description). The
# names and options are taskpgm.choices.METHOD_OPTIONS (light, so the config and the CLI
# read them without importing this module).
_RUNNERS: dict[str, tuple[Callable[[MixtureInputs], Mixture], bool, bool, str]] = {
    "taskpgm": (_run_taskpgm, True, False,
                "exact minimiser of (lam/2) p'Kp - beta u'p on the simplex"),
    "taskpgm-paper": (_run_paper, True, False, PAPER_LABEL),
    "uniform": (_run_uniform, False, False, "1/n each"),
    "size": (_run_size, False, True, "proportional to task size"),
    "temperature": (_run_temperature, False, True, "p ~ size^(1/T)"),
    "capped": (_run_capped, False, True, "T5: p ~ min(size, K)"),
    "unimax": (_run_unimax, False, True,
               "UniMax: uniform up to N epochs per task within budget B"),
    "given": (_run_given, False, False, "the user's own weights"),
    "family-balanced": (_run_family_balanced, False, False,
                        "uniform over family labels, then over a family's tasks"),
    "cluster-balanced": (_run_cluster_balanced, True, False,
                         ("uniform over clusters of redundant tasks found in the affinity, "
                          "then within a cluster")),
    "mixmin": (_run_mixmin, False, False,
               "MixMin: weights minimising the expert ensemble's loss on target probes"),
}
STRATEGIES: dict[str, Strategy] = {
    name: Strategy(name, *_RUNNERS[name], options=options)
    for name, options in METHOD_OPTIONS.items()
}
STRATEGY_OPTIONS = frozenset(o for s in STRATEGIES.values() for o in s.options)


def check_options(method: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse an option no strategy knows (a typo), one this method would ignore, or a
    value of the wrong type or range; returns the options with numeric strings read."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key not in STRATEGY_OPTIONS:
            raise InputError(f"unknown option {key!r} for method {method!r} (options: "
                             f"{', '.join(STRATEGIES[method].options) or 'none'})")
        if value is not None and key not in STRATEGIES[method].options:
            raise InputError(f"option {key!r} does not apply to method {method!r}")
        if value is not None:
            try:
                value = parse_option(OPTION_TYPES[key], value)
            except ValueError as exc:
                raise InputError(f"parameter {key!r} {exc}") from None
        out[key] = value
    return out


# ---------------------------------------------------------------- entry points
def _resolve_names(affinity, names: Sequence[str] | None, sizes) -> tuple[list[str],
                                                                         np.ndarray | None]:
    if isinstance(affinity, AffinityMatrix):
        if names is not None and list(names) != list(affinity.names):
            raise InputError("names do not match the affinity matrix's names")
        m = validate_matrix(affinity.matrix, "affinity", list(affinity.names))
        return list(affinity.names), m
    if affinity is not None:
        m = validate_matrix(affinity, "affinity", list(names) if names is not None else None)
        return (list(names) if names is not None else [f"task{i}" for i in range(len(m))]), m
    if names is not None:
        return list(names), None
    if isinstance(sizes, Mapping):
        return list(sizes), None
    raise InputError("give an affinity matrix, task names, or a mapping of task sizes")


def _number(x: float, what: str, *, zero_ok: bool) -> float:
    v = as_number(x)
    if v is None:
        raise InputError(f"parameter {what!r} must be a number, got {x!r}")
    if not (np.isfinite(v) and (v >= 0 if zero_ok else v > 0)):
        raise InputError(f"parameter {what!r} must be a finite number "
                         f"{'>= 0' if zero_ok else '> 0'}, got {x!r}")
    return v


def resolve_trade_off(n: int, beta: float | None, lam: float | None,
                      r_rel: float | None, default: float = R_REL_DEFAULT
                      ) -> tuple[float, float]:
    """(beta, lam) from either ``beta``/``lam`` or ``r_rel`` (r = beta/lam = r_rel/n).

    Giving neither uses ``r_rel = default`` (see :func:`default_r_rel`); giving only one of beta/lam leaves the
    other at 1. Both forms at once would be ambiguous, so that is an error. ``r_rel = 0``
    is the pure-diversity end: the unary term vanishes and the optimum is argmin p'Kp on
    the simplex. ``beta`` and ``lam`` stay > 0 (weights of two terms; r_rel spells the end).
    """
    if r_rel is not None:
        if beta is not None or lam is not None:
            raise InputError("give r_rel or beta/lam, not both (r = beta/lam = r_rel/n)")
        return _number(r_rel, "r_rel", zero_ok=True) / max(n, 1), 1.0
    if beta is None and lam is None:
        return default / max(n, 1), 1.0
    return (_number(1.0 if beta is None else beta, "beta", zero_ok=False),
            _number(1.0 if lam is None else lam, "lam", zero_ok=False))


def make_inputs(
    affinity=None,
    *,
    names: Sequence[str] | None = None,
    kernel: str = DEFAULT_KERNEL,
    unary: str = "auto",
    targets: Sequence[str] | None = None,
    utilities=None,
    beta: float | None = None,
    lam: float | None = None,
    r_rel: float | None = None,
    budget_k: int | None = None,
    caps=None,
    floors=None,
    sizes=None,
    noise=None,
    **params: Any,
) -> MixtureInputs:
    """Validate and align every input (raises InputError with one clear line)."""
    task_names, matrix = _resolve_names(affinity, names, sizes)
    if unary == "auto":
        # Each kernel with its natural utilities: balanced for the calibrated kernel (the
        # default, D12/D16), the paper's rowsum for every reference kernel.
        unary = "balanced" if kernel == "calibrated" else "rowsum"
    n = len(task_names)
    if len(set(task_names)) != n:
        raise InputError("a task name appears twice")
    beta, lam = resolve_trade_off(n, beta, lam, r_rel, default_r_rel(unary))
    if budget_k is not None:
        k = as_number(budget_k) if not isinstance(budget_k, str) else None
        if k is None or not np.isfinite(k) or k != int(k) or k < 1:
            raise InputError(f"parameter 'budget_k' must be a positive integer, "
                             f"got {budget_k!r}")
        if k > n:
            raise InputError(f"parameter 'budget_k' = {budget_k} exceeds the number of "
                             f"tasks ({n})")
        budget_k = int(budget_k)
    size_arr = None if sizes is None else align_values(sizes, task_names, "sizes")
    cap_arr = None if caps is None else align_values(caps, task_names, "caps")
    floor_arr = None if floors is None else align_values(floors, task_names, "floors")
    for arr, what in ((cap_arr, "caps"), (floor_arr, "floors")):
        if arr is not None and np.any(arr < 0):
            raise InputError(f"{what}: values must be >= 0")
    if cap_arr is not None or floor_arr is not None:
        try:
            check_bounds(n, floor_arr, cap_arr)
        except ValueError as exc:
            raise InputError(f"infeasible caps/floors: {exc}") from None
    if noise is None and isinstance(affinity, AffinityMatrix) and affinity.lower is not None \
            and affinity.upper is not None:
        from taskpgm.affinity.redundancy import noise_from_intervals

        level = float(affinity.provenance.get("interval_level", 0.95))
        noise = noise_from_intervals(affinity.lower, affinity.upper, level)
    if noise is not None:
        from taskpgm.affinity.redundancy import check_noise

        noise = check_noise(noise, n)
    return MixtureInputs(task_names, matrix, size_arr, kernel, unary,
                         list(targets) if targets else None, utilities, beta, lam, budget_k,
                         cap_arr, floor_arr, dict(params), noise)


def solve(
    affinity=None,
    *,
    names: Sequence[str] | None = None,
    method: str = "taskpgm",
    kernel: str = DEFAULT_KERNEL,
    unary: str = "auto",
    targets: Sequence[str] | None = None,
    utilities=None,
    beta: float | None = None,
    lam: float | None = None,
    r_rel: float | None = None,
    budget_k: int | None = None,
    caps=None,
    floors=None,
    sizes=None,
    noise=None,
    **params: Any,
) -> Mixture:
    """Mixture weights by ``method`` (a key of :data:`STRATEGIES`).

    ``affinity``: square matrix (ndarray) or :class:`AffinityMatrix`; may be None for the
    size baselines when ``names`` or a ``sizes`` mapping names the tasks. ``caps``,
    ``floors``, ``sizes``, ``utilities``: mappings name -> value or arrays in task order.
    Trade-off: ``r_rel`` (r = beta/lam = r_rel/n; 1 = uniform with rowsum utilities,
    0 = pure diversity, min p'Kp) or ``beta``/``lam``; neither -> ``r_rel = 1`` with balanced
    utilities (the default's: q = 1/(K 1) itself, D26), ``R_REL_DEFAULT`` (0.5) with any
    other.
    Defaults: the redundancy-aware ``calibrated`` kernel and ``unary="auto"``, i.e.
    ``balanced`` utilities with ``kernel="calibrated"`` and rowsum with every other
    kernel (docs/DECISIONS.md D12, D15-D16); ``kernel="shift", unary="rowsum"`` is the
    paper's reference. ``noise``:
    standard errors of the affinity entries (taken from an :class:`AffinityMatrix`'s
    bootstrap intervals when it has them).
    Extra ``params`` (each strategy lists its own in ``STRATEGIES[m].options``; any other
    is an error): ``kernel_floor``, ``sigma``, ``ridge``, ``bandwidth`` (kernels; bandwidth
    also of cluster-balanced), ``temperature``,
    ``cap``, ``unimax_budget``, ``max_epochs`` (baselines), ``costs`` + ``cost_budget``
    (budgeted TaskPGM by cost), ``weights`` (given), ``families`` (family-balanced),
    ``scores`` (mixmin: a ScoreTable or scores directory; ``targets`` = the tasks whose
    probe sets it fits, default all tasks).
    """
    if method not in STRATEGIES:
        raise InputError(f"unknown method {method!r} (choose from {', '.join(STRATEGIES)})")
    params = check_options(method, params)
    inp = make_inputs(affinity, names=names, kernel=kernel, unary=unary, targets=targets,
                      utilities=utilities, beta=beta, lam=lam, r_rel=r_rel, budget_k=budget_k,
                      caps=caps, floors=floors, sizes=sizes, noise=noise, **params)
    return STRATEGIES[method].run(inp)


# ---------------------------------------------------------------- r-path
@dataclass
class RPath:
    """Exact optima along r = beta/lambda (energies are E/lambda)."""

    names: list[str]
    rs: np.ndarray
    weights: np.ndarray  # (len(rs), n)
    energies: np.ndarray
    support_sizes: np.ndarray
    kkt_residuals: np.ndarray
    iterations: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"format": "taskpgm-rpath", "version": 1, "tasks": list(self.names),
                "params": self.params,
                "points": [{"r": float(r), "energy": float(e), "support_size": int(s),
                            "kkt_residual": float(k), "iterations": int(it),
                            "weights": [float(x) for x in w]}
                           for r, e, s, k, it, w in zip(self.rs, self.energies,
                                                        self.support_sizes,
                                                        self.kkt_residuals, self.iterations,
                                                        self.weights, strict=True)]}


def default_rs(n: int, num: int = 21) -> np.ndarray:
    """r from (1/n)/100 to 100/n, log-spaced and through r = 1/n (uniform with rowsum)."""
    return np.geomspace(0.01 / n, 100.0 / n, num)


def r_path(
    affinity=None,
    *,
    rs: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
    kernel: str = DEFAULT_KERNEL,
    unary: str = "auto",
    targets: Sequence[str] | None = None,
    utilities=None,
    caps=None,
    floors=None,
    noise=None,
    **params: Any,
) -> RPath:
    """Exact mixtures for each r = beta/lambda (lambda = 1), warm-starting each solve
    from its neighbour's support. With ``unary='rowsum'`` only r matters and r = 1/n
    gives the uniform mixture."""
    params = check_options("taskpgm", params)
    inp = make_inputs(affinity, names=names, kernel=kernel, unary=unary, targets=targets,
                      utilities=utilities, caps=caps, floors=floors, noise=noise, **params)
    prob = build_problem(inp)
    r_arr = default_rs(inp.n) if rs is None else np.asarray(list(rs), dtype=np.float64)
    if r_arr.size == 0 or not np.all(np.isfinite(r_arr)) or np.any(r_arr < 0):
        raise InputError("r values must be finite numbers >= 0 (0 = pure diversity)")
    out_w, out_e, out_s, out_k, out_i = [], [], [], [], []
    warm = None
    for r in r_arr:
        res = solve_qp(prob.K, r * prob.u, prob.lower, prob.upper, warm_free=warm)
        warm = (res.x > prob.lower) & (res.x < prob.upper)
        out_w.append(res.x)
        out_e.append(res.energy)
        out_s.append(res.support_size)
        out_k.append(res.kkt_residual)
        out_i.append(res.iterations)
    params_out = _common_params(inp)
    for key in ("beta", "lam", "r", "r_rel"):
        params_out.pop(key)
    return RPath(list(inp.names), r_arr, np.array(out_w), np.array(out_e), np.array(out_s),
                 np.array(out_k), np.array(out_i), params_out)
