"""``taskpgm affinity``: scores directory in, .npz out, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from taskpgm.affinity import load_affinity, pmi_from_means
from taskpgm.affinity.synthetic import low_rank_means, table_from_means
from taskpgm.scores import ScoresManifest, shard_path, write_manifest, write_shard


def _write_scores(root, table, skip=()):
    for (e, t), shard in table._shards.items():
        if (e, t) not in skip:
            write_shard(shard_path(root, e, t), shard)
    write_manifest(root, ScoresManifest(experts=table.experts, tasks=table.tasks))
    return root


@pytest.fixture
def scores(tmp_path):
    m = low_rank_means(5, seed=0)
    table = table_from_means(m, 12, seed=0, extra_experts={"base": m.mean(axis=0)})
    return _write_scores(tmp_path / "scores", table), m


def test_cli_writes_npz_that_loads_back(cli, scores, tmp_path):
    root, m = scores
    out = tmp_path / "aff.npz"
    code, stdout, stderr = cli("affinity", "--scores", root, "--bootstrap", "30", "--out", out)
    assert code == 0, stderr
    aff = load_affinity(out)
    np.testing.assert_allclose(aff.matrix, pmi_from_means(m), atol=1e-9)
    assert aff.kind == "pmi" and aff.lower is not None and aff.upper is not None
    assert aff.provenance["bootstrap"] == 30 and aff.provenance["ignored_experts"] == ["base"]
    assert "tasks" in stdout and "5" in stdout
    first = out.read_bytes()
    assert cli("affinity", "--scores", root, "--bootstrap", "30", "--out", out)[0] == 0
    assert out.read_bytes() == first  # same seed, same bytes


def test_cli_token_normalisation_and_ce_gap(cli, scores, tmp_path):
    root, _ = scores
    for args in (["--normalize", "token"], ["--metric", "ce-gap"]):
        out = tmp_path / "a.npz"
        code, _, stderr = cli("affinity", "--scores", root, *args, "--out", out)
        assert code == 0, stderr
        assert np.all(load_affinity(out).matrix <= 1e3)


def test_cli_missing_pair_one_line_then_complete(cli, tmp_path):
    m = low_rank_means(12, seed=1)
    table = table_from_means(m, 10, seed=1)
    root = _write_scores(tmp_path / "s", table, skip={("task003", "task007"), ("task001", "task002")})
    out = tmp_path / "aff.npz"
    code, _, stderr = cli("affinity", "--scores", root, "--out", out)
    assert code == 2 and not out.exists()
    assert stderr.strip().count("\n") == 0
    assert "expert 'task001' on task 'task002'" in stderr and "--complete" in stderr
    code, _, stderr = cli("affinity", "--scores", root, "--complete", "--out", out)
    assert code == 0, stderr
    assert load_affinity(out).provenance["completion"]["n_missing_pairs"] == 2
    # With intervals too: the estimated entries' intervals carry the completion's error.
    code, _, stderr = cli("affinity", "--scores", root, "--complete", "--bootstrap", "20",
                          "--out", out)
    assert code == 0, stderr
    aff = load_affinity(out)
    assert aff.lower is not None and aff.provenance["completion"]["interval_m_error"]["value"] > 0


def test_cli_non_finite_and_mismatched_names(cli, tmp_path):
    m = low_rank_means(3, seed=2)
    table = table_from_means(m, 4, seed=2)
    table.shard("task001", "task001").logprob[0] = np.inf
    root = _write_scores(tmp_path / "s", table)
    code, _, stderr = cli("affinity", "--scores", root, "--out", tmp_path / "a.npz")
    assert code == 2 and "non-finite score inf" in stderr and "Traceback" not in stderr

    table = table_from_means(m, 4, seed=2, extra_experts={"task9": m[0]})
    root = _write_scores(tmp_path / "s2", table)
    code, _, stderr = cli("affinity", "--scores", root, "--out", tmp_path / "a.npz")
    assert code == 2 and "expert 'task9' is named after no task" in stderr


def test_cli_prints_degenerate_warnings(cli, tmp_path):
    m = np.zeros((5, 5))  # every expert identical: every row constant
    root = _write_scores(tmp_path / "s", table_from_means(m, 4, noise=0.0))
    code, _, stderr = cli("affinity", "--scores", root, "--out", tmp_path / "a.npz")
    assert code == 0 and "warning:" in stderr and "constant row" in stderr


def test_cli_bad_options(cli, scores, tmp_path):
    root, _ = scores
    code, _, stderr = cli("affinity", "--scores", root, "--metric", "cosine", "--out",
                          tmp_path / "a.npz")
    assert code == 2
    code, _, stderr = cli("affinity", "--scores", tmp_path / "nope", "--out", tmp_path / "a.npz")
    assert code == 2 and "nope" in stderr


# -- the library names its parameters, the CLI its flags ------------------------------------

def test_library_errors_name_the_parameter_not_a_flag(scores):
    import re

    from taskpgm.affinity import compute_affinity
    from taskpgm.errors import TaskPGMError
    from taskpgm.scores import ScoreTable

    root, _ = scores
    table = ScoreTable.load(root)
    cases = {
        "parameter 'bootstrap' (intervals) is supported for metric pmi only":
            {"metric": "ce-gap", "bootstrap": 5},
        "complete=True (low-rank completion) is supported for metric pmi only":
            {"metric": "ce-gap", "complete": True},
        "bootstrap must be >= 0": {"bootstrap": -1},
        "seed must be a non-negative integer": {"seed": -1},
    }
    for needle, kwargs in cases.items():
        with pytest.raises(TaskPGMError) as info:
            compute_affinity(table, **kwargs)
        msg = str(info.value)
        assert needle in msg and not re.search(r"--[a-z]", msg), msg


def test_library_missing_pairs_message_names_complete_true(tmp_path):
    from taskpgm.affinity import compute_affinity
    from taskpgm.errors import InputError

    table = table_from_means(low_rank_means(4, seed=1), 6, seed=1)
    del table._shards[("task001", "task002")]
    with pytest.raises(InputError, match=r"pass complete=True to estimate them") as info:
        compute_affinity(table)
    assert "--" not in str(info.value)


def test_no_message_in_compute_or_pmi_names_a_cli_flag():
    import ast
    import inspect
    import re

    from taskpgm.affinity import compute, pmi

    flagged = []
    for module in (compute, pmi):
        tree = ast.parse(inspect.getsource(module))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(getattr(n, "body", None), list) and n.body
                      and isinstance(n.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and id(node) not in docstrings and re.search(r"--[a-z]", node.value):
                flagged.append(f"{module.__name__}:{node.lineno}: {node.value!r}")
    assert not flagged, "\n".join(flagged)


@pytest.mark.parametrize("args, needle", [
    (["--metric", "ce-gap", "--bootstrap", "5"],
     "--bootstrap (intervals) is supported for metric pmi only, not 'ce-gap'"),
    (["--metric", "ce-gap", "--complete"],
     "--complete (low-rank completion) is supported for metric pmi only"),
])
def test_cli_maps_parameters_back_to_flags(cli, scores, tmp_path, args, needle):
    root, _ = scores
    out = tmp_path / "a.npz"
    code, _, stderr = cli("affinity", "--scores", root, *args, "--out", out)
    assert code == 2 and not out.exists()
    assert len(stderr.strip().splitlines()) == 1 and needle in stderr, stderr
    assert "complete=True" not in stderr and "parameter '" not in stderr, stderr
