"""Linear-algebra kernels: power iteration on AᵀA, orthonormal row space, array conversion,
group sums over a short axis."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

__all__ = ["power_iteration", "row_space", "as_numpy", "sum_groups"]


def power_iteration(apply: Callable[[Tensor], Tensor], adjoint: Callable[[Tensor], Tensor],
                    shape: tuple[int, ...], *, dtype: torch.dtype,
                    device: torch.device | str | None = None, iters: int = 20,
                    seed: int = 0) -> float:
    """Estimate of ||A||² (largest eigenvalue of AᵀA) by ``iters`` power steps.

    ``apply`` is x ↦ A x, ``adjoint`` r ↦ Aᵀ r, x of ``shape``; the start is a Gaussian drawn
    on the CPU from ``seed`` (the same on every device). Returns as soon as the estimate is 0
    (A vanishes) or not finite; callers choose their fallback.
    """
    g = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(shape, generator=g, dtype=dtype).to(device)
    v /= torch.linalg.vector_norm(v)
    lam = 1.0
    for _ in range(iters):
        w = adjoint(apply(v))
        lam = float(torch.linalg.vector_norm(w))
        if lam == 0 or not math.isfinite(lam):
            return lam
        v = w / lam
    return lam


def row_space(X: np.ndarray, tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """(B, Vr): Vr (d x r) an orthonormal basis of X's row space (singular values above
    ``tol`` times the largest), B = X Vr (n x r) the data in that basis."""
    if X.size == 0:
        return np.zeros((X.shape[0], 0)), np.zeros((X.shape[1], 0))
    _, S, Vt = np.linalg.svd(X, full_matrices=False)
    r = int((S > tol * max(S[0], 1e-300)).sum()) if S.size else 0
    Vr = Vt[:r].T
    return X @ Vr, Vr


def as_numpy(A) -> np.ndarray:
    """A tensor or array-like as a float64 NumPy array (detached, on the CPU)."""
    if isinstance(A, Tensor):
        return A.detach().cpu().to(torch.float64).numpy()
    return np.asarray(A, dtype=np.float64)


def sum_groups(t: Tensor, w: int) -> Tensor:
    """Sum of the last axis over consecutive groups of ``w``: (..., k·w) → (..., k).

    Strided slices added one by one: torch's CPU reduction over a short innermost axis
    (``reshape(..., k, w).sum(-1)``) runs 2-30x slower on the (chunk, n, m) tensors of the
    parallel programs (measured at m = 2-4)."""
    out = t[..., 0::w]
    for k in range(1, w):
        out = out + t[..., k::w]
    return out if w > 1 else out.clone()

