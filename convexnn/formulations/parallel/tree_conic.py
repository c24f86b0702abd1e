"""The depth-L (tree) program in CVXPY (the test reference) and as a sparse conic structure
for Clarabel (same interface as :class:`.conic_form.ConicStructure`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .conic_form import ConicStructure, cvxpy_solution
from .tree import path_coefficients
from .tree_program import TreeProgram

#: the (M, d, B) read-back of the level-by-level model is the depth-3 one (same Q layout)
cvxpy_tree_solution = cvxpy_solution

__all__ = ["to_cvxpy_tree", "cvxpy_tree_solution", "cvxpy_tree_multipliers", "TreeConicStructure"]


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def to_cvxpy_tree(prog: TreeProgram):
    """The program in CVXPY, level by level (small problems). Returns ``(problem, Q)`` with
    ``Q[j]`` the d x B matrix of leaf j of every block."""
    import cvxpy as cp

    X, Y, E, eps = _np(prog.X), _np(prog.Y), _np(prog.E), _np(prog.eps)
    masks, sigs, w = [_np(mk) for mk in prog.masks], [_np(s) for s in prog.sigs], prog.tree.width
    Q = [cp.Variable((prog.d, prog.B)) for _ in range(prog.m)]
    h = [X @ q for q in Q]  # level 1, one n x B expression per unit
    cons = []
    for lev in range(prog.depth - 1):
        cons += [cp.multiply(2 * masks[lev][:, :, u] - 1, h[u]) >= 0 for u in range(len(h))]
        if lev == prog.depth - 2:
            break
        coef = [masks[lev][:, :, u] * sigs[lev][None, :, u] for u in range(len(h))]
        h = [sum(cp.multiply(coef[u], h[u]) for u in range(k * w, k * w + w))
             for k in range(len(h) // w)]
    Z = cp.multiply(masks[-1][:, :, 0] * eps[None, :], h[0]) @ E
    pen = cp.sum(cp.norm(cp.vstack(Q), 2, axis=0))
    data = getattr(prog.loss, "base", prog.loss).cvxpy(Z, Y)
    return cp.Problem(cp.Minimize(data + prog.reg * pen), cons), Q


class TreeConicStructure(ConicStructure):
    """Sparse constraint matrix of the tree program for fixed blocks: variables [q, t, z],
    rows z − A q = 0, every level's cone rows (vacuous rows and rows implied by the level
    below dropped, exactly), and one second-order cone (t_s, q_s) per block. The quadratic
    part (:meth:`hessian`) is the depth-3 structure's."""

    def __init__(self, prog: TreeProgram):
        import scipy.sparse as sp

        X = _np(prog.X)
        n, d = X.shape
        B, M, c, tree = prog.B, prog.m, prog.c, prog.tree
        self.n, self.d, self.B, self.m, self.c = n, d, B, M, c
        masks = [mk.detach().cpu().numpy() > 0 for mk in prog.masks]
        C = [_np(t) for t in path_coefficients(prog.masks, prog.sig, tree)]
        sigs = [_np(s) for s in prog.sigs]
        eps, out = _np(prog.eps), prog.blocks.outputs.detach().cpu().numpy()
        anc = tree.ancestors()
        self.nq = nq = B * M * d
        self.nv = nq + B + n * c
        ar = np.arange(d)
        rows, cols, vals = [], [], []

        def add(r: np.ndarray, ii: np.ndarray, ss: np.ndarray, jj: np.ndarray, coef: np.ndarray):
            rows.append(np.repeat(r, d))
            cols.append(np.repeat((ss * M + jj) * d, d) + np.tile(ar, len(ii)))
            vals.append((coef[:, None] * X[ii]).ravel())

        ii, ss, jj = np.nonzero(C[-1])  # z − A q = 0
        add(ii * c + out[ss], ii, ss, jj, -eps[ss] * C[-1][ii, ss, jj])
        rows.append(np.arange(n * c))
        cols.append(nq + B + np.arange(n * c))
        vals.append(np.ones(n * c))
        r0, self.level_rows = n * c, []
        for lev, u in enumerate(tree.units):
            S = np.where(masks[lev], 1.0, -1.0)  # (n, B, u)
            if lev == 0:
                need = np.ones((n, B, u), dtype=bool)
            else:  # a row is vacuous without an active child, implied when every active
                # child enters with the row's required sign
                act = masks[lev - 1].reshape(n, B, u, -1)
                agree = (S[..., None] * sigs[lev - 1].reshape(1, B, u, -1) >= 0) | ~act
                need = act.any(-1) & ~agree.all(-1)
            rid = np.full(need.shape, -1)
            idx = np.nonzero(need)
            rid[idx] = r0 + np.arange(len(idx[0]))
            ii, ss, jj = np.nonzero(C[lev])
            r = rid[ii, ss, anc[lev][jj]]
            sel = r >= 0
            ii, ss, jj, r = ii[sel], ss[sel], jj[sel], r[sel]
            add(r, ii, ss, jj, -S[ii, ss, anc[lev][jj]] * C[lev][ii, ss, jj])
            self.level_rows.append(idx)
            r0 += len(idx[0])
        self.n_lin = r0 - n * c
        md = M * d
        rows.append(r0 + np.arange(B * (1 + md)))
        cols.append(np.concatenate([np.concatenate([[nq + s], s * md + np.arange(md)])
                                    for s in range(B)]) if B else np.zeros(0, dtype=int))
        vals.append(-np.ones(B * (1 + md)))
        r0 += B * (1 + md)
        self.A = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows),
                                                       np.concatenate(cols))), shape=(r0, self.nv))
        self.n_rows = r0
        self.units = tree.units

    def cones(self):
        import clarabel

        cones = [clarabel.ZeroConeT(self.n * self.c)]
        if self.n_lin:
            cones.append(clarabel.NonnegativeConeT(self.n_lin))
        return cones + [clarabel.SecondOrderConeT(1 + self.m * self.d)] * self.B

    def split(self, sol) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """(q (B, M, d), ν per level (n, B, u_l)) from a Clarabel solution (ν clipped at 0)."""
        x, zd = np.asarray(sol.x), np.asarray(sol.z)
        q = x[:self.nq].reshape(self.B, self.m, self.d)
        off, nus = self.n * self.c, []
        for u, idx in zip(self.units, self.level_rows):
            nu = np.zeros((self.n, self.B, u))
            k = len(idx[0])
            nu[idx] = np.maximum(zd[off:off + k], 0.0)
            nus.append(nu)
            off += k
        return q, tuple(nus)


def cvxpy_tree_multipliers(prog: TreeProgram, problem) -> tuple[Tensor, ...] | None:
    """The solver's multipliers ν ≥ 0 per level (None if unavailable), clipped at 0."""
    kw = {"dtype": prog.X.dtype, "device": prog.X.device}
    try:
        duals = [np.asarray(c.dual_value) for c in problem.constraints]
        out, k = [], 0
        for u in prog.tree.units:
            out.append(torch.as_tensor(np.stack(duals[k:k + u], -1), **kw).clamp_min(0))
            k += u
    except (TypeError, ValueError, IndexError):
        return None
    return tuple(out)
