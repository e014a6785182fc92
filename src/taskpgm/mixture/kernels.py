"""PSD kernels built from an affinity matrix S (usually PMI: <= 0, 0 on the diagonal).

The energy needs a positive semi-definite K. Affinity matrices are rarely PSD (the
316-task PMI matrix has eigenvalues from -775.9 to 318.9), so each kernel states how it
repairs that:

- ``shift``: sym(S) + (|lambda_min| + floor) I, the reference choice. Shifting by exactly
  |lambda_min| leaves K singular, hence the floor.
- ``clip``: V max(Lambda, floor) V' (the nearest PSD matrix in Frobenius norm, floored).
- ``exp``: exp(S / sigma) elementwise, sigma = std of the off-diagonal of S (1 when that
  is 0), then clipped like ``clip`` (an elementwise exp need not be PSD).
- ``laplacian``: D - W + floor I with W = exp(S / sigma) off the diagonal, D = diag(W 1).
  PSD by construction (a graph Laplacian), so the floor makes it positive definite.
- ``none``: S as given; refused when it is not symmetric PSD.

``floor`` defaults to 1e-6 times the spectral radius of sym(S) (1e-6 when S = 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from taskpgm.errors import InputError

KERNELS = ("shift", "clip", "exp", "laplacian", "none")
_SYM_TOL = 1e-9
_PSD_TOL = 1e-10


@dataclass
class Kernel:
    matrix: np.ndarray
    name: str
    info: dict[str, Any] = field(default_factory=dict)


def symmetrise(S: np.ndarray) -> np.ndarray:
    return 0.5 * (S + S.T)


def _eigh(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w, V = np.linalg.eigh(A)
    return w, V


def _default_floor(w: np.ndarray) -> float:
    radius = float(np.max(np.abs(w))) if w.size else 0.0
    return 1e-6 * radius if radius > 0 else 1e-6


def _clip(A: np.ndarray, floor: float | None) -> tuple[np.ndarray, dict[str, Any]]:
    w, V = _eigh(A)
    f = _default_floor(w) if floor is None else floor
    clipped = np.maximum(w, f)
    K = (V * clipped) @ V.T
    K = symmetrise(K)
    return K, {"floor": f, "eig_min_before": float(w[0]), "eig_max_before": float(w[-1]),
               "eigs_clipped": int(np.count_nonzero(w < f))}


def _sigma(S: np.ndarray) -> float:
    n = S.shape[0]
    if n < 2:
        return 1.0
    off = S[~np.eye(n, dtype=bool)]
    s = float(np.std(off))
    return s if s > 0 else 1.0


def build_kernel(
    S: np.ndarray, kind: str = "shift", *, floor: float | None = None,
    sigma: float | None = None,
) -> Kernel:
    """Return the PSD kernel of the given kind for affinity S (see module docstring)."""
    if kind not in KERNELS:
        raise InputError(f"unknown kernel {kind!r} (choose from {', '.join(KERNELS)})")
    if floor is not None and not (np.isfinite(floor) and floor >= 0):
        raise InputError(f"kernel floor must be a finite number >= 0, got {floor}")
    if sigma is not None and not (np.isfinite(sigma) and sigma > 0):
        raise InputError(f"kernel sigma must be a positive number, got {sigma}")
    S = np.asarray(S, dtype=np.float64)
    n = S.shape[0]
    if kind == "none":
        asym = float(np.max(np.abs(S - S.T))) if n else 0.0
        scale = max(1.0, float(np.max(np.abs(S))))
        if asym > _SYM_TOL * scale:
            raise InputError(f"kernel 'none' needs a symmetric matrix (max |S - S'| = {asym:.3g});"
                             " use --kernel shift or clip")
        K = symmetrise(S)
        w = np.linalg.eigvalsh(K)
        if w[0] < -_PSD_TOL * max(1.0, float(np.max(np.abs(w)))):
            raise InputError(f"kernel 'none' needs a PSD matrix, smallest eigenvalue is "
                             f"{w[0]:.6g}; use --kernel shift or clip")
        return Kernel(K, kind, {"eig_min": float(w[0]), "eig_max": float(w[-1])})
    A = symmetrise(S)
    if kind == "shift":
        w = np.linalg.eigvalsh(A)
        f = _default_floor(w) if floor is None else floor
        shift = max(0.0, -float(w[0])) + f
        K = A + shift * np.eye(n)
        return Kernel(K, kind, {"floor": f, "shift": shift, "eig_min_before": float(w[0]),
                                "eig_max_before": float(w[-1])})
    if kind == "clip":
        K, info = _clip(A, floor)
        return Kernel(K, kind, info)
    sg = _sigma(A) if sigma is None else sigma
    with np.errstate(over="ignore"):
        W = np.exp(A / sg)
    if not np.all(np.isfinite(W)):
        raise InputError(f"exp(S / sigma) overflows with sigma = {sg:.6g}; pass a larger sigma")
    if kind == "exp":
        K, info = _clip(W, floor)
        return Kernel(K, kind, {"sigma": sg, **info})
    # laplacian
    np.fill_diagonal(W, 0.0)
    lap = np.diag(W.sum(axis=1)) - W
    radius = float(2 * W.sum(axis=1).max()) if n else 0.0
    f = (1e-6 * radius if radius > 0 else 1e-6) if floor is None else floor
    return Kernel(lap + f * np.eye(n), kind, {"sigma": sg, "floor": f})
