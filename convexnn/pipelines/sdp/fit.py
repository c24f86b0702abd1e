"""fit_sdp: solve the relaxation (any solver), certify, read back a network, report."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ...certificates import SCOPE_GLOBAL, Certificate, relative
from ...formulations.sdp.readback import extract_network
from ...formulations.sdp.relaxation import DualBound, SDPRelaxation
from ...formulations.sdp.rounding import round_tos
from ...results import FitResult
from ...solvers.base import History
from .admm import solve_admm
from .ipm import solve_ipm

__all__ = ["fit_sdp", "init_factor"]

# measured crossover (benchmarks/results/sdp.md): the interior-point method is the more
# accurate and robust choice on small problems, the ADMM is faster from about here on
_AUTO_IPM_MAX_N = 80


def init_factor(prob: SDPRelaxation, rank: int, rng: np.random.Generator) -> Tensor:
    """A feasible starting factor: the lift of a small random network."""
    scale = math.sqrt(float(torch.linalg.vector_norm(prob.Y)) / max(prob.n, 1)) + 1e-3
    U = torch.as_tensor(rng.standard_normal((prob.d, rank)), dtype=prob.X.dtype) * scale
    U = U / max(1.0, float(torch.linalg.matrix_norm(prob.X, 2)) / math.sqrt(prob.n))
    V = torch.as_tensor(rng.standard_normal((prob.c, rank)), dtype=prob.X.dtype) * scale
    return torch.cat([(-(prob.X @ U)).clamp_min(0), U, V], 0)


def fit_sdp(X: Tensor, Y: Tensor, reg: float, loss: str = "squared", *, intercept: bool,
            solver: str = "auto", random_state: int | None = None, tol: float = 1e-4,
            max_iter: int = 20000, max_time: float | None = None, verbose: int = 0,
            rank: int | None = None, cvxpy_solver: str | None = None,
            polish_iter: int = 5000,
            cert_every_max_q: int = 400, refine_iter: int = 200,
            rho: float = 10.0, rounding: str = "polish",
            rounding_options: dict | None = None) -> FitResult:
    """Fit a two-layer ReLU network through the SDP relaxation of its lifted CP program.

    ``X`` (n x d) already contains the ones column when ``intercept``; ``Y`` (n x c). Only the
    squared loss is supported (the relaxation is built for it); for classification pass one-hot
    targets with ``loss="squared"``, as the paper does. ``solver``: ``"cvxpy"`` (Clarabel by
    default, or ``cvxpy_solver``), ``"lowrank"`` (Burer–Monteiro augmented Lagrangian, rank
    ``rank``), ``"ipm"`` (the structured interior-point method :func:`solve_ipm`),
    ``"admm"`` (the first-order method :func:`solve_admm`); ``"auto"`` picks the
    interior-point method up to n = 80 and the ADMM above. ``tol`` is the relative
    primal–dual gap of the SDP at which the low-rank solver and the ADMM stop (the ADMM uses
    max(tol, 1e-4), the interior-point method min(tol, 1e-7)).

    ``rounding``: how the network is read off the solution — ``"polish"`` (ours: eigenvector
    directions, optimal output layer, L-BFGS polishing; :func:`extract_network`) or ``"tos"``
    (the paper's three-operator splitting, :func:`convexnn.formulations.sdp.rounding.round_tos`);
    ``rounding_options`` go to that function.

    The returned certificate is *global*: ``dual`` is a proven lower bound on the optimum of
    the training problem over networks of every width, ``primal`` the extracted network's
    objective. ``info`` holds the bounds, the solver's SDP value estimate and timings.
    """
    _check_options(loss, reg, rounding, solver)
    if Y.ndim == 1:
        Y = Y[:, None]
    t0 = time.perf_counter()
    prob = SDPRelaxation(X, Y, reg, intercept=intercept)
    if solver == "auto":
        solver = "ipm" if prob.n <= _AUTO_IPM_MAX_N else "admm"
    rng = np.random.default_rng(random_state)
    info: dict = {"solver": solver, "n": prob.n, "q": prob.q}
    if solver == "lowrank":
        sol = _solve_lowrank(prob, rng, rank=rank, tol=tol, max_iter=max_iter,
                             max_time=max_time, verbose=verbose, rho=rho,
                             cert_every_max_q=cert_every_max_q, refine_iter=refine_iter)
    else:
        sol = _solve(prob, solver, t0, tol=tol, max_iter=max_iter, max_time=max_time,
                     verbose=verbose, cvxpy_solver=cvxpy_solver)
    bound, W, sdp_value, stop, hist, tighten, solver_info = sol
    info.update(solver_info)
    t1 = time.perf_counter()
    net = _read_network(prob, W, rounding, rounding_options, polish_iter, info)
    ub = net.objective(X[:, :-1] if intercept else X, Y, reg, "squared")
    if tighten is not None:   # the network's objective tightens the trace bound
        b2 = tighten(ub)
        bound = b2 if b2.value > bound.value else bound
    lb = bound.value
    gap = max(ub - lb, 0.0)
    cert = Certificate(primal=ub, dual=lb, gap=gap, relative_gap=relative(gap, ub),
                       scope=SCOPE_GLOBAL,
                       problem="two-layer ReLU (any width): doubly-nonnegative SDP relaxation "
                               "of the lifted completely positive program; primal = extracted "
                               "network",
                       n_patterns=0, dual_scale=1.0 - bound.theta,
                       constraint_violation=float(info.get("violation", 0.0)))
    if len(hist) == 0 or hist.objective[-1] != ub:
        hist.append(hist.iteration[-1] if len(hist) else 0, ub, gap, cert.relative_gap,
                    time.perf_counter() - t0)
    info.update({"lower_bound": lb, "upper_bound": ub, "sdp_value_estimate": sdp_value,
                 "tightness": cert.relative_gap, "stop_reason": stop,
                 "dual_theta": bound.theta, "dual_lam_min": bound.lam_min,
                 "bound_method": bound.method,
                 "extract_seconds": time.perf_counter() - t1,
                 "seconds": time.perf_counter() - t0, "n_neurons": net.n_neurons})
    return FitResult(network=net, certificate=cert, history=hist, info=info)


def _check_options(loss, reg: float, rounding: str, solver: str) -> None:
    name = loss if isinstance(loss, str) else getattr(loss, "name", str(loss))
    if name != "squared":
        raise ValueError(f"method 'sdp' supports only the squared loss (got {name!r}); for "
                         "classification use one-hot targets with loss='squared' as in the "
                         "paper (Prakhya et al. 2024)")
    if reg <= 0:
        raise ValueError(f"reg must be > 0, got {reg}")
    if rounding not in ("polish", "tos"):
        raise ValueError(f"unknown rounding {rounding!r}; expected 'polish' (ours) or 'tos' "
                         "(the paper's three-operator splitting)")
    if solver not in ("auto", "ipm", "admm", "cvxpy", "lowrank"):
        raise ValueError(f"unknown solver {solver!r}; expected 'auto', 'ipm', 'admm', 'cvxpy' "
                         "or 'lowrank'")


def _read_network(prob: SDPRelaxation, W: Tensor, rounding: str, rounding_options: dict | None,
                  polish_iter: int, info: dict):
    """The network read off the solution (the paper's rounding of Λ̃ = T Z Tᵀ, Z = W Wᵀ, for
    ``"tos"``, with its diagnostics added to ``info``; else :func:`extract_network`)."""
    if rounding == "tos":
        tos = round_tos(prob, W @ W.T, **(rounding_options or {}))
        info.update(tos_iteration=tos.iteration, tos_feasibility_m=tos.feasibility_m,
                    tos_rounding_objective=tos.rounding_objective)
        return tos.network
    return extract_network(prob, W, polish_iter=polish_iter, **(rounding_options or {}))


class _Solved(NamedTuple):
    """A solve of the relaxation: proven bound, factor W (Z ≈ W Wᵀ), the solver's SDP value,
    stop reason, history, ``tighten(ub)`` (the bound again with a proven upper bound ub on
    p_SDP, or None) and the solver's info."""

    bound: DualBound
    W: Tensor
    sdp_value: float
    stop: str
    hist: History
    tighten: Callable[[float], DualBound] | None
    info: dict


def _upper_with(prob: SDPRelaxation, args) -> Callable[[float], DualBound]:
    """ub ↦ the dual bound of multipliers ``args`` with upper bound min(ub, ½||Y||²)."""
    y_half = 0.5 * float((prob.Y * prob.Y).sum())
    return lambda ub: prob.dual_bound(*args, upper=min(ub, y_half))


def _solve(prob: SDPRelaxation, solver: str, t0: float, *, tol: float, max_iter: int,
           max_time: float | None, verbose: int, cvxpy_solver: str | None) -> _Solved:
    """The interior-point method, the ADMM or CVXPY on the relaxation (see :func:`fit_sdp`)."""
    info: dict = {}
    if solver == "ipm":
        bound, Z, ipm = solve_ipm(prob, tol=min(tol, 1e-7), max_time=max_time, verbose=verbose)
        for k in ("ipm_iterations", "ipm_rel_gap", "ipm_infeasibility", "working_set",
                  "constraints_added"):
            info[k] = ipm[k]
        info["solver_seconds"] = time.perf_counter() - t0
        return _Solved(bound, prob.factor_from_matrix(Z), ipm["sdp_primal_estimate"],
                       ipm["ipm_stop"], History(), _upper_with(prob, ipm["multipliers"]), info)
    if solver == "admm":
        bound, Z, adm = solve_admm(prob, tol=max(tol, 1e-4), max_iter=max_iter,
                                   max_time=max_time, verbose=verbose)
        for k in ("admm_iterations", "admm_rel_gap_estimate", "admm_r_primal", "admm_rho",
                  "neuron_iterations", "neuron_seconds", "precision_switch_iteration"):
            info[k] = adm[k]
        info["solver_seconds"] = time.perf_counter() - t0
        return _Solved(bound, prob.factor_from_matrix(Z), adm["sdp_primal_estimate"],
                       adm["admm_stop"], adm["history"], adm["certify"], info)
    from ...solvers.cvxpy_backend import solve_cvxpy

    problem, handles = prob.to_cvxpy("reduced")
    res = solve_cvxpy(problem, solver=cvxpy_solver or "CLARABEL", verbose=bool(verbose))
    bound, Z = prob.certify_cvxpy(handles)
    info["cvxpy_status"] = res.extras["status"]
    info["solver_seconds"] = res.seconds
    return _Solved(bound, prob.factor_from_matrix(Z), float(problem.value), res.stop_reason,
                   History(), None, info)


def _solve_lowrank(prob: SDPRelaxation, rng: np.random.Generator, *, rank: int | None,
                   tol: float, max_iter: int, max_time: float | None, verbose: int, rho: float,
                   cert_every_max_q: int, refine_iter: int) -> _Solved:
    """The Burer–Monteiro augmented Lagrangian on the relaxation (see :func:`fit_sdp`)."""
    from ...solvers.lowrank_sdp import burer_monteiro_al, refine_multipliers

    r = int(rank) if rank is not None else min(prob.q, max(16, 4 * prob.c))
    W0 = init_factor(prob, r, rng)
    best: dict = {}
    last = {"o": math.inf}

    y_norm = 0.5 * float((prob.Y * prob.Y).sum())  # Z = 0 is feasible: p_SDP ≤ ½||Y||²

    def certify(W_, y_, mu_, refine):
        Gam = prob.predictions(W_) - prob.Y
        cands = [(Gam, y_, mu_)]
        if refine:
            y2, mu2 = refine_multipliers(prob, W_, y_, mu_, iters=refine)
            cands.append((Gam, y2, mu2))
        for cand in cands:
            b = prob.dual_bound(*cand, upper=y_norm)
            if "b" not in best or b.value > best["b"].value:
                best["b"], best["d"] = b, cand

    def monitor(W_, y_, mu_):
        # the certified bound every outer step on small problems (eigvalsh of q x q);
        # otherwise stop on primal convergence and certify once at the end
        o = float(prob.objective(W_))
        viol = prob.violation(W_)
        change = abs(o - last["o"]) / max(abs(o), 1e-300)
        last["o"] = o
        if prob.q <= cert_every_max_q:
            certify(W_, y_, mu_, refine=0)
            lb = best["b"].value
            gap = max(o - lb, 0.0)
            rel = relative(gap, o)
        else:
            gap, rel = math.nan, math.inf
        if verbose:
            print(f"[sdp] objective={o:.8e} rel_gap={rel:.3e} violation={viol:.2e} "
                  f"change={change:.2e}")
        if viol <= tol and change <= tol:
            rel = 0.0  # primal converged: stop
        return o, gap, rel + viol

    res = burer_monteiro_al(prob, W0, tol=tol, max_iter=max_iter, max_time=max_time,
                            monitor=monitor, verbose=verbose, rho=rho, rho_growth=4.0,
                            inner_iter=500)
    W = res.x
    certify(W, res.extras["y"], res.extras["mu"], refine=refine_iter)
    info = {"violation": prob.violation(W), "rank": r, "solver_seconds": res.seconds,
            "bm_iterations": res.n_iter}
    return _Solved(best["b"], W, float(prob.objective(W)), res.stop_reason, res.history,
                   _upper_with(prob, best["d"]), info)
