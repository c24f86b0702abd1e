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
medium n; the structured interior-point solvers of :mod:`.parallel_interior` do the same
factorisation 3–5x faster with dense batched algebra. This backend is the independent reference
(a different code path to the same optimum) and the fallback when a block has no strictly
feasible witness.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor

from ..solvers.base import History, SolverResult, StopReason
from .parallel_interior import loss_hessian_blocks

__all__ = ["solve_clarabel"]


class _Structure:
    """Sparse constraint matrix of the program for fixed blocks (built once per solve)."""

    def __init__(self, prog):
        import scipy.sparse as sp

        X = prog.X.detach().cpu().double().numpy()
        n, d = X.shape
        B, m, c = prog.B, prog.m, prog.c
        M1 = prog.M1.detach().cpu().numpy() > 0
        M2 = prog.M2.detach().cpu().numpy() > 0
        sig = prog.sig.detach().cpu().double().numpy()
        eps = prog.eps.detach().cpu().double().numpy()
        out = prog.blocks.outputs.detach().cpu().numpy()
        S1 = np.where(M1, 1.0, -1.0)
        S2 = np.where(M2, 1.0, -1.0)
        self.n, self.d, self.B, self.m, self.c = n, d, B, m, c
        nq = B * m * d
        self.nq = nq
        self.nv = nq + B + n * c  # [q, t, z]
        ar = np.arange(d)
        rows, cols, vals = [], [], []
        # z − A q = 0
        ii, ss, jj = np.nonzero(M1 & M2[:, :, None])
        rows.append(np.repeat(ii * c + out[ss], d))
        cols.append(np.repeat((ss * m + jj) * d, d) + np.tile(ar, len(ii)))
        vals.append((-(eps[ss] * sig[ss, jj])[:, None] * X[ii]).ravel())
        rows.append(np.arange(n * c))
        cols.append(nq + B + np.arange(n * c))
        vals.append(np.ones(n * c))
        r0 = n * c
        # first-layer rows: s = S1 x_iᵀ q_sj ≥ 0
        i1, s1, j1 = np.nonzero(np.ones((n, B, m), dtype=bool))
        k1 = len(i1)
        rows.append(r0 + np.repeat(np.arange(k1), d))
        cols.append(np.repeat((s1 * m + j1) * d, d) + np.tile(ar, k1))
        vals.append((-(S1[i1, s1, j1])[:, None] * X[i1]).ravel())
        r0 += k1
        # second-layer rows that are neither vacuous nor implied by the first layer
        if prog.depth == 3:
            implied = ((S2[:, :, None] * sig[None] >= 0) | ~M1).all(-1)
            need = M1.any(-1) & ~implied
        else:
            need = np.zeros((n, B), dtype=bool)
        i2, s2 = np.nonzero(need)
        k2 = len(i2)
        for j in range(m):
            sel = M1[i2, s2, j]
            ii_, ss_ = i2[sel], s2[sel]
            rows.append(np.repeat(r0 + np.nonzero(sel)[0], d))
            cols.append(np.repeat((ss_ * m + j) * d, d) + np.tile(ar, len(ii_)))
            vals.append((-(S2[ii_, ss_] * sig[ss_, j])[:, None] * X[ii_]).ravel())
        r0 += k2
        # second-order cones (t_s, q_s)
        md = m * d
        soc_r = r0 + np.arange(B * (1 + md))
        soc_c = np.concatenate([np.concatenate([[nq + s], s * md + np.arange(md)])
                                for s in range(B)]) if B else np.zeros(0, dtype=int)
        rows.append(soc_r)
        cols.append(soc_c)
        vals.append(-np.ones(B * (1 + md)))
        r0 += B * (1 + md)
        self.A = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                               shape=(r0, self.nv))
        self.n_rows = r0
        self.k1, self.k2 = k1, k2
        self.idx1 = (i1, s1, j1)
        self.idx2 = (i2, s2)

    def cones(self):
        import clarabel

        n_lin = self.k1 + self.k2
        cones = [clarabel.ZeroConeT(self.n * self.c)]
        if n_lin:
            cones.append(clarabel.NonnegativeConeT(n_lin))
        cones += [clarabel.SecondOrderConeT(1 + self.m * self.d)] * self.B
        return cones

    def hessian(self, Hb: np.ndarray):
        """Upper-triangular sparse P with the (n, c, c) blocks on the z variables."""
        import scipy.sparse as sp

        n, c = self.n, self.c
        base = self.nq + self.B
        a, b = np.triu_indices(c)
        r = (base + np.arange(n)[:, None] * c + a[None]).ravel()
        cc = (base + np.arange(n)[:, None] * c + b[None]).ravel()
        v = Hb[:, a, b].ravel()
        return sp.csc_matrix((v, (r, cc)), shape=(self.nv, self.nv))

    def split(self, sol) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(q (B, m, d), ν₁ (n, B, m), ν₂ (n, B)) from a Clarabel solution (ν clipped at 0)."""
        x = np.asarray(sol.x)
        zd = np.asarray(sol.z)
        q = x[:self.nq].reshape(self.B, self.m, self.d)
        off = self.n * self.c
        nu1 = np.zeros((self.n, self.B, self.m))
        nu1[self.idx1] = np.maximum(zd[off:off + self.k1], 0.0)
        nu2 = np.zeros((self.n, self.B))
        nu2[self.idx2] = np.maximum(zd[off + self.k1:off + self.k1 + self.k2], 0.0)
        return q, nu1, nu2


def _clarabel_qp(st: _Structure, Hb: np.ndarray, g: np.ndarray, reg: float, settings: dict,
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


def solve_clarabel(prog, *, tol: float = 1e-7, max_newton: int = 30, x0: Tensor | None = None,
              max_time: float | None = None, settings: dict | None = None, verbose: int = 0,
              prune: float = 1e-7) -> tuple[Tensor, tuple[Tensor, Tensor], SolverResult]:
    """Solve ``prog`` (a :class:`ParallelProgram`) by Clarabel, proximal Newton for
    non-quadratic losses. Returns ``(x, ν, result)``; groups with norm ≤ ``prune``·max are set
    to 0 (interior-point round-off; 0 lies in every cone). ``x0`` (feasible) warm-starts the
    Newton loop. ``settings``: Clarabel settings by name (e.g. ``{"max_threads": 2}``)."""
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
    st = _Structure(prog)
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
        if exact:
            Hb = np.ones((st.n, st.c, st.c)) * np.eye(st.c)[None]
            g = -Y
        else:
            Z = prog.predict(prog.linear(q))
            Hb_t = loss_hessian_blocks(prog.loss, Z, prog.Y)
            Hb_t = Hb_t + 1e-8 * torch.eye(st.c, dtype=Z.dtype, device=Z.device)[None]
            Gt = prog.loss.grad(Z, prog.Y)
            Hb = Hb_t.detach().cpu().double().numpy()
            Zn = Z.detach().cpu().double().numpy()
            g = Gt.detach().cpu().double().numpy() - np.einsum("nab,nb->na", Hb, Zn)
        sol, status = _clarabel_qp(st, Hb, g, prog.reg, settings, remaining)
        qh, nu1, nu2 = st.split(sol)
        qh = torch.as_tensor(qh, **kw)
        nu = (torch.as_tensor(nu1, **kw), torch.as_tensor(nu2, **kw))
        if exact:
            q = qh
            reason = StopReason.CONVERGED
            hist.append(it, F(q), float("nan"), float("nan"), time.perf_counter() - t0)
            break
        # backtracking on the exact objective along the (feasible) segment q → qh
        step = qh - q
        alpha, Fn = 1.0, F(qh)
        while Fn > Fq and alpha > 1e-10:
            alpha *= 0.5
            Fn = F(q + alpha * step)
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

