"""The HTML report: affinity heatmap, mixtures, r-path, task influence, evaluation.

Needs matplotlib (the ``report`` extra); imports nothing from ``taskpgm.models``.
"""

from taskpgm.report.figures import InfluenceRow, PathData
from taskpgm.report.html import ReportInputs, build_report
from taskpgm.report.records import Check, ModelEval, TaskEval

__all__ = ["Check", "InfluenceRow", "ModelEval", "PathData", "ReportInputs", "TaskEval",
           "build_report"]
