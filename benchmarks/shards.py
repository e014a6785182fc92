"""Reading score shards: pyarrow's read_table against ParquetFile.read, side by side.

    python benchmarks/shards.py SCORES_DIR [MAX_SHARDS=10000]

A grown 310-task pool holds 96,410 shards of a few rows each; the affinity stage reads
every one. read_table sets up a dataset scan per call, which on a small file costs
several times the read itself. Prints the time per shard of each reader over the same
files (each read twice, alternating, best of the two) and the ratio; taskpgm.scores
uses ParquetFile.read (through read_shard, which also builds the arrays).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from taskpgm.scores import read_shard


def _old(path: Path):
    return pq.read_table(path)


def _new(path: Path):
    with pq.ParquetFile(path) as pf:
        return pf.read()


def main() -> int:
    root = Path(sys.argv[1])
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    files = sorted((root / "shards").rglob("*.parquet"))[:limit]
    if not files:
        print(f"error: {root}/shards: no shards", file=sys.stderr)
        return 2
    best: dict[str, float] = {}
    for _ in range(2):
        for name, fn in (("read_table", _old), ("ParquetFile.read", _new),
                         ("read_shard", read_shard)):
            t0 = time.perf_counter()
            for p in files:
                fn(p)
            per = (time.perf_counter() - t0) / len(files)
            best[name] = min(best.get(name, per), per)
    out = {"bench": "shards", "shards": len(files),
           **{f"{k}_ms": round(v * 1e3, 3) for k, v in best.items()},
           "read_table_over_parquetfile": round(best["read_table"] / best["ParquetFile.read"], 2)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
