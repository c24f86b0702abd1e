"""Solve drivers of the CNN programs (:mod:`convexnn.formulations.cnn`): FISTA, ADMM with
cutting planes, the augmented Lagrangian, or CVXPY, each followed by the certificate."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, replace

import torch
from sklearn.exceptions import ConvergenceWarning
from torch import Tensor

from ..formulations.cnn.admm_split import ADMMSplitting, SharedADMMSplitting, snap_to_domain
from ..formulations.cnn.base import ConeGroupProgram
from ..formulations.cnn.circular import CircularCNNProgram
from ..formulations.cnn.conv import ConvTwoLayerProgram
from ..formulations.cnn.shared_filter import ConvSharedFilterProgram
from ..formulations.cnn.three_layer import ThreeLayerCNNProgram
from ..patterns import sample_gates
from ..patterns.patches import (
    enumerate_max_pool_patterns,
    enumerate_patch_patterns,
    sample_patch_gates,
)

__all__ = ["solve", "build_program", "NOT_CONVERGED"]

#: marker appended to ``Certificate.problem`` when a solve stops above its tolerance
NOT_CONVERGED = "NOT CONVERGED"


def build_program(program: str, images: Tensor, Y: Tensor, reg: float, loss: str, *,
                  activation: str = "relu", kernel_size: int = 3, stride: int = 1,
                  padding: int = 0, intercept: bool = True, pooling: str = "avg",
                  pool_size: int | None = None, patterns: str = "sample", n_patterns: int = 100,
                  gate_kind: str = "gaussian", random_state=None, n_circular: int = 1,
                  n_outer: int = 8) -> ConeGroupProgram:
    """Patterns → program for ``program`` in ``("cone", "shared", "circular",
    "three_layer")`` (the estimators' vocabulary; images (N, C, H, W), Y (N, c))."""
    N, C, H, W = images.shape
    if program == "circular":
        if C != 1:
            raise ValueError(f"program='circular' takes single-channel inputs, got C = {C}")
        X = images.reshape(N, -1)
        if patterns == "enumerate":
            from ..patterns.arrangements import enumerate_patterns

            pats = enumerate_patterns(X)
        else:
            pats = sample_gates(X, n_patterns, random_state=random_state, kind=gate_kind)
        return CircularCNNProgram(images, Y, pats, reg, loss, n_circular=n_circular)
    ho, wo = (H + 2 * padding - kernel_size) // stride + 1, (W + 2 * padding - kernel_size) \
        // stride + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"kernel_size={kernel_size} (padding={padding}) does not fit images "
                         f"of size {H}x{W}")
    common = dict(kernel_size=kernel_size, stride=stride, padding=padding, intercept=intercept)
    if patterns == "enumerate" and program == "cone" and pooling == "max":
        pats = enumerate_max_pool_patterns(images, pool_size=pool_size, **common)
    elif patterns == "enumerate":
        pats = enumerate_patch_patterns(images, **common)
    else:
        pats = sample_patch_gates(images, n_patterns, random_state=random_state, kind=gate_kind,
                                  **common)
    if program == "shared":
        return ConvSharedFilterProgram(images, Y, pats, reg, loss, pooling=pooling,
                                       pool_size=pool_size, **common)
    if program == "three_layer":
        return ThreeLayerCNNProgram(images, Y, pats, reg, loss, n_outer=n_outer,
                                    random_state=random_state, **common)
    if program != "cone":
        raise ValueError(f"unknown CNN program {program!r}")
    return ConvTwoLayerProgram(images, Y, pats, reg, loss, activation, pooling=pooling,
                               pool_size=pool_size, **common)


def solve(prog: ConeGroupProgram, *, solver: str = "auto", tol: float = 1e-6,
          max_iter: int = 10000, max_time: float | None = None, check_every: int = 10,
          x0: Tensor | None = None, verbose: int = 0, cvxpy_solver: str | None = None,
          cvxpy_options: dict | None = None, refine_iters: int = 0,
          final_refine_iters: int = 200, round_iters: int = 50, add_rows: int | None = None,
          primal: str = "network"):
    """Solve a CNN program and certify the result.

    ``solver``: ``"auto"`` (FISTA for gated programs, ADMM for the shared-filter program; for
    cone-constrained ones ADMM on :class:`ConvTwoLayerProgram` and the augmented Lagrangian
    otherwise), ``"admm"``,
    ``"fista"``, ``"al"`` or ``"cvxpy"`` (any installed CVXPY solver, ``cvxpy_solver``). Returns
    ``(x, certificate, SolverResult)``; stops on the certified relative gap ``tol`` or
    ``max_iter`` / ``max_time``. The returned x is the point whose read-back network attains
    ``certificate.primal``. ``refine_iters`` / ``final_refine_iters``: multiplier-refinement
    steps (:meth:`ConeGroupProgram.refine_multipliers`) per monitoring check (AL only) / for
    the returned certificate (cone-constrained programs only).

    Cutting planes (cone programs whose ``working_set`` is on): the solver runs in rounds of
    ``round_iters`` iterations (doubling, at most 800); after each round the ``add_rows``
    (default: the program's initial count) most violated rows outside the working set of every
    cone are added and the solver is warm-started (ADMM re-factorises its normal matrix). The
    certificate is always for the full program (μ = 0 on rows outside the working set).

    ``primal``: ``"network"`` certifies the read-back network of the iterate (which may even
    beat the program's optimum when its neurons leave the sampled patterns); ``"feasible"``
    certifies the iterate's projection onto the cones (:meth:`ConvTwoLayerProgram.
    project_to_cones`), i.e. how well the program itself is solved.

    A solve that ends with a certified relative gap above ``tol`` issues a
    ``sklearn.exceptions.ConvergenceWarning`` naming the stop reason and what to change, and
    its certificate's ``problem`` says so (it ends with ``"[NOT CONVERGED: ...]"``).
    """
    kw = dict(solver=solver, tol=tol, max_iter=max_iter, max_time=max_time,
              check_every=check_every, x0=x0, verbose=verbose, cvxpy_solver=cvxpy_solver,
              cvxpy_options=cvxpy_options, refine_iters=refine_iters,
              final_refine_iters=final_refine_iters, round_iters=round_iters,
              add_rows=add_rows, primal=primal)
    x, cert, res = _run(prog, **kw)
    if not cert.relative_gap <= tol:
        cert = _not_converged(cert, res, solver, tol, max_iter, max_time)
    return x, cert, res


def _not_converged(cert, res, solver: str, tol: float, max_iter: int,
                   max_time: float | None):
    """Annotate the certificate of a solve that stopped above ``tol`` and warn."""
    reason = res.stop_reason
    if solver == "cvxpy":
        advice = "tighten the CVXPY solver's tolerances (cvxpy_options) or raise tol"
    elif reason == "max_iter":
        advice = f"raise max_iter (was {max_iter}) or raise tol"
    elif reason == "max_time":
        advice = f"raise max_time (was {max_time}) or raise tol"
    elif reason == "stalled":
        advice = "working precision reached: raise tol, or use float64"
    else:
        advice = ("the final certificate (all cone rows, refined multipliers) is weaker than "
                  "the solver's last check: lower tol or raise final_refine_iters")
    note = (f"relative gap {cert.relative_gap:.3g} > tol {tol:g} after {res.n_iter} "
            f"iterations (stop: {reason}); {advice}")
    warnings.warn(f"CNN solve did not reach tol: {note}", ConvergenceWarning, stacklevel=3)
    return replace(cert, problem=f"{cert.problem} [{NOT_CONVERGED}: {note}]")


def _run(prog: ConeGroupProgram, *, solver: str = "auto", tol: float = 1e-6,
          max_iter: int = 10000, max_time: float | None = None, check_every: int = 10,
          x0: Tensor | None = None, verbose: int = 0, cvxpy_solver: str | None = None,
          cvxpy_options: dict | None = None, refine_iters: int = 0,
          final_refine_iters: int = 200, round_iters: int = 50, add_rows: int | None = None,
          primal: str = "network"):
    """The solve itself (see :func:`solve`)."""
    from ..solvers import fista
    from ..solvers.cvxpy_backend import solve_cvxpy

    if solver == "auto":
        if isinstance(prog, ConvSharedFilterProgram):
            solver = "admm"
        elif not prog.constrained:
            solver = "fista"
        else:
            solver = "admm" if isinstance(prog, ConvTwoLayerProgram) else "al"
    x = prog.zeros() if x0 is None else x0
    if solver == "cvxpy":
        problem, assemble = prog.to_cvxpy()
        res = solve_cvxpy(problem, solver=cvxpy_solver, verbose=bool(verbose),
                          **(cvxpy_options or {}))
        mu = None
        if prog.constrained and hasattr(assemble, "duals"):
            mu = prog.multipliers_from_rows(assemble.duals())
        cert, x = prog.certify(assemble(), mu,
                               refine=final_refine_iters if prog.constrained else 0,
                               primal=primal)
        res.history.append(0, cert.primal, cert.gap, cert.relative_gap, res.seconds)
        res.x = x
        return x, cert, res
    if solver == "fista":
        if prog.constrained:
            raise ValueError("solver='fista' solves unconstrained (gated) programs; use 'al'")

        def monitor(x_, s_):
            c_ = prog.certificate(x_)
            return c_.primal, c_.gap, c_.relative_gap

        res = fista(prog, x, step=1.0 / prog.lipschitz(), tol=tol, max_iter=max_iter,
                    max_time=max_time, check_every=check_every, monitor=monitor,
                    verbose=verbose)
        return res.x, prog.certificate(res.x), res
    if solver == "al" and not prog.constrained:
        raise ValueError("solver='al' is for cone-constrained programs; use 'fista'")
    if solver == "admm" and not isinstance(prog, (ConvTwoLayerProgram,
                                                  ConvSharedFilterProgram)):
        raise ValueError("solver='admm' is implemented for the two-layer CNN programs; use "
                         "'al' or 'fista'")
    if solver == "al" and prog.working_set:
        raise ValueError("solver='al' runs on all cone rows: build the program with "
                         "working_set=False, or use solver='admm' (cutting planes)")
    if solver not in ("al", "admm"):
        raise ValueError(f"unknown solver {solver!r}; expected 'auto', 'admm', 'fista', 'al' "
                         "or 'cvxpy'")
    return _solve_rounds(prog, x, solver, tol=tol, max_iter=max_iter, max_time=max_time,
                         check_every=check_every, verbose=verbose, refine_iters=refine_iters,
                         final_refine_iters=final_refine_iters, round_iters=round_iters,
                         add_rows=add_rows, primal=primal)


def _solve_rounds(prog: ConeGroupProgram, x: Tensor, inner: str, *, tol: float,
                  max_iter: int, max_time: float | None, check_every: int, verbose: int,
                  refine_iters: int, final_refine_iters: int, round_iters: int,
                  add_rows: int | None, primal: str = "network"):
    """ADMM / augmented Lagrangian, in cutting-plane rounds when the program uses working sets
    (see :func:`solve`). ADMM certificates also try the solver's loss-gradient estimate ρu
    (snapped into dom L*) and use its multipliers μ = (−ρw)_+; the factorisation time is part
    of the reported clock."""
    from ..solvers.base import History, StopReason

    t0 = time.perf_counter()
    hist = History()
    ws = bool(getattr(prog, "working_set", False)) and prog.constrained
    add = int(add_rows) if add_rows is not None else int(getattr(prog, "init_rows", 24))
    round_len = max(int(round_iters), check_every) if ws else max_iter
    total, rounds, added = 0, 0, 0
    st = _RoundState(x, torch.zeros_like(prog.constraint(x)) if prog.constrained else None,
                     1.0 if inner == "admm" else prog.loss.smoothness)
    refine = final_refine_iters if prog.constrained else 0
    reason = StopReason.MAX_ITER
    tol_in, final = tol, None  # the solver's own tolerance, tightened below if the final
    while True:                # certificate (all rows, refined μ) misses tol
        start = time.perf_counter() - t0
        if max_time is not None and start >= max_time:
            reason = StopReason.MAX_TIME
            break
        n_it = min(max_iter - total, round_len)
        if n_it <= 0:
            reason = StopReason.MAX_ITER
            break
        res = _one_round(prog, st, inner, tol=tol_in, max_iter=n_it,
                         max_time=None if max_time is None else max_time - start,
                         check_every=check_every, verbose=verbose, refine_iters=refine_iters,
                         primal=primal)
        hist.extend(res.history, total, start)
        total += res.n_iter
        rounds += 1
        if res.stop_reason == StopReason.GAP:
            final = prog.certify(st.x, st.mu, refine=refine, lam=st.lam, primal=primal)
            reason = res.stop_reason
            if final[0].relative_gap <= tol or tol_in <= 1e-3 * tol:
                break
            tol_in *= 0.3  # the solver's check was optimistic: continue, warm-started
            final = None
            continue
        if res.stop_reason == StopReason.MAX_TIME or (res.stop_reason == StopReason.STALLED
                                                      and not ws):
            reason = res.stop_reason
            break
        if not ws:
            continue
        added += _grow_working_set(prog, st, add, verbose, rounds, total)
        round_len = min(2 * round_len, 800)
    cert, xb = final or prog.certify(st.x, st.mu, refine=refine, lam=st.lam, primal=primal)
    return xb, cert, _rounds_result(prog, st, inner, hist, reason, total, rounds, added, t0)


@dataclass
class _RoundState:
    """What :func:`_solve_rounds` carries from round to round."""

    x: Tensor
    mu: Tensor | None  # the cone multipliers (None: unconstrained)
    rho: float
    lam: Tensor | None = None  # ADMM's loss-gradient estimate, snapped into dom L*
    warm: dict | None = None  # ADMM's state
    split: object = None  # ADMM's splitting (its normal matrix factorised)
    setup: float = 0.0  # seconds spent building splittings


def _one_round(prog: ConeGroupProgram, st: _RoundState, inner: str, *, tol: float,
               max_iter: int, max_time: float | None, check_every: int, verbose: int,
               refine_iters: int, primal: str):
    """One run of the inner solver from ``st`` (updated in place); returns its result."""
    if inner == "admm":
        left = max_time
        if st.split is None:
            ts = time.perf_counter()
            st.split = (SharedADMMSplitting(prog)
                        if isinstance(prog, ConvSharedFilterProgram) else ADMMSplitting(prog))
            st.setup += time.perf_counter() - ts
            left = None if left is None else max(left - (time.perf_counter() - ts), 0.0)
        res = _admm_round(prog, st.split, st.x, rho=st.rho, tol=tol, max_iter=max_iter,
                          max_time=left, check_every=check_every, verbose=verbose,
                          warm=st.warm, primal=primal)
        st.warm = res.extras
        st.lam = snap_to_domain(prog.loss, res.extras["lam"], prog.Y)
        if prog.constrained:
            st.mu = res.extras["mu"]
    else:
        res = _al_round(prog, st.x, st.mu, rho=st.rho, tol=tol, max_iter=max_iter,
                        max_time=max_time, check_every=check_every, verbose=verbose,
                        refine_iters=refine_iters, primal=primal)
        st.mu, st.rho = res.extras["mu"], res.extras["rho"]
    st.x = res.x
    return res


def _grow_working_set(prog: ConeGroupProgram, st: _RoundState, add: int, verbose: int,
                      rounds: int, total: int) -> int:
    """Add violated cone rows (:func:`_add_violated_rows`) to the working set; returns how
    many. ADMM re-factorises its normal matrix when rows were added."""
    n_new, top, st.mu, st.warm = _add_violated_rows(prog, st.x, st.mu, st.warm, add)
    if verbose:
        print(f"[cnn] round {rounds}: {total} iterations, +{n_new} cone rows "
              f"(largest relative violation {top:.2e}, working rows "
              f"{prog.n_working_rows})")
    if n_new and st.warm is not None:
        st.split = None  # the normal equations changed
    return n_new


def _rounds_result(prog: ConeGroupProgram, st: _RoundState, inner: str, hist, reason,
                   total: int, rounds: int, added: int, t0: float):
    """The :class:`SolverResult` of :func:`_solve_rounds`."""
    from ..solvers.base import SolverResult

    rho = st.warm["rho"] if inner == "admm" and st.warm is not None else st.rho
    return SolverResult(
        x=st.x, history=hist, stop_reason=reason, n_iter=total,
        seconds=time.perf_counter() - t0,
        extras={"mu": st.mu, "rho": rho, "rounds": rounds, "rows_added": added,
                "working_rows": prog.n_working_rows if prog.constrained else 0,
                "setup_seconds": st.setup,
                "normal_space": None if st.split is None else getattr(st.split, "space", None)})


def _admm_round(prog: ConeGroupProgram, split, x: Tensor, *, rho: float, tol: float,
                max_iter: int, max_time: float | None, check_every: int, verbose: int,
                warm: dict | None, primal: str):
    """One ADMM run, certified with the loss-gradient estimate ρu snapped into dom L*."""
    from ..solvers.admm import admm

    def monitor(y, lam_, mu_):
        c_, _ = prog.certify(y, mu_, lam=snap_to_domain(prog.loss, lam_, prog.Y),
                             check_violation=False, primal=primal)
        return c_.primal, c_.gap, c_.relative_gap

    return admm(split, x, rho=rho, tol=tol, max_iter=max_iter, max_time=max_time,
                check_every=check_every, monitor=monitor, verbose=verbose, warm=warm)


def _al_round(prog: ConeGroupProgram, x: Tensor, mu: Tensor | None, *, rho: float, tol: float,
              max_iter: int, max_time: float | None, check_every: int, verbose: int,
              refine_iters: int, primal: str):
    """One augmented-Lagrangian run, certified with refined multipliers."""
    from ..solvers import augmented_lagrangian

    def monitor(x_, s_, sub):
        c_, _ = prog.certify(x_, sub.updated_multipliers(s_), refine=refine_iters,
                             check_violation=False, primal=primal)
        return c_.primal, c_.gap, c_.relative_gap

    return augmented_lagrangian(prog, x, mu, rho=rho, tol=tol, max_iter=max_iter,
                                max_time=max_time, check_every=check_every,
                                monitor=monitor, verbose=verbose)


def _add_violated_rows(prog: ConeGroupProgram, x: Tensor, mu: Tensor, warm: dict | None,
                       add: int):
    """Add up to ``add`` violated cone rows to the working set; returns (rows added, largest
    relative violation, μ and the ADMM state extended by zeros / the new rows' slacks)."""
    idx, valid, top = prog.violated_rows(x, add)
    R_old = mu.shape[-1]
    n_new = prog.add_rows(idx, valid)
    if n_new:
        C_new = prog.constraint(x)[..., R_old:]
        mu = torch.cat([mu, torch.zeros_like(C_new)], -1)
        if warm is not None:
            warm = dict(warm)
            warm["s"] = torch.cat([warm["s"], C_new.clamp_min(0)], -1)
            warm["w"] = torch.cat([warm["w"], torch.zeros_like(C_new)], -1)
    return n_new, top, mu, warm
