"""Quality benchmark (`make bench-quality`): every strategy vs uniform on held-out tasks.

Runs the demo pipeline once per seed (each seed an independent replicate: pool draw,
model init, experts, sampling, training), adds random Dirichlet mixtures, and reports
mean held-out loss per token and accuracy/exact match with paired differences to
uniform and 95% t-intervals over seeds. Writes quality.json and quality.png under
--out and prints one JSON line. Resumable: re-running skips finished seeds/stages.

    python benchmarks/quality.py [--seeds 0 1 2] [--out bench-quality] [--bigbench]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from rich.console import Console
from rich.table import Table

# BIG-bench suite (optional, downloads the 358 MB bigbench sdist once): 30+ training
# tasks and BIG-Bench-Hard-style held-out evaluation tasks.
BIGBENCH_TRAIN = [
    "anachronisms", "analogical_similarity", "analytic_entailment", "cause_and_effect",
    "code_line_description", "common_morpheme", "conceptual_combinations",
    "crass_ai", "emoji_movie", "empirical_judgments", "english_proverbs",
    "entailed_polarity", "evaluating_information_essentiality", "fantasy_reasoning",
    "figure_of_speech_detection", "general_knowledge", "human_organs_senses",
    "identify_math_theorems", "identify_odd_metaphor", "implicatures", "intent_recognition",
    "irony_identification", "logical_args", "metaphor_boolean", "metaphor_understanding",
    "misconceptions", "moral_permissibility", "nonsense_words_grammar", "odd_one_out",
    "phrase_relatedness", "physical_intuition", "presuppositions_as_nli",
    "riddle_sense", "similarities_abstraction", "simple_ethical_questions",
    "social_iqa", "strange_stories", "timedial", "understanding_fables", "vitaminc_fact_verification",
]
BIGBENCH_HELDOUT = [
    "causal_judgment", "date_understanding", "disambiguation_qa", "formal_fallacies_syllogisms_negation",
    "hyperbaton", "logical_deduction", "navigate", "snarks", "sports_understanding",
    "temporal_sequences",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="bench-quality")
    ap.add_argument("--dirichlet", type=int, default=3, help="random mixtures per seed")
    ap.add_argument("--bigbench", action="store_true", help="use the BIG-bench suite")
    ap.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    args = ap.parse_args(argv)

    from taskpgm.bench.quality import run_quality
    from taskpgm.config import apply_override, config_from_dict
    from taskpgm.errors import TaskPGMError
    from taskpgm.pipeline.demo import demo_config

    console = Console(highlight=False, stderr=True)
    base = demo_config(args.out)
    out = args.out
    if args.bigbench:
        base.pool.source = "bigbench"
        base.pool.tasks = BIGBENCH_TRAIN
        base.pool.heldout = BIGBENCH_HELDOUT
        out = f"{args.out}/bigbench"
    try:
        data = base.model_dump(mode="json")
        for ov in args.set:
            data = apply_override(data, ov)
        base = config_from_dict(data, "--set")
        t0 = time.perf_counter()
        result = run_quality(base, out, args.seeds, args.dirichlet, console=console)
    except TaskPGMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = Table(title=f"Held-out tasks, paired vs uniform over seeds {args.seeds}")
    for col in ("strategy", "metric", "mean", "diff vs uniform", "95% CI", "wins"):
        table.add_column(col, justify="left" if col in ("strategy", "metric") else "right",
                         no_wrap=True)
    for r in result["rows"]:
        ci = "-" if r["diff_low"] is None else f"[{r['diff_low']:+.4f}, {r['diff_high']:+.4f}]"
        diff = "-" if r["diff_mean"] is None else f"{r['diff_mean']:+.4f}"
        wins = "-" if r["wins"] is None else f"{r['wins']}/{len(args.seeds)}"
        table.add_row(r["strategy"], r["metric"], f"{r['mean']:.4f}", diff, ci, wins)
    Console(highlight=False, width=max(Console().width, 110)).print(table)
    line = {"benchmark": "quality", "seeds": args.seeds, "seconds": round(time.perf_counter() - t0, 1),
            "out": str(out),
            "rows": [{k: r[k] for k in ("strategy", "metric", "mean", "diff_mean", "diff_low",
                                        "diff_high", "wins")} for r in result["rows"]]}
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
