"""Assemble the report of a run: checks, r-path, task influence, evaluations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from taskpgm.affinity.io import AffinityMatrix, load_affinity
from taskpgm.mixture.record import Mixture
from taskpgm.report import Check, InfluenceRow, ModelEval, PathData, ReportInputs, build_report

# -- informativeness checks (DESIGN.md, "What makes a quality benchmark informative") ----


def check_experts_beat_base(table, train: list[str], base: str = "base") -> Check:
    """Each expert should clearly beat the base model on its own task's probe set."""
    if base not in table.experts:
        return Check("experts beat the base model on their own task", None, "no base scores")
    gains = []
    for t in train:
        n_tok = np.maximum(table.n_tokens(t).astype(np.float64), 1.0)
        gain = np.mean((table.shard(t, t).logprob - table.shard(base, t).logprob) / n_tok)
        gains.append(float(gain))
    g = np.asarray(gains)
    wins = int((g > 0).sum())
    detail = (f"{wins}/{len(g)} experts beat the base on their own probe set; per-token "
              f"log-likelihood gain median {np.median(g):.3f}, min {g.min():.3f} nats")
    return Check("experts beat the base model on their own task", wins == len(g), detail)


def check_family_structure(aff: AffinityMatrix, families: dict[str, str | None],
                           seed: int = 0, permutations: int = 2000) -> Check:
    """Within-family affinity should exceed across-family affinity if the proxy sees skills.

    Reports both means and a one-sided permutation p-value (family labels shuffled).
    """
    name = "within-family affinity exceeds across-family affinity"
    labels = [families.get(t) for t in aff.names]
    if any(lab is None for lab in labels) or len(set(labels)) < 2:
        return Check(name, None, "the pool has no family labels")
    s = 0.5 * (aff.matrix + aff.matrix.T)
    iu = np.triu_indices(aff.n, 1)
    vals = s[iu]
    lab = np.array(labels)

    def diff(lb: np.ndarray) -> tuple[float, float, float]:
        same = (lb[:, None] == lb[None, :])[iu]
        if same.all() or not same.any():
            return 0.0, float("nan"), float("nan")
        w, a = vals[same].mean(), vals[~same].mean()
        return float(w - a), float(w), float(a)

    d, within, across = diff(lab)
    if not np.isfinite(within):
        return Check(name, None, "every family has one task")
    rng = np.random.default_rng(seed)
    null = np.array([diff(rng.permutation(lab))[0] for _ in range(permutations)])
    p = (1 + int((null >= d).sum())) / (permutations + 1)
    detail = (f"mean within-family {within:.4f} vs across-family {across:.4f} "
              f"(difference {d:.4f}, permutation p = {p:.3g})")
    return Check(name, bool(d > 0 and p < 0.05), detail)


def check_learnable(evals: dict[str, ModelEval], base: ModelEval | None) -> Check:
    """Models trained on mixtures should beat the untrained-on-mixture base on held-out loss."""
    name = "evaluation is learnable (mixture models beat the base model)"
    if base is None or not evals:
        return Check(name, None, "no evaluations")
    b = base.mean("loss_per_token")
    losses = {k: v.mean("loss_per_token") for k, v in evals.items()}
    better = [k for k, v in losses.items() if v is not None and b is not None and v < b]
    scores = {k: v.mean_score() for k, v in evals.items()}
    bs = base.mean_score()
    sc = "" if bs is None else (
        f"; accuracy/exact match: base {bs:.3f}, strategies "
        f"{min(x for x in scores.values() if x is not None):.3f}.."
        f"{max(x for x in scores.values() if x is not None):.3f}")
    detail = (f"{len(better)}/{len(losses)} strategies beat the base held-out loss {b:.3f}"
              f"{sc}")
    return Check(name, len(better) == len(losses), detail)


def check_budget_binds(evals: dict[str, ModelEval], steps: int, batch: int, budget: int
                       ) -> Check:
    """With enough steps to learn everything every mixture ties: report the spread."""
    losses = [v.mean("loss_per_token") for v in evals.values()]
    losses = [x for x in losses if x is not None]
    epochs = steps * batch / max(budget, 1)
    if len(losses) < 2:
        return Check("strategies differ (the budget binds)", None,
                     f"training passes over the sampled data: {epochs:.2f}")
    spread = max(losses) - min(losses)
    return Check("strategies differ (the budget binds)", None,
                 f"spread of mean held-out loss across strategies {spread:.4f} nats/token; "
                 f"training makes {epochs:.2f} passes over the {budget} sampled examples "
                 "(informational: judge differences with the paired benchmark's intervals)")


def _strategy_with_method(mixtures: dict[str, Mixture], evals: dict[str, ModelEval],
                          method: str) -> str | None:
    """The first evaluated strategy whose mixture was made by ``method`` (or, without a
    mixture record, a strategy named like the method)."""
    for name, m in mixtures.items():
        if m.method == method and name in evals:
            return name
    if method in evals and method not in mixtures:
        return method
    return None


def check_family_balanced_beats_uniform(evals: dict[str, ModelEval],
                                        mixtures: dict[str, Mixture],
                                        families: dict[str, str | None]) -> Check:
    """Can this pool reward redundancy-awareness at all? Only if the mixture that uses the
    known family structure beats uniform on held-out loss (one seed: a first look only)."""
    name = "family-balanced beats uniform"
    fb = _strategy_with_method(mixtures, evals, "family-balanced")
    un = _strategy_with_method(mixtures, evals, "uniform")
    if fb is None or un is None:
        missing = " and ".join(m for m, s in (("family-balanced", fb), ("uniform", un))
                               if s is None)
        return Check(name, None, f"no evaluated {missing} strategy in this run")
    ref = mixtures.get(fb) or mixtures.get(un)
    tasks = list(ref.tasks) if ref is not None else list(families)
    counts: dict[str, int] = {}
    for t in tasks:
        if families.get(t):
            counts[families[t]] = counts.get(families[t], 0) + 1
    if not any(c > 1 for c in counts.values()):
        return Check(name, None, "the pool has no family with more than one task: "
                                 "family-balanced is uniform")
    lf, lu = evals[fb].mean("loss_per_token"), evals[un].mean("loss_per_token")
    if lf is None or lu is None:
        return Check(name, None, "no held-out loss for family-balanced or uniform")
    ok = bool(lf < lu)
    detail = (f"mean held-out loss/token: {fb} {lf:.4f} vs {un} {lu:.4f} "
              f"(difference {lf - lu:+.4f}); one seed only: the paired benchmark decides")
    if not ok:
        detail += ("; where family-balanced does not beat uniform, this pool cannot show "
                   "any redundancy-aware method winning")
    return Check(name, ok, detail)


def check_mixtures_move(mixtures: dict[str, Mixture], families: dict[str, str | None]
                        ) -> Check:
    """How far each non-uniform mixture is from uniform, per task and per family, and
    the smallest family mass (a family with zero mass is named, and the check warns).

    A mixture within a few hundredths of uniform cannot differ from it by more than the
    sampling noise of the benchmark: say so beside the results.
    """
    from taskpgm.report.groups import ZERO, family_groups, has_family_labels, shorten

    name = "mixtures move away from uniform (and keep every family)"
    parts = []
    warn = False
    for sname, m in mixtures.items():
        if m.method == "uniform":
            continue
        w = np.asarray(m.weights, dtype=np.float64)
        n = len(w)
        l1_task = float(np.abs(w - 1.0 / n).sum())
        head = f"{sname}: L1 to uniform {l1_task:.3f} over tasks"
        tail = f"(largest weight {w.max():.3f} vs 1/n = {1 / n:.3f})"
        if not has_family_labels(m.tasks, families):
            parts.append(f"{head} {tail}; no family labels")
            continue
        wd = m.as_dict()
        groups = family_groups(m.tasks, families)
        fam_w = [sum(wd[t] for t in g.members) for g in groups]
        fam_u = [len(g.members) / n for g in groups]
        l1_fam = sum(abs(a - b) for a, b in zip(fam_w, fam_u, strict=True))
        i_min = int(np.argmin(fam_w))
        zero = [g.label for g, x in zip(groups, fam_w, strict=True) if x <= ZERO]
        part = (f"{head}, {l1_fam:.3f} over families {tail}; smallest family mass "
                f"{fam_w[i_min]:.3f} ({groups[i_min].label})")
        if zero:
            warn = True
            said = "; ".join(f"family {f} gets zero mass" for f in zero[:5])
            if len(zero) > 5:
                said += f" (and {len(zero) - 5} more: {shorten(zero[5:], 3)})"
            # Named first: a family the strategy drops must not hide in the numbers.
            part = f"{sname}: {said}; " + part[len(sname) + 2:]
        parts.append(part)
    if not parts:
        return Check(name, None, "no affinity-based (or other non-uniform) strategy in this "
                                 "run")
    return Check(name, None, "; ".join(parts), warn=warn)


# -- solver-derived views -----------------------------------------------------------------


def _solver_kwargs(ctx, mixture: Mixture) -> dict[str, Any]:
    """The options the main mixture was solved with (given utilities re-read from disk).

    The entries' noise (which the calibrated kernel reads) is not an option here: it comes
    from the affinity's bootstrap intervals, as when the mixture was solved, because
    :func:`compute_path` and :func:`compute_influence` pass the AffinityMatrix itself.
    """
    keep = ("kernel", "unary", "beta", "lam", "kernel_floor", "sigma", "ridge", "bandwidth",
            "scale_utilities")
    out = {k: mixture.params[k] for k in keep if k in mixture.params}
    m = ctx.cfg.mixture
    if m.beta is None and m.lam is None and "unary" in out:
        from taskpgm.mixture.api import default_r_rel

        # Re-solve at the same r_rel (not the same beta): removing a task changes n, and
        # r_rel (given, or the utilities' default) is what the config holds fixed.
        out.pop("beta", None), out.pop("lam", None)
        out["r_rel"] = m.r_rel if m.r_rel is not None else default_r_rel(out["unary"])
    if out.get("unary") == "given" and ctx.paths.utilities.is_file():
        from taskpgm.pipeline.stages import load_utilities

        _, u = load_utilities(ctx)
        out["utilities"] = u
    elif out.get("unary") in ("given", "target"):
        out["unary"] = "rowsum"  # cannot reproduce; show the reference path instead
    return out


def compute_path(aff: AffinityMatrix, points: int, **opts: Any) -> PathData:
    """TaskPGM's exact optimum over a log grid of r = beta/lambda through 1/n.

    ``aff`` is passed on as an AffinityMatrix, so the calibrated kernel gets the noise of
    its bootstrap intervals, as the mixture did.
    """
    from taskpgm.mixture import default_rs, r_path

    opts = {k: v for k, v in opts.items() if k not in ("beta", "lam", "r_rel")}
    path = r_path(aff, rs=default_rs(aff.n, points), **opts)
    return PathData(np.asarray(path.rs), np.asarray(path.weights), list(path.names))


def reduced_affinity(aff: AffinityMatrix, keep: list[int]) -> AffinityMatrix:
    """The affinity restricted to tasks ``keep``, intervals (hence noise) sliced alike."""
    ix = np.ix_(keep, keep)
    return AffinityMatrix([aff.names[j] for j in keep], np.asarray(aff.matrix)[ix], aff.kind,
                          None if aff.lower is None else np.asarray(aff.lower)[ix],
                          None if aff.upper is None else np.asarray(aff.upper)[ix],
                          dict(aff.provenance))


def compute_influence(aff: AffinityMatrix, mixture: Mixture, **opts: Any) -> list[InfluenceRow]:
    """Leave-one-task-out: re-solve without each task; L1 move of the rest and energy change.

    Each re-solve gets the reduced AffinityMatrix with its intervals sliced, so the
    calibrated kernel sees the same per-entry noise as the full solve (an explicit
    ``noise`` matrix in ``opts`` is sliced the same way).
    """
    from taskpgm.mixture import solve

    full = mixture.as_dict()
    e_full = float(mixture.diagnostics.get("energy", np.nan))
    rows = []
    opts = dict(opts)
    utilities = opts.pop("utilities", None)
    noise = opts.pop("noise", None)
    for i, t in enumerate(aff.names):
        keep = [j for j in range(aff.n) if j != i]
        if len(keep) < 2:
            break
        sub = reduced_affinity(aff, keep)
        kw = dict(opts)
        if utilities is not None:
            kw["utilities"] = np.asarray(utilities)[keep]
        if noise is not None:
            arr = np.asarray(noise, dtype=np.float64)
            kw["noise"] = arr[np.ix_(keep, keep)] if arr.ndim == 2 else arr
        m = solve(sub, names=sub.names, method="taskpgm", **kw)
        rest = np.array([full[n] for n in sub.names])
        rest = rest / rest.sum() if rest.sum() > 0 else rest
        l1 = float(np.abs(m.weights - rest).sum())
        e = float(m.diagnostics.get("energy", np.nan))
        rows.append(InfluenceRow(t, full[t], l1, e - e_full))
    return rows


def check_partial_scoring_settled(main: Mixture) -> Check:
    """Under partial scoring: does the main mixture stay put when solved from half the
    scored pairs? If not, the fraction scored has not settled it."""
    from taskpgm.pipeline.stages import SPLIT_HALF_WARN

    name = "partial scoring has settled the mixture"
    l1 = main.diagnostics.get("split_half_l1")
    if l1 is None:
        return Check(name, None, "no split-half check: too few scored pairs to halve")
    detail = (f"the mixture moves by L1 {l1:.3f} when solved from half the scored pairs "
              f"(warn above {SPLIT_HALF_WARN})")
    if l1 > SPLIT_HALF_WARN:
        detail += "; score a larger scoring.fraction"
        if main.params.get("kernel") != "shift":
            detail += (", or use mixture.kernel: shift, which completion errors move about "
                       "ten times less (docs/config.md)")
    return Check(name, bool(l1 <= SPLIT_HALF_WARN), detail)


def report_for_run(ctx) -> Path:
    from taskpgm.pipeline.stages import BASE_EVAL
    from taskpgm.scores import ScoreTable

    cfg, paths = ctx.cfg, ctx.paths
    aff = load_affinity(paths.affinity)
    pool = ctx.pool()
    mixtures = {s.name: Mixture.load(paths.strategy_mixture(s.name)) for s in cfg.strategies}
    main = Mixture.load(paths.mixture)
    evals = {s.name: ModelEval.load(paths.eval(s.name)) for s in cfg.strategies
             if paths.eval(s.name).is_file()}
    base = ModelEval.load(paths.eval(BASE_EVAL)) if paths.eval(BASE_EVAL).is_file() else None
    table = ScoreTable.load(paths.scores)
    train = ctx.train_task_names()
    families = {t.name: t.family for t in pool.tasks}
    checks = [
        check_experts_beat_base(table, train),
        check_family_structure(aff, families, seed=cfg.run.seed),
        check_learnable(evals, base),
        check_budget_binds(evals, cfg.train.steps, cfg.train.batch_size, cfg.sample.budget),
        check_family_balanced_beats_uniform(evals, mixtures, families),
        check_mixtures_move(mixtures, families),
    ]
    if cfg.scoring.fraction < 1:
        checks.append(check_partial_scoring_settled(main))
    opts = _solver_kwargs(ctx, main)
    path = compute_path(aff, cfg.report.path_points, **opts)
    infl = compute_influence(aff, main, **opts) if cfg.report.influence else None
    # No run directory in the text: the report is byte-identical wherever the run is.
    notes = [(f"Pool: {len(train)} training tasks, "
              f"{len(pool.heldout_tasks())} held-out tasks. Budget {cfg.sample.budget} "
              f"examples, {cfg.train.steps} training steps per strategy, seed {cfg.run.seed}.")]
    if unscored := aff.provenance.get("unscored_pairs"):
        n = len(train)
        notes.append(f"Partial scoring (scoring.fraction {cfg.scoring.fraction}, sampling "
                     f"{cfg.scoring.sampling}): {len(unscored)} "
                     f"of {n * n} (expert, task) pairs were not scored; their scores, and the "
                     "affinity entries that use them, are estimates from low-rank completion "
                     "(listed in affinity.npz, provenance 'unscored_pairs')"
                     + ("; their intervals add the completion's estimated error to the "
                        "bootstrap's." if aff.lower is not None else "."))
    inp = ReportInputs(aff, mixtures, evals, base, checks, path, infl,
                       title="taskpgm run report", notes=notes,
                       families={t: families.get(t) for t in train})
    out = build_report(paths.root, inp)
    from taskpgm.io import atomic_write_json

    atomic_write_json(paths.root / "checks.json", [c.to_json() for c in checks])
    return out
