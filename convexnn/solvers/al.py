"""Augmented Lagrangian method for linearly cone-constrained composite problems.

Solves   min_x f(x) + g(x)   s.t.  B x ≥ 0   (B linear, entrywise inequality)
through the augmented Lagrangian (multipliers μ ≥ 0, penalty ρ > 0)

    L_ρ(x, μ) = f(x) + g(x) + (ρ/2) ||(μ/ρ − B x)_+||²  − ||μ||² / (2ρ),

minimising over x by FISTA (warm-started), then μ ← (μ − ρ B x)_+ = ρ (μ/ρ − B x)_+, and
ρ ← 5ρ whenever the constraint violation did not fall by at least a quarter. The problem object
is the FISTA protocol of :mod:`convexnn.solvers.fista` *for the augmented smooth part*, built by
``problem.augmented(mu, rho)``, and ``problem.violation(state)`` returns ||(−B x)_+||_∞ from a
state. Stopping is by the certificate the monitor returns, which receives the current (μ, ρ).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from .base import History, SolverResult, StopReason
from .fista import fista

__all__ = ["augmented_lagrangian"]


def augmented_lagrangian(problem: Any, x0: torch.Tensor, mu0: torch.Tensor, *, rho: float = 1.0,
                         tol: float = 1e-6, max_iter: int = 10000, max_time: float | None = None,
                         inner_iter: int = 200, check_every: int = 10,
                         monitor: Callable | None = None, verbose: int = 0,
                         max_outer: int = 10000, rho_growth: float = 2.0,
                         rho_max: float = 1e6) -> SolverResult:
    """Run the augmented Lagrangian method; ``max_iter`` counts inner FISTA iterations."""
    t0 = time.perf_counter()
    hist = History()
    x, mu = x0, mu0
    total = 0
    step = None
    viol_prev = float("inf")
    reason = StopReason.MAX_ITER
    inner_tol = None
    outer = 0
    for outer in range(1, max_outer + 1):
        sub = problem.augmented(mu, rho)
        mon = None if monitor is None else (lambda x_, s_, sub=sub: monitor(x_, s_, sub))
        remaining_time = None if max_time is None else max(max_time - (time.perf_counter() - t0), 0)
        res = fista(sub, x, step=step, tol=tol, max_iter=min(inner_iter, max_iter - total),
                    max_time=remaining_time, check_every=check_every, monitor=mon, history=hist,
                    t_start=t0, iter_offset=total, inner_tol=inner_tol)
        x, total = res.x, total + res.n_iter
        step = res.extras["step"]
        state = res.extras["state"]
        if res.stop_reason in (StopReason.GAP, StopReason.MAX_TIME):
            reason = res.stop_reason
            break
        mu = sub.updated_multipliers(state)
        viol = float(problem.violation(state))
        if verbose:
            print(f"[al] outer={outer} inner_total={total} rho={rho:.3g} violation={viol:.3e}")
        if viol > 0.25 * viol_prev and rho * rho_growth <= rho_max:
            rho *= rho_growth
            step = None if step is None else step / rho_growth
        viol_prev = viol
        inner_tol = res.extras["grad_map_norm"] * 0.3
        if total >= max_iter:
            reason = StopReason.MAX_ITER
            break
        if res.stop_reason == StopReason.STALLED:
            reason = StopReason.STALLED
            break
    return SolverResult(x=x, history=hist, stop_reason=reason, n_iter=total,
                        seconds=time.perf_counter() - t0,
                        extras={"mu": mu, "rho": rho, "outer": outer})
