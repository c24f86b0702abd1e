r"""Group lasso over fixed features: the output layer of a network whose first layer is fixed.

    min_G  L(Φ G, Y) + β Σ_k ||g_k||₂        (Φ: n x K features, G: K x c, groups the rows g_k)

in the FISTA protocol of :mod:`convexnn.solvers.fista`, with its Fenchel certificate: for
Λ = ∇L(Φ G), the dual constraint is ||(ΦᵀΛ)_k|| ≤ β for every k, so Λ scaled by
s = min(1, β / max_k ||(ΦᵀΛ)_k||) gives the lower bound −L*(sΛ) (see
:mod:`convexnn.certificates`). Used by the copositive master problem and the SDP read-back.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..certificates import relative, scaled_dual
from ..losses import Loss
from ..ops.prox import group_soft_threshold
from ..solvers.fista import fista

__all__ = ["GroupLasso", "solve_group_lasso"]


class GroupLasso:
    """The program above; ``linear(G) = Φ G`` is the FISTA state."""

    def __init__(self, Phi: Tensor, Y: Tensor, reg: float, loss: Loss):
        self.Phi, self.Y, self.reg, self.loss = Phi, Y, float(reg), loss

    def linear(self, G: Tensor) -> Tensor:
        return self.Phi @ G

    def smooth_value(self, Z: Tensor) -> Tensor:
        return self.loss.value(Z, self.Y)

    def smooth_grad(self, Z: Tensor) -> Tensor:
        return self.Phi.T @ self.loss.grad(Z, self.Y)

    def penalty(self, G: Tensor) -> Tensor:
        return self.reg * torch.linalg.vector_norm(G, dim=1).sum()

    def prox(self, G: Tensor, step: float) -> Tensor:
        return group_soft_threshold(G, step * self.reg, dim=1)

    def lipschitz(self) -> float:
        """||Φ||₂² times the loss smoothness (exact spectral norm; Φ is small)."""
        return float(torch.linalg.matrix_norm(self.Phi, ord=2)) ** 2 * self.loss.smoothness

    def gap(self, G: Tensor, Z: Tensor) -> tuple[float, float, float]:
        """(primal, gap, relative gap) of G with the scaled-gradient dual point."""
        primal = float(self.loss.value(Z, self.Y)) + float(self.penalty(G))
        lam = self.loss.grad(Z, self.Y)
        h = torch.linalg.vector_norm(self.Phi.T @ lam, dim=1)
        dual, _ = scaled_dual(self.loss, lam, self.Y, float(h.max()) if h.numel() else 0.0,
                              self.reg)
        gap = primal - dual
        return primal, gap, relative(gap, primal)


def solve_group_lasso(Phi: Tensor, Y: Tensor, reg: float, loss: Loss, *,
                      G0: Tensor | None = None, tol: float = 1e-10, max_iter: int = 20000,
                      check_every: int = 10) -> Tensor:
    """Minimiser G (K x c) by FISTA from ``G0`` (default 0), stopped at a certified relative
    gap ≤ ``tol`` or after ``max_iter`` iterations."""
    prob = GroupLasso(Phi, Y, reg, loss)
    G = torch.zeros(Phi.shape[1], Y.shape[1], dtype=Phi.dtype, device=Phi.device) \
        if G0 is None else G0.clone()
    res = fista(prob, G, step=1.0 / (prob.lipschitz() + 1e-12), tol=tol, max_iter=max_iter,
                check_every=check_every, monitor=prob.gap)
    return res.x
