"""Accelerated proximal gradient (FISTA) with backtracking line search and adaptive restart.

Solves   min_x  F(x) = f(x) + g(x),   f smooth convex, g convex with a cheap prox,
where f(x) = h(K x) for a linear map K. The solver works on *states* s = K x: because K is
linear, the state of the extrapolated point y = x⁺ + θ (x⁺ − x) is s⁺ + θ (s⁺ − s), so one
iteration costs one forward product (K x⁺, shared with the line search) and one adjoint
(∇f(y) = Kᵀ ∇h(s_y)). Restarts: momentum is reset whenever F increases (O'Donoghue & Candès).

The problem object provides ``linear(x) -> state``, ``smooth_value(state)``,
``smooth_grad(state) -> array like x``, ``penalty(x)`` and ``prox(x, step)``. States are tensors
or tuples of tensors; so are variables x (e.g. weights and an unpenalised offset). A problem may
also provide ``prox_penalty(x, step) -> (prox, penalty at prox)`` to share work (e.g. one SVD)
and ``smooth_value_grad(state) -> (value, gradient)`` (one loss evaluation for both).
A ``monitor(x, state) -> (objective, gap, relative_gap) | None`` callable, called every
``check_every`` iterations, provides the stopping certificate (None: no check).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from .base import History, SolverResult, StopReason

__all__ = ["fista", "accelerated_projected_gradient", "lincomb"]


def lincomb(a: Any, b: Any, theta: float) -> Any:
    """a + theta (a - b) for tensors or tuples of tensors."""
    if isinstance(a, tuple):
        return tuple(lincomb(x, y, theta) for x, y in zip(a, b))
    return a + theta * (a - b)


def _step(y: Any, g: Any, t: float) -> Any:
    """y − t g for tensors or tuples of tensors."""
    if isinstance(y, tuple):
        return tuple(_step(a, b, t) for a, b in zip(y, g))
    return y - t * g


def _nonneg(x: Any) -> Any:
    if isinstance(x, tuple):
        return tuple(_nonneg(a) for a in x)
    return x.clamp_min(0)


def accelerated_projected_gradient(grad: Callable[[Any], Any], x0: Any, step: float, iters: int,
                                   project: Callable[[Any], Any] = _nonneg) -> Any:
    """``iters`` steps of FISTA with a fixed step and no restart (Beck & Teboulle 2009) on
    min_{x ∈ C} f(x): x⁺ = Π_C(z − step ∇f(z)), z the extrapolated point.

    ``grad`` is ∇f, ``step`` ≤ 1/L for L-smooth f, ``project`` is Π_C (default: the
    nonnegative orthant); x0, the gradients and the result are tensors or tuples of tensors.
    For loops that may stop early (every iterate is feasible), e.g. multiplier refinement.
    """
    prev, z, t = x0, x0, 1.0
    for _ in range(iters):
        new = project(_step(z, grad(z), step))
        t_new = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
        z = lincomb(new, prev, (t - 1) / t_new)
        prev, t = new, t_new
    return prev


def _dot(a: Any, b: Any) -> float:
    if isinstance(a, tuple):
        return sum(_dot(x, y) for x, y in zip(a, b))
    return float((a * b).sum())


def _prox(problem: Any, v: Any, step: float) -> tuple[Any, float | None]:
    if hasattr(problem, "prox_penalty"):
        x, pen = problem.prox_penalty(v, step)
        return x, float(pen)
    return problem.prox(v, step), None


def fista(problem: Any, x0: torch.Tensor, *, step: float | None = None, tol: float = 1e-6,
          max_iter: int = 10000, max_time: float | None = None, check_every: int = 10,
          monitor: Callable | None = None, history: History | None = None,
          t_start: float | None = None, iter_offset: int = 0, verbose: int = 0,
          inner_tol: float | None = None) -> SolverResult:
    """Run FISTA from ``x0``.

    Stops when the monitor's relative gap is ≤ ``tol``, when the gradient-mapping norm is
    ≤ ``inner_tol`` (if given; used by outer loops such as the augmented Lagrangian), or by
    ``max_iter`` / ``max_time``. Returns a :class:`SolverResult` whose ``extras['step']`` is the
    last accepted step size (to warm-start a later call).
    """
    t0 = time.perf_counter() if t_start is None else t_start
    hist = history if history is not None else History()
    x = x0
    s = problem.linear(x)
    fx = float(problem.smooth_value(s))
    Fx = fx + float(problem.penalty(x))
    y, sy, fy = x, s, fx
    fused = hasattr(problem, "smooth_value_grad")
    g = None
    L = 1.0 / step if step else 1.0
    theta_t = 1.0
    reason = StopReason.MAX_ITER
    it = 0
    gm_norm = math.inf
    for it in range(1, max_iter + 1):
        if g is None:
            g = problem.smooth_grad(sy)
        # backtracking on the quadratic upper model at y
        while True:
            x_new, pen = _prox(problem, _step(y, g, 1.0 / L), 1.0 / L)
            d = _step(x_new, y, 1.0)
            s_new = problem.linear(x_new)
            f_new = float(problem.smooth_value(s_new))
            dd = _dot(d, d)
            model = fy + _dot(g, d) + 0.5 * L * dd
            if f_new <= model + 1e-12 * abs(fy) or L > 1e30:
                break
            L *= 2.0
        gm_norm = L * math.sqrt(dd)
        F_new = f_new + (float(problem.penalty(x_new)) if pen is None else pen)
        if F_new > Fx:  # adaptive restart
            theta_t = 1.0
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * theta_t * theta_t))
        mom = (theta_t - 1.0) / t_next
        y = lincomb(x_new, x, mom) if mom > 0 else x_new
        sy = lincomb(s_new, s, mom) if mom > 0 else s_new
        if mom > 0 and fused:  # one evaluation of the loss for value and gradient at y
            fy, g = problem.smooth_value_grad(sy)
            fy = float(fy)
        else:
            fy, g = (float(problem.smooth_value(sy)), None) if mom > 0 else (f_new, None)
        x, s, fx, Fx, theta_t = x_new, s_new, f_new, F_new, t_next
        L *= 0.95  # let the step grow again
        elapsed = time.perf_counter() - t0
        if monitor is not None and (it % check_every == 0 or it == 1):
            out = monitor(x, s)
            if out is not None:  # a monitor may skip a check (returns None)
                obj, gap, rel = out
                hist.append(iter_offset + it, obj, gap, rel, elapsed)
                if verbose:
                    print(f"[fista] it={iter_offset + it:6d} obj={obj:.8e} gap={gap:.3e} "
                          f"rel={rel:.3e}")
                if rel <= tol:
                    reason = StopReason.GAP
                    break
        if inner_tol is not None and gm_norm <= inner_tol:
            reason = StopReason.CONVERGED
            break
        if max_time is not None and elapsed >= max_time:
            reason = StopReason.MAX_TIME
            break
        if L > 1e30:
            reason = StopReason.STALLED
            break
    return SolverResult(x=x, history=hist, stop_reason=reason, n_iter=it,
                        seconds=time.perf_counter() - t0,
                        extras={"step": 1.0 / L, "state": s, "grad_map_norm": gm_norm})
