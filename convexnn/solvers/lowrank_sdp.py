r"""Burer–Monteiro augmented Lagrangian for low-rank semidefinite programs.

Solves SDPs of the form

    min_{Z ⪰ 0}  f(Z)   s.t.   h(Z) = 0,   g(Z) ≥ 0 (entrywise)

with f convex and smooth, h and g linear in Z, by the factorisation Z = W Wᵀ, W ∈ R^{q x r}
(Burer & Monteiro 2003). The problem object works on the factor only — the solver never forms
Z — and provides torch-differentiable callables

* ``objective(W) -> scalar``     f(W Wᵀ)
* ``equality(W) -> tensor``      h(W Wᵀ)      (any shape)
* ``inequality(W) -> tensor``    g(W Wᵀ)      (any shape; must be ≥ 0)

The augmented Lagrangian with multipliers y (free) and μ ≥ 0 and penalty ρ > 0 is

    L_ρ(W; y, μ) = f + <y, h> + (ρ/2)||h||² + (1/(2ρ)) (||(μ − ρ g)_+||² − ||μ||²),

minimised over W by L-BFGS (warm-started, autograd gradients), followed by the first-order
multiplier updates y ← y + ρ h and μ ← (μ − ρ g)_+, and ρ ← growth·ρ whenever the constraint
violation did not fall by at least a quarter. The Lagrangian sign convention is therefore
f + <y, h> − <μ, g>; at a KKT point the multipliers give a dual certificate, which is the
formulation's job (the solver knows nothing about what the SDP models). Stopping: a certified
relative gap ≤ ``tol`` from ``monitor(W, y, μ) -> (objective, gap, relative_gap) | None``
(called after every outer iteration), or ``max_iter`` inner iterations, or ``max_time``.

The factorised problem is non-convex; for r large enough (r(r+1)/2 above the number of active
constraints) second-order stationary points are global (Boumal, Voroninski, Bandeira 2016), and
in any case the monitor's dual certificate decides — a stationary point that is not optimal
simply fails to certify.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from .base import History, SolverResult, StopReason

__all__ = ["burer_monteiro_al", "refine_multipliers"]


class _OutOfTime(Exception):
    """Raised inside the L-BFGS closure when ``max_time`` is reached."""


def _violation(h: torch.Tensor, g: torch.Tensor) -> float:
    v_eq = float(h.abs().max()) if h.numel() else 0.0
    v_in = float((-g).clamp_min(0).max()) if g.numel() else 0.0
    return max(v_eq, v_in)


def burer_monteiro_al(problem: Any, W0: torch.Tensor, *, y0: torch.Tensor | None = None,
                      mu0: torch.Tensor | None = None, rho: float = 1.0, tol: float = 1e-6,
                      max_iter: int = 20000, max_time: float | None = None,
                      inner_iter: int = 200, max_outer: int = 200, rho_growth: float = 2.0,
                      rho_max: float = 1e8, feas_tol: float = 0.0,
                      monitor: Callable | None = None, verbose: int = 0) -> SolverResult:
    """Run the Burer–Monteiro augmented Lagrangian method from the factor ``W0`` (q x r).

    ``max_iter`` bounds the total number of L-BFGS iterations; ``inner_iter`` those of one
    subproblem. ``feas_tol``: additionally stop when the violation is ≤ ``feas_tol`` and the
    subproblem converged (0 disables). Returns a :class:`SolverResult` with ``x = W`` and
    ``extras`` holding the multipliers ``y``, ``mu``, the final ``rho`` and ``violation``.
    """
    t0 = time.perf_counter()
    hist = History()
    W = W0.detach().clone().requires_grad_(True)
    with torch.no_grad():
        h0, g0 = problem.equality(W), problem.inequality(W)
    y = torch.zeros_like(h0) if y0 is None else y0.clone()
    mu = torch.zeros_like(g0) if mu0 is None else mu0.clone().clamp_min(0)
    total = 0
    viol_prev = math.inf
    viol = _violation(h0, g0)
    reason = StopReason.MAX_ITER
    outer = 0
    grad_tol = 1e-9

    for outer in range(1, max_outer + 1):
        budget = min(inner_iter, max_iter - total)
        if budget <= 0:
            reason = StopReason.MAX_ITER
            break
        count = [0]

        def closure(y=y, mu=mu, rho=rho, count=count):
            if max_time is not None and time.perf_counter() - t0 >= max_time:
                raise _OutOfTime
            if W.grad is not None:
                W.grad = None
            h = problem.equality(W)
            g = problem.inequality(W)
            val = (problem.objective(W) + (y * h).sum() + 0.5 * rho * (h * h).sum()
                   + (((mu - rho * g).clamp_min(0) ** 2).sum() - (mu * mu).sum()) / (2 * rho))
            val.backward()
            count[0] += 1
            return val

        opt = torch.optim.LBFGS([W], lr=1.0, max_iter=budget, max_eval=int(budget * 1.25) + 1,
                                tolerance_grad=grad_tol, tolerance_change=1e-14,
                                history_size=20, line_search_fn="strong_wolfe")
        try:
            opt.step(closure)
        except _OutOfTime:
            W.grad = None
        total += count[0]
        with torch.no_grad():
            h = problem.equality(W)
            g = problem.inequality(W)
            y = y + rho * h
            mu = (mu - rho * g).clamp_min(0)
            viol = _violation(h, g)
        elapsed = time.perf_counter() - t0
        if verbose:
            obj = float(problem.objective(W.detach()))
            print(f"[bm-al] outer={outer} inner_total={total} rho={rho:.3g} "
                  f"objective={obj:.8e} violation={viol:.3e} t={elapsed:.1f}s")
        if monitor is not None:
            out = monitor(W.detach(), y, mu)
            if out is not None:
                o, gap, rel = out
                hist.append(total, o, gap, rel, time.perf_counter() - t0)
                if rel <= tol:
                    reason = StopReason.GAP
                    break
        if feas_tol > 0 and viol <= feas_tol and count[0] < budget:
            reason = StopReason.CONVERGED
            break
        if max_time is not None and time.perf_counter() - t0 >= max_time:
            reason = StopReason.MAX_TIME
            break
        if total >= max_iter:
            reason = StopReason.MAX_ITER
            break
        if viol > 0.25 * viol_prev and rho * rho_growth <= rho_max:
            rho *= rho_growth
        viol_prev = viol
    return SolverResult(x=W.detach(), history=hist, stop_reason=reason, n_iter=total,
                        seconds=time.perf_counter() - t0,
                        extras={"y": y, "mu": mu, "rho": rho, "violation": viol,
                                "outer": outer})


def refine_multipliers(problem: Any, W: torch.Tensor, y: torch.Tensor, mu: torch.Tensor, *,
                       iters: int = 300, active_tol: float = 1e-6) -> tuple[torch.Tensor,
                                                                         torch.Tensor]:
    """Dual recovery at a (nearly) optimal factor W: least-squares KKT multipliers.

    Minimises ||∇_W [f + <y, h> − <μ, g>](W)||² over y (free) and μ ≥ 0 supported on the
    near-active inequalities (g ≤ active_tol · max|g|; complementary slackness), by projected
    accelerated gradient from the given multipliers. The residual is affine in (y, μ), so the
    objective is a convex quadratic; any output is merely a *candidate* — certification (dual
    feasibility) is the formulation's job.
    """
    W = W.detach().requires_grad_(True)
    f = problem.objective(W)
    h = problem.equality(W)
    g = problem.inequality(W)
    gf = torch.autograd.grad(f, W, create_graph=False)[0]
    with torch.no_grad():
        support = (g <= active_tol * max(float(g.abs().max()), 1e-300)).to(g.dtype)

    def resid(yv, mv):
        # J_hᵀ y − J_gᵀ μ via one vector-Jacobian product each (h, g linear in W Wᵀ)
        j = torch.autograd.grad((h, g), W, grad_outputs=(yv, -mv), retain_graph=True)[0]
        return gf + j

    def value(yv, mv):
        r = resid(yv, mv)
        return float((r * r).sum()), r

    def grad(r):
        # adjoint of (y, μ) ↦ J_hᵀ y − J_gᵀ μ: r ↦ (J_h r, −J_g r) (directional derivatives)
        Wd = W.detach()
        Jh = torch.autograd.functional.jvp(problem.equality, (Wd,), (r.detach(),))[1]
        Jg = torch.autograd.functional.jvp(problem.inequality, (Wd,), (r.detach(),))[1]
        return 2 * Jh, -2 * Jg * support

    yk, mk = y.detach().clone(), (mu.detach() * support).clamp_min(0)
    zy, zm = yk, mk
    t = 1.0
    L = None
    fk, _ = value(yk, mk)
    for _ in range(iters):
        fz, rz = value(zy, zm)
        gy, gm = grad(rz)
        if L is None:
            L = max(float((gy * gy).sum() + (gm * gm).sum()) ** 0.5 / max(fz ** 0.5, 1e-300),
                    1e-12)
        while True:
            ny = zy - gy / L
            nm = (zm - gm / L).clamp_min(0)
            fn, _ = value(ny, nm)
            dy, dm = ny - zy, nm - zm
            model = fz + float((gy * dy).sum() + (gm * dm).sum()) + 0.5 * L * float(
                (dy * dy).sum() + (dm * dm).sum())
            if fn <= model * (1 + 1e-12) or L > 1e30:
                break
            L *= 2.0
        if fn > fk:  # restart
            t = 1.0
        tn = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
        zy = ny + ((t - 1) / tn) * (ny - yk)
        zm = (nm + ((t - 1) / tn) * (nm - mk)).clamp_min(0)
        yk, mk, fk, t = ny, nm, fn, tn
        L *= 0.9
    return yk.detach(), mk.detach()
