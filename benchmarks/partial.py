"""Partial scoring against full scoring, on a finished full-scoring run's scores.

    python benchmarks/partial.py SCORES [--fractions 0.3 0.2] [--samplings random balanced
        adaptive] [--bootstrap 100 0] [--seeds 0 1 2]

For each fraction and sampling, the pairs the pipeline would score (``sample_mask`` with
the run's seed; ``adaptive``: the balanced first round, then ``adaptive_pairs`` on its
completed means, as the scores stage does) are kept and the rest dropped; the affinity is
computed as the affinity stage does (``compute_affinity(..., complete=True)``, PMI, token
normalisation) with and without bootstrap intervals, and the default mixture
(``taskpgm.solve``) is compared with the one from every score at the same ``bootstrap``:
L1 distance, and the full mixture's own L1 to uniform for scale. What is measured is the
affinity and mixture stages; scoring time falls with the number of shards scored
(benchmarks/README.md, the growing pool). Prints one JSON line per row.
"""
import argparse
import json
import time

import numpy as np

import taskpgm
from taskpgm.affinity import compute_affinity
from taskpgm.affinity.completion import adaptive_pairs, sample_mask
from taskpgm.affinity.compute import affinity_tasks
from taskpgm.affinity.pmi import mean_scores
from taskpgm.pipeline.adaptive import first_round, planned
from taskpgm.scores import ScoreTable

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("scores")
parser.add_argument("--fractions", type=float, nargs="+", default=[0.3, 0.2])
parser.add_argument("--samplings", nargs="+", default=["random", "balanced", "adaptive"])
parser.add_argument("--bootstrap", type=int, nargs="+", default=[100, 0])
parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                    help="run.seed values: each draws its own pairs and bootstrap")
args = parser.parse_args()

t0 = time.perf_counter()
table = ScoreTable.load(args.scores)
names, _ = affinity_tasks(table)
n = len(names)
mean_scores(table, table.tasks, table.experts, "token", allow_missing=True)  # read every shard
print(json.dumps({"tasks": n, "shards": n * n, "load_s": round(time.perf_counter() - t0, 1)}),
      flush=True)


def scored(fraction: float, sampling: str, seed: int) -> np.ndarray:
    if sampling != "adaptive":
        return sample_mask(n, fraction, seed=seed, strategy=sampling, names=names)
    first = first_round(names, fraction, seed)
    total, n_first = planned(n, fraction)
    sub = table.without(_pairs(~first))
    means = mean_scores(sub, names, names, "token", allow_missing=True).means
    return first | adaptive_pairs(means, first, total - n_first, seed=seed)


def _pairs(mask: np.ndarray) -> list[tuple[str, str]]:
    return [(names[i], names[j]) for i, j in zip(*np.nonzero(mask), strict=True)]


full = {(b, seed): taskpgm.solve(compute_affinity(table, bootstrap=b, seed=seed,
                                                  normalize="token")).weights
        for b in args.bootstrap for seed in args.seeds}
for b in args.bootstrap:
    l1 = [float(np.abs(full[b, seed] - 1 / n).sum()) for seed in args.seeds]
    print(json.dumps({"bootstrap": b, "full_l1_to_uniform": round(float(np.mean(l1)), 4)}),
          flush=True)
for fraction in args.fractions:
    for sampling in args.samplings:
        rows = {b: [] for b in args.bootstrap}
        for seed in args.seeds:
            mask = scored(fraction, sampling, seed)
            sub = table.without(_pairs(~mask))
            for b in args.bootstrap:
                aff = compute_affinity(sub, bootstrap=b, seed=seed, normalize="token",
                                       complete=True)
                rows[b].append(float(np.abs(taskpgm.solve(aff).weights - full[b, seed]).sum()))
        for b, l1 in rows.items():
            print(json.dumps({"fraction": fraction, "sampling": sampling, "bootstrap": b,
                              "seeds": len(l1), "l1_to_full_mean": round(float(np.mean(l1)), 4),
                              "l1_to_full_max": round(float(np.max(l1)), 4)}), flush=True)
