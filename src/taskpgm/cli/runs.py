"""``taskpgm runs``: proxy runs for the regression mixer, in olmix's CSV layout.

    taskpgm runs design --pool POOL --runs 64 --out DIR   # mixtures to train (ratios.csv)
    taskpgm runs fit DIR [--metric M ...] [--kl 0.05] [--out mixture.json]
    taskpgm runs export RUN_DIR DIR                       # a pipeline run's strategies
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taskpgm.cli.common import console
from taskpgm.errors import InputError

runs_app = typer.Typer(help="Proxy runs (olmix-style ratios.csv + metrics.csv) and the "
                       "regression mixer fitted on them (RegMix / olmix log-linear).",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    from taskpgm.cli.solve import flag_errors

    for name, fn in (("design", design), ("fit", fit), ("export", export)):
        runs_app.command(name=name)(flag_errors(fn))
    app.add_typer(runs_app, name="runs")


def _pool_prior(pool: Path) -> tuple[list[str], list[float]]:
    from taskpgm.cli.solve import _pool_train_sizes

    sizes, _ = _pool_train_sizes(pool)
    return list(sizes), list(sizes.values())


def design(
    out: Annotated[Path, typer.Option(help="Folder to write ratios.csv into.")],
    runs: Annotated[int, typer.Option(help="Number of proxy runs (RegMix: 4-8x the number "
                                      "of tasks).")],
    pool: Annotated[Path | None, typer.Option(help="Task pool: its training tasks, with "
                                              "their sizes as the prior.")] = None,
    tasks: Annotated[str | None, typer.Option(help="Comma-separated task names (uniform "
                                              "prior) instead of --pool.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the draws.")] = 0,
    floor: Annotated[float | None, typer.Option(help="Smallest weight of a task (default "
                                                "0.1/n).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing ratios.csv "
                                        "(and remove its metrics.csv).")] = False,
) -> None:
    """Mixtures to train proxies on: Dirichlet draws around prior^0.5 (RegMix's recipe)."""
    import numpy as np

    from taskpgm.mixture.regression import ProxyRuns, design_runs, save_runs

    if (pool is None) == (tasks is None):
        raise InputError("give --pool POOL or --tasks a,b,c (one of them)")
    if pool is not None:
        names, prior = _pool_prior(pool)
    else:
        names = [t.strip() for t in (tasks or "").split(",") if t.strip()]
        if len(set(names)) != len(names):
            raise InputError("--tasks: a task is named twice")
        prior = [1.0] * len(names)
    old = [p for p in (out / "ratios.csv", out / "metrics.csv") if p.exists()]
    if old and not force:
        # New designs beside old metrics would be joined to them by run id, silently.
        raise InputError(f"{old[0]}: exists; a new design would not match its runs "
                         "(choose another --out, or --force to replace both)")
    W = design_runs(prior, runs, seed=seed, floor=floor)
    for p in old:
        p.unlink()
    ids = [f"run{k:04d}" for k in range(runs)]
    # Only the ratios are a design; the metrics are what the user measures.
    save_runs(out, ProxyRuns(ids, names, W, [], np.zeros((runs, 0))), with_metrics=False)
    console.print(f"wrote {out / 'ratios.csv'}: {runs} mixtures over {len(names)} tasks; "
                  "train a proxy on each and write metrics.csv (run_id, one column per "
                  "metric, lower is better)")


def fit(
    runs_dir: Annotated[Path, typer.Argument(help="Folder with ratios.csv and metrics.csv.")],
    metric: Annotated[list[str] | None, typer.Option(help="Metric columns to minimise "
                                                     "(their mean; default all).")] = None,
    kl: Annotated[float, typer.Option(help="Weight of KL(p || prior): how far from the "
                                      "prior the mixture may go.")] = 0.05,
    pool: Annotated[Path | None, typer.Option(help="Task pool: its sizes as the prior "
                                              "(default: uniform).")] = None,
    max_epochs: Annotated[float | None, typer.Option(help="Cap each task at this many "
                                                     "epochs of --budget (needs --pool).")
                          ] = None,
    budget: Annotated[float | None, typer.Option(help="Examples the mixture will sample "
                                                 "(for --max-epochs).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write mixture.json here.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the fit's starts and folds.")] = 0,
    fit_kind: Annotated[str, typer.Option("--fit", help="log-linear (olmix's law, Huber) or "
                                          "gbm (gradient-boosted trees, RegMix-style "
                                          "search; needs scikit-learn).")] = "log-linear",
) -> None:
    """Fit loss(p) per metric (exp(c) + exp(t.p) by default) and minimise the fit."""
    import numpy as np

    from taskpgm.cli.solve import _print_mixture
    from taskpgm.mixture.record import Mixture
    from taskpgm.mixture.regression import (
        BoostedLaw,
        check_fit,
        load_runs,
        mean_spearman,
        regression_weights,
    )

    check_fit(fit_kind)  # before reading anything
    runs = load_runs(runs_dir)
    prior = caps = None
    if pool is not None:
        names, sizes = _pool_prior(pool)
        by = dict(zip(names, sizes, strict=True))
        missing = [t for t in runs.tasks if t not in by]
        if missing:
            raise InputError(f"{runs_dir}/ratios.csv: task {missing[0]!r} is not a training "
                             f"task of pool {pool}")
        prior = np.array([by[t] for t in runs.tasks])
        if max_epochs is not None:
            if budget is None:
                raise InputError("--max-epochs needs --budget (examples to be sampled)")
            if not (max_epochs > 0 and budget > 0):
                raise InputError(f"--max-epochs and --budget must be > 0, got {max_epochs} "
                                 f"and {budget}")
            caps = np.minimum(max_epochs * prior / budget, 1.0)
    elif max_epochs is not None:
        raise InputError("--max-epochs needs --pool (the tasks' sizes)")
    elif budget is not None:
        raise InputError("--budget is read with --max-epochs and --pool only")
    res = regression_weights(runs, metrics=metric, prior=prior, kl=kl, caps=caps, seed=seed,
                             fit=fit_kind)
    laws = {m: ({"fit": "gbm"} if isinstance(law, BoostedLaw)
                else {"log_c": law.log_c, "t": law.t.tolist()}) for m, law in res.laws.items()}
    mix = Mixture("regression", runs.tasks, res.weights,
                  params={"runs": str(runs_dir), "metrics": list(res.laws), "kl": kl,
                          "fit": fit_kind, "prior": "sizes" if pool is not None else "uniform"},
                  diagnostics={"n_runs": res.n_runs, "cv_spearman": res.spearman,
                               "cv_spearman_mean": mean_spearman(res.spearman),
                               "laws": laws})
    _print_mixture(mix, 20)
    if fit_kind == "log-linear" and res.n_runs < len(runs.tasks) + 2:
        console.print(f"warning: {res.n_runs} runs for {len(runs.tasks) + 1} parameters per "
                      "law: the fit is underdetermined (RegMix uses 4-8x the number of tasks)")
    for m, rho in res.spearman.items():
        if rho is None:
            console.print(f"held-out rank correlation, {m}: not computable (< 4 runs or "
                          "constant predictions)")
            continue
        warn = "" if rho >= 0.5 else "  (weak: the fit cannot rank its runs)"
        console.print(f"held-out rank correlation, {m}: {rho:.3f}{warn}")
    if out is not None:
        mix.save(out)


def export(
    run_dir: Annotated[Path, typer.Argument(help="A finished `taskpgm run` directory.")],
    out: Annotated[Path, typer.Argument(help="Folder for ratios.csv and metrics.csv.")],
) -> None:
    """A run's strategies as proxy runs: their mixtures and evaluation losses."""
    from taskpgm.mixture.record import Mixture
    from taskpgm.mixture.regression import ProxyRuns, save_runs
    from taskpgm.report.records import ModelEval

    mixtures = sorted((run_dir / "mixtures").glob("*.json"))
    if not mixtures:
        raise InputError(f"{run_dir}/mixtures: no strategy mixtures (is it a finished run?)")
    ids, weights, values = [], [], []
    tasks: list[str] | None = None
    metrics: list[str] | None = None
    for path in mixtures:
        name = path.stem
        ev_path = run_dir / "eval" / f"{name}.json"
        if not ev_path.is_file():
            continue  # a strategy not evaluated yet
        mix = Mixture.load(path)
        if mix.method == "auto":
            continue  # the chosen candidate's run again: a duplicate point for the fit
        ev = ModelEval.load(ev_path)
        if tasks is None:
            tasks = list(mix.tasks)
        elif list(mix.tasks) != tasks:
            raise InputError(f"{path}: other tasks than {mixtures[0]}")
        by_task = {t.task: t.loss_per_token for t in ev.tasks}
        cols = [f"loss:{t}" for t in sorted(by_task)] + ["loss_mean"]
        if metrics is None:
            metrics = cols
        elif cols != metrics:
            raise InputError(f"{ev_path}: evaluated on other tasks than the first strategy")
        row = [by_task[t] for t in sorted(by_task)]
        ids.append(name)
        weights.append(mix.weights)
        values.append([*row, ev.mean("loss_per_token")])
    if not ids:
        raise InputError(f"{run_dir}/eval: no evaluated strategy")
    save_runs(out, ProxyRuns(ids, tasks or [], weights, metrics or [], values))
    console.print(f"wrote {out / 'ratios.csv'} and {out / 'metrics.csv'}: {len(ids)} runs")
