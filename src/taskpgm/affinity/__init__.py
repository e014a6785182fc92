"""Task affinity from scores: PMI, top-k divergences, intervals, completion.

The numeric core: numpy/scipy only, no torch. The names below are loaded on first use
(PEP 562), so importing the package or a light submodule does not import scipy or pyarrow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskpgm.lazy import lazy_exports

if TYPE_CHECKING:
    from taskpgm.affinity.completion import complete_means, completion_curve, sample_mask
    from taskpgm.affinity.compute import METRICS, compute_affinity
    from taskpgm.affinity.diagnostics import degenerate_warnings
    from taskpgm.affinity.io import AffinityMatrix, load_affinity, save_affinity
    from taskpgm.affinity.pmi import mean_scores, pmi_from_means

# Public name -> the submodule that defines it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("complete_means", "completion_curve", "sample_mask"), "completion"),
    **dict.fromkeys(("METRICS", "compute_affinity"), "compute"),
    "degenerate_warnings": "diagnostics",
    **dict.fromkeys(("AffinityMatrix", "load_affinity", "save_affinity"), "io"),
    **dict.fromkeys(("mean_scores", "pmi_from_means"), "pmi"),
}

__all__ = [
    "METRICS",
    "AffinityMatrix",
    "complete_means",
    "completion_curve",
    "compute_affinity",
    "degenerate_warnings",
    "load_affinity",
    "mean_scores",
    "pmi_from_means",
    "sample_mask",
    "save_affinity",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
