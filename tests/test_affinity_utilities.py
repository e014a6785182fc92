"""Target-aware utilities from scores: expert gain over the base model on the targets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from taskpgm.affinity.utilities import scale_like_rowsum, target_utilities
from taskpgm.errors import InputError
from taskpgm.scores import (
    ScoresManifest,
    ScoreTable,
    shard_path,
    write_manifest,
    write_shard,
)


def _table(gain_a: float, gain_b: float) -> ScoreTable:
    rng = np.random.default_rng(0)
    base = rng.normal(-20, 2, size=8)
    n_tok = rng.integers(2, 9, size=8)
    lp = {("base", "T"): base, ("a", "T"): base + gain_a * n_tok, ("b", "T"): base + gain_b * n_tok}
    for e in ("a", "b", "base"):
        for t in ("a", "b"):
            lp[(e, t)] = rng.normal(-5, 1, size=8)
    table = ScoreTable.from_arrays(["a", "b", "base"], ["a", "b", "T"], lp)
    # from_arrays gives every task one token per example; set the real counts for T.
    for e in ("a", "b", "base"):
        table.shard(e, "T").n_tokens = n_tok.astype(np.int32)
    return table


def test_utilities_are_per_token_gains_over_base():
    u = target_utilities(_table(0.5, -0.25), ["a", "b"], ["T"])
    np.testing.assert_allclose(u, [0.5, -0.25], atol=1e-12)


def test_missing_base_row_and_unknown_target_are_one_line_errors():
    table = _table(0.1, 0.2)
    with pytest.raises(InputError, match="target task 'nope'"):
        target_utilities(table, ["a", "b"], ["nope"])
    no_base = ScoreTable(["a", "b"], table.tasks, {k: v for k, v in table._shards.items()
                                                     if k[0] != "base"})
    with pytest.raises(InputError, match="no base-model row"):
        target_utilities(no_base, ["a", "b"], ["T"])


def test_scaling_matches_rowsum_spread_and_keeps_order():
    rng = np.random.default_rng(1)
    m = rng.normal(size=(5, 5))
    u = np.array([0.1, 0.4, -0.2, 0.0, 0.3])
    s = scale_like_rowsum(u, m)
    assert np.isclose(np.std(s), np.std((0.5 * (m + m.T)).sum(1)))
    assert np.array_equal(np.argsort(s), np.argsort(u))


def test_cli_writes_utilities_that_solve_reads(cli, tmp_path):
    table = _table(0.5, -0.25)
    root = tmp_path / "scores"
    for (e, t), sh in table._shards.items():
        write_shard(shard_path(root, e, t), sh)
    write_manifest(root, ScoresManifest(experts=table.experts, tasks=table.tasks))
    out = tmp_path / "u.json"
    code, _, err = cli("utilities", "--scores", root, "--targets", "T", "--out", out)
    assert code == 0, err
    assert json.loads(out.read_text()) == pytest.approx({"a": 0.5, "b": -0.25})
    code, _, err = cli("utilities", "--scores", root, "--targets", "zzz", "--out", out)
    assert code == 2 and err.count("\n") == 1 and "zzz" in err
    assert json.loads(out.read_text()) == pytest.approx({"a": 0.5, "b": -0.25})
