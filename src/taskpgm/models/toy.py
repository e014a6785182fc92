"""A small, learnable toy pool for tests, docs and the scoring benchmark.

Tasks are string transformations of random words (upper-case, reverse, copy, ...) plus
one multiple-choice task, so a tiny model learns each within a few dozen steps and
experts differ measurably. Deterministic for a given seed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path

from taskpgm.tasks.pool import PoolManifest, TaskInfo, write_manifest

WORDS = ["apple", "river", "stone", "cloud", "green", "table", "music", "light", "paper", "dream", "ocean", "tiger", "bread", "chair", "glass", "honey", "lemon", "mango", "night", "pearl", "quiet", "robot", "sugar", "train"]

TRANSFORMS: dict[str, Callable[[str], str]] = {
    "upper": str.upper,
    "reverse": lambda s: s[::-1],
    "copy": lambda s: s,
    "first": lambda s: s.split()[0],
    "last": lambda s: s.split()[-1],
    "count": lambda s: str(len(s.split())),
}


def write_toy_pool(
    root: str | Path,
    tasks: Sequence[str] = ("upper", "reverse", "copy"),
    *,
    n_train: int = 64,
    n_probe: int = 12,
    n_eval: int = 12,
    multiple_choice: bool = False,
    heldout: Sequence[str] = (),
    splits: Sequence[str] = ("train", "probe", "eval"),
    seed: int = 0,
) -> Path:
    """Write a toy pool to ``root``; ``heldout`` names tasks given role 'heldout'."""
    root = Path(root)
    rng = random.Random(seed)
    sizes = {"train": n_train, "probe": n_probe, "eval": n_eval}
    infos = []
    names = list(tasks) + (["pick"] if multiple_choice else [])
    for name in names:
        counts = {}
        for split in splits:
            path = root / "tasks" / name / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            lines = []
            for i in range(sizes[split]):
                words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))
                rec: dict[str, object] = {"id": f"{name}-{split}-{i}"}
                if name == "pick":
                    opts = rng.sample(WORDS, 3)
                    ans = rng.randrange(3)
                    rec.update(prompt=f"pick the fruit-free word like {opts[ans]}:\n",
                               response=opts[ans], options=opts, answer=ans)
                else:
                    rec.update(prompt=f"{name}: {words}\n", response=TRANSFORMS[name](words))
                lines.append(json.dumps(rec))
            path.write_text("\n".join(lines) + "\n")
            counts[split] = sizes[split]
        infos.append(TaskInfo(name=name, source="toy", family="toy",
                              role="heldout" if name in heldout else "train",
                              kind="multiple_choice" if name == "pick" else "generative",
                              counts=counts))
    write_manifest(root, PoolManifest(tasks=infos))
    return root
