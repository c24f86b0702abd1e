"""Solver dispatch for the two-layer programs (FISTA, ADMM, AL, active set, CVXPY)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from .program import TwoLayerProgram
from .admm_split import _ADMMSplitting, lipschitz_estimate
from .certificate import _EXTRAPOLATE, _extrapolate, _gated_certificate
from .cvxpy_form import _has_cvxpy, cvxpy_solution, to_cvxpy


def solve(prog: TwoLayerProgram, *, solver: str = "auto", tol: float = 1e-6,
          max_iter: int = 10000, max_time: float | None = None, check_every: int = 10,
          x0: Tensor | None = None, verbose: int = 0, cvxpy_solver: str | None = None,
          cvxpy_options: dict | None = None, certify: str = "network",
          admm_options: dict | None = None):
    """Solve the program. Returns ``(x, certificate, result)``.

    ``solver``:

    * ``"admm"`` — ADMM with the normal equations factorised once
      (:class:`_ADMMSplitting`); gated and ReLU, every loss.
    * ``"fista"`` — accelerated proximal gradient, gated only; matrix-free (any size), O(nd +
      Pdc) memory; stopped by the certificate at the better of ∇L and an extrapolated dual.
    * ``"al"`` — augmented Lagrangian with FISTA inner solves, ReLU; matrix-free but slow to
      high accuracy.
    * ``"active_set"`` — ReLU; reduced programs by interior point (CVXPY).
    * ``"cvxpy"`` — the whole program to any installed CVXPY solver (``cvxpy_solver``; default
      CVXPY's choice): the reference for tests.
    * ``"auto"`` — gated: FISTA, always. Measured (CPU s to a certified 1e-4, one thread,
      float64, reg = 0.1·reg_max as the estimators use; ``python benchmarks/bench_speed.py
      --parts a --repeat 1 --limit 60``, benchmarks/results/speed.md):

      ==============================  =========================  =====
      case                            ADMM                       FISTA
      ==============================  =========================  =====
      2000 x 50, P = 100              > 11 (gap 2e-2 at 60 s)    1.9
      2000 x 50, P = 500              > 11 (gap 0.8 at 60 s)     4.4
      digits (1797 x 64), P = 100     > 16 (gap 1e-2 at 60 s)    3.3
      ==============================  =========================  =====

      (At a tiny reg, 1 on 2000 x 50, P = 100, ADMM won: 0.6 s against FISTA > 4 s.)

      ReLU: ADMM when its normal equations fit in memory, else the augmented Lagrangian.
      When ADMM stops short of ``tol`` on a ReLU program and CVXPY is installed, the
      active-set solver finishes from ADMM's iterate (working set = its non-zero groups and
      near-active rows), which converges in a few interior-point solves.

    ``certify`` (ADMM, ReLU): ``"network"`` certifies the read-back network (may stop early
    with a network better than the program's optimum), ``"program"`` the program's own
    optimum; see :func:`_solve_admm`.
    """

    polish = solver == "auto" and prog.activation == "relu" and _has_cvxpy()
    if solver == "auto":
        solver = "fista" if prog.activation == "gated" else (
            "admm" if _ADMMSplitting.fits(prog) else "al")
    if solver == "admm":
        return _solve_admm_then_polish(prog, polish, tol=tol, max_iter=max_iter,
                                       max_time=max_time, check_every=check_every, x0=x0,
                                       verbose=verbose, certify=certify,
                                       admm_options=admm_options, cvxpy_solver=cvxpy_solver,
                                       cvxpy_options=cvxpy_options)
    if solver == "active_set":
        from ..active_set import solve_active_set

        return solve_active_set(prog, tol=tol, max_time=max_time, verbose=verbose,
                                cvxpy_solver=cvxpy_solver or "CLARABEL",
                                cvxpy_options=cvxpy_options)
    x = prog.zeros() if x0 is None else x0
    if solver == "cvxpy":
        return _solve_cvxpy(prog, x, verbose=verbose, cvxpy_solver=cvxpy_solver,
                            cvxpy_options=cvxpy_options)
    L0 = lipschitz_estimate(prog)
    if solver == "fista":
        if prog.activation != "gated":
            raise ValueError("solver='fista' solves the unconstrained (gated) program; "
                             "use solver='al' for the cone-constrained ReLU program")

        return _solve_fista(prog, x, L0, tol=tol, max_iter=max_iter, max_time=max_time,
                            check_every=check_every, verbose=verbose)
    if solver == "al":
        if prog.activation != "relu":
            raise ValueError("solver='al' is for the cone-constrained ReLU program")
        return _solve_al(prog, x, tol=tol, max_iter=max_iter, max_time=max_time,
                         check_every=check_every, verbose=verbose)
    raise ValueError(f"unknown solver {solver!r}; expected 'auto', 'admm', 'fista', 'al', "
                     "'active_set' or 'cvxpy'")


def _solve_admm_then_polish(prog: TwoLayerProgram, polish: bool, *, tol: float, max_iter: int,
                            max_time: float | None, check_every: int, x0: Tensor | None,
                            verbose: int, certify: str, admm_options: dict | None,
                            cvxpy_solver: str | None, cvxpy_options: dict | None):
    """ADMM; with ``polish`` (ReLU, CVXPY installed) the active-set solver finishes from its
    iterate when ADMM stops short of ``tol`` (see :func:`solve`)."""
    t0 = time.perf_counter()
    opts = dict(admm_options or {})
    if polish and prog.S * prog.P * prog.c * prog.d <= 20_000:
        # the polish below is affordable whatever ADMM's support: hand over to it once
        # ADMM's progress stalls
        opts.setdefault("stall_checks", 30)
    out = _solve_admm(prog, tol=tol, max_iter=max_iter, max_time=max_time,
                      check_every=check_every, x0=x0, verbose=verbose, certify=certify,
                      **opts)
    if not polish or out[1].relative_gap <= tol:
        return out
    # ReLU, gap not reached: finish exactly on ADMM's working set (interior point on a
    # reduced program), if that working set is small enough to afford
    from ..active_set import solve_active_set

    x_a, cert_a, res_a = out
    groups = int((torch.linalg.vector_norm(x_a, dim=2) > 0).sum())
    if groups * prog.d > 20_000 or (max_time is not None
                                    and time.perf_counter() - t0 >= max_time):
        return out
    left = None if max_time is None else max_time - (time.perf_counter() - t0)
    x_p, cert_p, res_p = solve_active_set(prog, tol=tol, max_time=left, verbose=verbose,
                                          x0=x_a, mu0=res_a.extras["mu"],
                                          cvxpy_solver=cvxpy_solver or "CLARABEL",
                                          cvxpy_options=cvxpy_options)
    if cert_p.primal > cert_a.primal and cert_p.relative_gap >= cert_a.relative_gap:
        return out  # keep the better network
    hist = res_a.history
    hist.extend(res_p.history, res_a.n_iter, res_a.seconds)
    res_p.history = hist
    res_p.extras["admm_iterations"] = res_a.n_iter
    return x_p, cert_p, res_p


def _solve_cvxpy(prog: TwoLayerProgram, x: Tensor, *, verbose: int, cvxpy_solver: str | None,
                 cvxpy_options: dict | None):
    """The whole program handed to a CVXPY solver, certified with its cone multipliers."""
    from ...solvers.cvxpy_backend import solve_cvxpy

    problem, V = to_cvxpy(prog)
    res = solve_cvxpy(problem, solver=cvxpy_solver, verbose=bool(verbose),
                      **(cvxpy_options or {}))
    x = cvxpy_solution(prog, V)
    mu = None
    if prog.activation == "relu":  # the solver's cone multipliers tighten the dual bound
        duals = [np.maximum(np.asarray(c_.dual_value), 0) for c_ in
                 problem._convexnn_cone_constraints]
        mu = torch.as_tensor(np.stack(duals).reshape(prog.P, prog.S, prog.n, prog.c),
                             dtype=x.dtype, device=x.device).permute(2, 1, 0, 3)
    cert = prog.certificate(x, mu=mu, refine=50)
    cert = prog.tighten(cert, [prog.gradients(x, network=False)], mu)
    res.history.append(0, cert.primal, cert.gap, cert.relative_gap, res.seconds)
    return x, cert, res


def _solve_al(prog: TwoLayerProgram, x: Tensor, *, tol: float, max_iter: int,
              max_time: float | None, check_every: int, verbose: int):
    """Augmented Lagrangian on the ReLU program, the repaired iterate certified."""
    from ...solvers import augmented_lagrangian

    checks = [0]

    def monitor(x_, s_, sub):
        # cheap estimate (convex objective at the possibly infeasible iterate vs the dual
        # bound); the honest certificate (feasible repair) only when it looks converged
        checks[0] += 1
        est = prog.certificate(x_, s_, sub, repair=False)
        if est.relative_gap > tol and checks[0] % 10:
            return None
        c_ = prog.certificate(x_, s_, sub, refine=20 if est.relative_gap <= tol else 0)
        return c_.primal, c_.gap, c_.relative_gap

    mu0 = torch.zeros((prog.n, prog.S, prog.P, prog.c), dtype=x.dtype, device=x.device)
    res = augmented_lagrangian(prog, x, mu0, rho=prog.loss.smoothness, tol=tol,
                               max_iter=max_iter, max_time=max_time,
                               check_every=check_every, monitor=monitor, verbose=verbose)
    sub = prog.augmented(res.extras["mu"], res.extras["rho"])
    cert = prog.certificate(res.x, None, sub, refine=50)
    x_r = prog.repair(res.x)
    cert = prog.tighten(cert, [prog.gradients(x_r, network=False)],
                        sub.updated_multipliers(prog.relu_state(res.x)))
    return x_r, cert, res


def _solve_admm(prog: TwoLayerProgram, *, tol: float, max_iter: int, max_time: float | None,
                check_every: int, x0: Tensor | None, verbose: int, certify: str = "network",
                rho: float | None = None, stall_checks: int | None = None, **split_options):
    """ADMM (:mod:`convexnn.solvers.admm`), certified every ``check_every`` iterations.

    ``certify="network"`` (ReLU): the primal is the objective of the read-back network
    (:meth:`TwoLayerProgram.network_certificate`) — cheap, and the solver may stop as soon as
    that network is certified within ``tol`` of the program's optimum, possibly *below* it (an
    iterate slightly outside the cones reads back to a network with other activation patterns).
    ``certify="program"``: the primal is the program's objective at the feasible repair of the
    iterate (:meth:`TwoLayerProgram.certificate`), so the solver runs until it has solved the
    program itself to ``tol`` (used to check the solver against CVXPY).

    A start ``x0`` warm-starts every block consistently (:meth:`_ADMMSplitting.warm_state`);
    ``rho`` is the initial penalty (e.g. the final one of an earlier, similar solve).
    """
    from ...solvers.admm import admm

    if certify not in ("network", "program"):
        raise ValueError(f"certify must be 'network' or 'program', got {certify!r}")
    t0 = time.perf_counter()
    split = _ADMMSplitting(prog, **split_options)
    setup = time.perf_counter() - t0
    x = prog.zeros() if x0 is None else x0
    rho = 1.0 if rho is None else float(rho)
    warm = None if x0 is None else split.warm_state(x0, rho)
    state = {}

    def monitor(y, lam, mu):
        if prog.activation == "gated":
            c_ = _gated_certificate(prog, y, lam)
        elif certify == "network":
            c_ = prog.network_certificate(y, [lam], mu * split.delta)
        else:
            c_ = prog.certificate(y, mu=mu * split.delta)
        if prog.activation == "relu" and tol < c_.relative_gap <= 30 * tol:
            # close: the μ-based cone bounds may be what is left of the gap; make them exact
            # (NNLS per group: at most every 5th check, so it cannot dominate the run time)
            state["near"] = state.get("near", -1) + 1
            if state["near"] % 5 == 0:
                c_ = prog.tighten(c_, [prog.gradients(y, certify == "network"), lam],
                                  mu * split.delta, max_seconds=0.5)
        state["cert"] = c_
        return c_.primal, c_.gap, c_.relative_gap

    res = admm(split, x, rho=rho, tol=tol, max_iter=max_iter,
               max_time=None if max_time is None else max(max_time - setup, 0.0),
               check_every=check_every, monitor=monitor, verbose=verbose, warm=warm,
               stall_checks=stall_checks)
    cert = state.get("cert")
    if cert is None or res.history.iteration[-1] != res.n_iter:
        monitor(res.x, res.extras["lam"], res.extras["mu"])
        cert = state["cert"]
    if prog.activation == "relu" and certify == "program":
        res.x = prog.repair(res.x)  # the certified primal is attained at the repaired point
    res.extras["setup_seconds"] = setup
    res.extras["normal_space"] = split.space
    for i in range(len(res.history.seconds)):  # include the factorisation in the clock
        res.history.seconds[i] += setup
    res.seconds += setup
    return res.x, cert, res


def _solve_fista(prog: TwoLayerProgram, x: Tensor, L0: float, *, tol: float, max_iter: int,
                 max_time: float | None, check_every: int, verbose: int):
    """FISTA on the gated program, stopped by the certificate at the better of λ = ∇L(A x)
    and an extrapolation of the last λ's (:func:`_extrapolate`)."""
    from ...solvers import fista

    lams: list[Tensor] = []

    def monitor(x_, s_):
        c_ = prog.certificate(x_, s_)
        lams.append(prog.loss.grad(s_, prog.Y))
        del lams[:-_EXTRAPOLATE]
        lam_x = _extrapolate(lams)
        if lam_x is not None and c_.relative_gap > tol:
            c_ = _gated_certificate(prog, x_, lam_x, c_)
        return c_.primal, c_.gap, c_.relative_gap

    res = fista(prog, x, step=1.0 / L0, tol=tol, max_iter=max_iter, max_time=max_time,
                check_every=check_every, monitor=monitor, verbose=verbose)
    cert = prog.certificate(res.x)
    lam_x = _extrapolate(lams)
    if lam_x is not None:
        cert = _gated_certificate(prog, res.x, lam_x, cert)
    return res.x, cert, res
