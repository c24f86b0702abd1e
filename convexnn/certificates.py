"""Duality-gap certificates.

For a convex program  p_S = min_x L(A x) + R(x)  (R: group norms plus cone indicators), Fenchel
duality gives, for every Λ with R*(−AᵀΛ) = 0,

    d(Λ) = −L*(Λ) ≤ p_S ≤ primal(x)   for any feasible x.

R*(−AᵀΛ) = 0 means, group by group, h_g(Λ) = max_{u ∈ K_g, ||u|| ≤ 1} <−(AᵀΛ)_g, u> ≤ β (the dual
norm of the group penalty restricted to the group's cone). We take Λ = ∇L(A x), compute upper
bounds h_g ≥ the true values, and scale Λ by s = min(1, β / max_g h_g): then d(sΛ) is a valid
lower bound and ``gap = primal − d(sΛ)`` bounds the sub-optimality of x for the program.

Scope: over a *sampled* pattern set, p_S ≥ p* (the global optimum over all networks), so the gap
certifies optimality only "over the sampled activation patterns". ``scope="global"`` is used
only when the dual constraint was verified over all patterns (exhaustive enumeration or an exact
oracle), in which case d ≤ p* for the whole network training problem.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .losses import Loss

__all__ = ["Certificate", "scaled_dual", "SCOPE_SAMPLED", "SCOPE_GLOBAL"]

SCOPE_SAMPLED = "sampled patterns"
SCOPE_GLOBAL = "global"


@dataclass
class Certificate:
    """primal ≥ optimum ≥ dual; ``gap = primal − dual`` bounds the sub-optimality."""

    primal: float
    dual: float
    gap: float
    relative_gap: float
    scope: str
    problem: str
    n_patterns: int = 0
    dual_scale: float = 1.0           # s: how far ∇L had to be shrunk to be dual feasible
    constraint_violation: float = 0.0  # max cone-constraint violation of the convex iterate

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"Certificate(primal={self.primal:.8g}, dual={self.dual:.8g}, gap={self.gap:.3e}, "
                f"relative_gap={self.relative_gap:.3e}, scope={self.scope!r}, "
                f"problem={self.problem!r})")


def scaled_dual(loss: Loss, lam: torch.Tensor, Y: torch.Tensor, h_max: float,
                reg: float) -> tuple[float, float]:
    """Dual value −L*(sΛ) with s = min(1, reg / h_max); returns (dual, s)."""
    s = 1.0 if h_max <= reg else reg / h_max
    return float(-loss.conjugate(s * lam, Y)), s


def relative(gap: float, primal: float) -> float:
    return gap / max(abs(primal), 1e-30)
