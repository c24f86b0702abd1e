"""The two-layer fitting pipeline behind ``ConvexReLURegressor`` / ``ConvexReLUClassifier``.

data → standardise (exactly undone in the returned network) → reg → patterns → program →
solver → certificate → network, in the user's units.

* **Standardisation.** Features are centred (when there is a first-layer bias) and scaled to unit
  variance; squared-loss targets are divided by one scalar s_y. The objective is solved in those
  units and mapped back exactly: predictions, gates and certificates are the same for X, 1e6·X
  and 1e-6·X. The weight decay is that of the standardised inputs (the network stores the frame,
  :class:`convexnn.networks.TwoLayerNetwork`), and every objective value is in the user's units
  (s_y² times the standardised one, with reg = s_y · reg_standardised).
* **reg.** ``None`` → ``REG_FRACTION[loss]`` · reg_max, reg_max the smallest weight decay whose
  optimum is the zero network (offset only), estimated by :func:`descent.reg_max`. The
  fractions were chosen on breast_cancer, wine, digits and diabetes (benchmarks/RESULTS.md):
  classification 0.01, regression 0.1.
* **Solvers.** ``"descent"`` (ReLU default, :mod:`convexnn.pipelines.descent`): dual-guided
  L-BFGS on the network, certified by the convex program over the network's patterns.
  ``"fista"`` (gated default), ``"admm"``, ``"al"``, ``"active_set"``, ``"cvxpy"``: the convex
  program over sampled (or given) gates, :func:`convexnn.formulations.two_layer.solve`, grown by
  pattern search (``search_rounds``).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np
import torch

from ..certificates import Certificate
from ..formulations.two_layer import TwoLayerProgram, solve_with_search
from ..losses import OffsetLoss, get_loss
from ..networks import TwoLayerNetwork
from ..patterns import PatternSet, sample_gates
from ..results import FitResult
from ..solvers.base import History
from . import descent
from .local import threads_for

__all__ = ["fit_two_layer", "REG_FRACTION", "DEFAULT_MAX_TIME", "default_width", "standardise",
           "network_to_user", "certificate_to_user"]

#: reg = fraction · reg_max when reg is None (measured, see the module docstring)
REG_FRACTION = {"squared": 0.1, "logistic": 0.01, "cross_entropy": 0.01}
#: the default time budget of a fit (seconds), every stage included
DEFAULT_MAX_TIME = 60.0


def standardise(X: np.ndarray, Y: np.ndarray, loss: str, center: bool):
    """(X − μ)/σ (μ = 0 without ``center``), squared-loss targets / s_y; returns
    (Xs, Ys, μ, σ, s_y)."""
    mu = X.mean(0) if center else np.zeros(X.shape[1])
    sd = X.std(0) if center else np.sqrt((X ** 2).mean(0))
    sd = np.where(sd > 0, sd, 1.0)
    sy = 1.0
    if loss == "squared":
        R = Y - Y.mean(0) if center else Y
        sy = float(np.sqrt((R ** 2).mean()))
        sy = sy if sy > 0 and math.isfinite(sy) else 1.0
    return (X - mu) / sd, Y / sy, mu, sd, sy


def network_to_user(net: TwoLayerNetwork, mu, sd, sy: float) -> TwoLayerNetwork:
    """Map a network on standardised (X, Y/sy) back to raw units (same predictions × sy)."""
    dt, dev = net.first_layer_weights.dtype, net.first_layer_weights.device
    mu_t, sd_t = (torch.as_tensor(a, dtype=dt, device=dev) for a in (mu, sd))
    r = math.sqrt(sy)
    W = net.first_layer_weights / sd_t
    b = net.first_layer_bias - W @ mu_t
    gw = gb = None
    if net.activation == "gated":
        gw = net.gate_weights / sd_t
        gb = net.gate_bias - gw @ mu_t
    ob = None if net.output_bias is None else net.output_bias * sy
    return TwoLayerNetwork(W * r, b * r, net.second_layer_weights * r, net.activation, gw, gb,
                           ob, mu_t, sd_t)


def certificate_to_user(cert: Certificate, sy: float) -> Certificate:
    """The certificate of a fit on Y/s_y in the user's units (objectives × s_y²)."""
    f = sy * sy

    def sc(v):
        return None if v is None else v * f

    return replace(cert, primal=cert.primal * f, dual=cert.dual * f, gap=cert.gap * f,
                   search_bound=sc(cert.search_bound), global_bound=sc(cert.global_bound))


def default_width(n: int, d: int) -> int:
    """Starting neurons of the default descent: 100, or three per input dimension or one per
    ten samples, at most 150. Measured (benchmarks/results/defaults.md): planted n = 2000 ended
    above Adam's best objective from 100 neurons (d = 50: +0.08 %; d = 20: +2.5e-5) and below
    it from 150 (-0.05 %; -1.3e-4)."""
    return min(150, max(100, 3 * d, n // 10))


def fit_two_layer(X: np.ndarray, Y: np.ndarray, *, reg: float | None, loss: str,
                  activation: str = "relu", solver: str = "auto",
                  n_patterns: int | None = None, gates: np.ndarray | None = None,
                  gate_kind: str = "data", fit_intercept: bool = True, tol: float = 1e-6,
                  max_iter: int = 10000, max_time: float | None = None,
                  search_rounds: int | None = None, dtype=torch.float64, device="cpu",
                  random_state=None, verbose: int = 0, cvxpy_solver: str | None = None
                  ) -> tuple[FitResult, dict]:
    """Fit in standardised units and return the network and certificate in the user's.

    Returns ``(FitResult, extras)`` with extras ``reg`` (the weight decay used, user units),
    ``solver``, ``patterns`` (gates in raw units, or None), ``stop_reason``, ``n_iter``,
    ``search`` (per-round log).
    """
    t0 = time.perf_counter()
    budget = DEFAULT_MAX_TIME if max_time is None else float(max_time)
    Xs, Ys, mu, sd, sy = standardise(X, Y, loss, center=fit_intercept)
    Xt = torch.as_tensor(Xs, dtype=dtype, device=device)
    Yt = torch.as_tensor(Ys, dtype=dtype, device=device)
    base = get_loss(loss)
    lo = OffsetLoss(base) if fit_intercept else base
    if solver == "auto":
        solver = "descent" if activation == "relu" and gates is None else (
            "fista" if activation == "gated" else "admm")
    if reg is None:
        rm = descent.reg_max(Xt, Yt, base, intercept=fit_intercept, offset=fit_intercept,
                             random_state=random_state)
        reg_s = REG_FRACTION[loss] * rm if rm > 0 else 1.0
    else:
        reg_s = float(reg) / sy
    left = max(budget - (time.perf_counter() - t0), 1e-3)
    if solver == "descent":
        width = n_patterns or default_width(*Xt.shape)
        with threads_for(Xt.numel() * width):
            # tol scales every stop of the descent (the default 1e-6: rounds and their
            # L-BFGS to 1e-4, the polish's L-BFGS windows to 1e-5)
            k = tol / 1e-6
            net, cert, hist, info = descent.fit_relu_descent(
                Xt, Yt, reg_s, base, n_neurons=width, intercept=fit_intercept,
                offset=fit_intercept, max_time=left, tol=tol, round_tol=1e-4 * k,
                lbfgs_wtol=1e-4 * k, polish_wtol=1e-5 * k,
                max_rounds=20 if search_rounds is None else search_rounds,
                random_state=random_state, verbose=verbose)
        patterns, search = None, info["rounds"]
    else:
        net, cert, hist, info, patterns = _fit_program(
            Xt, Yt, reg_s, lo, activation=activation, solver=solver, n_patterns=n_patterns,
            gates=gates, gate_kind=gate_kind, fit_intercept=fit_intercept, mu=mu, sd=sd,
            tol=tol, max_iter=max_iter, max_time=left, search_rounds=search_rounds,
            random_state=random_state, verbose=verbose, cvxpy_solver=cvxpy_solver)
        search = info["search"]
    if fit_intercept and patterns is not None:  # gates to raw units (same hyperplanes)
        g, g0 = patterns[:-1] / sd[:, None], patterns[-1]
        patterns = np.vstack([g, g0 - mu @ g])
    elif patterns is not None:
        patterns = patterns / sd[:, None]
    hist_u = History()
    for i in range(len(hist)):
        hist_u.append(hist.iteration[i], hist.objective[i] * sy * sy, hist.gap[i] * sy * sy,
                      hist.relative_gap[i], hist.seconds[i])
    extras = {"reg": reg_s * sy, "solver": solver, "patterns": patterns,
              "stop_reason": info["stop_reason"], "n_iter": info["n_iter"], "search": search}
    res = FitResult(network_to_user(net, mu, sd, sy), certificate_to_user(cert, sy), hist_u,
                    {"stop_reason": info["stop_reason"], "n_iter": info["n_iter"]})
    if verbose:
        print(f"[fit {time.perf_counter() - t0:6.2f}s] done ({info['stop_reason']}); "
              f"certificate:\n{res.certificate}")
    return res, extras


def _fit_program(Xt, Yt, reg_s, lo, *, activation, solver, n_patterns, gates, gate_kind,
                 fit_intercept, mu, sd, tol, max_iter, max_time, search_rounds, random_state,
                 verbose, cvxpy_solver):
    """The convex program over sampled (or given) gates, grown by pattern search."""
    Xa = torch.cat([Xt, torch.ones(Xt.shape[0], 1, dtype=Xt.dtype, device=Xt.device)], 1) \
        if fit_intercept else Xt
    if gates is not None:  # raw units → standardised (the same hyperplanes)
        G = np.asarray(gates, dtype=np.float64)
        if fit_intercept:
            G = np.vstack([G[:-1] * sd[:, None], G[-1] + mu @ G[:-1]])
        else:
            G = G * sd[:, None]
        patterns = PatternSet(torch.as_tensor(G, dtype=Xt.dtype, device=Xt.device))
        rounds = 0 if search_rounds is None else search_rounds
    else:
        patterns = sample_gates(Xa, n_patterns or 200, random_state, kind=gate_kind,
                                intercept_column=fit_intercept)
        rounds = 5 if search_rounds is None else search_rounds
    if patterns.n_patterns == 0:
        raise ValueError("no usable activation pattern (every gate gives the all-zero mask)")
    prog = TwoLayerProgram(Xa, Yt, patterns, reg_s, lo, activation, intercept=fit_intercept)
    prog, x, cert, info = solve_with_search(
        prog, rounds=rounds, random_state=random_state, verbose=verbose, solver=solver,
        tol=tol, max_iter=max_iter, max_time=max_time, cvxpy_solver=cvxpy_solver)
    net = prog.to_network(x)
    if fit_intercept:
        with torch.no_grad():
            # row chunks: no n x width array (issue 20, O(nd + dP) memory)
            F = torch.cat([net.forward(Xt[s:s + prog.chunk])
                           for s in range(0, Xt.shape[0], prog.chunk)])
            net.output_bias = lo.offset(F, Yt)
    hist = History()
    done_it, done_s = 0, 0.0
    for r in info["results"]:  # one trace over all rounds
        for i in range(len(r.history)):
            hist.append(done_it + r.history.iteration[i], r.history.objective[i],
                        r.history.gap[i], r.history.relative_gap[i],
                        done_s + r.history.seconds[i])
        done_it += r.n_iter
        done_s += r.seconds
    if activation == "relu" and cert.primal < cert.dual * (1 - 1e-9) - 1e-12:
        # the read-back network left the program's patterns: certify it over its own
        own = descent.certify_network(net, Xt, Yt, reg_s, lo.base if fit_intercept else lo,
                                      intercept=fit_intercept, offset=fit_intercept,
                                      rng=random_state)
        cert = replace(own, left_program=True)
    info2 = {"stop_reason": info["result"].stop_reason, "n_iter": done_it,
             "search": {"stop": info["stop"], "rounds": info["rounds"]}}
    return net, cert, hist, info2, prog.G.detach().cpu().double().numpy()
