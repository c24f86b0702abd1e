r"""Clarabel (direct, no modelling layer) for the path-regularised parallel program over blocks.

The program of :mod:`convexnn.formulations.parallel` over blocks s = 1..B (q_s ∈ R^{m x d}),

    min_q  L(Z) + β Σ_s ||q_s||_F
    s.t.   Z = Σ_s ε_s e_{t_s} ⊗ D_{2,s} Σ_j σ_{sj} D_{1,sj} X q_{sj},
           (2D_{1,sj} − I) X q_{sj} ≥ 0,   (2D_{2,s} − I) Σ_j σ_{sj} D_{1,sj} X q_{sj} ≥ 0,

is handed to Clarabel (a primal-dual interior-point method for conic programs) directly, as

    min ½ zᵀ H z + gᵀ z + β Σ_s t_s   s.t.  z − A q = 0,  G q ≥ 0,  (t_s, q_s) ∈ SOC,

with H, g a quadratic model of L at the current predictions: for the squared loss the model is
exact (H = I, g = −Y, one solve); for the logistic and cross-entropy losses it is the
second-order Taylor model (H = ∇²L + δI), and the solve is repeated as a *proximal Newton*
method with a backtracking line search on the exact objective F(q) = L(Aq) + β Σ ||q_s||_F:
both endpoints of a step are feasible, the cones are convex, so every iterate is feasible and
F decreases monotonically. Other losses use H = (smoothness) I, a majoriser of L, so the full
step always decreases F (majorise–minimise).

Second-layer rows that are vacuous (no first-layer neuron active on the row) or implied by the
first-layer rows (every active neuron's sign agrees with the row's required sign) are dropped;
this is exact. Building the matrices directly (no modelling layer) avoids CVXPY's compile time.

Multipliers: Clarabel's duals ν ≥ 0 of the rows G q ≥ 0 satisfy, at the model's optimum,
||A_sᵀΛ − G_sᵀν_s||_F ≤ β with Λ = ∇(model)(z) (the equality row's dual is −Λ); they are
returned (zero on dropped rows) for :meth:`ParallelProgram.certificate`, which evaluates the
dual bound at the *network's* gradient Λ = ∇L(f(X)) — any ν ≥ 0 gives a valid bound.

Cost: the KKT factorisation couples every block to the n·c predictions; per interior-point
iteration the work grows like B · n² · m d (dense blocks), so this is the solver for small and
medium n; the structured interior-point solvers of :mod:`.interior` do the same
factorisation 3–5x faster with dense batched algebra. This backend is the independent reference
(a different code path to the same optimum) and the fallback when a block has no strictly
feasible witness.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor

from ...solvers.base import History, SolverResult, StopReason
from .conic_form import ConicStructure
from .kkt import loss_hessian_blocks
from .tree_conic import TreeConicStructure
from .tree_program import TreeProgram

__all__ = ["solve_clarabel"]


def _clarabel_qp(st: ConicStructure, Hb: np.ndarray, g: np.ndarray, reg: float, settings: dict,
                 time_limit: float | None):
    import clarabel

    qv = np.zeros(st.nv)
    qv[st.nq:st.nq + st.B] = reg
    qv[st.nq + st.B:] = g.ravel()
    s = clarabel.DefaultSettings()
    s.verbose = False
    for k, v in settings.items():
        if not hasattr(s, k):
            raise ValueError(f"unknown Clarabel setting {k!r}")
        setattr(s, k, v)
    if time_limit is not None:
        s.time_limit = max(float(time_limit), 1e-3)
    solver = clarabel.DefaultSolver(st.hessian(Hb), qv, st.A, np.zeros(st.n_rows), st.cones(), s)
    sol = solver.solve()
    status = str(sol.status)
    if status not in ("Solved", "AlmostSolved"):
        raise RuntimeError(f"Clarabel returned status {status} on the parallel program "
                           f"({st.B} blocks, {st.n} samples)")
    return sol, status


def _quadratic_model(prog, st: ConicStructure, q: Tensor, Y: np.ndarray, exact: bool
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(H blocks, linear term) of the loss's quadratic model in the predictions at q (the loss
    itself for the squared loss; a 1e-8 ridge keeps the blocks definite)."""
    if exact:
        return np.ones((st.n, st.c, st.c)) * np.eye(st.c)[None], -Y
    Z = prog.predict(prog.linear(q))
    Hb_t = loss_hessian_blocks(prog.loss, Z, prog.Y)
    Hb_t = Hb_t + 1e-8 * torch.eye(st.c, dtype=Z.dtype, device=Z.device)[None]
    Gt = prog.loss.grad(Z, prog.Y)
    Hb = Hb_t.detach().cpu().double().numpy()
    Zn = Z.detach().cpu().double().numpy()
    return Hb, Gt.detach().cpu().double().numpy() - np.einsum("nab,nb->na", Hb, Zn)


def _backtrack(F, q: Tensor, qh: Tensor, Fq: float) -> tuple[float, float]:
    """Halve α from 1 until F(q + α (qh − q)) ≤ F(q) (or α ≤ 1e-10); returns (α, F there)."""
    step = qh - q
    alpha, Fn = 1.0, F(qh)
    while Fn > Fq and alpha > 1e-10:
        alpha *= 0.5
        Fn = F(q + alpha * step)
    return alpha, Fn


def solve_clarabel(prog, *, tol: float = 1e-7, max_newton: int = 30, x0: Tensor | None = None,
              max_time: float | None = None, settings: dict | None = None, verbose: int = 0,
              prune: float = 1e-7) -> tuple[Tensor, tuple[Tensor, ...], SolverResult]:
    """Solve ``prog`` (a :class:`ParallelProgram` or :class:`TreeProgram`) by Clarabel,
    proximal Newton for non-quadratic losses. Returns ``(x, ν, result)`` (ν: one tensor per
    cone family); groups with norm ≤ ``prune``·max are set to 0 (interior-point round-off; 0
    lies in every cone). ``x0`` (feasible) warm-starts the Newton loop. ``settings``: Clarabel
    settings by name (e.g. ``{"max_threads": 2}``)."""
    try:
        import clarabel  # noqa: F401
        import scipy.sparse  # noqa: F401
    except ImportError as exc:  # pragma: no cover
        raise ImportError("solver='clarabel' needs the 'clarabel' and 'scipy' packages") from exc
    t0 = time.perf_counter()
    kw = {"dtype": prog.X.dtype, "device": prog.X.device}
    hist = History()
    if prog.B == 0:
        nu = prog.zero_multipliers()
        return prog.zeros(), nu, SolverResult(prog.zeros(), hist, StopReason.CONVERGED, 0, 0.0,
                                              {"status": "empty"})
    st = TreeConicStructure(prog) if isinstance(prog, TreeProgram) else ConicStructure(prog)
    settings = dict(settings or {})
    Y = prog.Y.detach().cpu().double().numpy()
    exact = prog.loss.name == "squared"
    q = prog.zeros() if x0 is None else x0.to(**kw)

    def F(x: Tensor) -> float:
        return prog.objective(x)

    Fq = F(q)
    nu = prog.zero_multipliers()
    reason, status, it = StopReason.MAX_ITER, "", 0
    for it in range(1, max_newton + 1):
        remaining = None if max_time is None else max_time - (time.perf_counter() - t0)
        if remaining is not None and remaining <= 0:
            reason = StopReason.MAX_TIME
            break
        Hb, g = _quadratic_model(prog, st, q, Y, exact)
        sol, status = _clarabel_qp(st, Hb, g, prog.reg, settings, remaining)
        qh, nus = st.split(sol)
        qh = torch.as_tensor(qh, **kw)
        nu = tuple(torch.as_tensor(v, **kw) for v in nus)
        if exact:
            q = qh
            reason = StopReason.CONVERGED
            hist.append(it, F(q), float("nan"), float("nan"), time.perf_counter() - t0)
            break
        # backtracking on the exact objective along the (feasible) segment q → qh
        step = qh - q
        alpha, Fn = _backtrack(F, q, qh, Fq)
        if Fn > Fq:
            reason = StopReason.STALLED
            break
        q = q + alpha * step
        decrease, Fq = Fq - Fn, Fn
        cert = prog.certificate(q, nu)
        hist.append(it, cert.primal, cert.gap, cert.relative_gap, time.perf_counter() - t0)
        if verbose:
            print(f"[ipm] newton {it}: objective {cert.primal:.10g} rel.gap "
                  f"{cert.relative_gap:.3e} step {alpha:.3g} ({status})")
        if cert.relative_gap <= tol:
            reason = StopReason.GAP
            break
        if decrease <= 1e-13 * max(abs(Fq), 1.0):  # working precision of the QP solves
            reason = StopReason.STALLED
            break
    nrm = prog.group_norms(q)
    if nrm.numel() and float(nrm.max()) > 0:
        q = q * (nrm > prune * float(nrm.max()))[:, None, None]
    return q, nu, SolverResult(x=q, history=hist, stop_reason=reason, n_iter=it,
                               seconds=time.perf_counter() - t0,
                               extras={"status": status, "n_rows": st.n_rows,
                                       "nnz": int(st.A.nnz)})
