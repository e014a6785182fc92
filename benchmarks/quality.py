"""Quality benchmark (`make bench-quality`): every strategy vs uniform on held-out tasks.

Runs the demo pipeline once per seed (each seed an independent replicate: pool draw,
model init, experts, sampling, training), adds random Dirichlet mixtures, and reports
mean held-out loss per token and accuracy/exact match with paired differences to
uniform and 95% t-intervals over seeds. Writes quality.json and quality.png under
--out and prints one JSON line. Resumable: re-running skips finished seeds/stages.

    python benchmarks/quality.py [--seeds 0 1 2] [--out bench-quality] [--bigbench]
    python benchmarks/quality.py --redundancy --seeds 0 1 2 3 4   # the redundancy suite
    python benchmarks/quality.py --collect A/redundancy B/redundancy --out C
        # summarise seed<k>/ runs made elsewhere (other machines or processes); runs nothing
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from rich.console import Console
from rich.table import Table

# BIG-bench suite (optional; downloads the 358 MB bigbench sdist once): the loader's
# default suite, taskpgm.tasks.bigbench.default_suite() (50 training tasks, the 24
# BIG-Bench-Hard JSON tasks held out). Settings that keep it feasible on 2 CPU cores:
# at most BIGBENCH_MAX_EXAMPLES examples per task (the first ones in each task file, before
# the hash split), and the tiny model's 256-token context, which truncates every long
# prompt from the left in the same way for training, scoring and evaluation (encode.py).
# A larger BPE vocabulary than the synthetic suite's shortens those real-text sequences.
BIGBENCH_MAX_EXAMPLES = 200
BIGBENCH_VOCAB = 1024
# A task needs this many distinct prompts (within the cap) to give non-empty
# train/probe/eval splits; e.g. cause_and_effect/one_sentence_no_prompt has one (empty)
# prompt for all 51 examples, and conceptual_combinations' subtasks have 10-16 examples.
BIGBENCH_MIN_DISTINCT = 20


def bigbench_train_tasks(max_examples: int) -> tuple[list[str], list[str]]:
    """default_suite()'s training tasks expanded to subtasks, minus unsplittable ones."""
    from taskpgm.io import read_json
    from taskpgm.tasks.bigbench import (
        cache_dir,
        convert_task_json,
        default_suite,
        ensure_sdist,
        extract_tasks,
        pool_name,
        resolve_tasks,
        task_index,
    )

    sdist = ensure_sdist(cache_dir())
    index = task_index(sdist)
    keys = resolve_tasks(default_suite()["train"], index)
    paths = extract_tasks(sdist, keys, cache_dir() / "tasks")
    keep, dropped = [], []
    for k in keys:
        examples, _, _ = convert_task_json(read_json(paths[k]), k)
        distinct = len({e.prompt for e in examples[:max_examples]})
        (keep if distinct >= BIGBENCH_MIN_DISTINCT else dropped).append(pool_name(k))
    return keep, dropped


def bigbench_overrides(base):
    from taskpgm.tasks.bigbench import default_suite

    train, dropped = bigbench_train_tasks(BIGBENCH_MAX_EXAMPLES)
    if dropped:
        print(f"bigbench: leaving out {len(dropped)} subtasks with < {BIGBENCH_MIN_DISTINCT} "
              f"distinct prompts: {', '.join(dropped)}", file=sys.stderr)
    base.pool.source = "bigbench"
    base.pool.tasks = train
    base.pool.heldout = default_suite()["heldout"]
    base.pool.max_examples = BIGBENCH_MAX_EXAMPLES
    base.model.tiny.vocab_size = BIGBENCH_VOCAB
    # Scoring is experts x tasks; fewer expert steps keep ~75 experts within CPU reach.
    base.experts.steps = 40
    return base


def pretrained_on_suite(base):
    """Proxies start from a briefly pre-trained base (DESIGN.md): experts from random
    weights learn the prompt language and the skill at once. The base reads the suite's
    language, every wording as text (docs/DECISIONS.md D15, D22): pre-trained on the
    training tasks alone, a tiny model takes a held-out wording's prefix for the skill it
    saw that prefix with; pre-trained on every skill under every wording, it already does
    the held-out wordings and fine-tuning cannot move them."""
    base.model.tiny.pretrain_steps = 400
    # Every wording read as text, no skill's answer (D22): fine-tuning must teach the
    # skills, so the mixture can move held-out loss (with "suite", D15-D21, it could not).
    base.model.tiny.pretrain_corpus = "suite-prompts"
    # Training noise (development, uniform and family-balanced only): the same mixture
    # trained with 2-3 seeds spans ~0.01 nats/token at 1e-3 after this pre-training,
    # 0.05-0.13 at 3e-3 or after 200 steps (a base still short of some skills' circuits).
    base.train.lr = 1e-3
    return base


def redundancy_overrides(base):
    """The redundancy suite (8 skills under 1-10 near-identical templates, 2 unseen
    templates per skill held out; equal task sizes, so size/temperature/UniMax mixtures
    are uniform and are left out) on a briefly pre-trained base. Sized to run 5 seeds in
    about half an hour on 2 CPU cores; every strategy trains on the same budget."""
    from taskpgm.config import default_strategies

    base.pool.suite = "redundancy"
    pretrained_on_suite(base)
    base.experts.steps = 60
    base.train.steps = 150
    base.train.batch_size = 64
    base.sample.budget = 150 * 64  # each sampled example seen once: the budget binds
    # The default strategies less those that equal uniform when every task has one size.
    base.strategies = [st for st in default_strategies()
                       if st.method not in ("size", "temperature", "unimax")]
    return base


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="bench-quality")
    ap.add_argument("--dirichlet", type=int, default=3, help="random mixtures per seed")
    ap.add_argument("--replicates", type=int, default=1,
                    help="training replicates per strategy and seed, averaged (lowers noise)")
    suite = ap.add_mutually_exclusive_group()
    suite.add_argument("--bigbench", action="store_true", help="use the BIG-bench suite")
    suite.add_argument("--redundancy", action="store_true", help="use the redundancy suite")
    ap.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    ap.add_argument("--collect", nargs="+", default=None, metavar="DIR",
                    help="summarise the finished seed<k>/ runs under these folders (made by "
                         "other processes or machines) into --out; trains nothing")
    ap.add_argument("--regression", type=int, default=0, metavar="N",
                    help="add the regression mixer with N proxy runs per seed (0: not run; "
                         "each proxy costs one strategy's training)")
    ap.add_argument("--add", action="append", default=[], metavar="JSON",
                    help='an extra strategy, e.g. \'{"name": "c1", "method": "taskpgm", '
                         '"params": {"r_rel": 1.0}}\' (repeatable; a development candidate '
                         'beside the defaults)')
    ap.add_argument("--only", default=None,
                    help="comma-separated strategy names to keep (default: all of the suite's)")
    args = ap.parse_args(argv)

    from taskpgm.bench.quality import collect_quality, run_quality
    from taskpgm.config import apply_override, config_from_dict
    from taskpgm.errors import ConfigError, TaskPGMError
    from taskpgm.pipeline.demo import demo_config

    console = Console(highlight=False, stderr=True)
    base = demo_config(args.out)
    out = args.out
    try:
        if args.collect:
            others = [f for f, on in (("--bigbench", args.bigbench),
                                      ("--redundancy", args.redundancy), ("--set", args.set),
                                      ("--only", args.only), ("--add", args.add),
                                      ("--regression", args.regression)) if on]
            if others:
                raise ConfigError(f"--collect summarises finished runs as they are; "
                                  f"{others[0]} does not apply to it")
            t0 = time.perf_counter()
            result = collect_quality(args.collect, args.out)
            args.seeds = result["seeds"]
            return print_result(result, args.seeds, args.out, t0)
        if args.bigbench:
            base = bigbench_overrides(base)
            out = f"{args.out}/bigbench"
        elif args.redundancy:
            base = redundancy_overrides(base)
            out = f"{args.out}/redundancy"
        else:
            base = pretrained_on_suite(base)
        if args.regression:
            from taskpgm.config import StrategyConfig

            base.strategies = [*base.strategies, StrategyConfig(
                name="regression", method="regression", params={"runs": args.regression})]
        # Extra candidates go in as plain data, checked with the whole config below (one
        # line naming strategies[i].params.KEY for a bad one).
        extras = []
        for raw in args.add:
            try:
                extra = json.loads(raw)
            except ValueError as exc:
                raise ConfigError(f"--add {raw!r}: not JSON ({exc})") from None
            if not isinstance(extra, dict) or not isinstance(extra.get("name"), str):
                raise ConfigError(f"--add {raw!r}: give a JSON object with a name, a method "
                                  "and params")
            if extra["name"] in {st.name for st in base.strategies} | \
                    {e["name"] for e in extras}:
                raise ConfigError(f"--add: a strategy named {extra['name']!r} already exists")
            extras.append(extra)
        if args.only:
            keep = [n.strip() for n in args.only.split(",") if n.strip()]
            unknown = sorted(set(keep) - {st.name for st in base.strategies}
                             - {e["name"] for e in extras})
            if unknown:
                raise ConfigError(f"--only: no strategy named {unknown[0]!r}")
            base.strategies = [st for st in base.strategies if st.name in keep]
            extras = [e for e in extras if e["name"] in keep]
        data = base.model_dump(mode="json")
        data["strategies"] = [*data["strategies"], *extras]
        for ov in args.set:
            data = apply_override(data, ov)
        base = config_from_dict(data, "--set/--add")
        t0 = time.perf_counter()
        if args.replicates < 1:
            raise ConfigError("--replicates must be >= 1")
        result = run_quality(base, out, args.seeds, args.dirichlet, console=console,
                             replicates=args.replicates)
    except TaskPGMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return print_result(result, args.seeds, out, t0)


def print_result(result: dict, seeds: list[int], out: str, t0: float) -> int:
    table = Table(title=f"Held-out tasks, paired vs uniform over seeds {seeds}")
    costs = result.get("costs", {})
    for col in ("strategy", "metric", "mean", "diff vs uniform", "95% CI", "wins",
                "share of FB gain", "min family mass", "L1 to FB", "trainings"):
        table.add_column(col, justify="left" if col in ("strategy", "metric") else "right",
                         no_wrap=True)
    for r in result["rows"]:
        ci = "-" if r["diff_low"] is None else f"[{r['diff_low']:+.4f}, {r['diff_high']:+.4f}]"
        diff = "-" if r["diff_mean"] is None else f"{r['diff_mean']:+.4f}"
        wins = "-" if r["wins"] is None else f"{r['wins']}/{len(seeds)}"
        share = "-" if r["share_of_family_gain"] is None else f"{r['share_of_family_gain']:.2f}"
        gm = result["group_mass"].get(r["strategy"]) if r["metric"] == "loss_per_token" else None
        table.add_row(r["strategy"], r["metric"], f"{r['mean']:.4f}", diff, ci, wins, share,
                      "-" if gm is None else f"{gm['min_family_mass']:.3f}",
                      "-" if gm is None else f"{gm['l1_to_family_balanced']:.3f}",
                      costs.get(r["strategy"], {}).get("trainings", "-")
                      if r["metric"] == "loss_per_token" else "")
    out_console = Console(highlight=False, width=max(Console().width, 110))
    out_console.print(table)
    for name, c in costs.items():
        if c.get("cv_spearman") is not None:
            out_console.print(f"{name}: held-out rank correlation of its fit, mean over seeds "
                              f"and validation tasks: {c['cv_spearman']:.3f}")
        if c.get("chosen"):
            picks = ", ".join(f"{k} {v}x" for k, v in sorted(c["chosen"].items(),
                                                               key=lambda kv: -kv[1]))
            out_console.print(f"{name} chose: {picks}")
    # The informativeness checks (DESIGN.md) of every seed: without them the table above
    # cannot be read (experts that learn nothing make the affinity noise, etc.).
    checks = Table(title="Is this benchmark informative? (checks per seed)")
    for col in ("seed", "check", "result", "detail"):
        checks.add_column(col, overflow="fold")
    rc = result["redundancy_check"]
    checks.add_row("all", rc["name"], {True: "PASS", False: "FAIL", None: "info"}[rc["ok"]],
                   rc["detail"])
    for seed, items in result["checks"].items():
        for c in items:
            res = {True: "PASS", False: "FAIL", None: "info"}[c["ok"]]
            checks.add_row(seed, c["name"], res, c["detail"])
    out_console.print(checks)
    line = {"benchmark": "quality", "seeds": seeds, "seconds": round(time.perf_counter() - t0, 1),
            "out": str(out),
            "redundancy_check": rc, "group_mass": result["group_mass"],
            "costs": result.get("costs"),
            "rows": [{k: r[k] for k in ("strategy", "metric", "mean", "diff_mean", "diff_low",
                                        "diff_high", "wins", "share_of_family_gain")}
                     for r in result["rows"]]}
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
