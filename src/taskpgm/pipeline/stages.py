"""The taskpgm pipeline's stages, built from one :class:`~taskpgm.config.Config`.

Run directory layout (every file written atomically)::

    run/config.yaml              the resolved config
    run/stages.json              stage fingerprints and status (resume record)
    run/pool/                    the task pool
    run/base/                    the base model (tiny, built here) unless model.base is a dir
    run/experts/<task>/          one expert per training task
    run/scores/                  Parquet shards: every expert (and the base) on every task
    run/affinity.npz             the affinity matrix between training tasks
    run/affinity_half.npz        partial scoring: the same from half the scored pairs
    run/utilities.json           target-aware utilities (expert gain on the target tasks)
    run/mixture.json             the mixture from the ``mixture`` section (the main product)
    run/mixtures/<strategy>.json one mixture per compared strategy
    run/data/<strategy>/         the materialised training set (train.jsonl + manifest.json)
    run/models/<strategy>/       the model trained on it
    run/eval/<name>.json         evaluation of each strategy's model and of the base model
    run/report.html, run/report/ the report and its PNG figures

Heavy libraries (torch) are imported inside the stage functions, so planning a run
(``taskpgm run --plan``) is cheap.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from taskpgm.config import (
    PIPELINE_METHODS,
    VALIDATING_METHODS,
    Config,
    StrategyConfig,
    auto_candidates,
    expert_settings,
    scoring_settings,
)
from taskpgm.errors import ConfigError, InputError, TaskPGMError
from taskpgm.io import atomic_write_json, read_json, sha256_file
from taskpgm.mixture.record import Mixture
from taskpgm.pipeline.framework import Stage
from taskpgm.portable import portable_path

BASE_EVAL = "base"
# Bumped when how models read their text changes (2: one tokenisation of prompt + response,
# prompt formats, loss at response positions only); every stage below "base" depends on
# it, so runs made before re-run their models.
MODEL_CODE_VERSION = 2


@dataclass
class RunPaths:
    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def pool(self) -> Path:
        return self.root / "pool"

    @property
    def base(self) -> Path:
        return self.root / "base"

    @property
    def experts(self) -> Path:
        return self.root / "experts"

    @property
    def scores(self) -> Path:
        return self.root / "scores"

    @property
    def affinity(self) -> Path:
        return self.root / "affinity.npz"

    @property
    def affinity_half(self) -> Path:
        """Partial scoring only: the affinity from half the scored pairs (split-half check)."""
        return self.root / "affinity_half.npz"

    @property
    def utilities(self) -> Path:
        return self.root / "utilities.json"

    @property
    def mixture(self) -> Path:
        return self.root / "mixture.json"

    def strategy_mixture(self, name: str) -> Path:
        return self.root / "mixtures" / f"{name}.json"

    def data(self, name: str) -> Path:
        return self.root / "data" / name

    def model(self, name: str) -> Path:
        return self.root / "models" / name

    def eval(self, name: str) -> Path:
        return self.root / "eval" / f"{name}.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"


class PipelineContext:
    """Paths and lazily loaded inputs shared by the stage functions."""

    def __init__(self, cfg: Config, run_dir: str | Path | None = None, progress: bool = True):
        self.cfg = cfg
        self.paths = RunPaths(Path(run_dir) if run_dir is not None else Path(cfg.run.dir))
        self.progress = progress

    # Where the pool and base model live: in the run dir, or outside when user-given.
    @property
    def pool_dir(self) -> Path:
        if self.cfg.pool.source == "dir":
            return Path(self.cfg.pool.path or "")
        return self.paths.pool

    @property
    def base_dir(self) -> Path:
        if self.cfg.model.base != "tiny":
            return Path(self.cfg.model.base)
        return self.paths.base

    def pool(self):
        from taskpgm.tasks.pool import Pool

        return Pool.load(self.pool_dir)

    def train_task_names(self) -> list[str]:
        return [t.name for t in self.pool().train_tasks()]

    def eval_task_names(self) -> list[str]:
        pool = self.pool()
        sel = self.cfg.evaluate.tasks
        if sel == "heldout":
            names = [t.name for t in pool.heldout_tasks()]
            if not names:
                raise InputError(
                    f"{pool.root}: no held-out tasks to evaluate on; set evaluate.tasks to "
                    "'all' or a list of task names"
                )
            return names
        if sel == "all":
            return pool.names
        for name in sel:
            pool.task(name)
        return list(sel)

    def target_task_names(self, targets: list[str] | str) -> list[str]:
        pool = self.pool()
        if targets == "heldout":
            names = [t.name for t in pool.heldout_tasks()]
            if not names:
                raise InputError(
                    f"{pool.root}: mixture.targets is 'heldout' but the pool has no held-out tasks"
                )
            return names
        for name in targets:
            pool.task(name)
        return list(targets)


# -- stage functions --------------------------------------------------------------------


def stage_pool(ctx: PipelineContext) -> None:
    pc = ctx.cfg.pool
    out = ctx.paths.pool
    seed = pc.seed if pc.seed is not None else ctx.cfg.run.seed
    if pc.source == "synthetic":
        from taskpgm.tasks.synth import build_synthetic_pool

        kwargs: dict[str, Any] = {"scale": pc.scale}
        if pc.families:
            kwargs["families"] = tuple(pc.families)
        build_synthetic_pool(out, seed=seed, suite=pc.suite, **kwargs)
    elif pc.source == "import":
        from taskpgm.tasks.importers import ColumnMap, import_sources

        import_sources(pc.paths, out, family_pattern=pc.family_pattern,
                       family_field=pc.family_field, task_column=pc.task_column,
                       columns=ColumnMap(prompt=pc.prompt_field, response=pc.response_field))
        _mark_heldout(out, pc.heldout)
    elif pc.source == "bigbench":
        from taskpgm.tasks.bigbench import build_bigbench_pool

        build_bigbench_pool(list(pc.tasks), out, heldout=list(pc.heldout),
                            max_examples=pc.max_examples)
    else:  # "dir": used in place; just check it loads.
        ctx.pool()
    # Every name and split the later stages will need, checked before any model trains.
    preflight(ctx)


MIN_SCORED_OFFDIAGONAL = 4  # the completion and its leave-some-out check need a few pairs


def _check_fraction_plans_enough(fraction: float, n: int) -> None:
    """Partial scoring must plan enough off-diagonal pairs for the completion."""
    from taskpgm.affinity.completion import planned_offdiagonal

    if fraction >= 1 or n < 2:
        return
    planned = planned_offdiagonal(n, fraction)
    need = min(MIN_SCORED_OFFDIAGONAL, n * (n - 1))
    if planned < need:
        least = next(f / 100 for f in range(1, 101) if planned_offdiagonal(n, f / 100) >= need)
        raise InputError(f"scoring.fraction {fraction} plans {planned} of the {n * (n - 1)} "
                         f"off-diagonal (expert, task) pairs of {n} training tasks; completing "
                         f"the rest needs at least {need}: use scoring.fraction >= {least}")


def preflight(ctx: PipelineContext) -> None:
    """Refuse, in one line, what a later stage would refuse after hours of training:
    unknown task names in evaluate.tasks, mixture.targets or a strategy's targets, and
    tasks whose splits are empty where a stage needs examples."""
    cfg = ctx.cfg
    pool = ctx.pool()
    train = ctx.train_task_names()
    if not train:
        raise InputError(f"{pool.root}: no tasks with role 'train' (every task is held out)")
    for name in train:
        for split in ("train", "probe"):
            if pool.task(name).count(split) < 1:
                raise InputError(f"{pool.split_path(name, split)}: training task {name!r} has no "
                                 f"{split} examples (experts train on 'train' and are scored "
                                 "on 'probe')")
    field = f"evaluate.tasks ({cfg.evaluate.split} split)"
    for name in _named(ctx.eval_task_names, "evaluate.tasks"):
        if pool.task(name).count(cfg.evaluate.split) < 1:
            raise InputError(f"{pool.split_path(name, cfg.evaluate.split)}: task {name!r} in "
                             f"{field} has no examples")
    targets: list[str] = []
    if _uses_target_utilities(cfg):
        targets += _named(lambda: ctx.target_task_names(cfg.mixture.targets), "mixture.targets")
    for i, st in enumerate(cfg.strategies):
        if st.method == "mixmin":
            targets += _named(lambda st=st: strategy_targets(ctx, _param(st, "targets", "heldout")),
                              f"strategies[{i}].params.targets")
        elif st.method in VALIDATING_METHODS:
            # Validation targets need probe examples but no scores (auto scores its models).
            for name in _named(lambda st=st: strategy_targets(ctx, _param(st, "targets", "heldout")),
                               f"strategies[{i}].params.targets"):
                if pool.task(name).count("probe") < 1:
                    raise InputError(f"{pool.split_path(name, 'probe')}: validation task "
                                     f"{name!r} of strategy {st.name!r} has no probe examples")
    if cfg.scoring.fraction < 1 and (bad := sorted(set(targets) & set(train))):
        raise InputError(f"scoring.fraction < 1 leaves (expert, training task) pairs unscored, "
                         f"but training task {bad[0]!r} is a target (mixture.targets or a "
                         "mixmin strategy's targets), which needs every expert's scores on it")
    for name in targets:
        if pool.task(name).count("probe") < 1:
            raise InputError(f"{pool.split_path(name, 'probe')}: target task {name!r} has no "
                             "probe examples")
    _check_fraction_plans_enough(cfg.scoring.fraction, len(train))
    # Every task file parses and holds the examples pool.json lists (a dir pool edited by
    # hand would otherwise fail stages later, after experts were trained).
    for info in pool.tasks:
        for split in info.counts:
            pool.examples(info.name, split)
    # Every mixture's parameters, files and names, solved on a stand-in affinity.
    main = StrategyConfig(name="mixture", method="taskpgm", params={})
    for field, st in [("mixture", main), *((f"strategies[{i}] ({s.name})", s)
                                           for i, s in enumerate(cfg.strategies))]:
        if st.method in ("mixmin", *PIPELINE_METHODS):
            continue  # they need scores or trained models; their targets are checked above
        try:
            solve_strategy(ctx, st, dry=True)
        except TaskPGMError as exc:
            raise InputError(f"{field}: {exc}") from None


def _named(get, field: str) -> list[str]:
    """Call ``get``; an unknown-task error names the config field that asked for it."""
    try:
        return get()
    except InputError as exc:
        raise InputError(f"{field}: {exc}") from None


def _mark_heldout(pool_dir: Path, heldout: list[str]) -> None:
    """Give the named tasks the role ``heldout`` (evaluation only) in ``pool.json``."""
    if not heldout:
        return
    from taskpgm.tasks.pool import Pool, write_manifest

    pool = Pool.load(pool_dir)
    for name in heldout:
        pool.task(name)
    tasks = [t.model_copy(update={"role": "heldout"}) if t.name in heldout else t
             for t in pool.manifest.tasks]
    write_manifest(pool_dir, pool.manifest.model_copy(update={"tasks": tasks}))


def stage_base(ctx: PipelineContext) -> None:
    """Build the tiny base model (optionally pre-trained on all training tasks)."""
    from taskpgm.models.tiny import TinyConfig, build_tiny_model

    t = ctx.cfg.model.tiny
    tiny = TinyConfig(vocab_size=t.vocab_size, n_layer=t.n_layer, n_embd=t.n_embd,
                      n_head=t.n_head)
    seed = ctx.cfg.run.seed
    if t.pretrain_steps == 0:
        build_tiny_model(ctx.pool(), ctx.paths.base, seed=seed, config=tiny)
        return
    from taskpgm.models.train import train_model

    init = ctx.paths.root / "base-init"
    build_tiny_model(ctx.pool(), init, seed=seed, config=tiny)
    pool = ctx.pool()
    e = ctx.cfg.experts
    if t.pretrain_corpus in ("suite", "suite-prompts"):
        from taskpgm.tasks.pool import Example
        from taskpgm.tasks.synth import pretraining_corpus

        # Each corpus example is read once: steps x the experts' batch size of them.
        held = {ex.prompt for info in pool.tasks for split in ("probe", "eval")
                if info.count(split) for ex in pool.examples(info.name, split)}
        families = list(dict.fromkeys(info.family for info in pool.tasks))
        examples = pretraining_corpus(t.pretrain_steps * e.batch_size, seed, families,
                                      suite=ctx.cfg.pool.suite, exclude=held)
        if t.pretrain_corpus == "suite-prompts":
            # The wordings as plain text (loss on every token), never a skill's answer.
            examples = [Example(ex.id, "", ex.prompt) for ex in examples]
    else:
        examples = [ex for name in ctx.train_task_names() for ex in pool.examples(name, "train")]
    # The experts' settings, but full weights: experts branch off a complete model.
    cfg = replace(finetune_config(ctx, e, seed), steps=t.pretrain_steps, lora=False)
    train_model(init, examples, ctx.paths.base, config=cfg, progress=ctx.progress,
                description="base pre-training")


def finetune_config(ctx: PipelineContext, section: Any, seed: int):
    """The trainer's settings from an ``experts`` or ``train`` section and the model's
    prompt format."""
    from taskpgm.models.train import TrainConfig

    m = ctx.cfg.model
    return TrainConfig(steps=section.steps, batch_size=section.batch_size, lr=section.lr,
                       seed=seed, lora=section.lora, lora_r=section.lora_r,
                       lora_alpha=section.lora_alpha, lora_targets=section.lora_targets,
                       accumulate=section.accumulate,
                       gradient_checkpointing=section.gradient_checkpointing,
                       weights_dtype=section.weights_dtype, prompt_format=m.prompt_format,
                       separator=m.separator)


def stage_experts(ctx: PipelineContext) -> None:
    """Train the experts the run lacks (reconcile_experts kept the unchanged ones), after
    taking what cache.dir holds, and add what was trained to it."""
    from taskpgm.models.train import train_experts
    from taskpgm.pipeline import reuse

    ids = reuse.identities(ctx)
    reuse.fetch_experts(ctx, ids)
    e = ctx.cfg.experts
    train_experts(ctx.pool(), ctx.base_dir, ctx.paths.experts, seed=ctx.cfg.run.seed,
                  progress=ctx.progress, executor=e.executor, address=e.ray_address,
                  gpus_per_task=e.gpus_per_task,
                  config=finetune_config(ctx, e, ctx.cfg.run.seed),
                  extra={t: {"identity": i} for t, i in ids.experts.items()})
    reuse.store_experts(ctx, ids)


def stage_scores(ctx: PipelineContext) -> None:
    """Score the (expert, task) pairs the run lacks (reconcile_scores kept the unchanged
    shards), after taking what cache.dir holds, and add what was scored to it. With
    ``scoring.sampling: adaptive`` the second round is chosen once the first is scored
    (taskpgm.pipeline.adaptive) and scored the same way."""
    from taskpgm.pipeline import adaptive, reuse

    ids = reuse.identities(ctx)
    _score(ctx, ids)
    s = ctx.cfg.scoring
    if s.fraction < 1 and s.sampling == "adaptive" and \
            adaptive.recorded_second_round(ctx, ids) is None:
        adaptive.choose_second_round(ctx, ids)
        ids = reuse.identities(ctx)  # now with the recorded second round
        _score(ctx, ids)
    reuse.store_shards(ctx, ids)


def _score(ctx: PipelineContext, ids) -> None:
    from taskpgm.models.scoring import ScoreSettings, score_pool
    from taskpgm.pipeline import reuse

    reuse.fetch_shards(ctx, ids)
    s = ctx.cfg.scoring
    m = ctx.cfg.model
    # The base model is scored too: the "experts beat base" check and the target-aware
    # utilities for held-out tasks (which have no experts) both need it.
    score_pool(ctx.pool(), ctx.paths.experts, ctx.paths.scores, executor=s.executor,
               topk=s.topk, include_base=ctx.base_dir, address=s.ray_address,
               gpus_per_task=s.gpus_per_task,
               batch_size=s.batch_size, max_batch_tokens=s.max_batch_tokens,
               progress=ctx.progress,
               settings=ScoreSettings(topk=s.topk, prompt_format=m.prompt_format,
                                      separator=m.separator),
               unscored=unscored_pairs(ctx, ids))


def _reconcile(ctx: PipelineContext, which: str):
    def run(owns) -> None:
        from taskpgm.pipeline import reuse

        getattr(reuse, f"reconcile_{which}")(ctx, owns)
    return run


def _describe(ctx: PipelineContext, which: str):
    def describe(upstream: set[str]) -> str:
        from taskpgm.pipeline import reuse

        return getattr(reuse, f"describe_{which}")(ctx, upstream)
    return describe


def unscored_pairs(ctx: PipelineContext, ids=None) -> list[tuple[str, str]]:
    """(expert, training task) pairs ``scoring.fraction < 1`` leaves to the completion:
    the complement of ``sample_mask`` (keyed by the task names and run.seed, so a grown
    or shrunk pool keeps almost every pair it scored; diagonal always scored), or
    for ``adaptive`` of the first round and the recorded second round (before that is
    chosen: of the first round only). The base model and held-out targets are always
    scored in full. ``ids``: the run's identities, if computed (adaptive reads them)."""
    s = ctx.cfg.scoring
    if s.fraction >= 1:
        return []
    train = ctx.train_task_names()
    if s.sampling == "adaptive":
        from taskpgm.pipeline import adaptive, reuse

        mask = adaptive.scored_mask(ctx, ids if ids is not None else reuse.identities(ctx))
    else:
        from taskpgm.affinity.completion import sample_mask

        mask = sample_mask(len(train), s.fraction, seed=ctx.cfg.run.seed, strategy=s.sampling,
                           names=train)
    return [(train[i], train[j]) for i, j in zip(*np.nonzero(~mask), strict=True)]


def stage_affinity(ctx: PipelineContext) -> None:
    from taskpgm.affinity import compute_affinity
    from taskpgm.affinity.io import save_affinity
    from taskpgm.scores import ScoreTable

    a = ctx.cfg.affinity
    # Held-out tasks (no expert) and the base model's row are left out by compute_affinity.
    table = ScoreTable.load(ctx.paths.scores)
    aff = compute_affinity(table, metric=a.metric, normalize=a.normalize, bootstrap=a.bootstrap,
                           seed=ctx.cfg.run.seed, complete=ctx.cfg.scoring.fraction < 1)
    if ctx.cfg.scoring.fraction < 1:
        # Which entries rest on estimated (completed) scores rather than measured ones.
        s = ctx.cfg.scoring
        unscored = unscored_pairs(ctx)
        aff.provenance["unscored_pairs"] = [list(p) for p in unscored]
        aff.provenance["partial_scoring"] = {"fraction": s.fraction, "sampling": s.sampling}
        half = split_half_affinity(ctx, table, unscored)
        if half is not None:
            save_affinity(ctx.paths.affinity_half, half)
    save_affinity(ctx.paths.affinity, aff)


SPLIT_HALF_WARN = 0.1  # split-half L1 above which the report calls the mixture unsettled
SPLIT_HALF_MIN = 4  # scored off-diagonal pairs a half needs (fewer: no split-half check)


def split_half_affinity(ctx: PipelineContext, table, unscored: list[tuple[str, str]]):
    """The affinity as if only half the scored off-diagonal (expert, training task) pairs
    had been scored (a seeded half; the diagonal stays), computed like the real one; None
    when a half would hold fewer than ``SPLIT_HALF_MIN`` pairs.

    How far the mixture moves between this and the real affinity says whether the
    fraction scored has settled it: the main mixture solves both (``split_half_l1``).
    Measured on a 310-task pool and on the real 316-task matrix, the split-half distance
    was about as large as, or larger than, the distance to the full-scoring mixture
    (benchmarks/README.md), so it errs on the side of warning."""
    from taskpgm.affinity import compute_affinity

    a = ctx.cfg.affinity
    train = ctx.train_task_names()
    missing = set(unscored)
    scored = [(e, t) for e in train for t in train if e != t and (e, t) not in missing]
    dropped = split_half_dropped(scored, ctx.cfg.scoring.sampling, ctx.cfg.run.seed)
    if len(scored) - len(dropped) < SPLIT_HALF_MIN:
        return None
    half = compute_affinity(table.without(dropped), metric=a.metric, normalize=a.normalize,
                            bootstrap=a.bootstrap, seed=ctx.cfg.run.seed, complete=True)
    half.provenance["split_half"] = {"dropped_pairs": len(dropped), "of_scored": len(scored)}
    return half


def split_half_dropped(scored: list[tuple[str, str]], sampling: str,
                       seed: int) -> list[tuple[str, str]]:
    """A seeded half of the scored (expert, task) pairs, drawn in the design's own units:
    under ``pairs`` sampling both directions of a task pair go together, as they were
    scored; otherwise pair by pair."""
    rng = np.random.default_rng([seed, 2])  # not the completion's own draws
    if sampling == "pairs":
        units = sorted({tuple(sorted(p)) for p in scored})
        keep = set(scored)
        chosen = [units[i] for i in rng.permutation(len(units))[: len(units) // 2]]
        return sorted(q for a, b in chosen for q in ((a, b), (b, a)) if q in keep)
    return [scored[i] for i in np.sort(rng.permutation(len(scored))[: len(scored) // 2])]


def stage_utilities(ctx: PipelineContext) -> None:
    """Target-aware utilities for held-out targets, which have no experts of their own
    (see :mod:`taskpgm.affinity.utilities` for the definition)."""
    from taskpgm.affinity.utilities import target_utilities
    from taskpgm.scores import ScoreTable

    table = ScoreTable.load(ctx.paths.scores)
    train = ctx.train_task_names()
    targets = ctx.target_task_names(ctx.cfg.mixture.targets)
    gains = target_utilities(table, train, targets)
    atomic_write_json(ctx.paths.utilities, {
        "tasks": train, "targets": targets, "utilities": [float(g) for g in gains],
        "definition": "mean per-token log-likelihood gain of each expert over the base model "
                      "on the targets' probe examples",
    })


def load_utilities(ctx: PipelineContext) -> tuple[list[str], np.ndarray]:
    raw = read_json(ctx.paths.utilities)
    return list(raw["tasks"]), np.asarray(raw["utilities"], dtype=np.float64)


def solve_strategy(ctx: PipelineContext, strategy: StrategyConfig, *, dry: bool = False,
                   affinity: Path | None = None) -> Mixture:
    """One strategy's mixture over the training tasks (all strategies share this path).

    ``dry``: solve on a stand-in affinity (every pair equally dissimilar) and unit target
    utilities, before any expert exists, so every parameter, file and name the real
    solve would refuse is refused up front (``preflight``). ``affinity``: another affinity
    file than the run's (the split-half check)."""
    from taskpgm.affinity.io import load_affinity
    from taskpgm.mixture import solve

    pool = ctx.pool()
    train = ctx.train_task_names()
    sizes = np.array([pool.task(t).count("train") for t in train], dtype=np.float64)
    # ``replicate`` changes only how the mixture's data is drawn and trained on (the noise
    # floor: the same mixture with other sampling and training seeds), not the mixture.
    strategy = strategy.model_copy(update={"params": {k: v for k, v in strategy.params.items()
                                                      if k != "replicate"}})
    if strategy.method == "dirichlet":
        # A random reference mixture: draw k of seed s is reproducible and independent.
        alpha = float(strategy.params.get("alpha", 1.0))
        draw = int(strategy.params.get("draw", 0))
        rng = np.random.default_rng([ctx.cfg.run.seed, draw])
        w = rng.dirichlet(np.full(len(train), alpha))
        return Mixture("dirichlet", train, w, params={"alpha": alpha, "draw": draw,
                                                      "strategy": strategy.name})
    if dry:
        from taskpgm.affinity.io import AffinityMatrix

        aff = AffinityMatrix(train, np.where(np.eye(len(train)) > 0, 0.0, -1.0), "pmi")
    else:
        aff = load_affinity(affinity or ctx.paths.affinity)
    if aff.names != train:
        raise InputError(f"{affinity or ctx.paths.affinity}: task names differ from the pool's "
                         "training tasks")
    kwargs: dict[str, Any] = {"method": strategy.method, "names": train, "sizes": sizes}
    if strategy.method in ("taskpgm", "taskpgm-paper"):
        m = ctx.cfg.mixture
        opts: dict[str, Any] = {"kernel": m.kernel, "unary": m.unary, "targets": m.targets,
                                "r_rel": m.r_rel, "beta": m.beta, "lam": m.lam,
                                "budget_k": m.budget_k}
        if m.max_epochs is not None:
            opts["caps"] = np.minimum(m.max_epochs * sizes / ctx.cfg.sample.budget, 1.0)
        params = dict(strategy.params)
        if "r_rel" in params or "beta" in params or "lam" in params:
            # A strategy's own trade-off replaces the section's, whichever way it is spelt.
            opts.update({"r_rel": None, "beta": None, "lam": None})
        opts.update(params)
        if m.bandwidth is not None and "bandwidth" not in params and \
                opts.get("kernel") == "calibrated":
            opts["bandwidth"] = m.bandwidth  # the section's, for every calibrated strategy
        utilities = opts.pop("utilities", None) or m.utilities
        if opts.get("unary") == "given":
            from taskpgm.mixture.utilities_file import load_utilities_file

            opts["utilities"] = load_utilities_file(utilities, train)
        if opts.get("unary") == "target":
            # Held-out targets have no experts, hence no row in the affinity matrix:
            # use utilities measured from the scores instead (see stage_utilities).
            u = np.ones(len(train)) if dry else load_utilities(ctx)[1]
            opts.update(unary="given", utilities=u, scale_utilities=True)
            opts.pop("targets", None)
        else:
            opts.pop("targets", None)
        kwargs.update(opts)
    else:
        kwargs.update(strategy.params)
        if strategy.method == "unimax":
            kwargs.setdefault("unimax_budget", ctx.cfg.sample.budget)
        elif strategy.method == "family-balanced":
            kwargs["families"] = {t: pool.task(t).family for t in train}
        elif strategy.method == "cluster-balanced" and "bandwidth" not in strategy.params:
            # The same clusters as the calibrated kernel's, whatever bandwidth it uses.
            kwargs["bandwidth"] = ctx.cfg.mixture.bandwidth
        elif strategy.method == "mixmin":
            kwargs["scores"] = ctx.paths.scores
            kwargs["targets"] = strategy_targets(ctx, _param(strategy, "targets", "heldout"))
    mix = solve(aff, **kwargs)
    mix.params = {**mix.params, "strategy": strategy.name}
    return mix


def strategy_targets(ctx: PipelineContext, targets: list[str] | str) -> list[str]:
    """The tasks whose probe sets a strategy fits or validates on (MixMin's ensemble,
    auto's and regression's validation): the held-out tasks (when the pool has none, the
    training tasks), 'train', or a list of names."""
    if targets == "train":
        return ctx.train_task_names()
    if targets == "heldout" and not ctx.pool().heldout_tasks():
        return ctx.train_task_names()
    return ctx.target_task_names(targets)


def stage_main_mixture(ctx: PipelineContext) -> None:
    main = StrategyConfig(name="mixture", method="taskpgm", params={})
    mix = solve_strategy(ctx, main)
    if ctx.cfg.scoring.fraction < 1 and ctx.paths.affinity_half.is_file():
        # The same mixture from half the scored pairs: has the fraction scored settled it?
        half = solve_strategy(ctx, main, affinity=ctx.paths.affinity_half)
        mix.diagnostics["split_half_l1"] = float(np.abs(mix.weights - half.weights).sum())
    mix.save(ctx.paths.mixture)


def stage_strategy_mixture(ctx: PipelineContext, strategy: StrategyConfig) -> None:
    mix = solve_strategy(ctx, strategy)
    path = ctx.paths.strategy_mixture(strategy.name)
    if "scores" in mix.params:  # MixMin names the scores it read
        mix.params["scores"] = portable_path(ctx.paths.scores, path.parent)
    mix.save(path)


def validation_split(ctx: PipelineContext, targets: list[str]) -> dict[str, list]:
    """The targets' probe examples, refused if one is also an evaluation example (D19)."""
    from taskpgm.mixture.auto import disjoint_ids

    pool, split = ctx.pool(), ctx.cfg.evaluate.split
    validation = {t: pool.examples(t, "probe") for t in targets}
    disjoint_ids({t: [e.id for e in ex] for t, ex in validation.items()},
                 {t: [e.id for e in pool.examples(t, split)]
                  for t in targets if pool.task(t).count(split)})
    return validation


def validation_scores(ctx: PipelineContext, models: dict[str, Path],
                      validation: dict[str, list]) -> dict[str, dict[str, tuple]]:
    """model name -> task -> (logprob, n_tokens) of each validation example."""
    from taskpgm.models.load import cpu_threads_for, load_model
    from taskpgm.models.scoring import ScoreSettings, score_pairs

    cfg = ctx.cfg
    settings = ScoreSettings(prompt_format=cfg.model.prompt_format, separator=cfg.model.separator)
    per: dict[str, dict[str, tuple]] = {}
    for name, model_dir in models.items():
        loaded = load_model(model_dir)
        with cpu_threads_for(loaded.model, loaded.device):
            per[name] = {}
            for t, examples in validation.items():
                scored = score_pairs(loaded, examples, settings,
                                     max_batch_tokens=cfg.evaluate.max_batch_tokens)
                per[name][t] = (scored.logprob, scored.n_tokens)
    return per


def stage_auto_mixture(ctx: PipelineContext, strategy: StrategyConfig) -> None:
    """``auto`` (D19): score every candidate's trained model on the validation split (the
    targets' probe examples, never the evaluation split) and keep the mixture of the one
    its rule chooses (D37: the lowest validation loss among clear winners over uniform,
    else uniform), with every candidate's figures."""
    from taskpgm.mixture.auto import select

    cfg = ctx.cfg
    names = auto_candidates(cfg, strategy)
    targets = strategy_targets(ctx, _param(strategy, "targets", "heldout"))
    validation = validation_split(ctx, targets)
    per = validation_scores(ctx, {n: ctx.paths.model(n) for n in names}, validation)
    reference = next((n for n in names if cfg.strategy(n).method == "uniform"), None)
    sel = select(per, reference=reference, seed=cfg.run.seed, rule=auto_rule(strategy))
    chosen = Mixture.load(ctx.paths.strategy_mixture(sel.chosen))
    mix = Mixture("auto", chosen.tasks, chosen.weights,
                  params={"strategy": strategy.name, "chosen": sel.chosen, "candidates": names,
                          "rule": sel.rule,
                          "validation": {"split": "probe", "tasks": targets}},
                  diagnostics={"validation_loss": sel.losses, "reference": sel.reference,
                               "fell_back": sel.fell_back,
                               "margin_to_reference": {
                                   n: {"mean": m, "low": _finite(lo), "high": _finite(hi)}
                                   for n, (m, lo, hi) in sel.margins.items()}})
    mix.save(ctx.paths.strategy_mixture(strategy.name))


def auto_rule(strategy: StrategyConfig) -> str:
    """How an ``auto`` strategy chooses: ``params.rule``, else the default (D37)."""
    from taskpgm.mixture.auto import DEFAULT_RULE

    return str(_param(strategy, "rule", DEFAULT_RULE))


def _finite(x: float) -> float | None:
    """JSON has no NaN: a figure that could not be computed is None."""
    return float(x) if np.isfinite(x) else None


def _param(strategy: StrategyConfig, key: str, default: Any) -> Any:
    """A strategy param, its default when absent or null."""
    value = strategy.params.get(key)
    return default if value is None else value


def epoch_caps(ctx: PipelineContext, sizes: np.ndarray) -> np.ndarray | None:
    """Per training task, the largest weight the epoch limits allow (the tighter of
    ``sample.max_epochs`` and ``mixture.max_epochs``, each x size / budget); None: no
    limit. A mixture over them can always be sampled."""
    limits = [m for m in (ctx.cfg.sample.max_epochs, ctx.cfg.mixture.max_epochs)
              if m is not None]
    if not limits:
        return None
    return np.minimum(min(limits) * sizes / ctx.cfg.sample.budget, 1.0)


def regression_runs(ctx: PipelineContext, strategy: StrategyConfig) -> int:
    """Proxy runs of a ``regression`` strategy: ``params.runs``, else 4 per training task."""
    return int(strategy.params.get("runs") or 4 * len(ctx.train_task_names()))


def _fit_words(st: StrategyConfig) -> str:
    return ("gradient-boosted trees" if st.params.get("fit") == "gbm"
            else "the log-linear law")


def _regression_note(ctx: PipelineContext, st: StrategyConfig) -> Callable[[set[str]], str]:
    def note(_upstream: set[str]) -> str:
        if st.params.get("runs"):
            n = int(st.params["runs"])
        elif ctx.pool_dir.joinpath("pool.json").is_file():
            n = regression_runs(ctx, st)
        else:  # before the pool stage has run: the count follows from the pool
            return ("regression: trains 4 proxy models per training task (each like one "
                    f"strategy's training), then fits and minimises {_fit_words(st)}")
        return (f"regression: trains {n} proxy models ({_proxy_time(ctx, n)}; a resume keeps "
                f"the finished ones), then fits and minimises {_fit_words(st)}")
    return note


def _proxy_time(ctx: PipelineContext, n: int) -> str:
    """What ``n`` proxy trainings will take, from this run's finished strategy trainings
    (stages.json records each stage's seconds); unknown before one has run."""
    path = ctx.paths.root / "stages.json"
    secs: list[float] = []
    if path.is_file():
        try:
            stages = read_json(path).get("stages", {})
        except (InputError, AttributeError):
            stages = {}
        secs = [float(v["seconds"]) for k, v in stages.items()
                if k.startswith("train:") and isinstance(v, dict) and v.get("status") == "done"
                and isinstance(v.get("seconds"), (int, float))]
    if not secs:
        return "each like one strategy's training; time unknown until one has run here"
    each = float(np.median(secs))
    return f"about {n * each / 60:.1f} min at the {each:.1f} s a strategy's training took here"


def _proxy_designs(ctx: PipelineContext, strategy: StrategyConfig):
    """(training tasks, their sizes, epoch caps, the N proxy mixtures) of a regression
    strategy: RegMix designs around the sizes, under the epoch limits."""
    from taskpgm.mixture.regression import design_runs

    pool = ctx.pool()
    train = ctx.train_task_names()
    sizes = np.array([pool.task(t).count("train") for t in train], dtype=np.float64)
    caps = epoch_caps(ctx, sizes)
    designs = design_runs(sizes, regression_runs(ctx, strategy), seed=ctx.cfg.run.seed,
                          caps=caps)
    return train, sizes, caps, designs


def proxies_payload(cfg: Config, st: StrategyConfig) -> dict[str, Any]:
    """Everything a regression strategy's proxy models are made from."""
    return {"runs": st.params.get("runs"), "sample": cfg.section("sample"),
            "train": cfg.section("train"), "model": cfg.section("model"),
            "mixture_max_epochs": cfg.mixture.max_epochs, "seed": cfg.run.seed}


def proxy_owner(cfg: Config, st: StrategyConfig) -> str:
    """The first regression strategy (in config order) whose proxies are made from the
    same things as ``st``'s: it trains them, and every such strategy reads them. (Keyed
    by name: removing or renaming the owner makes the next one train them again.)"""
    mine = proxies_payload(cfg, st)
    return next((s.name for s in cfg.strategies
                 if s.method == "regression" and proxies_payload(cfg, s) == mine), st.name)


def _proxy_model(ctx: PipelineContext, strategy: StrategyConfig, k: int) -> Path:
    owner = proxy_owner(ctx.cfg, strategy)
    return ctx.paths.root / "proxies" / owner / f"run{k:04d}" / "model"


def stage_regression_proxies(ctx: PipelineContext, strategy: StrategyConfig) -> None:
    """``regression``'s proxies (RegMix / olmix): one model per designed mixture, each
    trained like a strategy's model (same base, budget, sampler, trainer); a resumed run
    keeps the finished ones. Its own stage, so refitting (kl, targets) trains nothing."""
    from taskpgm.models.train import is_finished, train_model
    from taskpgm.sample import materialise

    cfg = ctx.cfg
    pool = ctx.pool()
    train, _, _, designs = _proxy_designs(ctx, strategy)
    for k, w in enumerate(designs):
        model = _proxy_model(ctx, strategy, k)
        if is_finished(model):
            continue
        seed = int(np.random.SeedSequence([cfg.run.seed, 7919, k]).generate_state(1)[0])
        materialise(pool, Mixture("proxy", train, w), cfg.sample.budget, model.parent / "data",
                    seed=seed, allocation=cfg.sample.allocation,
                    max_epochs=cfg.sample.max_epochs, separator=cfg.model.separator)
        train_model(ctx.base_dir, model.parent / "data", model,
                    config=finetune_config(ctx, cfg.train, seed), progress=ctx.progress,
                    description=f"proxy {k + 1}/{len(designs)} of {strategy.name}")


def stage_regression_mixture(ctx: PipelineContext, strategy: StrategyConfig) -> None:
    """``regression``: score the proxies on the validation split, fit the log-linear law
    per validation task and minimise its mean (taskpgm.mixture.regression). The runs are
    left in olmix's layout under runs/<name>/ (ratios.csv, metrics.csv)."""
    from taskpgm.mixture.auto import task_losses
    from taskpgm.mixture.regression import (
        ProxyRuns,
        mean_spearman,
        regression_weights,
        save_runs,
    )

    cfg = ctx.cfg
    train, sizes, caps, designs = _proxy_designs(ctx, strategy)
    models = {f"run{k:04d}": _proxy_model(ctx, strategy, k) for k in range(len(designs))}
    targets = strategy_targets(ctx, _param(strategy, "targets", "heldout"))
    per = validation_scores(ctx, models, validation_split(ctx, targets))
    values = np.array([task_losses(per[r]) for r in models])  # [N, targets]
    runs = ProxyRuns(list(models), train, designs, [f"loss:{t}" for t in targets], values)
    save_runs(ctx.paths.root / "runs" / strategy.name, runs)
    kl = float(_param(strategy, "kl", 0.05))
    how = str(_param(strategy, "fit", "log-linear"))
    fit = regression_weights(runs, prior=sizes, kl=kl, caps=caps, seed=cfg.run.seed, fit=how)
    mix = Mixture("regression", train, fit.weights,
                  params={"strategy": strategy.name, "runs": len(designs), "kl": kl, "fit": how,
                          "proxies": proxy_owner(cfg, strategy),
                          "prior": "sizes", "validation": {"split": "probe", "tasks": targets}},
                  diagnostics={"proxy_trainings": len(designs), "cv_spearman": fit.spearman,
                               "cv_spearman_mean": mean_spearman(fit.spearman)})
    mix.save(ctx.paths.strategy_mixture(strategy.name))


def replicate_seed(ctx: PipelineContext, name: str) -> int:
    """The sampling/training seed of a strategy: the run seed, or for a ``replicate: k``
    strategy (k >= 1) a seed derived from both, distinct for every k."""
    k = int(ctx.cfg.strategy(name).params.get("replicate", 0))
    if k == 0:
        return ctx.cfg.run.seed
    return int(np.random.SeedSequence([ctx.cfg.run.seed, k]).generate_state(1)[0])


def _handed_over(ctx: PipelineContext, name: str) -> str | None:
    """The candidate whose data and model an ``auto`` strategy takes as its own (D19): the
    model validation chose is the model it returns, so nothing is trained twice. Its
    replicates (``replicate: k``) train the chosen mixture with their own seeds."""
    st = ctx.cfg.strategy(name)
    if st.method != "auto" or int(st.params.get("replicate", 0)):
        return None
    return str(Mixture.load(ctx.paths.strategy_mixture(name)).params["chosen"])


def _copy_dir(src: Path, out: Path, marker: str) -> None:
    import shutil

    from taskpgm.io import atomic_dir

    with atomic_dir(out, replaces=marker) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)


def stage_data(ctx: PipelineContext, name: str) -> None:
    from taskpgm.sample import materialise

    if (chosen := _handed_over(ctx, name)) is not None:
        _copy_dir(ctx.paths.data(chosen), ctx.paths.data(name), "manifest.json")
        return
    s = ctx.cfg.sample
    mix = Mixture.load(ctx.paths.strategy_mixture(name))
    materialise(ctx.pool(), mix, s.budget, ctx.paths.data(name), seed=replicate_seed(ctx, name),
                allocation=s.allocation, max_epochs=s.max_epochs,
                separator=ctx.cfg.model.separator)


def stage_train(ctx: PipelineContext, name: str) -> None:
    from taskpgm.models.train import TRAIN_MARKER, train_model

    if (chosen := _handed_over(ctx, name)) is not None:
        _copy_dir(ctx.paths.model(chosen), ctx.paths.model(name), TRAIN_MARKER)
        return

    t = ctx.cfg.train
    train_model(ctx.base_dir, ctx.paths.data(name), ctx.paths.model(name),
                config=finetune_config(ctx, t, replicate_seed(ctx, name)),
                progress=ctx.progress, description=f"train {name}")


def stage_eval(ctx: PipelineContext, name: str) -> None:
    from taskpgm.pipeline.evaluation import evaluate_to_record

    model_dir = ctx.base_dir if name == BASE_EVAL else ctx.paths.model(name)
    rec = evaluate_to_record(model_dir, ctx.pool(), ctx.eval_task_names(), name,
                             split=ctx.cfg.evaluate.split,
                             max_examples=ctx.cfg.evaluate.max_examples,
                             max_batch_tokens=ctx.cfg.evaluate.max_batch_tokens,
                             prompt_format=ctx.cfg.model.prompt_format,
                             separator=ctx.cfg.model.separator)
    rec.metadata["model"] = portable_path(model_dir, ctx.paths.eval(name).parent)
    rec.save(ctx.paths.eval(name))


def stage_report(ctx: PipelineContext) -> None:
    from taskpgm.pipeline.reporting import report_for_run

    report_for_run(ctx)


# -- the stage graph --------------------------------------------------------------------


def _pool_payload(cfg: Config) -> Any:
    p = cfg.pool.model_dump(mode="json")
    if cfg.pool.source == "synthetic" and p["seed"] is None:
        p["seed"] = cfg.run.seed
    if cfg.pool.source == "dir":
        # The pool lives outside the run: fingerprint every file in it (the manifest and
        # each task's data), so an edited task file re-runs everything downstream.
        p["files"] = tree_digest(Path(cfg.pool.path or ""))
    if cfg.pool.source == "import":
        p["files"] = [tree_digest(Path(src)) for src in cfg.pool.paths]
    return p


def tree_digest(root: Path) -> list[Any]:
    """[relative path, sha256] of every file under ``root`` (or of ``root`` itself),
    following symlinks as the importers do; relative, so the fingerprint does not depend
    on where the files live."""
    if root.is_file():
        return [[root.name, sha256_file(root)]]
    if not root.is_dir():
        return []
    files = sorted(Path(d, name) for d, _, names in os.walk(root, followlinks=True)
                   for name in names if not name.startswith("."))
    return [[f.relative_to(root).as_posix(), sha256_file(f)] for f in files if f.is_file()]


def build_stages(ctx: PipelineContext) -> list[Stage]:
    """The stage graph for ``ctx.cfg``, topologically sorted."""
    cfg = ctx.cfg
    seed = cfg.run.seed
    stages: list[Stage] = []
    base_deps: tuple[str, ...] = ("pool",)
    stages.append(Stage("pool", lambda: stage_pool(ctx), _pool_payload(cfg),
                        outputs=("pool",) if cfg.pool.source != "dir" else ()))
    if cfg.model.base == "tiny":
        stages.append(Stage("base", lambda: stage_base(ctx),
                            {"model": cfg.section("model"), "seed": seed,
                             "pretrain": expert_settings(cfg) if cfg.model.tiny.pretrain_steps
                             else None},
                            deps=("pool",),
                            outputs=("base", "base-init") if cfg.model.tiny.pretrain_steps
                            else ("base",), version=MODEL_CODE_VERSION))
        base_deps = ("base",)
    else:
        stages.append(Stage("base", lambda: None, {"model": cfg.section("model")}, deps=("pool",),
                            version=MODEL_CODE_VERSION))
        base_deps = ("base",)
    # Keyed: a changed pool keeps every expert and shard whose identity is unchanged
    # (taskpgm.pipeline.reuse). Version 2: experts and shards carry identities. Without
    # experts.executor: switching it re-runs nothing, here or downstream.
    stages.append(Stage("experts", lambda: stage_experts(ctx),
                        {"experts": expert_settings(cfg), "seed": seed},
                        deps=base_deps, outputs=("experts",), resumable=True, version=2,
                        reconcile=_reconcile(ctx, "experts"),
                        describe=_describe(ctx, "experts")))
    s_payload_scores: dict[str, Any] = {"scoring": scoring_settings(cfg)}
    if cfg.scoring.fraction < 1:  # which pairs are scored depends on the seed
        s_payload_scores["seed"] = seed
    stages.append(Stage("scores", lambda: stage_scores(ctx), s_payload_scores,
                        deps=("experts",), outputs=("scores",), resumable=True,
                        repair_depth=3,  # scores/shards/<expert>/<task>.parquet
                        version=2, reconcile=_reconcile(ctx, "scores"),
                        describe=_describe(ctx, "scores")))
    stages.append(Stage("affinity", lambda: stage_affinity(ctx),
                        {"affinity": cfg.section("affinity"), "seed": seed},
                        # affinity_half.npz: written under partial scoring only, but
                        # always owned, so a run switched to full scoring removes it.
                        deps=("scores",), outputs=("affinity.npz", "affinity_half.npz"),
                        optional_outputs=("affinity_half.npz",),
                        # 2: partial scoring also writes the split-half affinity; 3: an
                        # estimated pair moves with its task's bootstrap resample
                        version=3 if cfg.scoring.fraction < 1 else 1))
    uses_target = _uses_target_utilities(cfg)
    mix_deps: tuple[str, ...] = ("affinity",)
    if uses_target:
        stages.append(Stage("utilities", lambda: stage_utilities(ctx),
                            {"targets": cfg.mixture.targets},
                            deps=("scores",), outputs=("utilities.json",)))
        mix_deps = ("affinity", "utilities")
    mix_payload: dict[str, Any] = {"mixture": cfg.section("mixture"), "budget": cfg.sample.budget}
    if cfg.mixture.utilities:  # unary: given reads this file
        mix_payload["utilities_sha256"] = _file_sha256(cfg.mixture.utilities)
    stages.append(Stage("mixture", lambda: stage_main_mixture(ctx), mix_payload,
                        deps=mix_deps, outputs=("mixture.json",)))
    # auto strategies last: their mixtures need the other strategies' trained models.
    for st in sorted(cfg.strategies, key=lambda s: s.method == "auto"):
        s_payload = {"strategy": st.model_dump(mode="json"), "budget": cfg.sample.budget,
                     "seed": seed}
        if st.method in ("taskpgm", "taskpgm-paper"):
            s_payload["mixture"] = cfg.section("mixture")
            utilities = st.params.get("utilities") or cfg.mixture.utilities
            if utilities:
                s_payload["utilities_sha256"] = _file_sha256(utilities)
        if st.method == "given":
            s_payload["weights_sha256"] = _file_sha256(st.params["weights"])
        # MixMin reads the scores directly, not only through the affinity.
        s_deps = mix_deps + ("scores",) if st.method == "mixmin" else mix_deps
        make_mixture = stage_strategy_mixture
        if st.method == "auto":
            # Chooses among the candidates' trained models (D19): after their training.
            cands = auto_candidates(cfg, st)
            # The resolved rule: its default moved (D19 -> D37), so a run made before
            # chooses again; writing out the default (or dropping it) changes nothing.
            s_payload["strategy"]["params"].pop("rule", None)
            s_payload.update(candidates=cands, rule=auto_rule(st), model=cfg.section("model"),
                             max_batch_tokens=cfg.evaluate.max_batch_tokens,
                             evaluate_split=cfg.evaluate.split)
            s_deps = ("pool", *(f"train:{c}" for c in cands))
            make_mixture = stage_auto_mixture
        outputs: tuple[str, ...] = (f"mixtures/{st.name}.json",)
        if st.method == "regression":
            # Its proxies are a stage of their own (resumable: finished proxies are kept),
            # read only by what shapes them, so refitting (kl, targets, fit) trains nothing;
            # regression strategies whose proxies would be identical share the first's.
            owner = proxy_owner(cfg, st)
            if owner == st.name:
                stages.append(Stage(
                    f"proxies:{st.name}", _bind(stage_regression_proxies, ctx, st),
                    proxies_payload(cfg, st), deps=("pool", "base"),
                    outputs=(f"proxies/{st.name}",), resumable=True,
                    describe=_regression_note(ctx, st)))
            s_payload.update(model=cfg.section("model"),
                             mixture_max_epochs=cfg.mixture.max_epochs,
                             max_batch_tokens=cfg.evaluate.max_batch_tokens,
                             evaluate_split=cfg.evaluate.split)
            s_deps = (f"proxies:{owner}",)
            make_mixture = stage_regression_mixture
            outputs = (*outputs, f"runs/{st.name}")
        note = None
        if st.method == "auto":
            n_cands, rule = len(cands), auto_rule(st)
            note = (lambda _up, n=n_cands, r=rule: f"auto: chooses among {n} "
                    f"strategies' trained models by validation loss, rule {r!r} (their {n} "
                    "trainings are their own stages; it takes the chosen model over: no "
                    "extra training)")
        elif st.method == "regression" and owner != st.name:
            note = (lambda _up, o=owner: f"regression: fits on the proxies of {o!r} "
                    "(the same designs and training: trained once)")
        stages.append(Stage(f"mixture:{st.name}", _bind(make_mixture, ctx, st),
                            s_payload, deps=s_deps, outputs=outputs, describe=note))
        stages.append(Stage(f"data:{st.name}", _bind(stage_data, ctx, st.name),
                            {"sample": cfg.section("sample"), "seed": seed,
                             "separator": cfg.model.separator},
                            deps=(f"mixture:{st.name}", "pool"), outputs=(f"data/{st.name}",)))
        stages.append(Stage(f"train:{st.name}", _bind(stage_train, ctx, st.name),
                            {"train": cfg.section("train"), "seed": seed},
                            deps=(f"data:{st.name}", "base"), outputs=(f"models/{st.name}",)))
        stages.append(Stage(f"eval:{st.name}", _bind(stage_eval, ctx, st.name),
                            {"evaluate": cfg.section("evaluate")},
                            deps=(f"train:{st.name}",), outputs=(f"eval/{st.name}.json",)))
    stages.append(Stage(f"eval:{BASE_EVAL}", _bind(stage_eval, ctx, BASE_EVAL),
                        {"evaluate": cfg.section("evaluate")},
                        deps=("base",), outputs=(f"eval/{BASE_EVAL}.json",)))
    if cfg.report.enabled:
        deps = ["mixture", "scores", f"eval:{BASE_EVAL}"]
        deps += [f"mixture:{s.name}" for s in cfg.strategies]
        deps += [f"eval:{s.name}" for s in cfg.strategies]
        stages.append(Stage("report", lambda: stage_report(ctx),
                            {"report": cfg.section("report")}, deps=tuple(deps),
                            outputs=("report.html", "report", "checks.json")))
    return stages


def _file_sha256(path: str) -> str | None:
    return sha256_file(Path(path)) if Path(path).is_file() else None


def _uses_target_utilities(cfg: Config) -> bool:
    if cfg.mixture.unary == "target":
        return True
    return any(s.params.get("unary") == "target" for s in cfg.strategies
               if s.method in ("taskpgm", "taskpgm-paper"))


def _bind(fn, *args):
    return lambda: fn(*args)


def describe(cfg: Config) -> str:
    return json.dumps(cfg.model_dump(mode="json"), sort_keys=True)


__all__ = [
    "BASE_EVAL",
    "ConfigError",
    "PipelineContext",
    "RunPaths",
    "build_stages",
    "solve_strategy",
]
