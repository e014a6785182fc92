"""``scoring.sampling: adaptive``: score in two rounds, the second where it matters.

The first round is half the planned off-diagonal (expert, training task) pairs, drawn
like ``balanced`` (every expert and task anchored), plus the pairs every run scores (the
diagonal, the base row, held-out tasks). Once it is scored, the expert-by-task mean
matrix is completed from it and the rest of the plan goes to the pairs where two
completions, each fitted on half of the scored pairs, disagree most
(:func:`taskpgm.affinity.completion.adaptive_pairs`).

Which pairs the second round holds depends on first-round *scores*, so it cannot be
recomputed from the config alone: the stage records it in ``scores/adaptive.json``
(written atomically, an output of the scores stage like every shard). The record names
its *basis*: the identities of the first-round shards, the training task names and
what the choice reads (fraction, seed, normalisation). It is used only while that basis
is the current one, so a resumed run re-scores exactly the recorded pairs, and a
changed pool or setting chooses the second round afresh from the new first round. The
choice is deterministic given the first-round bytes and run.seed, so a run killed
before the record was written chooses the same pairs again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from taskpgm.errors import InputError
from taskpgm.io import atomic_write_json, read_json

RECORD = "adaptive.json"  # in the scores directory
VERSION = 2  # 2: pairs keyed by task names (sample_mask's names)
# Each of adaptive_pairs' two half-fits needs at least two scored off-diagonal pairs.
MIN_FIRST_ROUND = 4


def planned(n: int, fraction: float) -> tuple[int, int]:
    """(off-diagonal pairs planned in all, of which in the first round)."""
    from taskpgm.affinity.completion import planned_offdiagonal

    total = planned_offdiagonal(n, fraction)
    first = (total + 1) // 2
    # Too few pairs to fit two completions on: no second round, all scored at once.
    return total, (total if first < MIN_FIRST_ROUND else first)


def first_round(names: list[str], fraction: float, seed: int) -> np.ndarray:
    """The first round over train x train (diagonal included), drawn like ``balanced``
    (keyed by the task names, so a grown pool keeps most of its first round)."""
    from taskpgm.affinity.completion import sample_mask

    n = len(names)
    return sample_mask(n, fraction, seed=seed, strategy="balanced",
                       n_off=planned(n, fraction)[1], names=names)


def _pairs(mask: np.ndarray, names: list[str]) -> list[tuple[str, str]]:
    return [(names[i], names[j]) for i, j in zip(*np.nonzero(mask), strict=True)]


def basis(ctx: Any, ids: Any, names: list[str], first: np.ndarray) -> str:
    """What the second round is chosen from: changes whenever a first-round score may."""
    from taskpgm.pipeline.identity import digest

    s = ctx.cfg.scoring
    return digest({"v": VERSION, "names": names, "fraction": s.fraction,
                   "seed": ctx.cfg.run.seed, "normalize": ctx.cfg.affinity.normalize,
                   "shards": [ids.shard(e, t) for e, t in _pairs(first, names)]})


def record_path(ctx: Any):
    return ctx.paths.scores / RECORD


def recorded_second_round(ctx: Any, ids: Any) -> list[tuple[str, str]] | None:
    """The recorded second round if its basis is the current one, else None."""
    names = ctx.train_task_names()
    path = record_path(ctx)
    if not path.is_file():
        return None
    try:
        raw = read_json(path)
    except InputError:  # a damaged record is as good as none: the round is chosen again
        return None
    first = first_round(names, ctx.cfg.scoring.fraction, ctx.cfg.run.seed)
    if not isinstance(raw, dict) or raw.get("basis") != basis(ctx, ids, names, first):
        return None
    known = set(names)
    pairs = [tuple(p) for p in raw.get("second_round", [])]
    if not all(len(p) == 2 and p[0] in known and p[1] in known for p in pairs):
        return None
    return pairs  # type: ignore[return-value]


def scored_mask(ctx: Any, ids: Any) -> np.ndarray:
    """The train x train pairs scored: the first round and, once chosen, the second."""
    names = ctx.train_task_names()
    mask = first_round(names, ctx.cfg.scoring.fraction, ctx.cfg.run.seed)
    index = {t: i for i, t in enumerate(names)}
    for e, t in recorded_second_round(ctx, ids) or []:
        mask[index[e], index[t]] = True
    return mask


def second_round_pending(ctx: Any, ids: Any) -> int:
    """How many pairs the second round will add (0 once it is recorded)."""
    n = len(ctx.train_task_names())
    total, first = planned(n, ctx.cfg.scoring.fraction)
    return 0 if recorded_second_round(ctx, ids) is not None else total - first


def choose_second_round(ctx: Any, ids: Any) -> list[tuple[str, str]]:
    """Choose the second round from the scored first round and record it."""
    from taskpgm.affinity.completion import adaptive_pairs
    from taskpgm.affinity.pmi import mean_scores
    from taskpgm.scores import ScoreTable

    names = ctx.train_task_names()
    s, seed = ctx.cfg.scoring, ctx.cfg.run.seed
    first = first_round(names, s.fraction, seed)
    total, n_first = planned(len(names), s.fraction)
    new = np.zeros_like(first)
    if total > n_first:
        table = ScoreTable.load(ctx.paths.scores)
        means = mean_scores(table, names, names, ctx.cfg.affinity.normalize,
                            allow_missing=True).means
        new = adaptive_pairs(means, first, total - n_first, seed=seed)
    second = _pairs(new, names)
    atomic_write_json(record_path(ctx), {
        "format": "taskpgm-adaptive-scoring", "version": VERSION,
        "basis": basis(ctx, ids, names, first),
        "fraction": s.fraction, "seed": seed,
        "rule": "first round: half the planned off-diagonal pairs drawn like 'balanced' "
                "(plus the diagonal); second round: the unscored pairs where two "
                "completions, each fitted on half of the first round, disagree most",
        "first_round": [list(p) for p in _pairs(first, names)],
        "second_round": [list(p) for p in second],
    })
    return second
