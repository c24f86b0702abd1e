"""Reference backend: hand a CVXPY problem to any installed CVXPY solver (Clarabel, SCS, ...)."""

from __future__ import annotations

import time

from .base import History, SolverResult, StopReason

__all__ = ["solve_cvxpy", "installed_solvers"]


def installed_solvers() -> list[str]:
    import cvxpy as cp

    return list(cp.installed_solvers())


def solve_cvxpy(problem, solver: str | None = None, verbose: bool = False,
                **options) -> SolverResult:
    """Solve ``problem`` with ``solver`` (None: CVXPY's default choice). Raises if not optimal."""
    import cvxpy as cp

    if solver is not None and solver.upper() not in cp.installed_solvers():
        raise ValueError(f"CVXPY solver {solver!r} is not installed; installed: "
                         f"{cp.installed_solvers()}")
    t0 = time.perf_counter()
    problem.solve(solver=solver, verbose=verbose, **options)
    seconds = time.perf_counter() - t0
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        raise RuntimeError(f"CVXPY solver {solver or 'default'} returned status {problem.status}")
    stats = getattr(problem, "solver_stats", None)
    n_iter = int(getattr(stats, "num_iters", 0) or 0) or 1
    return SolverResult(x=None, history=History(), stop_reason=StopReason.CONVERGED, n_iter=n_iter,
                        seconds=seconds, extras={"status": problem.status,
                                                 "value": problem.value,
                                                 "solve_time": getattr(stats, "solve_time", None)})
