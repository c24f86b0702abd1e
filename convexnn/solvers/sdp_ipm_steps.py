"""Interior-point helpers of :mod:`convexnn.solvers.sdp_ipm` (no model knowledge): step lengths
to the boundary of the PSD cone and the non-negative orthant, the Schur complement matrix and
the HKM Newton direction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .sdp_ipm import Rank2SDP

__all__ = ["lanczos_min", "max_step_psd", "max_step_vec", "schur_matrix", "cholesky_psd",
           "NewtonSystem", "newton_direction"]


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


def schur_matrix(prob: Rank2SDP, KZ: Tensor, KS: Tensor) -> Tensor:
    """M_ij = <A_i, Z A_j S⁻¹> from the two Gram matrices (two m x m buffers)."""
    P, R, c = prob.P, prob.R, prob.coef
    M = KZ[P][:, P]
    M.mul_(KS[R][:, R])
    tmp = KZ[R][:, R]
    tmp.mul_(KS[P][:, P])
    M.add_(tmp)
    del tmp
    X = KZ[P][:, R]
    X.mul_(KS[R][:, P])
    M.add_(X).add_(X.T)
    del X
    M.mul_(0.25 * c[:, None] * c[None, :])
    return 0.5 * (M + M.T)


def cholesky_psd(A: Tensor) -> Tensor | None:
    L, info = torch.linalg.cholesky_ex(0.5 * (A + A.T))
    return None if int(info) != 0 else L


@dataclass
class NewtonSystem:
    """Quantities of one interior-point iteration shared by predictor and corrector."""

    mu: float
    Sinv: Tensor
    E0: Tensor
    Z: Tensor
    Rd: Tensor
    r_q: Tensor
    r_e: Tensor
    r_i: Tensor
    s: Tensor
    yi: Tensor
    dsc: Tensor
    Lm: Tensor
    M: Tensor        # the scaled Schur matrix (for one step of iterative refinement)


def newton_direction(prob: Rank2SDP, c: NewtonSystem, sigma: float, corr_Z: Tensor | None,
               corr_s: Tensor | float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """HKM Newton direction for target σμ (with Mehrotra's second-order terms if given)."""
    nq, ne, m = prob.n_quad, prob.n_eq, prob.m
    dt, dev = c.Z.dtype, c.Z.device
    E = sigma * c.mu * c.Sinv + c.E0
    if corr_Z is not None:
        E = E - corr_Z
    AE = prob.apply(prob.gram(E))
    rhs = torch.empty(m, dtype=dt, device=dev)
    rhs[:nq] = -c.r_q + AE[:nq]
    rhs[nq:nq + ne] = -c.r_e + AE[nq:nq + ne]
    if prob.n_ineq:
        rhs[nq + ne:] = (sigma * c.mu - c.s * c.yi - corr_s) / c.yi + c.r_i + AE[nq + ne:]
    r = (c.dsc * rhs)[:, None]
    z = torch.cholesky_solve(r, c.Lm)
    z = z + torch.cholesky_solve(r - c.M @ z, c.Lm)      # iterative refinement
    dy = c.dsc * z.flatten()
    dSy = prob.adjoint(dy)
    G = c.Z @ dSy @ c.Sinv
    dZ = E - 0.5 * (G + G.T)
    dS = dSy - c.Rd
    if prob.n_ineq:
        dyi = dy[nq + ne:]
        ds = (sigma * c.mu - c.s * c.yi - corr_s - c.s * dyi) / c.yi
    else:
        dyi = ds = torch.zeros(0, dtype=dt, device=dev)
    return dy, dS, dZ, ds, dyi
