"""The program in CVXPY (the test reference) and as a sparse conic structure (Clarabel).

See :mod:`.clarabel` for the conic form's derivation."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .program import ParallelProgram

__all__ = ["to_cvxpy", "cvxpy_solution", "cvxpy_multipliers", "ConicStructure"]


def to_cvxpy(prog: ParallelProgram):
    """The same program in CVXPY (small problems; the test reference).

    Returns ``(problem, Q)`` with ``Q[j]`` the d x B matrix of the j-th neuron of every block.
    """
    import cvxpy as cp

    X = prog.X.detach().cpu().double().numpy()
    Y = prog.Y.detach().cpu().double().numpy()
    M1 = prog.M1.detach().cpu().double().numpy()
    M2 = prog.M2.detach().cpu().double().numpy()
    sig = prog.sig.detach().cpu().double().numpy()
    eps = prog.eps.detach().cpu().double().numpy()
    E = prog.E.detach().cpu().double().numpy()
    Q = [cp.Variable((prog.d, prog.B)) for _ in range(prog.m)]
    cons = []
    h = 0
    for j in range(prog.m):
        XQ = X @ Q[j]
        cons.append(cp.multiply(2 * M1[:, :, j] - 1, XQ) >= 0)
        h = h + cp.multiply(M1[:, :, j] * sig[None, :, j], XQ)
    if prog.depth == 3:
        cons.append(cp.multiply(2 * M2 - 1, h) >= 0)
    Z = cp.multiply(M2 * eps[None, :], h) @ E
    pen = cp.sum(cp.norm(cp.vstack(Q), 2, axis=0))
    data = getattr(prog.loss, "base", prog.loss).cvxpy(Z, Y)
    return cp.Problem(cp.Minimize(data + prog.reg * pen), cons), Q


def cvxpy_solution(prog: ParallelProgram, Q) -> Tensor:
    arr = np.stack([q.value for q in Q], 0)  # (m, d, B)
    return torch.as_tensor(arr.transpose(2, 0, 1).copy(), dtype=prog.X.dtype,
                           device=prog.X.device)


def cvxpy_multipliers(prog: ParallelProgram, problem) -> tuple[Tensor, Tensor] | None:
    """The solver's multipliers ν ≥ 0 of the cone constraints (None if unavailable); clipped
    at 0 (any ν ≥ 0 gives a valid dual bound, so clipping is safe)."""
    try:
        cons = problem.constraints
        nu1 = np.stack([np.asarray(cons[j].dual_value) for j in range(prog.m)], -1)
        nu2 = (np.asarray(cons[prog.m].dual_value) if prog.depth == 3
               else np.zeros((prog.n, prog.B)))
    except (TypeError, ValueError, IndexError):
        return None
    kw = {"dtype": prog.X.dtype, "device": prog.X.device}
    return (torch.as_tensor(nu1, **kw).clamp_min(0), torch.as_tensor(nu2, **kw).clamp_min(0))


class ConicStructure:
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

    def split(self, sol) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """(q (B, m, d), (ν₁ (n, B, m), ν₂ (n, B))) from a Clarabel solution (ν clipped at 0)."""
        x = np.asarray(sol.x)
        zd = np.asarray(sol.z)
        q = x[:self.nq].reshape(self.B, self.m, self.d)
        off = self.n * self.c
        nu1 = np.zeros((self.n, self.B, self.m))
        nu1[self.idx1] = np.maximum(zd[off:off + self.k1], 0.0)
        nu2 = np.zeros((self.n, self.B))
        nu2[self.idx2] = np.maximum(zd[off + self.k1:off + self.k1 + self.k2], 0.0)
        return q, (nu1, nu2)
