"""A growing pool: add ADD tasks to a finished run on N tasks and count what is redone.

    python benchmarks/grow.py OUT [N=300] [ADD=10] [FRACTION]

Tiny hand-made tasks (8 train / 4 probe / 2 eval examples each, six rules), one fixed
tiny base model (a base built from the pool would change with it), 2 expert steps:
what is measured is the bookkeeping, not the models. Prints, for the first run and the
grown one, wall time, experts trained and score shards written (by mtime), and the count
issue 12 expects: ADD * (2N + ADD) expert shards + ADD base shards. With FRACTION, the
same two runs again in another directory scoring only that share of the pairs
(scoring.fraction), counting what the growth scored, and the L1 distance between the
mixtures solved from the grown pool's completed affinity and from the full one, per
kernel. Writes OUT/grow.json.
"""
import json
import random
import shutil
import sys
import time
from pathlib import Path

import taskpgm.models.train as train_mod
from taskpgm.config import config_from_dict
from taskpgm.models.tiny import TinyConfig, build_tiny_model
from taskpgm.pipeline import run_pipeline
from taskpgm.tasks.pool import Example, TaskInfo
from taskpgm.tasks.writer import TaskData, write_pool

root = Path(sys.argv[1])
n0 = int(sys.argv[2]) if len(sys.argv) > 2 else 300
add = int(sys.argv[3]) if len(sys.argv) > 3 else 10
fraction = float(sys.argv[4]) if len(sys.argv) > 4 else None
WORDS = ["red", "blue", "green", "gold", "black", "white", "pink", "grey", "tan", "navy", "teal", "plum"]
RULES = [lambda w: w[::-1], sorted, lambda w: w[:1], lambda w: w[-1:], lambda w: w + w, lambda w: w[1:]]
def task(i):
    rng = random.Random(i); rule = RULES[i % len(RULES)]
    def split(kind, n):
        return [Example(f"t{i}-{kind}-{k}", f"t{i}: {' '.join(ws)}\n", " ".join(rule(ws)))
                for k, ws in enumerate(rng.sample(WORDS, 3) for _ in range(n))]
    return TaskData(TaskInfo(name=f"t{i:03d}", family=f"r{i % len(RULES)}"),
                    {"train": split("train", 8), "probe": split("probe", 4), "eval": split("eval", 2)})
for d in ("poolA", "poolB", "run", "base"):
    shutil.rmtree(root / d, ignore_errors=True)
write_pool(root / "poolA", [task(i) for i in range(n0)])
poolB = write_pool(root / "poolB", [task(i) for i in range(n0 + add)])
build_tiny_model(poolB, root / "base", seed=0, config=TinyConfig(vocab_size=256, n_layer=1, n_embd=32, n_head=2))
counts = {"trained": 0, "scored": 0}
orig_train = train_mod.train_model
def ctrain(*a, **k):
    counts["trained"] += 1; return orig_train(*a, **k)
train_mod.train_model = ctrain
def cfg(pool, run="run", **scoring):
    return config_from_dict({"run": {"dir": str(root / run), "seed": 0}, "scoring": scoring,
        "pool": {"source": "dir", "path": str(pool)}, "model": {"base": str(root / "base")},
        "experts": {"steps": 2, "batch_size": 4},
        "sample": {"budget": 100}, "evaluate": {"tasks": "all", "max_examples": 1}, "report": {"enabled": False}, "strategies": []}, "grow.yaml")
def shards(run="run"):
    top = root / run / "scores/shards"
    return {p.relative_to(top).as_posix(): p.stat().st_mtime_ns
            for p in top.rglob("*.parquet")} if top.is_dir() else {}
def first_and_grown(run="run", **scoring):
    for label, pool in (("first", root / "poolA"), ("grown", root / "poolB")):
        before = shards(run)
        counts["trained"] = 0
        t = time.perf_counter()
        run_pipeline(cfg(pool, run, **scoring), progress=False)
        wall = time.perf_counter() - t
        after = shards(run)
        new = sum(1 for k, v in after.items() if before.get(k) != v)
        key = label if not scoring else f"{label}, fraction {scoring['fraction']}"
        out[key] = {"wall_s": round(wall, 1), "experts_trained": counts["trained"],
                    "shards_written": new, "shards_total": len(after)}
        print(key, out[key], flush=True)
out = {}
first_and_grown()
n = n0
print("expected for the grown run:", add * (2 * n + add), "expert shards +", add, "base shards =",
      add * (2 * n + add) + add)
if fraction is not None:
    # The same growth under partial scoring: pairs are keyed by task names, so the grown
    # run keeps the pairs it had planned among the first 300 tasks.
    import numpy as np

    import taskpgm
    from taskpgm.affinity.io import load_affinity

    shutil.rmtree(root / "run-partial", ignore_errors=True)
    first_and_grown("run-partial", fraction=fraction)
    full, part = (load_affinity(root / d / "affinity.npz") for d in ("run", "run-partial"))
    off = ~np.eye(len(full.names), dtype=bool)
    out["partial"] = {"fraction": fraction, "entry_correlation":
                      float(np.corrcoef(full.matrix[off], part.matrix[off])[0, 1])}
    # Both affinities carry bootstrap intervals (the default), which the calibrated
    # kernel reads as noise, as the pipeline's mixture stage does.
    for kind, unary in (("shift", "rowsum"), ("simplex-shift", "rowsum"), ("calibrated", "auto")):
        w = [taskpgm.solve(a, kernel=kind, unary=unary).weights for a in (full, part)]
        out["partial"][f"l1_{kind}"] = float(np.abs(w[0] - w[1]).sum())
    print("partial", out["partial"], flush=True)
(root / "grow.json").write_text(json.dumps(out, indent=1))
