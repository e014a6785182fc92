"""CLI: ``taskpgm solve`` — mixture weights from an affinity matrix (or task sizes)."""

from __future__ import annotations

import functools
import inspect
import re
from pathlib import Path
from typing import Annotated

import typer

from taskpgm.choices import DEFAULT_KERNEL, METHODS
from taskpgm.errors import InputError, TaskPGMError


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the main app."""
    app.command(name="solve")(flag_errors(solve_command))


# How the library names a parameter in its messages: ``parameter 'name'``, or ``name=True``
# for a switch.
_PARAMETER_RE = re.compile(r"\bparameter '([a-z_]+)'|\b([a-z_]+)=True\b")


def flag_message(message: str, command=None) -> str:
    """A library message with each parameter that ``command`` (default: ``solve``) has as
    a flag written as the flag (``parameter 'unimax_budget'`` -> ``--unimax-budget``,
    ``complete=True`` -> ``--complete``)."""
    options = set(inspect.signature(command or solve_command).parameters)

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return f"--{name.replace('_', '-')}" if name in options else m.group(0)

    return _PARAMETER_RE.sub(sub, message)


def flag_errors(command):
    """The library names parameters; on the command line the user set flags. Wraps a
    command so that its errors name the flags (see :func:`flag_message`)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except TaskPGMError as exc:
            msg = str(exc)
            mapped = flag_message(msg, command)
            if mapped == msg:
                raise
            raise type(exc)(mapped) from None

    return wrapper


def _opt_values(path: Path | None, what: str):
    if path is None:
        return None
    from taskpgm.mixture.unary import read_values

    return read_values(path, what)


def solve_command(
    affinity: Annotated[Path | None, typer.Option(help="Affinity matrix (.npy, .npz, .csv)."
                                                  )] = None,
    out: Annotated[Path | None, typer.Option(help="Write mixture.json here.")] = None,
    names: Annotated[Path | None, typer.Option(help="Task names (one per line / JSON list)."
                                               )] = None,
    method: Annotated[str, typer.Option(help=", ".join(METHODS))] = "taskpgm",
    kernel: Annotated[str, typer.Option(help="calibrated (the default: couples only tasks "
                                        "within noise of each other), shift (the paper's "
                                        "reference), simplex-shift, clip, exp, laplacian, "
                                        "none")
                      ] = DEFAULT_KERNEL,
    kernel_floor: Annotated[float | None, typer.Option(help="Kernel eigenvalue floor.")] = None,
    sigma: Annotated[float | None, typer.Option(help="Bandwidth for exp/laplacian.")] = None,
    ridge: Annotated[float | None, typer.Option(help="Ridge of the calibrated kernel "
                                                "(default 0.1).")] = None,
    bandwidth: Annotated[float | None, typer.Option(
        help="Calibrated kernel and cluster-balanced: the fraction of the median distance "
             "between tasks below which two tasks count as near-copies (default 0.10).")
    ] = None,
    unary: Annotated[str, typer.Option(help="auto (default: rowsum, or balanced with "
                                       "--kernel calibrated), balanced, rowsum (the paper's "
                                       "reference), target, given, none")] = "auto",
    targets: Annotated[str | None, typer.Option(help="Comma-separated target task names."
                                                )] = None,
    utilities: Annotated[Path | None, typer.Option(help="Utilities file (unary 'given')."
                                                   )] = None,
    r_rel: Annotated[float | None, typer.Option(
        help="Trade-off r = beta/lambda in units of 1/n (r = r_rel/n). With rowsum utilities "
        "1 = uniform, towards 0 = pure diversity (min p'Kp). Default 0.5 when neither "
        "--beta nor --lam is given.")] = None,
    beta: Annotated[float | None, typer.Option(
        help="Weight of the unary term (instead of --r-rel; default 1 if --lam is given).")] = None,
    lam: Annotated[float | None, typer.Option(
        help="Weight of the pairwise term, lambda (instead of --r-rel).")] = None,
    budget_k: Annotated[int | None, typer.Option(help="Pick at most k tasks (greedy).")] = None,
    costs: Annotated[Path | None, typer.Option(help="Per-task costs file (with --cost-budget)."
                                               )] = None,
    cost_budget: Annotated[float | None, typer.Option(help="Total cost budget.")] = None,
    caps: Annotated[Path | None, typer.Option(help="Per-task max weight: JSON or CSV.")] = None,
    floors: Annotated[Path | None, typer.Option(help="Per-task min weight: JSON or CSV."
                                                )] = None,
    sizes: Annotated[Path | None, typer.Option(help="Per-task sizes: JSON or CSV.")] = None,
    pool: Annotated[Path | None, typer.Option(
        help="Task pool directory: task sizes (train split counts from pool.json) for the "
        "size-based baselines, and the task names when no affinity or names are given.")
        ] = None,
    temperature: Annotated[float | None, typer.Option(help="Temperature T (method "
                                                      "temperature).")] = None,
    cap: Annotated[float | None, typer.Option(help="T5 mixing limit K (method capped).")] = None,
    unimax_budget: Annotated[float | None, typer.Option(help="UniMax budget B (examples)."
                                                        )] = None,
    max_epochs: Annotated[float | None, typer.Option(help="UniMax max epochs N.")] = None,
    weights: Annotated[Path | None, typer.Option(
        help="Method given: your mixture (mixture.json, or task,weight JSON/CSV).")] = None,
    scores: Annotated[Path | None, typer.Option(
        help="Method mixmin: the scores directory (fits the targets' probe sets, or every "
        "task's when --targets is not given).")] = None,
    path: Annotated[bool, typer.Option("--path", help="Solve along r = beta/lambda and print "
                                       "the path (written to --out).")] = False,
    r_values: Annotated[str | None, typer.Option(help="Comma-separated r values for --path."
                                                 )] = None,
    top: Annotated[int, typer.Option(help="Rows shown in the table.")] = 20,
) -> None:
    """Solve a task mixture and print it with its diagnostics."""
    from taskpgm.affinity.io import load_affinity, read_names
    from taskpgm.mixture import r_path, solve

    name_list = read_names(names) if names is not None else None
    pool_sizes = families = None
    if pool is not None:
        if sizes is not None:
            raise InputError("give --pool or --sizes, not both (--pool reads the sizes)")
        pool_sizes, families = _pool_train_sizes(pool)
        if name_list is None and (affinity is None or affinity.suffix.lower() == ".npy"):
            name_list = list(pool_sizes)  # a bare .npy has no names: the pool's order
    aff = load_affinity(affinity, name_list) if affinity is not None else None
    size_values = _opt_values(sizes, "sizes")
    if pool_sizes is not None:
        task_names = aff.names if aff is not None else name_list
        unknown = [t for t in task_names if t not in pool_sizes]
        if unknown:
            where = f"{affinity}" if aff is not None else "--names"
            raise InputError(f"{where}: task {unknown[0]!r} is not a training task of pool "
                             f"{pool} ({len(unknown)} of {len(task_names)} tasks are not)")
        size_values = {t: pool_sizes[t] for t in task_names}
    target_list = [t.strip() for t in targets.split(",") if t.strip()] if targets else None
    common = {"names": name_list if aff is None else None, "kernel": kernel, "unary": unary,
                  "targets": target_list, "utilities": _opt_values(utilities, "utilities"),
                  "caps": _opt_values(caps, "caps"), "floors": _opt_values(floors, "floors"),
                  "kernel_floor": kernel_floor, "sigma": sigma, "ridge": ridge,
                  "bandwidth": bandwidth}
    if path:
        if method != "taskpgm":
            raise InputError("--path is for --method taskpgm")
        rs = None
        if r_values:
            try:
                rs = [float(v) for v in r_values.split(",") if v.strip()]
            except ValueError:
                raise InputError(f"--r-values: not a list of numbers: {r_values!r}") from None
        result = r_path(aff, rs=rs, **common)
        _print_path(result)
        if out is not None:
            from taskpgm.io import atomic_write_json

            atomic_write_json(out, result.to_json())
        return
    mix = solve(aff, method=method, beta=beta, lam=lam, r_rel=r_rel, budget_k=budget_k,
                sizes=size_values, temperature=temperature, cap=cap,
                unimax_budget=unimax_budget, max_epochs=max_epochs,
                costs=_opt_values(costs, "costs"), cost_budget=cost_budget,
                weights=weights, scores=scores,
                families=_families_for(families, method, aff, name_list), **common)
    _print_mixture(mix, top)
    if out is not None:
        mix.save(out)


def _pool_train_sizes(root: Path) -> tuple[dict[str, float], dict[str, str | None]]:
    """Training tasks of a pool, their train split sizes and family labels, in pool order."""
    from taskpgm.tasks.pool import Pool

    p = Pool.load(root)
    out = {t.name: float(t.count("train")) for t in p.train_tasks()}
    if not out:
        raise InputError(f"{root}/pool.json: the pool has no training tasks")
    return out, {t.name: t.family for t in p.train_tasks()}


def _families_for(families, method: str, aff, name_list):
    """The pool's family labels, for the one method that reads them."""
    if method != "family-balanced":
        return None
    if families is None:
        raise InputError("method family-balanced reads family labels from the pool: "
                         "pass --pool POOL")
    names = aff.names if aff is not None else name_list
    return {t: families.get(t) for t in names}


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list) and len(v) > 8:
        return f"[{len(v)} values]"
    return str(v)


def _print_mixture(mix, top: int) -> None:
    import numpy as np
    from rich.table import Table

    from taskpgm.cli.common import console

    order = np.argsort(-mix.weights, kind="stable")
    table = Table(title=f"mixture: {mix.method}")
    table.add_column("task")
    table.add_column("weight", justify="right")
    for i in order[:top]:
        if mix.weights[i] <= 0 and i != order[0]:
            break
        table.add_row(mix.tasks[i], f"{mix.weights[i]:.6f}")
    rest = int(np.count_nonzero(mix.weights[order[top:]] > 0))
    if rest:
        table.add_row(f"... {rest} more with weight > 0", "")
    console.print(table)
    diag = Table(title="diagnostics")
    diag.add_column("key")
    diag.add_column("value", justify="right")
    for k, v in mix.diagnostics.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                diag.add_row(f"{k}.{k2}", _fmt(v2))
        else:
            diag.add_row(k, _fmt(v))
    console.print(diag)


def _print_path(result) -> None:
    from rich.table import Table

    from taskpgm.cli.common import console

    table = Table(title="r-path (r = beta/lambda; energies are E/lambda)")
    for col in ("r", "energy", "support", "kkt", "largest weight"):
        table.add_column(col, justify="right")
    for r, e, s, k, w in zip(result.rs, result.energies, result.support_sizes,
                             result.kkt_residuals, result.weights, strict=True):
        i = int(w.argmax())
        table.add_row(f"{r:.4g}", f"{e:.6g}", str(int(s)), f"{k:.1e}",
                      f"{result.names[i]} {w[i]:.3f}")
    console.print(table)
