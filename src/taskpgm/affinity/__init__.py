"""Task affinity from scores: PMI, top-k divergences, intervals, completion.

The numeric core: numpy/scipy only, no torch.
"""

from taskpgm.affinity.completion import complete_means, completion_curve, sample_mask
from taskpgm.affinity.compute import METRICS, compute_affinity
from taskpgm.affinity.diagnostics import degenerate_warnings
from taskpgm.affinity.io import AffinityMatrix, load_affinity, save_affinity
from taskpgm.affinity.pmi import mean_scores, pmi_from_means

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
