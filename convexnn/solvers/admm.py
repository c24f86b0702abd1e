r"""ADMM for composite programs whose normal equations are cheap to solve exactly.

Solves ::

    min_x  f(A x) + g(x) + ι_{≥0}(B x)          (the B-block is optional)

with f smooth or not (only its prox is used), g with a cheap prox, and linear A, B, through the
splitting z = A x, y = x, s = B x (s ≥ 0). The scaled augmented Lagrangian with penalty ρ and a
fixed weight γ on the y-block,

    f(z) + g(y) + ι(s) + (ρ/2)(||A x − z + u||² + ||γ(x − y) + v||² + ||B x − s + w||²),

is minimised block by block:

* x ← (AᵀA + γ² I + BᵀB)⁻¹ (Aᵀ(z − u) + γ(γ y − v) + Bᵀ(s − w)) — the problem provides this
  solve (``solve_normal``); the matrix does **not** depend on ρ, so one factorisation serves
  every penalty the solver adapts to;
* over-relaxation (α ∈ [1, 2)) of A x, x and B x towards the previous z, y, s;
* z ← prox_{f/ρ}, y ← prox_{g/(ργ²)}, s ← max(0, ·);
* scaled duals u, v, w accumulate the residuals.

ρ is adapted by residual balancing (Boyd et al. 2011, §3.4.1): when the primal residual is
μ times the dual one, ρ grows (scaled duals shrink accordingly), and vice versa. At a solution
ρu = ∇f(Ax) (the loss gradient) and μ = −ρw ≥ 0 is the multiplier of B x ≥ 0 in the convention
f + g − μᵀ B x; the monitor receives both to build its certificate.

Problem protocol (``problem.``): ``forward(x) -> (A x, B x or None)``, ``adjoint(r, q) ->
Aᵀ r + Bᵀ q`` (q None without a cone), ``has_cone``, ``gamma``, ``solve_normal(rhs)``,
``prox_f(v, t, warm)``, ``prox_g(v, t)``. Stopping:
the monitor's certified relative gap ≤ ``tol`` (checked every ``check_every`` iterations), or
``max_iter`` / ``max_time``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from .base import History, SolverResult, StopReason

__all__ = ["admm"]


def _norm(t: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(t))


def _balanced_penalty(problem: Any, rho: float, balance: float, gam: float, x: torch.Tensor,
                      Ax: torch.Tensor, Bx: torch.Tensor | None, new: tuple,
                      old: tuple) -> tuple[float, float]:
    """Residual balancing: (new ρ, factor for the scaled duals) from the primal residual of the
    three blocks and the dual residual of the x-optimality; ``new``/``old`` are (z, y, s)."""
    (z, y, s), (z_old, y_old, s_old) = new, old
    cone = s_old is not None
    r2 = _norm(Ax - z) ** 2 + gam * gam * _norm(x - y) ** 2
    d_in = problem.adjoint(z - z_old, s - s_old if cone else None) + gam * gam * (y - y_old)
    if cone:
        r2 += _norm(Bx - s) ** 2
    r = math.sqrt(r2)
    d = rho * _norm(d_in)
    if r > balance * d:
        return rho * 2.0, 0.5
    if d > balance * r:
        return rho * 0.5, 2.0
    return rho, 1.0


def admm(problem: Any, x0: torch.Tensor, *, rho: float = 1.0, alpha: float = 1.6,
         tol: float = 1e-6, max_iter: int = 10000, max_time: float | None = None,
         check_every: int = 10, monitor: Callable | None = None, verbose: int = 0,
         adapt_every: int = 5, balance: float = 5.0, warm: dict | None = None,
         stall_checks: int | None = None) -> SolverResult:
    """Run ADMM from ``x0`` (see the module docstring).

    ``monitor(y, lam, mu) -> (objective, gap, relative_gap) | None`` certifies the iterate y
    (``lam = ρu`` estimates the loss gradient, ``mu = (−ρw)_+`` the cone multipliers, None
    without a cone). ``warm`` (the ``extras`` of an earlier run) restarts from its state.
    ``stall_checks``: stop (reason "stalled") once that many certified checks in a row have
    not cut the best relative gap by 10% (for a caller that finishes with another method).
    Returns a :class:`SolverResult` whose ``x`` is the y-iterate (the prox output: exactly
    sparse) and whose ``extras`` hold the full state.
    """
    if not 1.0 <= alpha < 2.0:
        raise ValueError(f"alpha must be in [1, 2), got {alpha}")
    t0 = time.perf_counter()
    hist = History()
    cone = bool(getattr(problem, "has_cone", False))
    gam = float(problem.gamma)
    if warm is not None:
        z, y, s, u, v, w, rho = (warm[k] for k in ("z", "y", "s", "u", "v", "w", "rho"))
    else:
        y = x0
        z, Bx0 = problem.forward(x0)
        u = torch.zeros_like(z)
        v = torch.zeros_like(x0)
        s = Bx0.clamp_min(0) if cone else None
        w = torch.zeros_like(s) if cone else None
    reason = StopReason.MAX_ITER
    it = 0
    ref_rel, since = math.inf, 0
    for it in range(1, max_iter + 1):
        rhs = problem.adjoint(z - u, s - w if cone else None) + gam * (gam * y - v)
        x = problem.solve_normal(rhs)
        Ax, Bx = problem.forward(x)
        Ax_h = alpha * Ax + (1 - alpha) * z
        x_h = alpha * x + (1 - alpha) * y
        z_old, y_old = z, y
        z = problem.prox_f(Ax_h + u, 1.0 / rho, z)
        y = problem.prox_g(x_h + v / gam, 1.0 / (rho * gam * gam))
        u = u + Ax_h - z
        v = v + gam * (x_h - y)
        if cone:
            Bx_h = alpha * Bx + (1 - alpha) * s
            s_old = s
            s = (Bx_h + w).clamp_min(0)
            w = w + Bx_h - s
        if it % adapt_every == 0:
            rho, scale = _balanced_penalty(problem, rho, balance, gam, x, Ax, Bx, (z, y, s),
                                           (z_old, y_old, s_old if cone else None))
            if scale != 1.0:
                u, v = u * scale, v * scale
                if cone:
                    w = w * scale
        elapsed = time.perf_counter() - t0
        if monitor is not None and (it % check_every == 0 or it == 1):
            mu = (-rho * w).clamp_min(0) if cone else None
            out = monitor(y, rho * u, mu)
            if out is not None:
                obj, gap, rel = out
                hist.append(it, obj, gap, rel, elapsed)
                if verbose:
                    print(f"[admm] it={it:6d} obj={obj:.8e} gap={gap:.3e} rel={rel:.3e} "
                          f"rho={rho:.3g}")
                if rel <= tol:
                    reason = StopReason.GAP
                    break
                if rel < 0.9 * ref_rel:
                    ref_rel, since = rel, 0
                else:
                    since += 1
                    if stall_checks is not None and since >= stall_checks:
                        reason = StopReason.STALLED
                        break
        if max_time is not None and elapsed >= max_time:
            reason = StopReason.MAX_TIME
            break
    mu = (-rho * w).clamp_min(0) if cone else None
    return SolverResult(x=y, history=hist, stop_reason=reason, n_iter=it,
                        seconds=time.perf_counter() - t0,
                        extras={"z": z, "y": y, "s": s, "u": u, "v": v, "w": w, "rho": rho,
                                "lam": rho * u, "mu": mu})
