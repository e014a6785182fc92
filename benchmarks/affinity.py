"""Affinity benchmark: PMI speed (vectorised vs naive) and the partial-scoring curve.

    python benchmarks/affinity.py [--tasks 316] [--examples 500] [--bootstrap 100]
                                  [--skip-speed] [--skip-completion]

Prints one JSON line per measurement. Speed is reported as ratios against a naive
pair-by-pair implementation measured side by side in the same run. BLAS is pinned to
one thread (set before numpy loads) so both sides run alike on a shared machine.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import time
from pathlib import Path

import numpy as np

from taskpgm.affinity import compute_affinity, pmi_from_means
from taskpgm.affinity.completion import CURVE_STRATEGIES, completion_curve
from taskpgm.affinity.synthetic import low_rank_means, table_from_means

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "pmi_316_tasks.npy"


def emit(**kw) -> None:
    print(json.dumps(kw, sort_keys=True), flush=True)


def naive_pmi(table, tasks) -> np.ndarray:
    """The formula written the obvious way: a double loop over pairs of tasks."""
    n = len(tasks)
    out = np.zeros((n, n))
    for i, a in enumerate(tasks):
        for j in range(i + 1, n):
            b = tasks[j]
            on_b = np.mean(table.shard(a, b).logprob - table.shard(b, b).logprob)
            on_a = np.mean(table.shard(b, a).logprob - table.shard(a, a).logprob)
            out[i, j] = out[j, i] = 0.5 * (on_b + on_a)
    return out


def naive_bootstrap(table, tasks, replicates, seed=0) -> np.ndarray:
    """Naive bootstrap: per replicate, resample each task's examples, then the double loop."""
    rng = np.random.default_rng(seed)
    n = len(tasks)
    reps = np.zeros((replicates, n, n))
    for r in range(replicates):
        idx = {t: rng.integers(0, len(table.shard(t, t)), len(table.shard(t, t))) for t in tasks}
        for i, a in enumerate(tasks):
            for j in range(i + 1, n):
                b = tasks[j]
                on_b = np.mean(table.shard(a, b).logprob[idx[b]] - table.shard(b, b).logprob[idx[b]])
                on_a = np.mean(table.shard(b, a).logprob[idx[a]] - table.shard(a, a).logprob[idx[a]])
                reps[r, i, j] = reps[r, j, i] = 0.5 * (on_b + on_a)
    return reps


def timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def speed(n_tasks: int, n_examples: int, bootstrap: int) -> None:
    means = low_rank_means(n_tasks, seed=0)
    table, t_build = timed(table_from_means, means, n_examples, noise=2.0, seed=0)
    tasks = table.tasks
    aff, t_vec = timed(compute_affinity, table)
    ref, t_naive = timed(naive_pmi, table, tasks)
    emit(bench="pmi", tasks=n_tasks, examples=n_examples, vectorised_s=round(t_vec, 3),
         naive_s=round(t_naive, 3), speedup=round(t_naive / t_vec, 2),
         max_abs_diff=float(np.abs(aff.matrix - ref).max()), build_table_s=round(t_build, 2))
    boot, t_boot = timed(compute_affinity, table, bootstrap=bootstrap, seed=0)
    # The naive bootstrap costs one double loop per replicate; time a few replicates and
    # compare per replicate (the full B would take minutes).
    few = 3
    _, t_nb = timed(naive_bootstrap, table, tasks, few)
    per_vec = (t_boot - t_vec) / bootstrap
    per_naive = t_nb / few
    width = (boot.upper - boot.lower)[~np.eye(n_tasks, dtype=bool)]
    emit(bench="pmi_bootstrap", tasks=n_tasks, examples=n_examples, replicates=bootstrap,
         vectorised_total_s=round(t_boot, 3), vectorised_per_replicate_s=round(per_vec, 4),
         naive_per_replicate_s=round(per_naive, 3),
         speedup_per_replicate=round(per_naive / max(per_vec, 1e-9), 1),
         median_interval_width=float(np.median(width)),
         warnings=len(boot.provenance["warnings"]))


def mixture_fns():
    """The default mixture (calibrated kernel; no intervals here, so noise unknown) and
    the `shift` kernel's, which partial scoring moves far less."""
    from taskpgm.mixture import solve

    return {"default": (lambda s: solve(s).weights,
                        "taskpgm.solve(S): calibrated kernel, bandwidth 0.10, r_rel 1"),
            "shift": (lambda s: solve(s, kernel="shift", unary="rowsum").weights,
                      "taskpgm.solve(S, kernel=shift, unary=rowsum)")}


def completion(n_tasks: int, fractions, seed: int) -> None:
    datasets = {}
    # Synthetic: means observed from per-example scores (so with sampling noise).
    table = table_from_means(low_rank_means(n_tasks, rank=3, seed=1), 100, noise=2.0, seed=1)
    from taskpgm.affinity.pmi import mean_scores

    clean = mean_scores(table, table.tasks).means
    datasets["synthetic_rank3"] = clean
    # The same plus full-rank structure (std 1 nat) that no low-rank model captures.
    rough = clean + np.random.default_rng(2).normal(0.0, 1.0, clean.shape)
    datasets["synthetic_rank3_plus_fullrank"] = rough
    if REAL.is_file():
        s = np.load(REAL)
        # The real 316-task PMI matrix, used as M with a zero diagonal: then
        # pmi_from_means(M) == S exactly (S is symmetric with a zero diagonal), so the
        # curve measures how well the real matrix's structure survives partial scoring.
        m = s.copy()
        np.fill_diagonal(m, 0.0)
        assert np.allclose(pmi_from_means(m), s)
        datasets["real_pmi316_as_M"] = m
    for name, m in datasets.items():
        # The real M is symmetric, so "pairs" (both directions of a pair scored or
        # neither) is the honest test there; for the others one direction of an
        # unscored pair often gives the other away.
        strategies = CURVE_STRATEGIES if name.startswith("real") else ("random", "adaptive")
        for strategy in strategies:
            for label, (fn, solver) in mixture_fns().items():
                t = time.perf_counter()
                rows = completion_curve(m, fractions, seed=seed, strategy=strategy,
                                        mixture_fn=fn)
                for row in rows:
                    emit(bench="completion", data=name, strategy=strategy, mixture=label,
                         solver=solver, **{k: (round(v, 4) if isinstance(v, float) else v)
                                           for k, v in row.items()})
                emit(bench="completion_time", data=name, strategy=strategy, mixture=label,
                     seconds=round(time.perf_counter() - t, 2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=316)
    ap.add_argument("--examples", type=int, default=500)
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-completion", action="store_true")
    args = ap.parse_args()
    if not args.skip_speed:
        speed(args.tasks, args.examples, args.bootstrap)
    if not args.skip_completion:
        completion(args.tasks, (1.0, 0.8, 0.6, 0.4, 0.3, 0.2), args.seed)


if __name__ == "__main__":
    main()
