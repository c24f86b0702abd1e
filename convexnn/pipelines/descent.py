r"""Two-layer ReLU networks by dual-guided descent, certified by the convex program's dual.

The convex program of a two-layer ReLU network (Pilanci & Ergen 2020; vector outputs: Sahiner
et al. 2021) is an infinite group lasso over neurons u with penalty β||u||·||v||; its dual
constraint is  max_{||u|| ≤ 1} ||Λᵀ (X u)_+|| ≤ β  at the optimal dual Λ. This module solves the
program over the activation patterns it discovers by a *fully corrective conditional-gradient*
method on the factored (network) form:

1. L-BFGS on the network (weight decay, unregularised output offset) from a data-aware start,
   with each ReLU smoothed into a softplus of width ``smooth`` (relative to the neuron's scale):
   the optimum puts samples on neurons' hyperplanes (kinks), where L-BFGS on the ReLU crawls;
2. at Λ = ∇L(f(X)) search for the neurons that violate the dual constraint most
   (ascent of ||Λᵀ (X u)_+|| on the sphere from random data hyperplanes and the current
   neurons); each violated one is added along its descent direction with an exact line
   search (the objective is convex along that ray, so each addition strictly lowers it);
3. L-BFGS again on the whole network; repeat until no violation is found or time runs out;
4. the annealed polish (:func:`anneal_polish`): L-BFGS as the smoothing shrinks to 1e-3,
   1e-4 and then 0 (the ReLU itself), then again steps 2-3 while they still lower the
   objective. Steps 1-4 run in float32 (``work_dtype``), a last L-BFGS in the data's
   precision: half the time, the same objective (benchmarks/results/defaults.md).

Every step lowers the objective, so the result is never worse than the first local optimum.
The certificate (:func:`certify_network`) is the convex program's:

(i)  primal = the network's objective; dual = a proven lower bound on the optimum of the convex
     program over the network's own activation patterns (both output signs; for vector outputs
     through the gated relaxation over those patterns) — so ``gap`` bounds how far the network
     is from the best network whose neurons use those patterns;
(ii) ``search_bound``: the lower bound on the *global* optimum that the dual point would give
     if the neuron search were exact (an estimate, not a proof; ``max_violation`` = the largest
     ||Λᵀ(Xu)_+||/β found);
(iii) a proven global bound only where decidable (not here: ``global_bound`` is None).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import Tensor

from ..losses import Loss, OffsetLoss
from ..networks import TwoLayerNetwork
from ..patterns.search import data_starts, neuron_starts, pattern_starts, search_neurons
from ..solvers.base import History
from .local import adam_polish, anneal_polish, lbfgs_network, neuron_scales, objective
from .network_certificate import certify_network

__all__ = ["fit_relu_descent", "certify_network", "search_neurons", "reg_max"]


def _line_search(Z: Tensor, F: Tensor, Y: Tensor, loss: Loss, reg: float, reduce=None
                 ) -> float:
    """argmin_{t ≥ 0} L_b(Z + t F) + reg·t (convex in t): bisection on the derivative
    (``reduce``: its sum over the processes' blocks of samples)."""
    def deriv(t):
        v = (loss.grad(Z + t * F, Y) * F).sum().reshape(1)
        return float(v[0] if reduce is None else reduce(v)[0]) + reg

    if deriv(0.0) >= 0:
        return 0.0
    # bracket [lo, hi] = [hi/4, hi] with deriv(lo) < 0 <= deriv(hi), growing or shrinking hi
    hi = 1.0
    if deriv(hi) < 0:
        while deriv(hi) < 0 and hi < 1e12:
            hi *= 4.0
    else:
        while deriv(hi / 4.0) >= 0 and hi > 1e-12:
            hi /= 4.0
    lo = hi / 4.0
    for _ in range(10):  # t to 0.3 % relative (hi ≤ 4t): L-BFGS refines it anyway
        mid = 0.5 * (lo + hi)
        if deriv(mid) < 0:
            lo = mid
        else:
            hi = mid
    return lo


def _init_params(X: Tensor, c: int, m: int, rng: np.random.Generator, scale: float):
    dt, dev = X.dtype, X.device
    G = data_starts(X, m, rng)
    G = G / torch.linalg.vector_norm(G, dim=0, keepdim=True).clamp_min(1e-300)
    W1, b1 = (G[:-1].T * scale).contiguous(), (G[-1] * scale).contiguous()
    W2 = torch.as_tensor(rng.standard_normal((c, m)), dtype=dt, device=dev) * scale / math.sqrt(m)
    return [W1, b1, W2, torch.zeros(c, dtype=dt, device=dev)]


def _start_params(X: Tensor, c: int, n_neurons: int, rng: np.random.Generator, scale: float,
                  init: list[Tensor] | None) -> list[Tensor]:
    """``n_neurons`` data-aware neurons, or ``init`` (shapes checked) topped up with them."""
    d = X.shape[1]
    if init is not None:
        params = [torch.as_tensor(p, dtype=X.dtype, device=X.device).clone() for p in init]
        if [tuple(p.shape) for p in params] != [(params[0].shape[0], d), (params[0].shape[0],),
                                                 (c, params[0].shape[0]), (c,)]:
            raise ValueError(f"init: shapes {[tuple(p.shape) for p in params]} do not fit "
                             f"{d} features and {c} outputs")
        extra = n_neurons - params[0].shape[0]
        if extra > 0:
            new = _init_params(X, c, extra, rng, scale=scale)
            params = [torch.cat([params[0], new[0]]), torch.cat([params[1], new[1]]),
                      torch.cat([params[2], new[2]], 1), params[3]]
    else:
        params = _init_params(X, c, n_neurons, rng, scale=scale)
    return params


#: :func:`reg_max`'s search: n x chunk arrays of at most this many entries, but at least
#: ``_REG_MAX_MIN_CHUNK`` starts per chunk
_REG_MAX_ENTRIES = 4_000_000
_REG_MAX_MIN_CHUNK = 64


def _start_chunk(n: int, k: int) -> int:
    """Starts per search in :func:`reg_max`. Every ascent step of a search reads all of X, so
    at large n the chunk must not shrink with n (issue 20: at n = 10^6, d = 100 the entry cap
    alone gave 64 searches of 4 starts, still in reg_max after 19 CPU minutes); n x 64 is
    below the descent's own searches (n x (64 + 3 · neurons))."""
    return max(1, min(k, max(_REG_MAX_MIN_CHUNK, _REG_MAX_ENTRIES // max(n, 1))))


def reg_max(X: Tensor, Y: Tensor, loss: Loss, *, intercept: bool = True, offset: bool = True,
            n_starts: int = 256, random_state=None) -> float:
    """Estimate of the smallest reg whose optimum is the zero network (offset only):
    max_u ||Λ₀ᵀ (X̃u)_+|| / ||u|| at Λ₀ = ∇L_b(0), by :func:`search_neurons` (a lower estimate
    of the exact value, which is NP-hard in general)."""
    rng = np.random.default_rng(random_state)
    lb = OffsetLoss(loss) if offset else loss
    n = X.shape[0]
    with torch.no_grad():
        Lam = lb.grad(torch.zeros_like(Y), Y)
        Xa = torch.cat([X, torch.ones(n, 1, dtype=X.dtype, device=X.device)], 1)
        starts = data_starts(X, n_starts, rng)
        if not intercept:
            Xa, starts = Xa[:, :-1], starts[:-1]
        k = _start_chunk(n, starts.shape[1])
        vals = torch.cat([search_neurons(Xa, Lam, S)[1] for S in torch.split(starts, k, 1)])
    return float(vals.max())


def fit_relu_descent(X: Tensor, Y: Tensor, reg: float, loss: Loss, *, n_neurons: int = 50,
                     intercept: bool = True, offset: bool = True,
                     max_time: float = 30.0, tol: float = 1e-6, max_rounds: int = 20,
                     add_per_round: int = 10, search_starts: int = 64, random_state=None,
                     verbose: int = 0, violation_tol: float = 1e-3, round_tol: float = 1e-4,
                     polish_steps: int = 3000, lbfgs_wtol: float = 1e-4,
                     init: list[Tensor] | None = None, smooth: float = 5e-3,
                     polish: str = "anneal", polish_taus: tuple[float, ...] = (1e-3, 1e-4),
                     polish_wtol: float = 1e-5, work_dtype: torch.dtype | None = torch.float32,
                     post_rounds: int = 2, shard=None):
    """Fit a ReLU network by dual-guided descent (module docstring); returns
    ``(network, certificate, history, info)``. ``loss`` is the plain loss (the offset is a
    parameter here); X holds the features (no ones column). Rounds stop when the search finds
    no neuron violating the dual constraint by more than ``violation_tol`` (relative to reg),
    when a round lowers the objective by less than ``max(tol, round_tol)`` (relative; the
    default 1e-4 keeps default fits within seconds on the bundled data), or at ``max_time``;
    then the polish: ``"anneal"`` (step 4 of the module docstring: smoothing ``polish_taus``,
    windowed stop ``polish_wtol``, then at most ``post_rounds`` search rounds) or ``"adam"``
    (at most ``polish_steps`` full-batch Adam steps, :func:`adam_polish`) or ``"none"``.
    ``lbfgs_wtol``: L-BFGS's windowed stop in the rounds; ``smooth``: their softplus width
    (0: the ReLU).
    ``work_dtype``: the precision of steps 1-4 (None: the data's). ``shard``: for samples
    spread over processes (:mod:`convexnn.distributed`), an object with ``sum(t)`` (the sum
    of a tensor over the processes) and ``broadcast(t)`` (rank 0's tensor); no time limit
    then (every stop is decided on reduced values, so all processes stop together).
    ``init``: a warm start [W1, b1, W2, b2] (e.g. the fit at a nearby reg), topped up with
    data-aware neurons to ``n_neurons``.
    Defaults from benchmarks/results/defaults.md: against the Adam polish (3000 steps) the
    smoothed rounds and annealed polish reach the same or lower objectives in about half the
    time, and float32 halves it again."""
    _check_polish(polish, shard)
    t0 = time.perf_counter()
    # spread over processes, a clock could stop the ranks at different steps: no deadline
    deadline = t0 + max_time if shard is None else math.inf
    red = None if shard is None else shard.sum
    rng = np.random.default_rng(random_state)
    X_out, Y_out = X, Y  # the final ReLU stage and the certificate: in the data's precision
    X, Y, Xa = _work_data(X, Y, work_dtype)
    lb = OffsetLoss(loss, reduce=red) if offset else loss
    params = _first_params(X, Y.shape[1], n_neurons, rng, reg, init, intercept, shard)
    hist = History()
    desc = dict(intercept=intercept, offset=offset, wtol=lbfgs_wtol, smooth=smooth, reduce=red)
    # the first descent gets at most half the budget: the dual search needs the rest
    params, f, its = _descend(params, X, Y, loss, reg,
                              deadline=min(deadline, t0 + 0.5 * max_time), **desc)
    grow = dict(lb=lb, reg=reg, intercept=intercept, rng=rng, search_starts=search_starts,
                add_per_round=add_per_round, violation_tol=violation_tol, shard=shard)
    params, f, total_its, stop, rounds = _rounds(
        params, f, X, Xa, Y, loss, reg, grow, dict(desc, deadline=deadline), hist,
        total_its=its, max_rounds=max_rounds, tol=max(tol, round_tol), verbose=verbose, t0=t0)
    pol = dict(intercept=intercept, offset=offset, deadline=deadline, reduce=red)
    params, f, its = _polish(params, f, X, Xa, Y, loss, reg, polish, pol, grow,
                             polish_taus=tuple(polish_taus), polish_wtol=polish_wtol,
                             relu_stage=X is X_out, post_rounds=post_rounds if max_rounds else 0,
                             polish_steps=polish_steps, tol=tol, verbose=verbose, t0=t0)
    total_its += its
    params, f, its = _data_precision(params, f, X, X_out, Y_out, loss, reg, polish,
                                     polish_wtol, pol)
    total_its += its
    net, f = _final_network(params, f, X_out, Y_out, lb, offset, red)
    cert = certify_network(net, X_out, Y_out, reg, loss, intercept=intercept, offset=offset,
                           rng=rng, search_starts=search_starts, shard=shard)
    hist.append(total_its, cert.primal, cert.gap, cert.relative_gap, time.perf_counter() - t0)
    return net, cert, hist, {"stop_reason": stop, "n_iter": total_its, "rounds": rounds}


def _work_data(X: Tensor, Y: Tensor, work_dtype) -> tuple[Tensor, Tensor, Tensor]:
    """X and Y in ``work_dtype`` (None: as they are) and X with a ones column."""
    if work_dtype is not None and X.dtype != work_dtype:
        X, Y = X.to(work_dtype), Y.to(work_dtype)
    Xa = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype, device=X.device)], 1)
    return X, Y, Xa


def _check_polish(polish: str, shard) -> None:
    if polish not in ("anneal", "adam", "none"):
        raise ValueError(f"polish must be 'anneal', 'adam' or 'none', got {polish!r}")
    if shard is not None and polish == "adam":
        raise ValueError("polish='adam' is not available for samples spread over processes")


def _first_params(X: Tensor, c: int, n_neurons: int, rng: np.random.Generator, reg: float,
                  init: list[Tensor] | None, intercept: bool, shard) -> list[Tensor]:
    """The start (:func:`_start_params` at scale min(1, √reg)); spread over processes, rank
    0's start (drawn from its samples) everywhere."""
    scale = math.sqrt(max(float(reg), 1e-12))
    params = _start_params(X, c, n_neurons, rng, min(1.0, scale), init)
    if not intercept:
        params[1] = torch.zeros_like(params[1])
    if shard is not None:
        params = [shard.broadcast(p.contiguous()) for p in params]
    return params


def _rounds(params: list[Tensor], f: float, X: Tensor, Xa: Tensor, Y: Tensor, loss: Loss,
            reg: float, grow: dict, desc: dict, hist: History, *, total_its: int,
            max_rounds: int, tol: float, verbose: int, t0: float
            ) -> tuple[list[Tensor], float, int, str, list[dict]]:
    """Steps 2-3 of the module docstring, until a round lowers the objective by at most ``tol``
    (relative); ``grow``, ``desc``: :func:`_grow`'s, :func:`_descend`'s keywords. Returns
    (params, objective, iterations so far, stop reason, the rounds' records)."""
    stop, rounds = "max rounds", []
    for r in range(max_rounds):
        hist.append(total_its, f, math.nan, math.nan, time.perf_counter() - t0)
        if time.perf_counter() >= desc["deadline"]:
            stop = "max_time"
            break
        grown, vmax, why = _grow(params, X, Xa, Y, **grow)
        rounds.append({"objective": f, "max_violation": vmax, "neurons": int(params[0].shape[0])})
        if verbose:
            print(f"[descent {time.perf_counter() - t0:6.2f}s] round {r}: objective {f:.8g}, "
                  f"{params[0].shape[0]} neurons, max violation {vmax:.4g}·β")
        if grown is None:
            stop = why
            break
        params, f_new, its = _descend(grown, X, Y, loss, reg, **desc)
        total_its += its
        improved = f - f_new
        f = f_new
        if improved <= tol * abs(f):
            stop = "objective stopped improving"
            break
    return params, f, total_its, stop, rounds


def _data_precision(params: list[Tensor], f: float, X_work: Tensor, X: Tensor, Y: Tensor,
                    loss: Loss, reg: float, polish: str, wtol: float, pol: dict
                    ) -> tuple[list[Tensor], float, int]:
    """If steps 1-4 ran on a copy ``X_work`` of X in another precision: the params in X's,
    then L-BFGS on the ReLU network unless ``polish="none"``; returns (params, f, its)."""
    if X_work is X:
        return params, f, 0
    params = [p.to(X.dtype) for p in params]
    if polish == "none":
        return params, f, 0
    return lbfgs_network(params, X, Y, loss, reg, wtol=wtol, **pol)


def _polish(params: list[Tensor], f: float, X: Tensor, Xa: Tensor, Y: Tensor, loss: Loss,
            reg: float, polish: str, pol: dict, grow: dict, *, polish_taus: tuple[float, ...],
            polish_wtol: float, relu_stage: bool, post_rounds: int, polish_steps: int,
            tol: float, verbose: int, t0: float) -> tuple[list[Tensor], float, int]:
    """Step 4 of the module docstring (or the Adam polish, or none); returns (params, ReLU
    objective, iterations). ``pol``: the L-BFGS keywords; ``grow``: :func:`_grow`'s."""
    total = 0
    if polish == "anneal":
        # annealed polish; then, while the search still finds violated neurons, add them and
        # polish again (at most ``post_rounds`` times; kept only when the objective drops)
        params, f, its = anneal_polish(params, X, Y, loss, reg, taus=polish_taus,
                                       wtol=polish_wtol, relu_stage=relu_stage, **pol)
        total += its
        for _ in range(post_rounds):
            if time.perf_counter() >= pol["deadline"]:
                break
            grown, vmax, why = _grow(params, X, Xa, Y, **grow)
            if grown is None:
                break
            cand, f_c, its = anneal_polish(grown, X, Y, loss, reg, taus=tuple(polish_taus[-1:]),
                                           wtol=polish_wtol, relu_stage=relu_stage, **pol)
            total += its
            if verbose:
                print(f"[descent {time.perf_counter() - t0:6.2f}s] post round: objective "
                      f"{f:.8g} -> {f_c:.8g}, max violation {vmax:.4g}·β")
            if f_c >= f * (1 - max(tol, 1e-7)):
                break
            params, f = cand, f_c
    elif polish == "adam" and polish_steps:
        params, f, its = adam_polish(params, X, Y, loss, reg, intercept=pol["intercept"],
                                     offset=pol["offset"], deadline=pol["deadline"],
                                     max_steps=polish_steps)
        total += its
    return params, f, total


def _descend(params: list[Tensor], X: Tensor, Y: Tensor, loss: Loss, reg: float,
             intercept: bool, offset: bool, deadline: float, wtol: float, smooth: float,
             reduce=None) -> tuple[list[Tensor], float, int]:
    """L-BFGS on the network, smoothed by ``smooth`` (relative to each neuron's scale) when
    positive; returns (params, the ReLU objective, iterations)."""
    tau = smooth * neuron_scales(params) if smooth > 0 else None
    params, f, its = lbfgs_network(params, X, Y, loss, reg, intercept=intercept, offset=offset,
                                   deadline=deadline, wtol=wtol, tau=tau, reduce=reduce)
    if tau is not None:
        with torch.no_grad():
            f = objective(params, X, Y, loss, reg, reduce=reduce)[0]
    return params, f, its


def _grow(params: list[Tensor], X: Tensor, Xa: Tensor, Y: Tensor, *, lb: Loss, reg: float,
          intercept: bool, rng: np.random.Generator, search_starts: int, add_per_round: int,
          violation_tol: float, shard=None) -> tuple[list[Tensor] | None, float, str]:
    """One dual-guided step: search for the neurons violating the dual constraint at the
    network ``params`` and add the most violated ones along their descent directions.
    Returns (the grown params, or None with the reason when nothing was added; max
    violation / reg; reason). ``shard``: see :func:`fit_relu_descent`."""
    red = None if shard is None else shard.sum
    W1, b1, W2, b2 = params
    d = X.shape[1]
    with torch.no_grad():
        Z = torch.relu(X @ W1.T + b1) @ W2.T + b2
        Lam = lb.grad(Z, Y)
        Xs = Xa if intercept else Xa[:, :-1]
        starts, own = neuron_starts(X, W1, b1, search_starts, rng, intercept)
        if shard is not None:  # drawn from rank 0's samples
            starts = shard.broadcast(starts.contiguous())
        starts = torch.cat([starts, pattern_starts(Xs, own, Lam, red)], 1)
        U, vals = search_neurons(Xs, Lam, starts, reduce=red)
    vmax = float(vals.max()) / reg if vals.numel() else 0.0
    if vmax <= 1 + max(violation_tol, 1e-9):
        return None, vmax, "no violated neuron found"
    # the line searches hold the network's output offset fixed (the plain loss: cheap, and
    # descent along the ray is descent for the offset-minimised objective too)
    plain = lb.base if isinstance(lb, OffsetLoss) else lb
    new_W1, new_b1, new_W2 = _add_violated(Xs, Z, Lam, U, vals, Y, plain, reg, d, intercept,
                                           add_per_round, violation_tol, red)
    if not new_W1:
        return None, vmax, "no descent along the violated neurons"
    return [torch.cat([W1, torch.stack(new_W1)]), torch.cat([b1, torch.stack(new_b1)]),
            torch.cat([W2, torch.stack(new_W2, 1)], 1), b2], vmax, "grown"


def _add_violated(Xs: Tensor, Z: Tensor, Lam: Tensor, U: Tensor, vals: Tensor, Y: Tensor,
                  lb: Loss, reg: float, d: int, intercept: bool, add_per_round: int,
                  violation_tol: float, reduce=None
                  ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """The most violated neurons (at most ``add_per_round``), each added along its descent
    direction with an exact line search on the outputs Z; returns their (W1, b1, W2) rows."""
    order = torch.argsort(vals, descending=True)
    order = order[vals[order] > reg * (1 + max(violation_tol, 1e-9))][:add_per_round]
    new_W1, new_b1, new_W2 = [], [], []
    with torch.no_grad():
        for k in order.tolist():
            u = U[:, k]
            F = torch.relu(Xs @ u)
            g = Lam.T @ F if reduce is None else reduce(Lam.T @ F)
            v = -g / torch.linalg.vector_norm(g).clamp_min(1e-300)
            Fv = F[:, None] * v[None, :]
            t = _line_search(Z, Fv, Y, lb, reg, reduce)
            if t <= 0:
                continue
            Z = Z + t * Fv
            Lam = lb.grad(Z, Y)
            st = math.sqrt(t)
            new_W1.append(st * u[:d])
            new_b1.append(st * u[d] if intercept else torch.zeros((), dtype=Xs.dtype))
            new_W2.append(st * v)
    return new_W1, new_b1, new_W2


def _final_network(params: list[Tensor], f: float, X: Tensor, Y: Tensor, lb: Loss,
                   offset: bool, reduce=None) -> tuple[TwoLayerNetwork, float]:
    """The zero network if it is at least as good, dead neurons dropped, the exact optimal
    output offset; returns (network, objective before the offset refit)."""
    W1, b1, W2, b2 = params
    with torch.no_grad():
        v0 = lb.value(torch.zeros_like(Y), Y).reshape(1)
        f0 = float(v0[0] if reduce is None else reduce(v0)[0])
    if f0 <= f:  # the zero network (offset only) is at least as good: return it
        keep_none = torch.zeros(W1.shape[0], dtype=torch.bool, device=X.device)
        b2 = lb.offset(torch.zeros_like(Y), Y) if offset else b2
        W1, b1, W2 = W1[keep_none], b1[keep_none], W2[:, keep_none]
        f = f0
    keep = (torch.linalg.vector_norm(W2, dim=0) * torch.linalg.vector_norm(
        torch.cat([W1, b1[:, None]], 1), dim=1)) > 1e-12 * max(1.0, f)
    W1, b1, W2 = W1[keep].contiguous(), b1[keep].contiguous(), W2[:, keep].contiguous()
    if offset:  # the exact optimal offset of the final network (only lowers the objective)
        with torch.no_grad():
            b2 = lb.offset(torch.relu(X @ W1.T + b1) @ W2.T, Y)
    net = TwoLayerNetwork(W1, b1, W2, "relu", output_bias=b2.clone() if offset else None)
    return net, f
