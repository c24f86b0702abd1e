"""Solving the path-regularised parallel program over a block set, with any backend."""

from __future__ import annotations

import time

import torch
from torch import Tensor

from ..certificates import Certificate
from ..formulations.parallel.augmented import lipschitz_estimate
from ..formulations.parallel.clarabel import solve_clarabel
from ..formulations.parallel.conic_form import cvxpy_multipliers, cvxpy_solution, to_cvxpy
from ..formulations.parallel.interior import NotStrictlyFeasible, solve_interior
from ..formulations.parallel.program import ParallelProgram, certify
from ..formulations.parallel.tree_conic import (
    cvxpy_tree_multipliers,
    cvxpy_tree_solution,
    to_cvxpy_tree,
)
from ..formulations.parallel.tree_program import TreeProgram
from ..solvers import augmented_lagrangian
from ..solvers.base import SolverResult
from ..solvers.cvxpy_backend import solve_cvxpy

__all__ = ["SOLVERS", "solve", "solve_pruned"]


SOLVERS = ("auto", "pd", "barrier", "clarabel", "cvxpy", "al")


# ------------------------------------------------------------------------------- driver
def solve(prog: ParallelProgram, *, solver: str = "auto", tol: float = 1e-7,
          max_iter: int = 20000, max_time: float | None = None, check_every: int = 10,
          x0: Tensor | None = None, verbose: int = 0, cvxpy_solver: str | None = None,
          cvxpy_options: dict | None = None) -> tuple[Tensor, Certificate, SolverResult]:
    """Solve the program over its blocks. Returns ``(x, certificate, result)``; the certificate
    is that of the read-back network and ``result.extras["multipliers"]`` holds ν.

    ``solver``: ``"pd"`` (structured primal-dual interior point,
    :mod:`.parallel_interior`, the default through ``"auto"``), ``"barrier"`` (log-barrier
    method, same module), ``"clarabel"`` (Clarabel on the sparse conic form,
    :mod:`.parallel_clarabel`), ``"cvxpy"`` (any installed CVXPY solver, Clarabel by default; the
    test reference) or ``"al"`` (augmented Lagrangian + FISTA from :mod:`convexnn.solvers`,
    first-order, for problems too large to factorise). ``"auto"`` is ``"pd"``, or Clarabel when a
    block has no strictly feasible witness (a data point on one of its hyperplanes). ``x0``
    warm-starts ``"pd"``/``"barrier"`` (blocks where it is non-zero; it must lie in the cones)
    and ``"al"``."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; expected one of {SOLVERS}")
    if solver in ("auto", "pd", "barrier"):
        # interior-point methods need float64 (their Newton matrices are ill-conditioned near
        # the optimum): a lower-precision program is solved in float64 and mapped back
        p64 = prog if prog.X.dtype == torch.float64 else prog.to_dtype(torch.float64)
        try:
            opts = {} if x0 is None else {"x0": x0.to(torch.float64)}
            x, nu, res = solve_interior(p64, method="barrier" if solver == "barrier" else "pd",
                                        tol=tol, max_time=max_time, verbose=verbose, **opts)
            x = x.to(prog.X.dtype)
            nu = tuple(v.to(prog.X.dtype) for v in nu)
        except NotStrictlyFeasible:
            if solver != "auto":
                raise
            return solve(prog, solver="clarabel", tol=tol, max_time=max_time, verbose=verbose)
        res.extras["multipliers"] = nu
        return x, certify(prog, x, nu, refine=0), res
    if solver == "clarabel":
        x, nu, res = solve_clarabel(prog, tol=tol, max_time=max_time, verbose=verbose)
        res.extras["multipliers"] = nu
        cert = certify(prog, x, nu, refine=0)
        res.extras["relative_gap"] = cert.relative_gap
        return x, cert, res
    if solver == "cvxpy":
        problem, Q = to_cvxpy_tree(prog) if isinstance(prog, TreeProgram) else to_cvxpy(prog)
        res = solve_cvxpy(problem, solver=cvxpy_solver or "CLARABEL", verbose=bool(verbose),
                          **(cvxpy_options or {}))
        x = (cvxpy_tree_solution if isinstance(prog, TreeProgram) else cvxpy_solution)(prog, Q)
        # interior-point solutions are dense at ~1e-9: zero the negligible blocks (0 is in every
        # cone, and the certificate below is computed for the pruned point itself)
        nrm = prog.group_norms(x)
        x = x * (nrm > 1e-7 * float(nrm.max()))[:, None, None] if nrm.numel() else x
        nu = (cvxpy_tree_multipliers if isinstance(prog, TreeProgram)
              else cvxpy_multipliers)(prog, problem)
        res.extras["multipliers"] = nu
        cert = certify(prog, x, nu, refine=0 if nu is not None else 200)
        res.history.append(0, cert.primal, cert.gap, cert.relative_gap, res.seconds)
        res.extras["relative_gap"] = cert.relative_gap
        return x, cert, res
    x = prog.zeros() if x0 is None else x0
    L0 = lipschitz_estimate(prog)

    def monitor(x_, s_, sub):
        c_ = prog.certificate(x_, sub.updated_multipliers(s_), state=s_)
        return c_.primal, c_.gap, c_.relative_gap

    res = augmented_lagrangian(prog, x, prog.zero_multipliers(), rho=prog.loss.smoothness,
                               tol=tol, max_iter=max_iter, max_time=max_time,
                               check_every=check_every, monitor=monitor, verbose=verbose)
    res.extras["initial_lipschitz"] = L0
    sub = prog.augmented(res.extras["mu"], res.extras["rho"])
    nu = sub.updated_multipliers(prog.linear(res.x))
    res.extras["multipliers"] = nu
    cert = certify(prog, res.x, nu, refine=50)
    res.extras["relative_gap"] = cert.relative_gap
    return res.x, cert, res


def solve_pruned(prog: ParallelProgram, *, solver: str = "auto", tol: float = 1e-7,
                 prune: float = 1e-6, max_time: float | None = None, verbose: int = 0,
                 **options) -> tuple[ParallelProgram, Tensor, Certificate, SolverResult]:
    """Solve, drop the blocks whose norm is ≤ ``prune``·max (interior-point solutions leave the
    blocks that are zero at the optimum at ~μ-sized norms) and re-solve over the kept blocks.

    Returns ``(kept program, x, certificate, result)``; the certificate is for the program over
    the kept blocks (dropping them afterwards without re-solving would perturb Λ and loosen the
    bound by ~||X||²·(dropped norms))."""
    t0 = time.perf_counter()
    x, cert, res = solve(prog, solver=solver, tol=tol, max_time=max_time, verbose=verbose,
                         **options)
    nrm = prog.group_norms(x)
    keep = nrm > prune * float(nrm.max()) if nrm.numel() and float(nrm.max()) > 0 \
        else torch.zeros_like(nrm, dtype=torch.bool)
    if bool(keep.all()):
        return prog, x, cert, res
    sub = prog.subset(keep)
    left = None if max_time is None else max(max_time - (time.perf_counter() - t0), 1.0)
    xs, cs, rs = solve(sub, solver=solver, tol=tol, max_time=left, verbose=verbose, **options)
    rs.extras["dropped_blocks"] = int((~keep).sum())
    rs.seconds += res.seconds
    return sub, xs, cs, rs
