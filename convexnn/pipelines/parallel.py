"""Fit of the path-regularised parallel network (sampled blocks or column generation,
optional low-rank approximation) returning a :class:`FitResult`."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..formulations.parallel.approximation import approximation_bound, low_rank
from ..formulations.parallel.blocks import sample_blocks
from ..formulations.parallel.exhaustive import enumerate_blocks
from ..formulations.parallel.pricing import price
from ..formulations.parallel.program import EXHAUSTIVE, ParallelProgram, certify
from ..formulations.parallel.tree import Tree, sample_tree_blocks
from ..formulations.parallel.tree_exhaustive import enumerate_tree_blocks
from ..formulations.parallel.tree_program import TreeProgram
from ..losses import Loss, get_loss
from ..results import FitResult
from .parallel_cg import fit_parallel_cg
from .parallel_solve import SOLVERS, solve, solve_pruned

__all__ = ["SOLVERS", "METHODS", "solve", "solve_pruned", "fit_parallel", "fit_parallel_cg",
           "reg_max"]

#: how the blocks are chosen: column generation, sampling, or all of them
METHODS = ("cg", "sampled", "exhaustive")


def reg_max(X: Tensor, Y: Tensor, loss: str | Loss = "squared", *, depth: int = 3,
            width: int = 2, random_state=None, n_starts: int = 64) -> float:
    """Estimate of the smallest ``reg`` whose optimum is the zero network: the largest
    ⟨−Λ₀, g_q(X)⟩ / ||q||_F the pattern search finds at Λ₀ = ∇L(0) (a lower bound of the exact
    value, which needs the exhaustive pricing). ``X`` carries the ones column if any."""
    lo = get_loss(loss)
    lam0 = lo.grad(torch.zeros_like(Y), Y)
    found = price(X, lam0, width=width, depth=depth, n_starts=n_starts,
                  random_state=random_state).best
    if not found > 0:
        raise ValueError("the targets give reg_max = 0 (the zero network fits them): pass reg")
    return float(found)


def _solve_exhaustive(X: Tensor, Y: Tensor, *, reg: float, depth: int, width: int,
                      loss: str | Loss, intercept: bool, solver: str, tol: float,
                      max_time: float | None, verbose: int, max_blocks: int | None):
    """The program over every block, solved without pruning (so that its certificate is for
    the exact program). ``solver="auto"`` is Clarabel here: enumerated second-layer patterns
    need not have a strictly feasible witness, which the structured interior point needs."""
    if depth >= 4:
        blocks = enumerate_tree_blocks(X, Tree(depth, width), n_outputs=Y.shape[1],
                                       max_blocks=max_blocks)
        prog = TreeProgram(X, Y, blocks, reg, loss, intercept=intercept)
    else:
        blocks = enumerate_blocks(X, width=width, depth=depth, n_outputs=Y.shape[1],
                                  max_blocks=max_blocks)
        prog = ParallelProgram(X, Y, blocks, reg, loss, depth=depth, intercept=intercept)
    prog.block_source = EXHAUSTIVE
    x, cert, res = solve(prog, solver="clarabel" if solver == "auto" else solver, tol=tol,
                         max_time=max_time, verbose=verbose)
    res.extras["certificate"] = cert
    return prog, x, res.extras.get("multipliers"), res


def _sampled_program(X: Tensor, Y: Tensor, n_patterns: int, *, reg: float, depth: int,
                     width: int, loss: str | Loss, rng: np.random.Generator, gate_kind: str,
                     intercept: bool, intercept_column: bool) -> ParallelProgram:
    """The program over ``n_patterns`` sampled base blocks (tree sub-networks for depth ≥ 4)."""
    if depth >= 4:
        blocks = sample_tree_blocks(X, n_patterns, Tree(depth, width), n_outputs=Y.shape[1],
                                    random_state=rng, gate_kind=gate_kind,
                                    intercept_column=intercept_column)
        return TreeProgram(X, Y, blocks, reg, loss, intercept=intercept)
    blocks = sample_blocks(X, n_patterns, width=width, depth=depth, n_outputs=Y.shape[1],
                           random_state=rng, gate_kind=gate_kind,
                           intercept_column=intercept_column)
    return ParallelProgram(X, Y, blocks, reg, loss, depth=depth, intercept=intercept)


def fit_parallel(X: Tensor, Y: Tensor, *, reg: float, depth: int = 3, width: int = 2,
                 n_patterns: int = 20, loss: str | Loss = "squared", random_state=None,
                 intercept: bool = True, rank: int | None = None, method: str = "cg",
                 solver: str = "auto", tol: float = 1e-7, max_iter: int = 20000,
                 max_time: float | None = None, verbose: int = 0, gate_kind: str = "gaussian",
                 cvxpy_solver: str | None = None, cg_options: dict | None = None,
                 max_blocks: int | None = 20000) -> FitResult:
    """Fit the parallel network by its convex program and read the network back.

    ``method="cg"`` (default): column generation (:mod:`.parallel_cg`) from ``n_patterns``
    sampled base blocks, adding the blocks whose dual constraint a pattern search finds violated
    (``cg_options`` → :func:`.parallel_cg.fit_parallel_cg`). ``method="sampled"``: the program
    over ``n_patterns`` sampled base blocks only. ``method="exhaustive"``: the program over
    every block (:mod:`convexnn.formulations.parallel.exhaustive`; exponential in the rank and
    the width, at most ``max_blocks`` blocks), whose certificate is global. ``rank`` switches
    to the polynomial-time approximation (program on the rank-``rank`` truncation of X, then
    projected; reported with its guarantee factor, and with ``method="exhaustive"`` with the
    bound ``ratio_bound`` ≥ objective(X) / p*(X)). ``X`` carries the ones column when
    ``intercept``. ``info`` reports
    the objective on X, the stop reason and the method's facts."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    Xs, tail = (X, 0.0) if rank is None else low_rank(X, rank)
    rng = random_state if isinstance(random_state, np.random.Generator) \
        else np.random.default_rng(random_state)
    extra: dict = {}
    if method == "cg":
        res_cg = fit_parallel_cg(Xs, Y, reg=reg, depth=depth, width=width, loss=loss,
                                 intercept=intercept, n_init_blocks=n_patterns, tol=tol,
                                 max_time=max_time, solver=solver, random_state=rng,
                                 gate_kind=gate_kind, verbose=verbose,
                                 intercept_column=intercept and rank is None,
                                 **(cg_options or {}))
        prog, x, cert = res_cg.info.pop("_program"), res_cg.info.pop("_x"), res_cg.certificate
        nu = res_cg.info.pop("_multipliers")
        history, extra = res_cg.history, res_cg.info
        stop, n_iter, seconds = extra["stop_reason"], extra["n_rounds"], extra["seconds"]
    elif method == "exhaustive":
        prog, x, nu, res = _solve_exhaustive(Xs, Y, reg=reg, depth=depth, width=width, loss=loss,
                                             intercept=intercept, solver=solver, tol=tol,
                                             max_time=max_time, verbose=verbose,
                                             max_blocks=max_blocks)
        cert = res.extras["certificate"]
        history, stop, n_iter, seconds = res.history, res.stop_reason, res.n_iter, res.seconds
    else:
        prog0 = _sampled_program(Xs, Y, n_patterns, reg=reg, depth=depth, width=width,
                                 loss=loss, rng=rng, gate_kind=gate_kind, intercept=intercept,
                                 intercept_column=intercept and rank is None)
        opts = {"cvxpy_solver": cvxpy_solver} if solver == "cvxpy" else {}
        if solver == "al":
            opts["max_iter"] = max_iter
        prog, x, cert, res = solve_pruned(prog0, solver=solver, tol=tol, max_time=max_time,
                                          verbose=verbose, **opts)
        nu = res.extras.get("multipliers")
        history, stop, n_iter, seconds = res.history, res.stop_reason, res.n_iter, res.seconds
        extra = {"n_sampled_blocks": prog0.B}
    if rank is not None:
        # the optimal q lie in the row space of X_r (an orthogonal component changes nothing but
        # adds norm): project, so that X q = X_r q and the network's objective on X equals its
        # objective on X_r exactly
        Vr = torch.linalg.svd(Xs, full_matrices=False)[2][:rank]
        x = (x @ Vr.T) @ Vr
        cert = certify(prog, x, nu, refine=20)
    net = prog.to_network(x)
    info = {"stop_reason": stop, "n_iter": n_iter, "seconds": seconds,
            "n_blocks": prog.B, "n_subnetworks": net.n_subnetworks,
            "objective": net.objective(X[:, :-1] if intercept else X, Y, reg, loss),
            "program": cert.problem, **extra, "method": method}
    if rank is not None:
        m = 1 if depth == 2 else (width if depth == 3 else Tree(depth, width).n_leaves)
        bound = approximation_bound(loss, tail, m, reg, Y)
        info["approximation"] = dict(bound, rank=int(rank), objective_on_Xr=cert.primal,
                                     patterns_exhaustive=prog.exhaustive)
        if prog.exhaustive and cert.dual > 0:
            # objective(X) = objective(X_r) = primal, p*(X_r) >= dual, p*(X) >= p*(X_r)/kappa
            info["approximation"]["ratio_bound"] = bound["kappa"] * cert.primal / cert.dual
    return FitResult(network=net, certificate=cert, history=history, info=info)
