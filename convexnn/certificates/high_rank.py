r"""Global lower bounds where the arrangement is too large to enumerate (high-rank data).

Notation of :mod:`.global_`: any Λ with h(Λ) = sup_{||u|| ≤ 1} ||Λᵀ (X̃ u)_+|| ≤ β gives
−L*(Λ) ≤ p*, and for an upper bound h̄ ≥ h(Λ) every s ∈ [0, β / h̄] keeps sΛ feasible. Two
upper bounds on h are offered, cheapest first:

* **norm bound** — h ≤ min(||Λ||₂ ||X̃||₂, Σ_i ||λ_i|| ||x̃_i||): no solve, usually loose by a
  factor of the dimension (d = 10: 70-160x on diabetes).
* **neuron SDP** — h² = 4 φ(Λ) with φ the quadratic maximisation over one ReLU neuron, and
  φ ≤ φ̄, the proven value of its doubly-nonnegative relaxation
  (:func:`convexnn.formulations.sdp.neuron.neuron_sdp_bound`; ADMM on an (2n + d)-square
  matrix, about n³ flops per iteration; skipped above 2n + d = 2000). Measured: within
  1.2-3.9x of the true h (lower estimates by search), against 17-70x for the norm bound; it
  converges in seconds at n = 100 but not within the default minute at n = 442 (diabetes),
  where the bound it returns is proven but vacuous.

The bound is only as good as Λ: the gradient at a narrow or badly trained network can be far
from dual feasible. With ``solve`` the program is also fitted here (the default dual-guided
descent, on exactly this objective), and the better of the two networks supplies Λ; its
objective is an upper bound on p* (a proof of sub-optimality when below the network's).
Over s the bound −L*(sΛ) is concave, maximised by golden section on [0, min(1, β/h̄)].
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from ..losses import Loss, OffsetLoss
from ..networks import TwoLayerNetwork

__all__ = ["SCOPE_NORM_BOUND", "SCOPE_SDP_BOUND", "norm_h_bound", "sdp_h_bound",
           "best_scaled_dual", "high_rank_bound"]

SCOPE_NORM_BOUND = "global (norm bound)"
SCOPE_SDP_BOUND = "global (SDP relaxation of the dual constraint)"

_GOLD = (math.sqrt(5.0) - 1.0) / 2.0
DEFAULT_MAX_TIME = 60.0  # seconds for refit + relaxation when certify's max_time is None
#: largest 2n + d for the neuron SDP: its ADMM holds several (2n + d)² float64 matrices and
#: an eigendecomposition per iteration (2n + d = 895: ~0.3 s; converging takes ~10³ of them)
RELAXATION_MAX_SIZE = 2000


def norm_h_bound(Xa: Tensor, lam: Tensor) -> float:
    """h(Λ) ≤ min(||Λ||₂ ||X̃||₂, Σ_i ||λ_i|| ||x̃_i||), valid for every u."""
    Xop = float(torch.linalg.matrix_norm(Xa, ord=2))
    return min(float(torch.linalg.matrix_norm(lam, ord=2)) * Xop,
               float((torch.linalg.vector_norm(lam, dim=1)
                      * torch.linalg.vector_norm(Xa, dim=1)).sum()))


def sdp_h_bound(Xa: Tensor, lam: Tensor, *, max_time: float | None = None,
                max_iter: int = 3000, tol: float = 1e-2) -> tuple[float, dict]:
    """(h̄, info): h(Λ) ≤ h̄ = 2 √φ̄ from the neuron SDP (proven whenever it stops)."""
    from ..formulations.sdp.neuron import neuron_sdp_bound

    b = neuron_sdp_bound(Xa, lam, tol=tol, max_iter=max_iter, max_time=max_time)
    info = {"iterations": b.iterations, "seconds": b.seconds,
            "relaxation_estimate_over_bound": (math.sqrt(max(b.phi_estimate, 0.0)
                                                         / b.phi_upper)
                                               if b.phi_upper > 0 else 1.0)}
    return 2.0 * math.sqrt(max(b.phi_upper, 0.0)), info


def best_scaled_dual(loss: Loss, lam: Tensor, Y: Tensor, h_max: float,
                     reg: float, iters: int = 60) -> tuple[float, float]:
    """(max_s −L*(sΛ), s) over s ∈ [0, min(1, β / h̄)]: a proven lower bound on p*."""
    top = 1.0 if h_max <= reg else reg / h_max

    def value(s: float) -> float:
        v = float(-loss.conjugate(s * lam, Y))
        return v if math.isfinite(v) else -math.inf

    a, b = 0.0, top
    c, d = b - _GOLD * (b - a), a + _GOLD * (b - a)
    fc, fd = value(c), value(d)
    for _ in range(iters):
        if fc >= fd:
            b, d, fd = d, c, fc
            c = b - _GOLD * (b - a)
            fc = value(c)
        else:
            a, c, fc = c, d, fd
            d = a + _GOLD * (b - a)
            fd = value(d)
    cands = [(value(top), top), (fc, c), (fd, d), (value(0.0), 0.0)]
    return max(cands)


def _refit(Xt: Tensor, Yt: Tensor, reg: float, base: Loss, intercept: bool, offset: bool,
           max_time: float) -> TwoLayerNetwork:
    """The default dual-guided descent on exactly certify's objective (raw units)."""
    from ..pipelines.descent import fit_relu_descent
    from ..pipelines.two_layer import default_width

    net, _, _, _ = fit_relu_descent(Xt, Yt, reg, base, n_neurons=default_width(*Xt.shape),
                                    intercept=intercept, offset=offset, max_time=max_time,
                                    random_state=0)
    return net.to(dtype=torch.float64, device="cpu")


def _multiplier(net: TwoLayerNetwork, Xt: Tensor, Yt: Tensor, lo: Loss) -> Tensor:
    F = net.forward(Xt)
    if isinstance(lo, OffsetLoss) and net.output_bias is not None:
        F = F - net.output_bias
    return lo.grad(F, Yt)


def high_rank_bound(net: TwoLayerNetwork, Xt: Tensor, Xa: Tensor, Yt: Tensor, lam: Tensor,
                    lo: Loss, base: Loss, reg: float, intercept: bool, *, solve: bool,
                    relaxation: bool, max_time: float | None, details: dict):
    """(lower, s, optimum upper bound or None, better network or None, method, scope)."""
    t0 = time.perf_counter()
    total = DEFAULT_MAX_TIME if max_time is None else float(max_time)
    primal = float(net.objective(Xt, Yt, reg, base))
    upper = better = None
    if solve:
        budget = max(0.5 * total, 1e-3)
        other = _refit(Xt, Yt, reg, base, intercept, isinstance(lo, OffsetLoss), budget)
        upper = float(other.objective(Xt, Yt, reg, base))
        details["refit_objective"] = upper
        if upper < primal:
            better, lam = other, _multiplier(other, Xt, Yt, lo)
    h_norm = norm_h_bound(Xa, lam)
    lower, s = best_scaled_dual(lo, lam, Yt, h_norm, reg)
    details["h_bound_over_reg"] = h_norm / reg
    method, scope = "norm bound (arrangement too large to enumerate)", SCOPE_NORM_BOUND
    size = 2 * Xa.shape[0] + Xa.shape[1]
    if relaxation and size > RELAXATION_MAX_SIZE:
        details["relaxation_skipped"] = (f"2n + d = {size} > {RELAXATION_MAX_SIZE}: the neuron "
                                         "SDP would take minutes per iteration")
    elif relaxation:
        left = max(total - (time.perf_counter() - t0), 1e-3)
        h_sdp, info = sdp_h_bound(Xa, lam, max_time=left)
        details["h_sdp_bound_over_reg"] = h_sdp / reg
        details["neuron_sdp"] = info
        lo_sdp, s_sdp = best_scaled_dual(lo, lam, Yt, h_sdp, reg)
        if lo_sdp > lower:
            lower, s = lo_sdp, s_sdp
            method, scope = ("neuron SDP relaxation of the dual constraint (arrangement too "
                             "large to enumerate)"), SCOPE_SDP_BOUND
    details["multiplier_from"] = "refit network" if better is not None else "given network"
    return lower, s, upper, better, method, scope
