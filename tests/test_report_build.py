"""The report builds from synthetic inputs, embeds every figure, and orders by cluster."""

from __future__ import annotations

import base64
import itertools
import re

import numpy as np

from taskpgm.affinity.io import AffinityMatrix
from taskpgm.mixture.record import Mixture
from taskpgm.report import (
    Check,
    InfluenceRow,
    ModelEval,
    PathData,
    ReportInputs,
    TaskEval,
    build_report,
)
from taskpgm.report.figures import cluster_order


def _block_affinity(seed: int = 0) -> AffinityMatrix:
    """Two families of three tasks: near 0 within a family, strongly negative across."""
    rng = np.random.default_rng(seed)
    fam = np.array([0, 1, 0, 1, 0, 1])
    m = np.where(fam[:, None] == fam[None, :], -0.1, -3.0) + 0.01 * rng.standard_normal((6, 6))
    m = 0.5 * (m + m.T)
    np.fill_diagonal(m, 0.0)
    return AffinityMatrix([f"t{i}" for i in range(6)], m, kind="pmi")


def test_cluster_order_groups_families_together():
    aff = _block_affinity()
    order = cluster_order(aff)
    assert sorted(order) == list(range(6))
    fams = [i % 2 for i in order]
    # One family must occupy a contiguous block: the sequence changes family exactly once.
    assert sum(a != b for a, b in itertools.pairwise(fams)) == 1


def test_report_builds_with_all_sections(tmp_path):
    aff = _block_affinity()
    n = aff.n
    mixtures = {
        "uniform": Mixture("uniform", aff.names, np.full(n, 1 / n)),
        "taskpgm": Mixture("taskpgm", aff.names, np.array([0.5, 0.5, 0, 0, 0, 0])),
    }
    evals = {
        name: ModelEval(name, [TaskEval("h0", 10, 2.0 + i, accuracy=0.5),
                               TaskEval("h1", 10, 3.0, exact_match=0.1)])
        for i, name in enumerate(mixtures)
    }
    base = ModelEval("base", [TaskEval("h0", 10, 5.0, accuracy=0.25),
                              TaskEval("h1", 10, 6.0, exact_match=0.0)])
    r = np.geomspace(0.01, 10, 7)
    path = PathData(r, np.tile(np.full(n, 1 / n), (7, 1)), aff.names)
    infl = [InfluenceRow(t, 1 / n, 0.1 * i, 0.01 * i) for i, t in enumerate(aff.names)]
    checks = [Check("experts beat base", True, "6/6"), Check("family structure", None, "n/a")]
    families = {t: ("even" if i % 2 == 0 else "odd") for i, t in enumerate(aff.names)}
    out = build_report(tmp_path, ReportInputs(aff, mixtures, evals, base, checks, path, infl,
                                              title="synthetic", families=families))
    doc = out.read_text()
    pngs = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
    assert pngs == ["affinity_heatmap.png", "cluster_mass.png", "eval.png", "family_mass.png",
                    "influence.png", "mixtures.png", "r_path.png"]
    # Every figure is embedded, and the embedded bytes are the PNG written beside it.
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', doc)
    assert len(embedded) == 7
    on_disk = {(tmp_path / "report" / p).read_bytes() for p in pngs}
    assert {base64.b64decode(e) for e in embedded} == on_disk
    assert all(b.startswith(b"\x89PNG") for b in on_disk)
    # No external resources: the report is self-contained.
    assert "http://" not in doc and "https://" not in doc and "<script" not in doc
    assert "PASS" in doc and "n/a" in doc and "base model" in doc
    assert "Mass per family" in doc and "Mass per cluster" in doc
    # The best strategy (lowest loss) is highlighted.
    assert re.search(r'<tr class="best"><td>uniform</td>', doc)


def test_report_is_deterministic(tmp_path):
    aff = _block_affinity()
    mixtures = {"uniform": Mixture("uniform", aff.names, np.full(6, 1 / 6))}
    a = build_report(tmp_path / "a", ReportInputs(aff, mixtures)).read_bytes()
    b = build_report(tmp_path / "b", ReportInputs(aff, mixtures)).read_bytes()
    assert a == b
