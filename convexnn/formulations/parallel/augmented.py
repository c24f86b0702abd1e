"""Augmented-Lagrangian smooth part of the parallel program (FISTA protocol) and a step-size
estimate."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ...ops.linalg import power_iteration

if TYPE_CHECKING:
    from .program import ParallelProgram

__all__ = ["AugmentedProgram", "lipschitz_estimate"]


class AugmentedProgram:
    """Smooth part of the augmented Lagrangian, FISTA protocol:
    f_ρ(x) = L(A x) + (1/2ρ)(||(μ₁ − ρ C₁(x))_+||² + ||(μ₂ − ρ C₂(x))_+||²) (C₂ for depth 3)."""

    def __init__(self, prog: ParallelProgram, mu: tuple[Tensor, Tensor], rho: float):
        self.prog, self.mu, self.rho = prog, mu, float(rho)
        self.penalty = prog.penalty
        self.prox = prog.prox
        self.linear = prog.linear

    def _shifted(self, XQ: Tensor) -> tuple[Tensor, Tensor]:
        c1, c2 = self.prog.constraints(XQ)
        s1 = (self.mu[0] - self.rho * c1).clamp_min(0)
        s2 = (self.mu[1] - self.rho * c2).clamp_min(0)
        if self.prog.depth == 2:
            s2 = torch.zeros_like(s2)
        return s1, s2

    def smooth_value(self, XQ: Tensor) -> Tensor:
        p = self.prog
        s1, s2 = self._shifted(XQ)
        return (p.loss.value(p.predict(XQ), p.Y)
                + ((s1**2).sum() + (s2**2).sum()) / (2 * self.rho))

    def smooth_grad(self, XQ: Tensor) -> Tensor:
        p = self.prog
        lam = p.loss.grad(p.predict(XQ), p.Y)
        s1, s2 = self._shifted(XQ)
        return p.adjoint(p.data_grad_h(lam) - s2 * p.S2, -s1 * p.S1)

    def updated_multipliers(self, XQ: Tensor) -> tuple[Tensor, Tensor]:
        return self._shifted(XQ)


def lipschitz_estimate(prog: ParallelProgram, iters: int = 15, seed: int = 0) -> float:
    """Power-iteration estimate of ||A||² × loss smoothness (initial step size)."""
    lam = power_iteration(lambda v: prog.predict(prog.linear(v)),
                          lambda r: prog.adjoint(prog.data_grad_h(r)), prog.shape,
                          dtype=prog.X.dtype, device=prog.X.device, iters=iters, seed=seed)
    if lam == 0 or not math.isfinite(lam):
        return 1.0
    return max(lam * prog.loss.smoothness, 1e-12)
