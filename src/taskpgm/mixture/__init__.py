"""Mixture strategies: the exact TaskPGM solver, its variants, and size baselines.

Torch-free: needs only numpy and scipy.
"""

from __future__ import annotations

from taskpgm.mixture.api import (
    PAPER_LABEL,
    STRATEGIES,
    MixtureInputs,
    RPath,
    Strategy,
    build_problem,
    default_rs,
    make_inputs,
    paper_weights,
    r_path,
    solve,
)
from taskpgm.mixture.greedy import GreedyResult, greedy_select
from taskpgm.mixture.kernels import KERNELS, Kernel, build_kernel
from taskpgm.mixture.qp import QPResult, kkt_residual, project_capped_simplex, solve_qp
from taskpgm.mixture.record import Mixture
from taskpgm.mixture.unary import UNARIES, read_values, unary_utilities

__all__ = [
    "KERNELS", "PAPER_LABEL", "STRATEGIES", "UNARIES", "GreedyResult", "Kernel", "Mixture",
    "MixtureInputs", "QPResult", "RPath", "Strategy", "build_kernel", "build_problem",
    "default_rs", "greedy_select", "kkt_residual", "make_inputs", "paper_weights",
    "project_capped_simplex", "r_path", "read_values", "solve", "solve_qp", "unary_utilities",
]
