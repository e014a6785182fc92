"""PSD kernels built from an affinity matrix S (usually PMI: <= 0, 0 on the diagonal).

The energy needs a positive semi-definite K. Affinity matrices are rarely PSD (the
316-task PMI matrix has eigenvalues from -775.9 to 318.9), so each kernel states how it
repairs that:

- ``shift``: sym(S) + (|lambda_min| + floor) I, the reference choice. Shifting by exactly
  |lambda_min| leaves K singular, hence the floor.
- ``simplex-shift``: sym(S) + (|lambda_min on 1'v = 0| + floor) I + rho 11'. On the simplex
  p'(A + a 11')p = p'Ap + a, so the energy only sees A on the zero-sum subspace; the shift
  is sized there (a PMI matrix is negative off the diagonal, so the lowest eigenvalue of
  the whole matrix comes mostly from the constant direction 1, which the simplex never
  moves along). rho >= 0 is the smallest multiple of 11' that gives the full matrix
  eigenvalues >= floor/2 (about |coupling of 1 to the flattest zero-sum direction|^2 /
  (n floor): 262 on the 316-task PMI matrix), so K is PSD (positive definite) like every other kernel. Neither
  rho 11' nor the smaller shift changes anything but constants on the simplex relative to
  ``shift``'s construction with the same c; with rowsum utilities u = K1 moves by the
  constant vector rho n 1, which does not move the optimum either.
- ``clip``: V max(Lambda, floor) V' (the nearest PSD matrix in Frobenius norm, floored).
- ``exp``: exp(S / sigma) elementwise, sigma = std of the off-diagonal of S (1 when that
  is 0), then clipped like ``clip`` (an elementwise exp need not be PSD).
- ``laplacian``: D - W + floor I with W = exp(S / sigma) off the diagonal, D = diag(W 1).
  PSD by construction (a graph Laplacian), so the floor makes it positive definite.
- ``none``: S as given; refused when it is not symmetric PSD.
- ``calibrated`` (redundancy-aware; docs/DECISIONS.md D12): W = exp(-t^2 / 2) with t the distance between two tasks
  in units of what makes them distinguishable (their entry's noise, or ``bandwidth``,
  default 10%, of the pool's median distance; :mod:`taskpgm.affinity.redundancy`, D26),
  clipped to PSD, plus
  ``ridge`` I (default 0.1). Near-copies get W ~ 1 = the diagonal (never above it: a
  positive affinity is noise), distinct tasks W ~ 0, so p'Kp only penalises mass
  piled onto a group of interchangeable tasks, and a pool without redundancy has
  K ~ (1 + ridge) I, whose diversity optimum is uniform. The ridge picks the least
  concentrated point among near-ties (DESIGN: a flat face of near-identical templates
  must not collapse onto one arbitrary member); see docs/DECISIONS.md D12.

``floor`` defaults to 1e-6 times the spectral radius of sym(S) (1e-6 when S = 0); for
``simplex-shift`` to 1e-3 times it (see ``SIMPLEX_FLOOR_REL``), and a floor so small that
K's condition number would pass 1e10 is refused.

Cost (docs/solver.md, "Kernel construction"): from ``_LANCZOS_MIN_N`` tasks on, no kernel
above needs a full eigendecomposition when a cheaper certificate settles the question.
``shift`` takes both extreme eigenvalues from a few Lanczos iterations (ARPACK, a fixed
start vector) and proves K positive definite with one Cholesky of K - (floor/2) I; a
Ritz value is never below lambda_min, so the floor is the safety margin, and if ARPACK
fails or the Cholesky does, the full eigenvalue computation decides as before.
``clip``/``exp``/``calibrated`` first try one Cholesky of A - (floor + slack) I: if it
succeeds every eigenvalue is already above the floor, clipping is a no-op and K = A;
otherwise (the usual case for PMI matrices, it then fails within its first few hundred
pivots) the full eigendecomposition runs, and K is rebuilt from the side of the spectrum
with fewer eigenvalues (A plus a correction on the clipped eigenvectors, or floor I plus
the kept ones), the same matrix up to rounding for a fraction of the 2n^3 product.
``simplex-shift`` takes the extremes of sym(S) and of its zero-sum block B the same way
(B's eigenvalues alone when its crowded low end defeats Lanczos), and
b'(B + cI - floor/2)^-1 b from one Cholesky, which is also the certificate that c is
large enough, instead of B's eigenvectors. ``FULL_EIGH = True`` restores the previous full-eigendecomposition
construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.linalg import get_lapack_funcs
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigsh

from taskpgm.choices import KERNELS
from taskpgm.errors import InputError

CALIBRATED_RIDGE = 0.1
_SYM_TOL = 1e-9
_PSD_TOL = 1e-10
# simplex-shift: default floor relative to the spectral radius of sym(S). Larger than the
# other kernels' 1e-6 because rho grows like |coupling|^2 / floor (see _simplex_shift):
# 1e-3 keeps K's condition number near 1e6-1e7, like ``shift`` with its 1e-6 floor.
SIMPLEX_FLOOR_REL = 1e-3
_SIMPLEX_MAX_COND = 1e10

# The previous construction (a full eigendecomposition for every kernel, untiled
# symmetrise): only benchmarks/solver.py sets it, to measure the baseline side by side.
FULL_EIGH = False
# Below this many tasks a full eigendecomposition costs a few milliseconds: used as before.
_LANCZOS_MIN_N = 128
# ARPACK: relative residual of the Ritz pairs, Lanczos basis size, and a fixed start
# vector (same input, same bytes). The iteration budget is capped at about n/8 products
# with A, a fraction of what the dense eigenvalue computation costs (~0.7 n of them).
_LANCZOS_TOL = 1e-12
_LANCZOS_NCV = 20
_LANCZOS_SEED = 0
# Slack of the Cholesky certificates, in units of n * eps * (a bound on ||A||): covers
# the backward error of the factorisation, so a success proves what it is asked to.
_CHOL_SLACK = 64.0
# symmetrise: tile size, and the size from which tiling pays.
_SYM_BLOCK = 256
_SYM_BLOCK_MIN_N = 512
_potrf, _potrs = get_lapack_funcs(("potrf", "potrs"), dtype=np.float64)


@dataclass
class Kernel:
    matrix: np.ndarray
    name: str
    info: dict[str, Any] = field(default_factory=dict)


def symmetrise(S: np.ndarray) -> np.ndarray:
    """0.5 (S + S'), bit for bit; large matrices tile by tile (reading S' whole strides
    across memory: 0.26 s at n = 3,000 against 0.04 s tiled)."""
    n = S.shape[0]
    if FULL_EIGH or n < _SYM_BLOCK_MIN_N or S.ndim != 2 or S.shape[1] != n:
        return 0.5 * (S + S.T)
    out = np.empty_like(S, dtype=np.result_type(S.dtype, 0.5))
    b = _SYM_BLOCK
    for i in range(0, n, b):
        for j in range(0, n, b):
            np.add(S[i:i + b, j:j + b], S[j:j + b, i:i + b].T, out=out[i:i + b, j:j + b])
    out *= 0.5
    return out


def _eigh(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w, V = np.linalg.eigh(A)
    return w, V


def _default_floor(w: np.ndarray) -> float:
    radius = float(np.max(np.abs(w))) if w.size else 0.0
    return 1e-6 * radius if radius > 0 else 1e-6


def _lanczos(op, n: int, k: int, which: str, ncv: int = _LANCZOS_NCV) -> np.ndarray | None:
    """k eigenvalues of the symmetric operator at ``which`` (ARPACK), ascending; None
    when ARPACK fails or runs out of its iteration budget. ``op`` must be contiguous
    (a strided view is copied by every product). A larger ``ncv`` suits crowded ends."""
    if n < 2 * k + 4:  # ARPACK needs room beyond k; such sizes never get here anyway
        return None
    ncv = min(n, max(ncv, 2 * k + 1))
    v0 = np.random.default_rng(_LANCZOS_SEED).standard_normal(n)
    maxiter = max(10, (n // 8) // max(1, ncv - k))
    try:
        w = eigsh(op, k=k, which=which, tol=_LANCZOS_TOL, ncv=ncv, v0=v0, maxiter=maxiter,
                  return_eigenvectors=False)
    except (ArpackNoConvergence, ArpackError):
        return None
    w = np.sort(np.asarray(w, dtype=np.float64))
    return w if np.all(np.isfinite(w)) else None


def _chol_ok(A: np.ndarray, diag_shift: float) -> np.ndarray | None:
    """Cholesky factor (lower, Fortran order) of A - diag_shift I, or None when that is
    not numerically positive definite. A is left unchanged (one n x n copy)."""
    n = len(A)
    if float(np.diagonal(A).min()) <= diag_shift:
        return None  # a diagonal entry bounds lambda_min from above
    B = A - 0.0  # a copy; symmetric, so B.T is the same matrix in Fortran order
    B.flat[:: n + 1] -= diag_shift
    L, info = _potrf(B.T, lower=1, clean=0, overwrite_a=1)
    return L if info == 0 else None


def _clip_full(A: np.ndarray, floor: float | None) -> tuple[np.ndarray, dict[str, Any]]:
    """The previous construction: V max(Lambda, floor) V' from a full eigendecomposition."""
    w, V = _eigh(A)
    f = _default_floor(w) if floor is None else floor
    clipped = np.maximum(w, f)
    K = (V * clipped) @ V.T
    K = symmetrise(K)
    return K, {"floor": f, "eig_min_before": float(w[0]), "eig_max_before": float(w[-1]),
               "eigs_clipped": int(np.count_nonzero(w < f))}


def _clip_certified(A: np.ndarray, floor: float | None) -> tuple[np.ndarray, dict] | None:
    """K = A when one Cholesky proves every eigenvalue of A above the floor (clipping is
    then a no-op); None when it does not."""
    n = len(A)
    bound = float(np.abs(A).sum(axis=1).max())  # >= spectral radius (Gershgorin)
    slack = _CHOL_SLACK * n * np.finfo(float).eps * bound
    f_high = (1e-6 * bound if bound > 0 else 1e-6) if floor is None else floor
    L = _chol_ok(A, f_high + slack)
    if L is None:
        return None
    # lambda_min(A) > f_high >= the floor. Extremes for the record: lambda_max by
    # Lanczos, lambda_min by Lanczos on (A - sI)^-1 through the factor just made.
    top = _lanczos(A, n, 1, "LA")
    s = f_high + slack

    def inv(x):
        return _potrs(L, x, lower=1)[0]

    inv_top = _lanczos(LinearOperator((n, n), matvec=inv, dtype=np.float64), n, 1, "LA")
    if top is None or inv_top is None or inv_top[0] <= 0:
        return None
    lmax, lmin = float(top[0]), s + 1.0 / float(inv_top[0])
    f = _default_floor(np.array([lmin, lmax])) if floor is None else floor
    return symmetrise(A), {"floor": f, "eig_min_before": lmin, "eig_max_before": lmax,
                           "eigs_clipped": 0}


def _clip(A: np.ndarray, floor: float | None) -> tuple[np.ndarray, dict[str, Any]]:
    """Nearest PSD matrix with eigenvalues >= floor: V max(Lambda, floor) V'."""
    n = len(A)
    if FULL_EIGH:
        return _clip_full(A, floor)
    if n >= _LANCZOS_MIN_N:
        done = _clip_certified(A, floor)
        if done is not None:
            return done
    w, V = _eigh(A)
    f = _default_floor(w) if floor is None else floor
    m = int(np.searchsorted(w, f))  # eigenvalues below the floor (w ascending)
    if m == 0:
        K = A
    elif 2 * m <= n:  # A + V_m (f - w_m) V_m': rebuild from the clipped side
        Y = V[:, :m] * np.sqrt(f - w[:m])
        K = A + Y @ Y.T
    else:  # f I + V_k (w_k - f) V_k' from the kept side
        X = V[:, m:] * np.sqrt(w[m:] - f)
        K = X @ X.T
        K.flat[:: n + 1] += f
    return symmetrise(K), {"floor": f, "eig_min_before": float(w[0]),
                           "eig_max_before": float(w[-1]), "eigs_clipped": m}


def _simplex_rho(quad: float, t: float, alpha: float, shift: float, n: int, eig_abs_max: float,
                 f: float) -> tuple[float, float]:
    """The all-ones weight rho that lifts the simplex-shift kernel above t on the whole
    space (quad = b'(M - tI)^-1 b), and K's condition bound; refuses an ill-conditioned K."""
    rho = max(0.0, (t + quad - alpha - shift) / n)
    cond = (rho * n + abs(alpha) + shift + eig_abs_max) / t
    if cond > _SIMPLEX_MAX_COND:
        raise InputError(f"kernel floor {f:.3g} is too small for 'simplex-shift': K would "
                         f"have condition number {cond:.2g}; use a larger parameter "
                         "'kernel_floor'")
    return rho, cond


def _simplex_shift(A: np.ndarray, floor: float | None) -> tuple[np.ndarray, dict[str, Any]]:
    """sym(S) shifted on the zero-sum subspace, then made PD by the smallest rho 11'.

    A Householder reflection H (H e = -e_1, e = 1/sqrt(n)) turns A into the block form
    [[alpha, b'], [b, B]]: B = V'AV is A on the zero-sum subspace (V = columns 2..n of H),
    alpha = e'Ae, b = V'Ae. With c = max(0, -lambda_min(B)) + floor, M = B + cI has
    eigenvalues >= floor, and K = A + cI + rho 11' is [[alpha + c + rho n, b'], [b, M]].
    For t < lambda_min(M), K - tI is PSD iff alpha + c + rho n - t - b'(M - tI)^-1 b >= 0
    (Schur complement), so with t = floor/2 the smallest rho is that expression's root.
    """
    n = A.shape[0]
    if n < 2:  # no zero-sum directions: the 1-point simplex; any PD scalar will do
        a = float(A[0, 0]) if n else 0.0
        f = (SIMPLEX_FLOOR_REL * abs(a) or SIMPLEX_FLOOR_REL) if floor is None else floor
        shift = max(0.0, -a) + (f if f > 0 else SIMPLEX_FLOOR_REL)
        return A + shift * np.eye(n), {"floor": f, "shift": shift, "rho": 0.0,
                                       "eig_min_subspace": None, "eig_max_subspace": None}
    v = np.full(n, 1.0 / np.sqrt(n))
    v[0] += 1.0
    v /= np.linalg.norm(v)
    Av = A @ v
    HAH = A - 2.0 * np.outer(v, Av) - 2.0 * np.outer(Av, v) + 4.0 * float(v @ Av) * np.outer(v, v)
    HAH = symmetrise(HAH)
    alpha, b, B = float(HAH[0, 0]), HAH[1:, 0], HAH[1:, 1:]
    if not FULL_EIGH and n >= _LANCZOS_MIN_N:
        done = _simplex_shift_lanczos(A, alpha, b, B, floor)
        if done is not None:
            return done
    w, U = np.linalg.eigh(B)
    w_full = np.linalg.eigvalsh(A)
    radius = float(np.max(np.abs(w_full)))
    f = (SIMPLEX_FLOOR_REL * radius if radius > 0 else SIMPLEX_FLOOR_REL) if floor is None \
        else floor
    if f <= 0:
        raise InputError("kernel 'simplex-shift' needs a floor > 0 (rho 11' cannot make K "
                         "positive definite otherwise)")
    shift = max(0.0, -float(w[0])) + f
    t = 0.5 * f
    Ub = U.T @ b
    quad = float(np.sum(Ub**2 / (w + shift - t)))  # b'(M - tI)^-1 b; M - tI >= f/2 > 0
    rho, cond = _simplex_rho(quad, t, alpha, shift, n, float(np.max(np.abs(w))), f)
    K = A + shift * np.eye(n) + rho * np.ones((n, n))
    return symmetrise(K), {
        "floor": f, "shift": shift, "rho": rho,
        "eig_min_subspace": float(w[0]), "eig_max_subspace": float(w[-1]),
        "eig_min_before": float(w_full[0]), "eig_max_before": float(w_full[-1]),
        "shift_full_space": max(0.0, -float(w_full[0])) + f, "condition": cond,
    }


# How far below the Lanczos estimate of lambda_min the certificate checks (relative to
# the spectral radius): tight enough that the result equals the exact route's.
_SHIFT_CERT_REL = 5e-12


def _shift_lanczos(A: np.ndarray, floor: float | None) -> Kernel | None:
    """``shift`` from the two extreme Ritz values, certified by one Cholesky; None when
    ARPACK or the certificate fails (the caller then computes every eigenvalue)."""
    n = len(A)
    ends = _lanczos(A, n, 2, "BE")
    if ends is None:
        return None
    lo, hi = float(ends[0]), float(ends[-1])
    f = _default_floor(ends) if floor is None else floor
    radius = max(abs(lo), abs(hi))
    # A Ritz value is a Rayleigh quotient, so lo >= lambda_min: the shift below is at most
    # (lo - lambda_min) short of the exact one, and the floor is the margin. A floor
    # within rounding of 0 has none: left to the exact computation.
    if f <= _CHOL_SLACK * n * np.finfo(float).eps * radius:
        return None
    shift = max(0.0, -lo) + f
    # Certificate: A - (lo - delta) I positive definite, so lambda_min in [lo - delta, lo]:
    # the shift, K and the reported eigenvalue are those of the exact computation to
    # within delta (and lambda_min(K) >= f - delta > f/2). A Ritz value that missed a
    # lower eigenvalue (a degenerate null space, say) fails it: exact route.
    delta = min(0.5 * f, _SHIFT_CERT_REL * radius)
    if _chol_ok(A, lo - delta) is None:
        return None
    K = A  # a fresh array (sym(S)): shifted in place
    K.flat[:: n + 1] += shift
    return Kernel(K, "shift", {"floor": f, "shift": shift, "eig_min_before": lo,
                               "eig_max_before": hi})


def _shift(A: np.ndarray, floor: float | None) -> Kernel:
    n = A.shape[0]
    if not FULL_EIGH and n >= _LANCZOS_MIN_N:
        kern = _shift_lanczos(A, floor)
        if kern is not None:
            return kern
    w = np.linalg.eigvalsh(A)
    f = _default_floor(w) if floor is None else floor
    shift = max(0.0, -float(w[0])) + f
    K = A + shift * np.eye(n)
    return Kernel(K, "shift", {"floor": f, "shift": shift, "eig_min_before": float(w[0]),
                               "eig_max_before": float(w[-1])})


def _simplex_shift_lanczos(A: np.ndarray, alpha: float, b: np.ndarray, B: np.ndarray,
                           floor: float | None) -> tuple[np.ndarray, dict] | None:
    """:func:`_simplex_shift` from the extreme eigenvalues of sym(S) and of B (Lanczos,
    else the eigenvalues without vectors), with b'(M - tI)^-1 b from one Cholesky of
    M - tI, which is also the certificate that the shift c makes M - tI positive
    definite. None: the certificate failed (the caller then decomposes B in full)."""
    n = A.shape[0]
    full = _lanczos(A, n, 2, "BE")
    if full is None:
        full = np.linalg.eigvalsh(A)[[0, -1]]
    # The low end of B is often crowded (near-identical tasks): a larger Lanczos basis,
    # and the eigenvalues alone (no vectors) when even that runs out of budget.
    B = np.ascontiguousarray(B)
    sub = _lanczos(B, n - 1, 2, "BE", ncv=2 * _LANCZOS_NCV)
    if sub is None:
        sub = np.linalg.eigvalsh(B)[[0, -1]]
    radius = float(np.max(np.abs(full)))
    f = (SIMPLEX_FLOOR_REL * radius if radius > 0 else SIMPLEX_FLOOR_REL) if floor is None \
        else floor
    if f <= _CHOL_SLACK * n * np.finfo(float).eps * radius:
        return None  # f <= 0 (refused) or within rounding: the exact route decides
    # Both lower ends certified tight (as in _shift_lanczos): a Ritz value that missed a
    # lower eigenvalue sends the construction to the exact route.
    delta = min(0.5 * f, _SHIFT_CERT_REL * radius)
    if _chol_ok(A, float(full[0]) - delta) is None or \
            _chol_ok(B, float(sub[0]) - delta) is None:
        return None
    shift = max(0.0, -float(sub[0])) + f
    t = 0.5 * f
    L = _chol_ok(B, t - shift)  # B + (shift - t) I = M - tI
    if L is None:
        return None
    quad = float(b @ _potrs(L, b, lower=1)[0])  # b'(M - tI)^-1 b
    rho, cond = _simplex_rho(quad, t, alpha, shift, n, float(np.max(np.abs(sub))), f)
    K = A.copy()
    K.flat[:: n + 1] += shift
    K += rho
    return symmetrise(K), {
        "floor": f, "shift": shift, "rho": rho,
        "eig_min_subspace": float(sub[0]), "eig_max_subspace": float(sub[-1]),
        "eig_min_before": float(full[0]), "eig_max_before": float(full[-1]),
        "shift_full_space": max(0.0, -float(full[0])) + f, "condition": cond,
    }


def _calibrated(S: np.ndarray, floor: float | None, noise, ridge: float,
                bandwidth: float | None) -> Kernel:
    from taskpgm.affinity.redundancy import normalised_distances

    t, info = normalised_distances(S, noise, bandwidth)
    W = np.exp(-0.5 * t**2)
    # W is 1 on the diagonal and in [0, 1] elsewhere, but t is not a Euclidean distance,
    # so W need not be PSD: take the nearest PSD matrix (eigenvalues clipped at 0).
    K, clip_info = _clip(W, 0.0 if floor is None else floor)
    K = K + ridge * np.eye(len(K))
    return Kernel(K, "calibrated", {**info, **clip_info, "ridge": ridge})


def _sigma(S: np.ndarray) -> float:
    n = S.shape[0]
    if n < 2:
        return 1.0
    off = S[~np.eye(n, dtype=bool)]
    s = float(np.std(off))
    return s if s > 0 else 1.0


def build_kernel(
    S: np.ndarray, kind: str = "shift", *, floor: float | None = None,
    sigma: float | None = None, noise=None, ridge: float | None = None,
    bandwidth: float | None = None,
) -> Kernel:
    """Return the PSD kernel of the given kind for affinity S (see module docstring).

    ``noise`` (calibrated only): standard error of each affinity entry (scalar or n x n).
    ``bandwidth`` (calibrated only): fraction of the median distance below which tasks are
    near-copies (:mod:`taskpgm.affinity.redundancy`).
    """
    if kind not in KERNELS:
        raise InputError(f"unknown kernel {kind!r} (choose from {', '.join(KERNELS)})")
    if floor is not None and not (np.isfinite(floor) and floor >= 0):
        raise InputError(f"kernel floor must be a finite number >= 0, got {floor}")
    if sigma is not None and not (np.isfinite(sigma) and sigma > 0):
        raise InputError(f"kernel sigma must be a positive number, got {sigma}")
    if ridge is not None and not (np.isfinite(ridge) and ridge >= 0):
        raise InputError(f"kernel ridge must be a finite number >= 0, got {ridge}")
    if kind != "calibrated" and (ridge is not None or noise is not None
                                 or bandwidth is not None):
        raise InputError(f"ridge, bandwidth and noise are options of the 'calibrated' kernel, "
                         f"not {kind!r}")
    S = np.asarray(S, dtype=np.float64)
    n = S.shape[0]
    if kind == "calibrated":
        return _calibrated(S, floor, noise, CALIBRATED_RIDGE if ridge is None else ridge,
                           bandwidth)
    if kind == "none":
        asym = float(np.max(np.abs(S - S.T))) if n else 0.0
        scale = max(1.0, float(np.max(np.abs(S))))
        if asym > _SYM_TOL * scale:
            raise InputError(f"kernel 'none' needs a symmetric matrix (max |S - S'| = {asym:.3g});"
                             " use kernel 'shift' or 'clip'")
        K = symmetrise(S)
        w = np.linalg.eigvalsh(K)
        if w[0] < -_PSD_TOL * max(1.0, float(np.max(np.abs(w)))):
            raise InputError(f"kernel 'none' needs a PSD matrix, smallest eigenvalue is "
                             f"{w[0]:.6g}; use kernel 'shift' or 'clip'")
        return Kernel(K, kind, {"eig_min": float(w[0]), "eig_max": float(w[-1])})
    A = symmetrise(S)
    if kind == "shift":
        return _shift(A, floor)
    if kind == "simplex-shift":
        K, info = _simplex_shift(A, floor)
        return Kernel(K, kind, info)
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
