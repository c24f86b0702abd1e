"""Step lengths to the boundary of the PSD cone and the non-negative orthant (interior-point
helpers of :mod:`convexnn.solvers.sdp_ipm`; no model knowledge)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["lanczos_min", "max_step_psd", "max_step_vec"]


def lanczos_min(matvec: Callable[[Tensor], Tensor], q: int, like: Tensor,
                 iters: int = 40) -> float:
    """Estimate of λ_min of a symmetric operator by Lanczos (full reorthogonalisation)."""
    k = min(iters, q)
    V = torch.zeros(q, k + 1, dtype=like.dtype, device=like.device)
    gen = torch.Generator(device=like.device).manual_seed(0)
    v = torch.randn(q, dtype=like.dtype, device=like.device, generator=gen)
    v = v / torch.linalg.vector_norm(v)
    V[:, 0] = v
    alpha = torch.zeros(k, dtype=like.dtype, device=like.device)
    beta = torch.zeros(k, dtype=like.dtype, device=like.device)
    j = 0
    for j in range(k):
        w = matvec(V[:, j])
        alpha[j] = torch.dot(w, V[:, j])
        w = w - V[:, :j + 1] @ (V[:, :j + 1].T @ w)
        w = w - V[:, :j + 1] @ (V[:, :j + 1].T @ w)
        b = torch.linalg.vector_norm(w)
        beta[j] = b
        if float(b) < 1e-12 * (1.0 + float(alpha[:j + 1].abs().max())):
            break
        V[:, j + 1] = w / b
    kk = j + 1
    Tm = torch.diag(alpha[:kk]) + torch.diag(beta[:kk - 1], 1) + torch.diag(beta[:kk - 1], -1)
    return float(torch.linalg.eigvalsh(Tm)[0])


def max_step_psd(L: Tensor, D: Tensor, *, exact: bool) -> float:
    """Largest α ≤ 1 (approximately, unless ``exact``) with L Lᵀ + α D ⪰ 0.

    λ_min of L⁻¹ D L⁻ᵀ by a dense eigenvalue solve (``exact``) or by Lanczos (O(q²) per
    product); the caller verifies the step it takes with a Cholesky factorisation.
    """
    q = L.shape[0]
    if exact:
        A = torch.linalg.solve_triangular(L, D, upper=False)
        B = torch.linalg.solve_triangular(L, A.T, upper=False)
        lam = float(torch.linalg.eigvalsh(0.5 * (B + B.T))[0])
    else:
        def mv(x: Tensor) -> Tensor:
            z = torch.linalg.solve_triangular(L.T, x[:, None], upper=True)
            return torch.linalg.solve_triangular(L, D @ z, upper=False).flatten()

        lam = lanczos_min(mv, q, L)
        lam = lam - 0.05 * abs(lam)   # Lanczos over-estimates λ_min: be conservative
    return 1.0 if lam >= -1.0 else -1.0 / lam


def max_step_vec(v: Tensor, dv: Tensor) -> float:
    """Largest α ≤ 1 with v + α dv ≥ 0 (v ≥ 0)."""
    neg = dv < 0
    if v.numel() == 0 or not bool(neg.any()):
        return 1.0
    return min(1.0, float((-v[neg] / dv[neg]).min()))
