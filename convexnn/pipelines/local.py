"""Local descent on a two-layer network's weights (the non-convex side of the descent fit).

Objective: L(relu(X W1ᵀ + b1) W2ᵀ + b2) + (reg/2)(|W1|² + |b1|² + |W2|²), the output offset b2
unregularised; parameters as the list [W1, b1, W2, b2].
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor

from ..losses import Loss

#: scipy L-BFGS-B's per-iteration relative-decrease test (the windowed test usually stops first)
LBFGS_FTOL = 1e-10

__all__ = ["lbfgs_network", "adam_polish", "value_and_grad"]


def value_and_grad(params: list[Tensor], X: Tensor, Y: Tensor, loss: Loss, reg: float
                    ) -> tuple[float, list[Tensor]]:
    """Objective L(relu(X W1ᵀ + b1) W2ᵀ + b2) + (reg/2)(|W1|² + |b1|² + |W2|²) and its
    gradient, by hand (no autograd: the solver's per-iteration overhead matters here)."""
    W1, b1, W2, b2 = params
    A = X @ W1.T + b1
    H = A.clamp_min(0)
    Z = H @ W2.T + b2
    G = loss.grad(Z, Y)
    dH = (G @ W2) * (A > 0)
    f = float(loss.value(Z, Y)) + 0.5 * reg * float((W1 ** 2).sum() + (b1 ** 2).sum()
                                                    + (W2 ** 2).sum())
    return f, [dH.T @ X + reg * W1, dH.sum(0) + reg * b1, G.T @ H + reg * W2, G.sum(0)]


def lbfgs_network(params: list[Tensor], X: Tensor, Y: Tensor, loss: Loss, reg: float, *,
                  intercept: bool, offset: bool, deadline: float, max_iter: int = 5000,
                  ftol: float = LBFGS_FTOL, gtol: float = 1e-9, window: int = 30,
                  wtol: float = 1e-5) -> tuple[list[Tensor], float, int]:
    """Full-batch L-BFGS (scipy's L-BFGS-B, unbounded) on the network objective; stops by
    scipy's relative-decrease ``ftol`` / gradient ``gtol`` tests, ``max_iter`` or the
    ``deadline`` (time.perf_counter()). Frozen: b1 without ``intercept``, b2 without
    ``offset``. Returns (params, objective, iterations)."""
    from scipy.optimize import minimize

    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]
    free = [True, intercept, True, offset]
    dt, dev = X.dtype, X.device

    def unpack(z: np.ndarray) -> list[Tensor]:
        out, k = [], 0
        zt = torch.as_tensor(z, dtype=dt, device=dev)
        for shp, sz, fr, p in zip(shapes, sizes, free, params):
            if fr:
                out.append(zt[k:k + sz].reshape(shp))
                k += sz
            else:
                out.append(p)
        return out

    def fun(z):
        f, g = value_and_grad(unpack(z), X, Y, loss, reg)
        gz = torch.cat([gi.reshape(-1) for gi, fr in zip(g, free) if fr])
        return f, gz.detach().cpu().double().numpy()

    trace: list[float] = []

    def stop(intermediate_result=None):
        # stop at the deadline, or when the last `window` iterations gained < wtol (relative):
        # on ReLU kinks L-BFGS can crawl for thousands of iterations of negligible progress
        if time.perf_counter() >= deadline:
            raise StopIteration
        trace.append(float(intermediate_result.fun))
        if len(trace) > window and trace[-window - 1] - trace[-1] <= wtol * abs(trace[-1]):
            raise StopIteration

    z0 = torch.cat([p.reshape(-1) for p, fr in zip(params, free) if fr]).cpu().double().numpy()
    # scipy's L-BFGS-B makes many tiny BLAS calls: threads only add contention there
    with torch.no_grad(), threadpool_limits(1, user_api="blas"):
        res = minimize(fun, z0, jac=True, method="L-BFGS-B", callback=stop,
                       options={"maxiter": max_iter, "ftol": ftol, "gtol": gtol,
                                "maxcor": 20})
    if not np.isfinite(res.fun):
        raise FloatingPointError("non-finite objective in L-BFGS")
    return [p.clone() for p in unpack(res.x)], float(res.fun), int(res.nit)


def adam_polish(params: list[Tensor], X: Tensor, Y: Tensor, loss: Loss, reg: float, *,
                intercept: bool, offset: bool, deadline: float, max_steps: int = 2000,
                lr: float = 1e-3, window: int = 100, rtol: float = 1e-6, decays: int = 3
                ) -> tuple[list[Tensor], float, int]:
    """Full-batch Adam from ``params`` (hand gradient), keeping the best iterate.

    L-BFGS crawls where the optimum sits on ReLU kinks (samples on a neuron's hyperplane, as
    the convex program's optimal neurons do); momentum steps across them. ``lr`` (standardised
    units) is divided by 3 when a window of steps gains < ``rtol``
    (relative), at most ``decays`` times. Returns (best params, objective, steps)."""
    free = [True, intercept, True, offset]
    P = [p.clone() for p in params]
    m = [torch.zeros_like(p) for p in P]
    v = [torch.zeros_like(p) for p in P]
    step = lr  # absolute: the fit runs in standardised units
    b1, b2, eps = 0.9, 0.999, 1e-12
    best_f, best, trace, k = math.inf, P, [], 0
    for k in range(1, max_steps + 1):
        f, g = value_and_grad(P, X, Y, loss, reg)
        if f < best_f:
            best_f, best = f, [p.clone() for p in P]
        trace.append(best_f)
        if len(trace) > window and trace[-window - 1] - best_f <= rtol * abs(best_f):
            if decays == 0:
                break
            decays, step, trace = decays - 1, step / 3.0, []
        if time.perf_counter() >= deadline:
            break
        c1, c2 = 1 - b1 ** k, 1 - b2 ** k
        for i in range(4):
            if not free[i]:
                continue
            m[i].mul_(b1).add_(g[i], alpha=1 - b1)
            v[i].mul_(b2).addcmul_(g[i], g[i], value=1 - b2)
            P[i] = P[i] - step * (m[i] / c1) / ((v[i] / c2).sqrt() + eps)
    return best, best_f, k
