"""The lift's structure: the rows T of (b | u | v) ↦ (α | β | v), congruences with them, and the
block Cholesky factor of TᵀT (shared by the relaxation's and the neuron SDP's solvers)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["congruence", "lift_factor", "off_pair_mask", "lift_rows"]


def congruence(X: Tensor):
    """(Z ↦ T Z Tᵀ, E ↦ Tᵀ E T) for the rows T = (α | β | v) of the lift of data X (n x d),
    in O(n² (d + c)) (c: the number of v rows, read off Z).

    Row i of the α block is e_{b_i} + x_i (on u), of the β block e_{b_i}, of the v block e_{v_k};
    so T Z Tᵀ holds Λ_[αβ], Λ_αv, Λ_βv and Z_vv.
    """
    n, d = X.shape

    def gram(Z: Tensor, out: Tensor | None = None) -> Tensor:   # T Z Tᵀ in O(n² (d + c))
        Zb, Zu = Z[:n], Z[n:n + d]
        A = torch.addmm(Zb, X, Zu)
        K = Z.new_empty(2 * n + Z.shape[0] - n - d, 2 * n + Z.shape[0] - n - d) \
            if out is None else out
        K[:n, :n].copy_(A[:, :n]).addmm_(A[:, n:n + d], X.T)          # Λ_αα
        K[:n, n:2 * n] = A[:, :n]                                      # Λ_αβ
        K[n:2 * n, :n] = A[:, :n].T
        K[:n, 2 * n:] = A[:, n + d:]                                   # Λ_αv
        K[2 * n:, :n] = A[:, n + d:].T
        K[n:2 * n, n:2 * n] = Zb[:, :n]                                # Λ_ββ = Z_bb
        K[n:2 * n, 2 * n:] = Zb[:, n + d:]
        K[2 * n:, n:2 * n] = Zb[:, n + d:].T
        K[2 * n:, 2 * n:] = Z[n + d:, n + d:]
        return K

    def adjoint(E: Tensor) -> Tensor:       # Tᵀ E T for symmetric E, O(n² d)
        Eaa, Eab, Eav = E[:n, :n], E[:n, n:2 * n], E[:n, 2 * n:]
        Ebb, Ebv, Evv = E[n:2 * n, n:2 * n], E[n:2 * n, 2 * n:], E[2 * n:, 2 * n:]
        Sbb = Eaa + Eab + Eab.T + Ebb
        Sbu = (Eaa + Eab.T) @ X
        Suu = X.T @ Eaa @ X
        Sbv, Suv = Eav + Ebv, X.T @ Eav
        return torch.cat([torch.cat([Sbb, Sbu, Sbv], 1), torch.cat([Sbu.T, Suu, Suv], 1),
                          torch.cat([Sbv.T, Suv.T, Evv], 1)], 0)

    return gram, adjoint


def lift_factor(X: Tensor, a: float, c: int):
    """M ↦ L⁻¹ M (L⁻ᵀ M if ``transpose``) for the block Cholesky factor L Lᵀ = G of

        G = [[2 I_n, X, 0], [Xᵀ, XᵀX + a I_d, 0], [0, 0, I_c]]

    (TᵀT of the lifts: a = 0, c = #outputs for the relaxation's rows α | β | v; a = 1, c = 0
    for the neuron SDP's rows α | β | u). L = [[√2 I, 0, 0], [Xᵀ/√2, L_u, 0], [0, 0, I]] with
    L_u L_uᵀ = XᵀX/2 + a I, so one application costs O(n d k) for k columns instead of the
    O(q² k) of a dense root. None if XᵀX/2 + aI is numerically singular (then the ADMM falls
    back on its dense pseudo-inverse root)."""
    n, d = X.shape
    S = 0.5 * (X.T @ X) + a * torch.eye(d, dtype=X.dtype, device=X.device)
    Lu, bad = torch.linalg.cholesky_ex(S)
    if int(bad) != 0:
        return None
    dg = torch.diagonal(Lu).abs()
    # pivots this small mean XᵀX is numerically rank deficient (cond(G) ≳ 1 / (100 eps))
    if float(dg.min()) <= 10.0 * float(torch.finfo(X.dtype).eps) ** 0.5 * float(dg.max()):
        return None
    r2 = math.sqrt(2.0)
    Xs = X / r2

    def solve(M: Tensor, transpose: bool = False) -> Tensor:
        Mb, Mu, Mv = M[:n], M[n:n + d], M[n + d:]
        if transpose:   # Lᵀ = [[√2 I, X/√2], [0, L_uᵀ]] on (b, u)
            yu = torch.linalg.solve_triangular(Lu.T, Mu, upper=True)
            yb = (Mb - Xs @ yu) / r2
        else:
            yb = Mb / r2
            yu = torch.linalg.solve_triangular(Lu, Mu - Xs.T @ yb, upper=False)
        return torch.cat([yb, yu, Mv], 0)

    return solve


def off_pair_mask(n: int, device: torch.device | str | None = None) -> Tensor:
    """2n x 2n bool mask of the [αβ] block's sign-constrained entries: every entry except the
    complementary pairs (α_i, β_i), (β_i, α_i), which are fixed to zero instead."""
    ia = torch.arange(n, device=device)
    m = torch.ones(2 * n, 2 * n, dtype=torch.bool, device=device)
    m[ia, ia + n] = False
    m[ia + n, ia] = False
    return m


def lift_rows(X: Tensor, c: int) -> Tensor:
    """The rows T = (α | β | v) of the lift of data X (n x d) with c outputs as a dense
    (2n + c) x q matrix, q = n + d + c (see :func:`congruence` for the structured products)."""
    n, d = X.shape
    q = n + d + c
    dt, dev = X.dtype, X.device
    T = torch.zeros(2 * n + c, q, dtype=dt, device=dev)
    eye = torch.eye(n, dtype=dt, device=dev)
    T[:n, :n] = eye
    T[:n, n:n + d] = X
    T[n:2 * n, :n] = eye
    T[2 * n:, n + d:] = torch.eye(c, dtype=dt, device=dev)
    return T

