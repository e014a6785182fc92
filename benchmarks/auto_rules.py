"""What each of auto's rules (D19 `lowest`, D37 `clear`) would have chosen on finished
quality-benchmark seeds, and how its choice did on the evaluation split against uniform.

Nothing is trained or scored: every candidate's validation losses and margins are in the
seed's ``mixtures/<auto>.json`` (the same bootstrap draws for both rules), and every
candidate's evaluation is in ``eval/``. A rule's result on a seed is its chosen
candidate's held-out loss per token (its training replicates averaged, as the quality
table does) minus uniform's. With replicates, the pipeline's own auto trains its chosen
mixture's replicates with auto's seeds, so its row in quality.json can differ slightly
from this one; without replicates the two are the same model.

    python benchmarks/auto_rules.py /work/bench8/Da /work/bench8/Db [--auto taskpgm-auto]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from taskpgm.bench.quality import REFERENCE, _group, t_interval
from taskpgm.mixture.auto import RULES, choose
from taskpgm.mixture.record import Mixture
from taskpgm.report.records import ModelEval


def replay(mix: Mixture, rule: str) -> str:
    """The candidate ``rule`` picks from an auto mixture's recorded figures, in the run's
    candidate order (ties go to the earlier candidate; the file's keys are sorted)."""
    diag = mix.diagnostics
    losses = diag["validation_loss"]
    order = [n for n in mix.params.get("candidates", []) if n in losses] or list(losses)
    margins = {n: (m["mean"], math.nan if m["low"] is None else m["low"],
                   math.nan if m["high"] is None else m["high"])
               for n, m in diag["margin_to_reference"].items()}
    return choose({n: losses[n] for n in order}, margins, diag.get("reference"), rule)[0]


def seed_losses(root: Path) -> dict[str, float]:
    """Strategy -> held-out loss per token, replicates averaged."""
    groups: dict[str, list[float]] = {}
    for path in sorted((root / "eval").glob("*.json")):
        if path.stem == "base":
            continue
        groups.setdefault(_group(path.stem), []).append(
            ModelEval.load(path).mean("loss_per_token"))
    return {g: float(np.mean(v)) for g, v in groups.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", help="quality --out folders (holding seed<k>/)")
    ap.add_argument("--auto", default="taskpgm-auto", help="the auto strategy's name")
    args = ap.parse_args(argv)
    roots = sorted((int(p.parent.name.removeprefix("seed")), p.parent)
                   for f in args.folders for p in Path(f).glob("seed*/mixtures")
                   if (p / f"{args.auto}.json").is_file())
    if not roots:
        print(f"no seed<k>/mixtures/{args.auto}.json under {args.folders}", file=sys.stderr)
        return 2
    out: dict[str, dict] = {}
    for rule in RULES:
        diffs, chosen = [], []
        for _seed, root in roots:
            pick = replay(Mixture.load(root / "mixtures" / f"{args.auto}.json"), rule)
            ev = seed_losses(root)
            diffs.append(ev[pick] - ev[REFERENCE])
            chosen.append(pick)
        m, lo, hi = t_interval(np.asarray(diffs))
        out[rule] = {"mean": m, "low": lo, "high": hi,
                     "wins": int(sum(d < -1e-9 for d in diffs)),
                     "kept_uniform": int(sum(c == REFERENCE for c in chosen)),
                     "per_seed": {str(s): {"chosen": c, "diff": d}
                                  for (s, _), c, d in zip(roots, chosen, diffs, strict=True)}}
        print(f"{rule:7s} {m:+.4f} [{lo:+.4f}, {hi:+.4f}]  wins {out[rule]['wins']}/"
              f"{len(roots)}  kept uniform {out[rule]['kept_uniform']}  chosen: "
              + ", ".join(f"{s}:{c}" for (s, _), c in zip(roots, chosen, strict=True)))
    print(json.dumps({"seeds": [s for s, _ in roots], "rules": out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
