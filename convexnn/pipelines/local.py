"""Local descent on a two-layer network's weights (the non-convex side of the descent fit).

Objective: L(relu(X W1ᵀ + b1) W2ᵀ + b2) + (reg/2)(|W1|² + |b1|² + |W2|²), the output offset b2
unregularised; parameters as the list [W1, b1, W2, b2]. With a smoothing ``tau`` (one value
per neuron) the ReLU is replaced by the softplus τ·log(1 + e^{a/τ}), which is within τ·log 2 of
it: L-BFGS converges on the smooth objective where it crawls on the ReLU's kinks, and
:func:`anneal_polish` follows the smoothed optima as τ → 0.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from threadpoolctl import ThreadpoolController
from torch import Tensor

from ..losses import Loss

_BLAS: list[ThreadpoolController] = []  # scanned once: a scan costs ~2 ms per L-BFGS call


def _one_blas_thread():
    if not _BLAS:
        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


#: scipy L-BFGS-B's per-iteration relative-decrease test (the windowed test usually stops first)
LBFGS_FTOL = 1e-10

__all__ = ["lbfgs_network", "adam_polish", "anneal_polish", "value_and_grad",
           "neuron_scales", "objective", "threads_for"]


@contextmanager
def threads_for(work: float, threshold: float = 5e6) -> Iterator[None]:
    """One torch thread while fitting a small network (``work`` = samples x features x neurons
    below ``threshold``): its tensor operations are too small to split, and the other threads
    only spin (benchmarks/results/defaults.md: breast_cancer, wine and diabetes used 2x the
    CPU seconds for the same wall time with two threads)."""
    k = torch.get_num_threads()
    if work >= threshold or k == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(k)


def neuron_scales(params: list[Tensor]) -> Tensor:
    """||(w_j, b_j)|| of each neuron: τ_j = t·scale_j smooths every neuron alike in input
    space (a distance t from its hyperplane), whatever its weights' scale."""
    W1, b1 = params[0], params[1]
    return torch.linalg.vector_norm(torch.cat([W1, b1[:, None]], 1), dim=1).clamp_min(1e-30)


def value_and_grad(params: list[Tensor], X: Tensor, Y: Tensor, loss: Loss, reg: float,
                   tau: Tensor | None = None) -> tuple[float, list[Tensor]]:
    """The objective and its gradient by hand (no autograd: on small data the per-iteration
    overhead is the cost, so few, fused tensor operations); ``tau``: per-neuron softplus
    smoothing (module docstring), None for the ReLU itself."""
    W1, b1, W2, b2 = params
    A = torch.addmm(b1, X, W1.T)
    if tau is None:
        H, S = A.clamp_min(0), A > 0
    else:
        Za = A / tau
        H, S = torch.nn.functional.softplus(Za).mul_(tau), torch.sigmoid(Za)
    lv, G = loss.value_and_grad(torch.addmm(b2, H, W2.T), Y)
    dH = (G @ W2).mul_(S)
    pen = (W1 * W1).sum() + (b1 * b1).sum() + (W2 * W2).sum()
    f = float(lv + 0.5 * reg * pen)
    return f, [torch.addmm(W1, dH.T, X, beta=reg), torch.add(dH.sum(0), b1, alpha=reg),
               torch.addmm(W2, G.T, H, beta=reg), G.sum(0)]


def objective(params: list[Tensor], X: Tensor, Y: Tensor, loss: Loss, reg: float,
              tau: Tensor | None = None, reduce=None) -> tuple[float, list[Tensor]]:
    """:func:`value_and_grad`, or with ``reduce`` (a sum over processes that each hold a block
    of samples) the objective of all the blocks: the loss part and its gradient reduced in one
    call, the weight decay added once."""
    if reduce is None:
        return value_and_grad(params, X, Y, loss, reg, tau)
    f, g = value_and_grad(params, X, Y, loss, 0.0, tau)
    sizes = [gi.numel() for gi in g]
    flat = reduce(torch.cat([torch.tensor([f], dtype=X.dtype, device=X.device),
                             *[gi.reshape(-1) for gi in g]]))
    parts = torch.split(flat[1:], sizes)
    W1, b1, W2 = params[:3]
    pen = float((W1 * W1).sum() + (b1 * b1).sum() + (W2 * W2).sum())
    grads = [pt.reshape(gi.shape) for pt, gi in zip(parts, g)]
    for k in range(3):
        grads[k] = grads[k] + reg * params[k]
    return float(flat[0]) + 0.5 * reg * pen, grads


def lbfgs_network(params: list[Tensor], X: Tensor, Y: Tensor, loss: Loss, reg: float, *,
                  intercept: bool, offset: bool, deadline: float, max_iter: int = 5000,
                  ftol: float = LBFGS_FTOL, gtol: float = 1e-9, window: int = 30,
                  wtol: float = 1e-5, tau: Tensor | None = None, reduce=None
                  ) -> tuple[list[Tensor], float, int]:
    """Full-batch L-BFGS (scipy's L-BFGS-B, unbounded) on the network objective (smoothed by
    ``tau`` when given); stops by scipy's relative-decrease ``ftol`` / gradient ``gtol``
    tests, ``max_iter``, the ``deadline`` (time.perf_counter()) or when ``window``
    iterations gained < ``wtol`` (relative). Frozen: b1 without ``intercept``, b2 without
    ``offset``; ``reduce``: see :func:`objective`. Returns (params, objective of the program
    minimised, iterations)."""
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
        f, g = objective(unpack(z), X, Y, loss, reg, tau, reduce)
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
    with torch.no_grad(), _one_blas_thread():
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
    shapes, sizes = [p.shape for p in params], [p.numel() for p in params]
    z = torch.cat([p.reshape(-1) for p in params])
    mask = torch.cat([torch.full((n,), float(fr), dtype=z.dtype, device=z.device)
                      for n, fr in zip(sizes, [True, intercept, True, offset])])
    frozen = bool((mask == 0).any())
    P = [t.view(shp) for t, shp in zip(torch.split(z, sizes), shapes)]  # views of z
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    step = lr  # absolute: the fit runs in standardised units
    b1, b2, eps = 0.9, 0.999, 1e-12
    best_f, best, trace, k = math.inf, z.clone(), [], 0
    for k in range(1, max_steps + 1):
        f, g = value_and_grad(P, X, Y, loss, reg)
        if f < best_f:
            best_f = f
            best.copy_(z)
        trace.append(best_f)
        if len(trace) > window and trace[-window - 1] - best_f <= rtol * abs(best_f):
            if decays == 0:
                break
            decays, step, trace = decays - 1, step / 3.0, []
        if time.perf_counter() >= deadline:
            break
        g = torch.cat([gi.reshape(-1) for gi in g])
        if frozen:
            g.mul_(mask)
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (v / (1 - b2 ** k)).sqrt_().add_(eps)
        z.addcdiv_(m, denom, value=-step / (1 - b1 ** k))
    best = [t.view(shp).clone() for t, shp in zip(torch.split(best, sizes), shapes)]
    return best, best_f, k


def anneal_polish(params: list[Tensor], X: Tensor, Y: Tensor, loss: Loss, reg: float, *,
                  intercept: bool, offset: bool, deadline: float,
                  taus: tuple[float, ...] = (1e-3, 1e-4), wtol: float = 1e-5,
                  relu_stage: bool = True, reduce=None) -> tuple[list[Tensor], float, int]:
    """L-BFGS on the softplus-smoothed objective for each τ in ``taus`` (relative to each
    neuron's scale, :func:`neuron_scales`), then (``relu_stage``) on the ReLU objective
    itself, each from the last; returns the iterate with the best ReLU objective:
    (params, objective, iterations).

    The optimum puts samples on neurons' hyperplanes (kinks) where L-BFGS on the ReLU crawls;
    on the smoothed objective it converges, and the smoothed optima approach the kinked one."""
    best, best_f = params, objective(params, X, Y, loss, reg, reduce=reduce)[0]
    its = 0
    for t in (*taus, None) if relu_stage else taus:
        if time.perf_counter() >= deadline:
            break
        tau = None if t is None else t * neuron_scales(params)
        params, _, k = lbfgs_network(params, X, Y, loss, reg, intercept=intercept, offset=offset,
                                     deadline=deadline, wtol=wtol, tau=tau, reduce=reduce)
        its += k
        f = objective(params, X, Y, loss, reg, reduce=reduce)[0]
        if f < best_f:
            best, best_f = params, f
    return best, best_f, its
