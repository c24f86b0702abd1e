"""Active-set solver for the cone-constrained (ReLU) two-layer program.

The program  min L(Σ_g σ_g D_g X x_g) + β Σ_g ||x_g||  s.t. (2D_g − I) X x_g ≥ 0  (see
:mod:`convexnn.formulations.two_layer`) has a group-sparse solution, and for n ≫ d most of the n
cone constraints of a group are inactive. We therefore solve a sequence of *reduced* programs
over a working set of groups W and, per group, a working set of constraint rows R_g:

1. warm start: the gated program over the same patterns (fast FISTA) gives a support and the
   rows where its solution is near or across the cone boundaries;
2. solve the reduced program exactly (interior point through CVXPY, Clarabel by default);
3. add every constraint row the reduced solution violates on the full data and re-solve;
4. certify on the full program (:meth:`TwoLayerProgram.certificate` with the reduced
   program's multipliers, tightened by NNLS); groups whose dual bound exceeds β join W;
5. stop when the certified relative gap is ≤ tol.

Each reduced solution is feasible for the full program once step 3 finds no violated row, so
the certificate's primal is attained; the dual side is the same honest bound as everywhere.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor

from ..solvers.base import History, SolverResult, StopReason

__all__ = ["solve_active_set"]


def _reduced_cvxpy(prog, groups, rows, solver, options):
    """Build and solve the reduced program; returns (values (|W|, d), duals list)."""
    import cvxpy as cp

    X = prog.X.detach().cpu().double().numpy()
    Y = prog.Y.detach().cpu().double().numpy()
    M = prog.masks.detach().cpu().double().numpy()
    n, c = Y.shape
    U = cp.Variable((len(groups), prog.d))
    cols = []
    for k in range(c):
        idx = [j for j, (_, _, kk) in enumerate(groups) if kk == k]
        if not idx:
            cols.append(np.zeros((n, 1)))
            continue
        F = np.hstack([(1.0 if groups[j][0] == 0 else -1.0)
                       * M[:, groups[j][1]:groups[j][1] + 1] * X for j in idx])
        cols.append(cp.reshape(F @ cp.vec(U[idx].T, order="F"), (n, 1), order="F"))
    Z = cp.hstack(cols) if c > 1 else cols[0]
    cons = []
    for j, (_, p, _) in enumerate(groups):
        r = rows[j]
        if len(r):
            B = (2 * M[r, p:p + 1] - 1) * X[r]
            cons.append(B @ U[j] >= 0)
        else:
            cons.append(None)
    data = prog.loss.cvxpy(Z, Y)  # an offset loss adds its free offset
    problem = cp.Problem(cp.Minimize(data + prog.reg * cp.sum(cp.norm(U, 2, axis=1))),
                         [con for con in cons if con is not None])
    if options is None and solver is not None and solver.upper() == "CLARABEL":
        # the certificate needs the reduced optimum to well below the requested gap
        options = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10,
                   "tol_ktratio": 1e-8}
    problem.solve(solver=solver, **(options or {}))
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        raise RuntimeError(f"reduced program: solver returned status {problem.status}")
    duals = [None if con is None else np.maximum(np.asarray(con.dual_value), 0.0) for con in cons]
    return U.value, duals


def _working_set_from_gated(prog, tol, warm_iters, max_time):
    """Gated program over the same patterns (unconstrained, fast) → groups and boundary rows."""
    from .two_layer import TwoLayerProgram, solve

    gated = TwoLayerProgram(prog.X, prog.Y, prog.patterns, prog.reg, prog.loss, "gated",
                            intercept=prog.intercept)
    gated.nuclear = False  # column-wise groups, like the ReLU program
    xg, _, warm = solve(gated, solver="fista", tol=max(tol, 1e-3), max_iter=warm_iters * 10,
                        max_time=max_time)
    XVg = (prog.X @ xg[0].permute(1, 0, 2).reshape(prog.d, -1)).reshape(prog.n, prog.P, prog.c)
    sgn = (2 * prog.masks - 1)[:, :, None]
    groups, rows = [], []
    for p_, k_ in torch.nonzero(torch.linalg.vector_norm(xg[0], dim=1) > 0).tolist():
        Cg = sgn[:, p_, 0] * XVg[:, p_, k_]
        scale = float(Cg.abs().max()) or 1.0
        near = torch.nonzero(Cg.abs() < 0.05 * scale).flatten().cpu().numpy()
        for s_ in (0, 1):  # violated rows enter later, round by round
            groups.append((s_, p_, k_))
            rows.append(near)
    return groups, rows, warm.n_iter


def _working_set_from_start(prog, x0, mu0):
    """Non-zero groups of a start x0 (e.g. ADMM's) with their near-active or priced rows."""
    XV = prog.relu_state(x0)
    C = prog.constraint(XV)  # (n, S, P, c)
    nrm = torch.linalg.vector_norm(x0, dim=2)  # (S, P, c)
    groups, rows = [], []
    big = float(nrm.max()) if nrm.numel() else 0.0
    for g in torch.nonzero(nrm > 1e-8 * max(big, 1e-300)).tolist():
        s_, p_, k_ = g
        Cg = C[:, s_, p_, k_]
        scale = float(Cg.abs().max()) or 1.0
        sel = Cg < 0.02 * scale
        if mu0 is not None:
            sel |= mu0[:, s_, p_, k_] > 0
        groups.append((s_, p_, k_))
        rows.append(torch.nonzero(sel).flatten().cpu().numpy())
    return groups, rows


def _scatter(prog, U: list, duals: list, groups: list, rows: list) -> tuple[Tensor, Tensor]:
    """The reduced solution (weights, cone multipliers on the working rows) as full arrays."""
    x = prog.zeros()
    mu = torch.zeros((prog.n, prog.S, prog.P, prog.c), dtype=prog.X.dtype,
                     device=prog.X.device)
    for j, g in enumerate(groups):
        x[g[0], g[1], :, g[2]] = torch.as_tensor(U[j], dtype=x.dtype, device=x.device)
        if duals[j] is not None:
            mu[torch.as_tensor(rows[j]), g[0], g[1], g[2]] = torch.as_tensor(
                duals[j], dtype=mu.dtype, device=mu.device)
    return x, mu


def _add_violated_rows(prog, XV: Tensor, groups: list, rows: list) -> int:
    """Add to each working group's rows the cone rows it violates (relative 1e-7); returns how
    many were added (``rows`` updated in place)."""
    C = prog.constraint(XV)
    scale = XV.abs().amax(0).clamp_min(1e-12)  # (S, P, c)
    added = 0
    for j, g in enumerate(groups):
        Cg = C[:, g[0], g[1], g[2]]
        new = torch.nonzero(Cg < -1e-7 * scale[g]).flatten().cpu().numpy()
        new = np.setdiff1d(new, rows[j])
        if len(new):
            rows[j] = np.union1d(rows[j], new)
            added += len(new)
    return added


def _initial_rows(prog, g: tuple, mu_g: Tensor | None = None) -> np.ndarray:
    """A new group's rows: those with a positive multiplier and the 2d closest to its
    hyperplane."""
    sel = torch.zeros(prog.n, dtype=torch.bool, device=prog.X.device)
    if mu_g is not None:
        sel |= mu_g > 0
    sel[torch.argsort((prog.X @ prog.G[:, g[1]]).abs())[: 2 * prog.d]] = True
    return torch.nonzero(sel).flatten().cpu().numpy()


def _add_violated_groups(prog, XV: Tensor, mu: Tensor, groups: list, rows: list, *,
                         refine: int, tol: float, max_new: int) -> bool:
    """The (at most ``max_new``) groups whose tightened dual bound exceeds β most join the
    working set (in place); False when there is none."""
    lam = prog.loss.grad(prog.relu_predict(XV), prog.Y)
    mu_r = prog.refine_multipliers(lam, mu, refine)
    h = prog._cone_dual_norms(lam, prog.masks[:, None, :, None], mu_r)
    in_w = torch.zeros_like(h, dtype=torch.bool)
    for g in groups:
        in_w[g] = True
    cand = torch.nonzero((h > prog.reg * (1 + 0.1 * tol)) & ~in_w)
    if len(cand) == 0:
        return False
    order = torch.argsort(h[tuple(cand.T)], descending=True)[:max_new]
    for i in order.tolist():
        g = tuple(cand[i].tolist())
        groups.append(g)
        rows.append(_initial_rows(prog, g, mu_r[:, g[0], g[1], g[2]]))
    return True


def solve_active_set(prog, *, tol: float = 1e-6, max_time: float | None = None,
                     warm_iters: int = 300, max_rounds: int = 50, max_new_groups: int = 20,
                     refine: int = 50, cvxpy_solver: str | None = "CLARABEL",
                     cvxpy_options: dict | None = None, verbose: int = 0,
                     x0=None, mu0=None):
    """Solve the ReLU program by the active-set method; returns ``(x, certificate, result)``.

    The working set starts from the gated program's solution, or — given ``x0`` (and its cone
    multipliers ``mu0``), e.g. an ADMM iterate — from x0's non-zero groups and near-active rows.
    """
    if prog.activation != "relu":
        raise ValueError("the active-set solver is for the cone-constrained ReLU program")
    t0 = time.perf_counter()
    if x0 is not None:
        groups, rows = _working_set_from_start(prog, x0, mu0)
        warm_n = 0
    else:
        groups, rows, warm_n = _working_set_from_gated(prog, tol, warm_iters, max_time)
    hist = History()
    if not groups:  # zero is optimal for the gated program; start from a top group
        groups, rows = [(0, 0, 0)], [np.arange(0)]
    reason = StopReason.MAX_ITER
    rounds = 0
    best = None  # (x, cert) of the round with the smallest gap: that one is returned
    for rounds in range(1, max_rounds + 1):
        U, duals = _reduced_cvxpy(prog, groups, rows, cvxpy_solver, cvxpy_options)
        x, mu = _scatter(prog, U, duals, groups, rows)
        XV = prog.relu_state(x)
        added = _add_violated_rows(prog, XV, groups, rows)
        if added:
            if verbose:
                print(f"[active-set] round {rounds}: +{added} rows")
            continue
        cert = prog.certificate(x, XV, None, refine=refine, mu=mu)
        if cert.relative_gap > tol:
            cert = prog.tighten(cert, [prog.loss.grad(prog.relu_predict(XV), prog.Y)], mu,
                                max_seconds=1.0)
        if best is None or cert.gap < best[1].gap:
            best = (x, cert)
        hist.append(warm_n + rounds, cert.primal, cert.gap, cert.relative_gap,
                    time.perf_counter() - t0)
        if verbose:
            print(f"[active-set] round {rounds}: |W|={len(groups)} rows={sum(map(len, rows))} "
                  f"primal={cert.primal:.10g} rel_gap={cert.relative_gap:.2e}")
        if cert.relative_gap <= tol:
            reason = StopReason.GAP
            break
        if max_time is not None and time.perf_counter() - t0 > max_time:
            reason = StopReason.MAX_TIME
            break
        if not _add_violated_groups(prog, XV, mu, groups, rows, refine=refine, tol=tol,
                                    max_new=max_new_groups):
            reason = StopReason.STALLED  # nothing left to add: gap limited by precision
            break
    if best is not None:
        x, cert = best
    x = prog.repair(x)
    return x, cert, SolverResult(x, hist, reason, warm_n + rounds, time.perf_counter() - t0,
                                 {"rounds": rounds, "working_groups": len(groups),
                                  "working_rows": int(sum(map(len, rows)))})
