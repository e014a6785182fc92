"""Mixture strategies: the exact TaskPGM solver, its variants, and size baselines.

Torch-free: needs only numpy and scipy. The names below are loaded on first use
(PEP 562), so importing a light submodule (``taskpgm.mixture.record``) or the package
itself does not import scipy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskpgm.lazy import lazy_exports

if TYPE_CHECKING:
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

# Public name -> the submodule that defines it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("PAPER_LABEL", "STRATEGIES", "MixtureInputs", "RPath", "Strategy",
                     "build_problem", "default_rs", "make_inputs", "paper_weights", "r_path",
                     "solve"), "api"),
    **dict.fromkeys(("GreedyResult", "greedy_select"), "greedy"),
    **dict.fromkeys(("KERNELS", "Kernel", "build_kernel"), "kernels"),
    **dict.fromkeys(("QPResult", "kkt_residual", "project_capped_simplex", "solve_qp"), "qp"),
    "Mixture": "record",
    **dict.fromkeys(("UNARIES", "read_values", "unary_utilities"), "unary"),
}

__all__ = [
    "KERNELS", "PAPER_LABEL", "STRATEGIES", "UNARIES", "GreedyResult", "Kernel", "Mixture",
    "MixtureInputs", "QPResult", "RPath", "Strategy", "build_kernel", "build_problem",
    "default_rs", "greedy_select", "kkt_residual", "make_inputs", "paper_weights",
    "project_capped_simplex", "r_path", "read_values", "solve", "solve_qp", "unary_utilities",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
