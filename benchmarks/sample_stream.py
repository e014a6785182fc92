"""Streaming sampler benchmark: examples/s and peak memory, beside a naive sampler.

Builds a synthetic pool (default 300 tasks x 10,000 = 3,000,000 examples) in a temp
dir, samples 1,000,000 examples with ``taskpgm.sample.materialise``, and, on a smaller
pool (default 30 tasks, 300,000 examples), compares it side by side with a naive
sampler that loads every example into memory first. Each measurement runs in its own
child process so peak RSS (ru_maxrss) is its own. Prints one JSON line.

    python benchmarks/sample_stream.py [--tasks 300 --per-task 10000 --budget 1000000]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def build_pool(root: Path, n_tasks: int, per_task: int) -> None:
    from taskpgm.tasks.pool import PoolManifest, TaskInfo, write_manifest

    rng = random.Random(0)
    infos = []
    for t in range(n_tasks):
        name = f"task{t:04d}"
        d = root / "tasks" / name
        d.mkdir(parents=True)
        with open(d / "train.jsonl", "w") as fh:
            for i in range(per_task):
                words = " ".join(str(rng.randint(0, 999)) for _ in range(12))
                fh.write(json.dumps({"id": f"{name}-{i}", "prompt": f"Task {t}: {words}",
                                     "response": words[::-1]}) + "\n")
        infos.append(TaskInfo(name=name, counts={"train": per_task, "probe": 0, "eval": 0}))
    write_manifest(root, PoolManifest(tasks=infos))
    from taskpgm.mixture.record import Mixture

    w = np.random.default_rng(0).dirichlet(np.ones(n_tasks))
    Mixture("bench", [i.name for i in infos], w).save(root / "mix.json")


def naive_sample(pool_dir: Path, budget: int, out: Path, seed: int) -> None:
    """Load every example, then draw: the straightforward in-memory way."""
    from taskpgm.mixture.record import Mixture
    from taskpgm.sample import allocate
    from taskpgm.tasks.pool import Pool

    pool = Pool.load(pool_dir)
    mix = Mixture.load(pool_dir / "mix.json")
    everything = {t: pool.examples(t, "train") for t in pool.names}
    counts = allocate(mix.weights, budget)
    rng = np.random.default_rng(seed)
    rows = []
    for (t, exs), c in zip(everything.items(), counts, strict=True):
        idx = np.concatenate([rng.permutation(len(exs)) for _ in range(-(-c // len(exs)))])[:c]
        rows.extend({"task": t, "id": exs[i].id, "prompt": exs[i].prompt,
                     "response": exs[i].response} for i in idx)
    rng.shuffle(rows)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "train.jsonl", "w") as fh:
        fh.writelines(json.dumps(r, sort_keys=True) + "\n" for r in rows)


def child(kind: str, pool_dir: str, budget: int, out: str) -> None:
    t0 = time.perf_counter()
    if kind == "stream":
        from taskpgm.sample import materialise

        materialise(pool_dir, Path(pool_dir) / "mix.json", budget, out, seed=0)
    else:
        naive_sample(Path(pool_dir), budget, Path(out), 0)
    secs = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": secs, "peak_mb": peak_mb}))


def measure(kind: str, pool_dir: Path, budget: int, out: Path) -> dict:
    res = subprocess.run([sys.executable, __file__, "--child", kind, str(pool_dir), str(budget),
                          str(out)], capture_output=True, text=True, check=True)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    r["examples_per_s"] = budget / r["seconds"]
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=300)
    ap.add_argument("--per-task", type=int, default=10_000)
    ap.add_argument("--budget", type=int, default=1_000_000)
    ap.add_argument("--small-tasks", type=int, default=30)
    ap.add_argument("--small-budget", type=int, default=100_000)
    ap.add_argument("--child", nargs=4)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], a.child[1], int(a.child[2]), a.child[3])
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small = tmp / "small"
        build_pool(small, a.small_tasks, a.per_task)
        naive = measure("naive", small, a.small_budget, tmp / "o_naive")
        stream_small = measure("stream", small, a.small_budget, tmp / "o_small")
        big = tmp / "big"
        build_pool(big, a.tasks, a.per_task)
        stream = measure("stream", big, a.budget, tmp / "o_big")
    print(json.dumps({
        "benchmark": "sample_stream",
        "big": {"tasks": a.tasks, "pool_examples": a.tasks * a.per_task, "budget": a.budget,
                **{k: round(v, 2) for k, v in stream.items()}},
        "small_side_by_side": {
            "tasks": a.small_tasks, "pool_examples": a.small_tasks * a.per_task,
            "budget": a.small_budget,
            "stream": {k: round(v, 2) for k, v in stream_small.items()},
            "naive": {k: round(v, 2) for k, v in naive.items()},
            "speed_ratio_stream_over_naive": round(naive["seconds"] / stream_small["seconds"], 3),
            "peak_mem_ratio_naive_over_stream": round(naive["peak_mb"] / stream_small["peak_mb"], 3),
        },
    }))


if __name__ == "__main__":
    main()
