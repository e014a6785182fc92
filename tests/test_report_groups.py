"""Mass per family / cluster in the report, the family-balanced check, zero-mass families,
and the report's path and influence seeing the same noise as the mixture."""

from __future__ import annotations

import re

import numpy as np
import pytest

from taskpgm.affinity.io import AffinityMatrix
from taskpgm.affinity.redundancy import noise_from_intervals
from taskpgm.mixture import r_path, solve
from taskpgm.mixture.record import Mixture
from taskpgm.pipeline.reporting import (
    check_family_balanced_beats_uniform,
    check_mixtures_move,
    compute_influence,
    compute_path,
)
from taskpgm.report import Check, ModelEval, ReportInputs, TaskEval, build_report
from taskpgm.report.figures import group_mass_bars
from taskpgm.report.groups import cluster_groups, family_groups, group_mass

TASKS = ["a1", "a2", "a3", "b1", "b2", "c1"]
FAMS = {"a1": "a", "a2": "a", "a3": "a", "b1": "b", "b2": "b", "c1": None}


def _mixtures() -> dict[str, Mixture]:
    return {
        "uniform": Mixture("uniform", TASKS, np.full(6, 1 / 6)),
        "fb": Mixture("family-balanced", TASKS, np.array([1 / 9] * 3 + [1 / 6] * 2 + [1 / 3])),
        "pgm": Mixture("taskpgm", TASKS, np.array([0.5, 0, 0, 0.25, 0.25, 0])),
    }


def _block_affinity(lower_upper_sigma: float | None = None) -> AffinityMatrix:
    """Two families of three tasks: near 0 within a family, strongly negative across."""
    rng = np.random.default_rng(0)
    fam = np.array([0, 1, 0, 1, 0, 1])
    m = np.where(fam[:, None] == fam[None, :], -0.1, -3.0) + 0.01 * rng.standard_normal((6, 6))
    m = 0.5 * (m + m.T)
    np.fill_diagonal(m, 0.0)
    names = [f"t{i}" for i in range(6)]
    if lower_upper_sigma is None:
        return AffinityMatrix(names, m, kind="pmi")
    half = 1.959964 * lower_upper_sigma
    return AffinityMatrix(names, m, "pmi", m - half, m + half, {"interval_level": 0.95})


def _eval(name: str, loss: float) -> ModelEval:
    return ModelEval(name, [TaskEval("h0", 10, loss), TaskEval("h1", 10, loss)])


# -- group masses ---------------------------------------------------------------------------


def test_family_mass_matches_hand_computed_and_sums_to_one():
    gm = group_mass(_mixtures(), family_groups(TASKS, FAMS), "family")
    assert gm.strategies == ["uniform", "fb", "pgm"]
    # The unlabelled task is a family of its own.
    assert {g.label: g.members for g in gm.groups} == {
        "a": ["a1", "a2", "a3"], "b": ["b1", "b2"], "c1 (no family)": ["c1"]}
    assert gm.column("uniform") == pytest.approx({"a": 0.5, "b": 1 / 3, "c1 (no family)": 1 / 6})
    assert gm.column("fb") == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c1 (no family)": 1 / 3})
    assert gm.column("pgm") == pytest.approx({"a": 0.5, "b": 0.5, "c1 (no family)": 0.0})
    assert gm.mass.sum(axis=0) == pytest.approx(np.ones(3))
    # Tasks with positive weight per group: pgm keeps one of a's three tasks.
    a = [g.label for g in gm.groups].index("a")
    assert list(gm.active[a]) == [3, 3, 1]
    # Rows by decreasing largest mass: a and b reach 0.5, c1 only 1/3.
    assert [g.label for g in gm.groups][-1] == "c1 (no family)"


def test_clusters_follow_the_affinity_and_its_noise():
    tight = cluster_groups(_block_affinity())
    assert [g.members for g in tight] == [["t0", "t2", "t4"], ["t1", "t3", "t5"]]
    # With intervals this wide, 3 nats is within noise: one cluster (so noise is used).
    assert [g.members for g in cluster_groups(_block_affinity(5.0))] == [
        [f"t{i}" for i in range(6)]]
    names = [f"t{i}" for i in range(6)]
    mixes = {"m": Mixture("given", names, np.array([0.4, 0.1, 0.2, 0.1, 0.2, 0.0]))}
    gm = group_mass(mixes, tight, "cluster")
    assert gm.column("m") == pytest.approx({"c1": 0.8, "c2": 0.2})
    # A mixture task the affinity lacks is still counted, in its own group.
    extra = {"m": Mixture("given", names + ["x"], np.array([0.4] + [0.1] * 6))}
    gm = group_mass(extra, cluster_groups(_block_affinity(), names + ["x"]), "cluster")
    assert gm.mass.sum() == pytest.approx(1.0)
    assert gm.column("m")["(not in the affinity)"] == pytest.approx(0.1)


def test_many_groups_are_summed_as_other_and_the_figure_is_deterministic():
    tasks = [f"t{i:03d}" for i in range(320)]
    fams = {t: f"f{i % 40:02d}" for i, t in enumerate(tasks)}
    rng = np.random.default_rng(3)
    mixes = {name: Mixture(name, tasks, rng.dirichlet(np.ones(320)))
             for name in ("uniform", "taskpgm", "cluster-balanced")}
    gm = group_mass(mixes, family_groups(tasks, fams), "family")
    assert len(gm.groups) == 40
    labels, mass = gm.top(12)
    assert len(labels) == 13 and labels[-1] == "other (28 families)"
    assert mass.sum(axis=0) == pytest.approx(gm.mass.sum(axis=0))
    assert mass[:12] == pytest.approx(gm.mass[:12])
    a, b = group_mass_bars(gm), group_mass_bars(gm)
    assert a == b and a.startswith(b"\x89PNG")


# -- checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("fb_loss", "expected"), [(2.0, True), (2.2, False), (2.1, False)])
def test_family_balanced_check_true_false(fb_loss, expected):
    mixes = _mixtures()
    evals = {"uniform": _eval("uniform", 2.1), "fb": _eval("fb", fb_loss),
             "pgm": _eval("pgm", 1.0)}
    c = check_family_balanced_beats_uniform(evals, mixes, FAMS)
    assert c.ok is expected
    assert "one seed only" in c.detail
    said = "cannot show any redundancy-aware method winning"
    assert (said in c.detail) is (not expected)


def test_family_balanced_check_is_none_without_the_strategies_or_families():
    mixes = _mixtures()
    evals = {"uniform": _eval("uniform", 2.1), "fb": _eval("fb", 2.0)}
    # Missing either evaluated strategy.
    assert check_family_balanced_beats_uniform({"fb": evals["fb"]}, mixes, FAMS).ok is None
    c = check_family_balanced_beats_uniform({"uniform": evals["uniform"]}, mixes, FAMS)
    assert c.ok is None and "family-balanced" in c.detail
    # No labels, or every family a single task: family-balanced is uniform.
    assert check_family_balanced_beats_uniform(evals, mixes, dict.fromkeys(TASKS)).ok is None
    single = {t: f"fam-{t}" for t in TASKS}
    assert check_family_balanced_beats_uniform(evals, mixes, single).ok is None
    # Found by method, whatever the strategy is called.
    renamed = {"ref": mixes["fb"], "flat": mixes["uniform"]}
    ev = {"ref": evals["fb"], "flat": evals["uniform"]}
    assert check_family_balanced_beats_uniform(ev, renamed, FAMS).ok is True


def test_zero_mass_family_is_named_and_every_non_uniform_strategy_is_covered():
    mixes = _mixtures()
    mixes["mm"] = Mixture("mixmin", TASKS, np.array([0.0, 0.0, 0.0, 0.5, 0.3, 0.2]))
    c = check_mixtures_move(mixes, FAMS)
    assert c.ok is None and c.warn
    assert "uniform:" not in c.detail
    assert "fb: L1 to uniform" in c.detail  # reference strategies too, not only taskpgm
    assert "pgm: family c1 (no family) gets zero mass" in c.detail
    assert "mm: family a gets zero mass" in c.detail
    assert "smallest family mass 0.000 (a)" in c.detail
    # pgm: a holds 0.5 as under uniform, b 0.5 (uniform 1/3), c1 0 (uniform 1/6).
    assert "pgm: family c1 (no family) gets zero mass; L1 to uniform 1.000 over tasks, " \
           "0.333 over families" in c.detail
    ok = check_mixtures_move({"fb": mixes["fb"]}, FAMS)
    assert not ok.warn and "zero mass" not in ok.detail
    assert "smallest family mass 0.333" in ok.detail


# -- the report -----------------------------------------------------------------------------


def test_report_with_the_new_strategies_shows_group_mass_and_failures(tmp_path):
    aff = _block_affinity(0.02)
    names = aff.names
    fams = {"t0": "even", "t2": "even", "t4": "even", "t1": "odd", "t3": "odd", "t5": None}
    main = solve(aff)
    mixes = {
        "uniform": solve(aff, method="uniform"),
        "taskpgm": main,
        "family-balanced": solve(aff, method="family-balanced", families=fams),
        "cluster-balanced": solve(aff, method="cluster-balanced"),
        "mixmin": Mixture("mixmin", names, np.array([0.7, 0.3, 0, 0, 0, 0])),
        "given": Mixture("given", names, np.array([0.2, 0.2, 0.2, 0.2, 0.2, 0.0])),
    }
    evals = {k: _eval(k, 2.0 + 0.01 * i) for i, k in enumerate(mixes)}
    checks = [check_family_balanced_beats_uniform(evals, mixes, fams),
              check_mixtures_move(mixes, fams)]
    assert checks[0].ok is False and checks[1].warn
    inp = ReportInputs(aff, mixes, evals, None, checks, None, None, families=fams)
    doc = build_report(tmp_path, inp).read_text()
    assert (tmp_path / "report" / "family_mass.png").is_file()
    assert (tmp_path / "report" / "cluster_mass.png").is_file()
    # FAIL stands out: a badge, and a banner at the top naming the check.
    assert '<span class="badge bad">FAIL</span>' in doc
    banner = re.search(r'<p class="banner">(.*?)</p>', doc).group(1)
    assert "family-balanced beats uniform" in banner and "WARN" in banner
    # Family table: mixmin gives "odd" 0.3 and t5's own family zero (a red cell).
    assert "<td>t5 (no family)</td>" in doc and 'class="zero"' in doc
    # Cluster table: the two blocks, with their members, and totals of 1 per strategy.
    assert "t0, t2, t4" in doc and "t1, t3, t5" in doc
    totals = re.findall(r"<tr><th>total</th><th>6</th><th></th>(.*?)</tr>", doc)
    assert len(totals) == 2
    for row in totals:
        assert re.findall(r"<th>([0-9.]+)</th>", row) == ["1.000"] * len(mixes)
    # Same inputs, same bytes.
    again = build_report(tmp_path / "again", inp).read_bytes()
    assert again == (tmp_path / "report.html").read_bytes()


def test_report_without_family_labels_says_so(tmp_path):
    aff = _block_affinity()
    mixes = {"uniform": Mixture("uniform", aff.names, np.full(6, 1 / 6))}
    doc = build_report(tmp_path, ReportInputs(aff, mixes, families=dict.fromkeys(aff.names))
                       ).read_text()
    assert "no family labels" in doc and not (tmp_path / "report" / "family_mass.png").exists()
    assert "banner" not in doc.split("</style>")[1]


def test_check_badges():
    from taskpgm.report.html import _badge

    assert _badge(Check("x", True, ""))[1] == "PASS"
    assert _badge(Check("x", False, ""))[1] == "FAIL"
    assert _badge(Check("x", None, ""))[1] == "info"
    assert _badge(Check("x", None, "", warn=True))[1] == "WARN"


# -- path and influence see the mixture's noise -----------------------------------------------


def _noisy_affinity() -> AffinityMatrix:
    rng = np.random.default_rng(1)
    g = np.array([0, 0, 0, 0, 1, 1, 2, 3])
    m = np.where(g[:, None] == g[None, :], -0.1, -2.0) + 0.3 * rng.standard_normal((8, 8))
    m = 0.5 * (m + m.T)
    np.fill_diagonal(m, 0.0)
    half = 1.959964 * 0.6
    return AffinityMatrix([f"t{i}" for i in range(8)], m, "pmi", m - half, m + half,
                          {"interval_level": 0.95})


def test_influence_resolves_with_the_sliced_noise():
    aff = _noisy_affinity()
    main = solve(aff, kernel="calibrated")  # noise from the intervals
    opts = {k: main.params[k] for k in ("kernel", "unary", "r_rel", "ridge")
            if k in main.params}
    rows = compute_influence(aff, main, **opts)
    noise = noise_from_intervals(aff.lower, aff.upper, 0.95)
    full = main.as_dict()
    for i, row in enumerate(rows):
        keep = [j for j in range(aff.n) if j != i]
        sub = [aff.names[j] for j in keep]
        ref = solve(aff.matrix[np.ix_(keep, keep)], names=sub, noise=noise[np.ix_(keep, keep)],
                    **opts)
        rest = np.array([full[t] for t in sub])
        assert row.l1_change == pytest.approx(np.abs(ref.weights - rest / rest.sum()).sum(),
                                              abs=1e-9)
    # Without the noise the answer differs, so the test above can tell.
    bare = AffinityMatrix(aff.names, aff.matrix, aff.kind)
    other = compute_influence(bare, main, **opts)
    assert max(abs(a.l1_change - b.l1_change) for a, b in zip(rows, other, strict=True)) > 0.01


def test_path_uses_the_affinity_noise():
    aff = _noisy_affinity()
    p = compute_path(aff, 7, kernel="calibrated")
    noise = noise_from_intervals(aff.lower, aff.upper, 0.95)
    ref = r_path(aff.matrix, names=aff.names, rs=p.r, noise=noise, kernel="calibrated")
    assert p.weights == pytest.approx(ref.weights, abs=1e-9)
    bare = r_path(aff.matrix, names=aff.names, rs=p.r, kernel="calibrated")
    assert np.abs(p.weights - bare.weights).max() > 0.01
    # The calibrated mixture lies on its own path: r = r_rel / n.
    main = solve(aff, kernel="calibrated")
    at = r_path(aff, rs=[main.params["r"]], kernel="calibrated")
    assert at.weights[0] == pytest.approx(main.weights, abs=1e-6)
