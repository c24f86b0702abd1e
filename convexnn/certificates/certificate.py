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

import math
from dataclasses import asdict, dataclass

import torch

from ..losses import Loss

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
    #: (ii) the lower bound on the *global* optimum that the dual point would prove if the
    #: neuron search were exact — an estimate, not a proof (None: no search was run)
    search_bound: float | None = None
    #: largest ||Λᵀ(Xu)_+|| / reg found by the neuron search (≤ 1 at a global optimum)
    max_violation: float | None = None
    #: (iii) a proven lower bound on the global optimum over all networks, where decidable
    global_bound: float | None = None
    #: the network's objective is below ``dual``: it is not in the program that was solved
    left_program: bool = False

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def vacuous(self) -> bool:
        """The lower bound proves next to nothing: non-finite, or ≤ 1 % of a positive primal."""
        return not math.isfinite(self.dual) or (self.primal > 0 and self.dual <= 0.01 * self.primal)

    def __str__(self) -> str:
        lines = [f"objective of the network (primal)  {self.primal:.8g}",
                 f"(i)   lower bound over its patterns {self.dual:.8g}  (gap {self.gap:.3e}, "
                 f"relative {self.relative_gap:.3e}; {self.problem})"]
        if self.left_program:
            lines.append("      the network is better than this program's optimum: it left the "
                         "program's patterns, so the gap is not a sub-optimality bound for it")
        if self.search_bound is not None:
            lines.append(f"(ii)  estimated global lower bound {self.search_bound:.8g}  (if the "
                         f"neuron search were exact; largest violation "
                         f"{self.max_violation:.4g}·reg)")
        lines.append("(iii) proven global lower bound    "
                     + (f"{self.global_bound:.8g}" if self.global_bound is not None
                        else "none (not decidable here)" if self.scope != SCOPE_GLOBAL
                        else f"{self.dual:.8g}"))
        lines.append(f"scope: {self.scope}" + ("  [VACUOUS bound]" if self.vacuous else ""))
        return "\n".join(lines)


def scaled_dual(loss: Loss, lam: torch.Tensor, Y: torch.Tensor, h_max: float,
                reg: float) -> tuple[float, float]:
    """Dual value −L*(sΛ) with s = min(1, reg / h_max); returns (dual, s)."""
    s = 1.0 if h_max <= reg else reg / h_max
    return float(-loss.conjugate(s * lam, Y)), s


def relative(gap: float, primal: float) -> float:
    return gap / max(abs(primal), 1e-30)
