"""Exact cone-constrained PCA oracle: h_p(Λ) = max_{u ∈ K_p, ||u|| ≤ 1} ||Λᵀ D_p X u|| per pattern
(face enumeration; see the package docstring)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import Tensor

from ...ops.linalg import as_numpy, row_space

__all__ = ["ConeFaces", "cone_constrained_pca", "FEAS_TOL"]

FEAS_TOL = 1e-9

#: rows of one chunk of face spans / patterns in the oracle and the set-up (bounded temporaries)
_CHUNK = 2 ** 17


# =============================================================================== oracle
class ConeFaces:
    """Face structure of the cones K_p = {u : (2D_p − I) X u ≥ 0} for a set of gates.

    Built once per (X, gates); :meth:`oracle` then evaluates, for any Λ (n x c), the exact
    h_p(Λ) = max_{u ∈ K_p, ||u|| ≤ 1} ||Λᵀ D_p X u|| for every pattern, with maximisers.
    ``max_faces`` caps the number of face spans (the cost is exponential in the rank).
    """

    def __init__(self, X, gates, *, max_faces: int | None = 2_000_000, exhaustive: bool = False):
        Xn = as_numpy(X)
        G = as_numpy(gates)
        self.X = Xn
        self.n, self.d = Xn.shape
        self.B, self.Vr = row_space(Xn)  # (n, r), (d, r)
        self.r = self.Vr.shape[1]
        self.P = G.shape[1]
        self.masks = np.concatenate([Xn @ G[:, a:a + _CHUNK] >= 0 for a in
                                     range(0, self.P, _CHUNK)], 1) if self.P else \
            np.zeros((self.n, 0), dtype=bool)  # (n, P) bools, X G never whole
        rn = np.linalg.norm(self.B, axis=1)
        nz = rn > 1e-9 * max(rn.max() if rn.size else 0.0, 1e-300)
        Bu = self.B[nz] / rn[nz, None]
        Yg = self.Vr.T @ G  # interior points (r, P)
        if exhaustive and self.r >= 2 and self.P > 1:
            facets = self._adjacent_facets(Bu, self.masks[nz])
        else:
            facets = []
            for p in range(self.P):
                R = (2.0 * self.masks[nz, p] - 1.0)[:, None] * Bu
                facets.append(self._facets(R, Yg[:, p]))
        self.n_facets = np.array([len(f) for f in facets])
        fmax = max(int(self.n_facets.max()) if self.P else 1, 1)
        self.F = np.zeros((self.P, fmax, self.r))
        for p, f in enumerate(facets):
            self.F[p, :len(f)] = f
        self._build_faces(facets, max_faces)

    # ------------------------------------------------------------------ facets
    @staticmethod
    def _adjacent_facets(Bu: np.ndarray, M: np.ndarray) -> list[np.ndarray]:
        """Facets of every cell of an *exhaustive* pattern set, from adjacency (no qhull).

        A facet of a cell lies in exactly one distinct hyperplane H_i, and the cell across it has
        the same signs except on H_i; so H_i carries a facet of cell p iff flipping sign i of p
        gives another cell. Sign vectors are hashed (random 64-bit weights, wrap-around sums).
        A hyperplane wrongly split in two only drops facets: the cone grows, h_p is then an
        upper bound, and the certificate stays valid.
        """
        piv = np.argmax(np.abs(Bu), axis=1)
        sg = np.sign(Bu[np.arange(len(Bu)), piv])
        _, rep = np.unique(np.round(Bu * sg[:, None], 9), axis=0, return_index=True)
        S = M[rep] ^ (sg[rep] < 0)[:, None]  # sign bits on canonical hyperplanes, (m, P)
        w = np.random.default_rng(0).integers(1, 2 ** 63, size=len(rep), dtype=np.uint64)
        P = M.shape[1]
        step = max(1, _CHUNK // max(len(rep), 1) * 8)  # (step, m) uint64 temporaries
        with np.errstate(over="ignore"):
            h = np.concatenate([(S[:, a:a + step].T.astype(np.uint64) * w).sum(
                1, dtype=np.uint64) for a in range(0, P, step)])
            known = h
            if M.all(0).any():  # the all-inactive cell exists (−u of the all-active one) but
                known = np.append(h, ((sg[rep] < 0).astype(np.uint64) * w).sum(  # is not listed
                    dtype=np.uint64))
        known = np.sort(known)
        facets = []
        for a in range(0, P, step):
            with np.errstate(over="ignore"):  # flipped hashes of this chunk's cells
                hf = h[a:a + step, None] + np.where(S[:, a:a + step].T, np.uint64(0) - w, w)
            pos = np.searchsorted(known, hf).clip(max=len(known) - 1)
            adj = known[pos] == hf  # membership by binary search (np.isin sorts all P·m keys)
            for p in range(a, min(a + step, P)):
                i = rep[adj[p - a]]
                facets.append((2.0 * M[i, p] - 1.0)[:, None] * Bu[i])
        return facets

    def _facets(self, R: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Rows of R (unit, R y > 0) that define facets of {u : R u ≥ 0} (a superset is safe)."""
        r = self.r
        if R.shape[0] == 0:
            return R
        # drop duplicate rows
        _, keep = np.unique(np.round(R, 12), axis=0, return_index=True)
        R = R[np.sort(keep)]
        m = R @ y
        if r <= 1 or R.shape[0] <= r:
            return R
        if (m <= 0).any():  # not an interior gate (sampled set): keep everything
            return R
        pts = R / m[:, None]
        E = np.linalg.svd(y[None, :])[2][1:].T  # basis of y^⊥, (r, r-1)
        C = pts @ E  # (m, r-1)
        scale = max(np.abs(C).max(), 1.0)
        if r == 2:
            c = C[:, 0]
            lo, hi = c.min(), c.max()
            sel = (c <= lo + 1e-10 * scale) | (c >= hi - 1e-10 * scale)
            return R[sel]
        from scipy.spatial import ConvexHull, QhullError

        try:
            hull = ConvexHull(C)
        except (QhullError, ValueError):
            return R
        dist = np.abs(C @ hull.equations[:, :-1].T + hull.equations[:, -1])  # (m, n_eq)
        on = (dist <= 1e-10 * scale).sum(1) >= r - 1  # on ≥ r-1 hull facets: a vertex
        on[hull.vertices] = True
        return R[on]

    def _build_faces(self, facets, max_faces) -> None:
        """Null-space bases of all facet subsets of size < r, grouped by dimension k = r − |S|."""
        r = self.r
        total = sum(sum(math.comb(len(f), s) for s in range(max(r, 1))) for f in facets)
        if max_faces is not None and total > max_faces:
            raise ValueError(f"exact cone-constrained PCA needs {total:,} face spans "
                             f"(> max_faces={max_faces:,}); the data rank r={r} is too large "
                             "for the exact oracle")
        self.groups = []  # (k, pid (N,), Q (N, r, k))
        counts = self.n_facets
        for s in range(max(r, 1)):
            k = r - s
            pids, subs = [], []
            for m in np.unique(counts[counts >= s]):  # patterns with m facets, all at once
                ps = np.nonzero(counts == m)[0]
                combos = np.array(list(itertools.combinations(range(m), s)), dtype=np.int64)
                if len(combos) == 0:
                    continue
                pids.append(np.repeat(ps, len(combos)))
                subs.append(self.F[ps][:, combos].reshape(-1, s, r) if s else
                            np.zeros((len(ps) * len(combos), 0, r)))
            if not pids:
                continue
            order = np.argsort(np.concatenate(pids), kind="stable")  # the loop's order:
            pid = np.concatenate(pids)[order]                        # by pattern, combos
            FS = np.concatenate(subs)[order]  # (N, s, r)            # in itertools order
            if s == 0:
                Q = np.broadcast_to(np.eye(r), (len(pid), r, r)).copy()
            elif r == 3 and s == 2:  # the null line of two unit rows: their cross product;
                w = np.cross(FS[:, 0], FS[:, 1])  # σ_min = ||w|| / σ_max, σ_max² = 1 + |f₁·f₂|
                wn = np.linalg.norm(w, axis=1)
                ok = wn / np.sqrt(1.0 + np.abs((FS[:, 0] * FS[:, 1]).sum(1))) > 1e-9
                pid, Q = pid[ok], (w[ok] / wn[ok, None])[:, :, None]
            else:
                _, Sv, Vt = np.linalg.svd(FS, full_matrices=True)
                ok = Sv[:, -1] > 1e-9
                pid, Vt = pid[ok], Vt[ok]
                Q = np.transpose(Vt[:, s:, :], (0, 2, 1))  # (N, r, k)
            self.groups.append((k, torch.as_tensor(pid), torch.as_tensor(Q)))
        self._F = torch.as_tensor(self.F)
        self._B = torch.as_tensor(self.B)
        self._M = torch.as_tensor(self.masks)  # bools; float64 per row chunk when used

    def subset(self, cells: np.ndarray) -> ConeFaces:
        """The oracle restricted to the patterns ``cells`` (renumbered 0..len-1): the same
        faces, so the same values on them (partial pricing)."""
        cells = np.asarray(cells, dtype=np.int64)
        sub = object.__new__(ConeFaces)
        sub.X, sub.n, sub.d, sub.B, sub.Vr, sub.r = self.X, self.n, self.d, self.B, self.Vr, self.r
        sub.P = len(cells)
        sub.masks, sub.F, sub.n_facets = self.masks[:, cells], self.F[cells], self.n_facets[cells]
        new_id = torch.full((self.P,), -1, dtype=torch.int64)
        new_id[torch.as_tensor(cells)] = torch.arange(len(cells))
        sub.groups = []
        for k, pid, Q in self.groups:
            keep = new_id[pid] >= 0
            if bool(keep.any()):
                sub.groups.append((k, new_id[pid[keep]], Q[keep]))
        sub._F, sub._B, sub._M = torch.as_tensor(sub.F), self._B, torch.as_tensor(sub.masks)
        return sub

    @property
    def n_faces(self) -> int:
        return int(sum(len(g[1]) for g in self.groups))

    # ------------------------------------------------------------------ oracle
    def reduced_operators(self, Lam) -> Tensor:
        """A_p = Λᵀ D_p X V_r for all patterns: (P, c, r)."""
        L = torch.as_tensor(as_numpy(Lam))
        if L.ndim == 1:
            L = L[:, None]
        c = L.shape[1]
        K = (L[:, :, None] * self._B[:, None, :]).reshape(self.n, c * self.r)  # λ_i ⊗ b_i
        out = torch.empty(self.P, c, self.r, dtype=torch.float64)
        step = max(1, 2 ** 23 // max(self.n, 1))  # (n, step) float64 masks at a time
        for a in range(0, self.P, step):
            out[a:a + step] = (self._M[:, a:a + step].T.to(torch.float64) @ K).reshape(-1, c,
                                                                                    self.r)
        return out

    def oracle(self, Lam, collect_above: float | None = None):
        """Exact h_p(Λ) for every pattern and unit maximisers u_p (P, d).

        With ``collect_above = t`` also returns a third item: every feasible face maximiser whose
        value ||Λᵀ D_p X u|| is ≥ t (unit directions, (N, d)) — e.g. all near-active atoms.
        """
        A = self.reduced_operators(Lam)
        collected = []
        best = torch.full((self.P,), -1.0, dtype=torch.float64)
        arg = torch.zeros(self.P, self.r, dtype=torch.float64)
        for k, pid, Q in (g for g0 in self.groups for g in _chunks(g0)):
            AQ = A[pid] @ Q  # (N, c, k)
            if k == 1:
                val = (AQ[:, :, 0] ** 2).sum(1)
                y = Q[:, :, 0]
            elif k == 2:  # closed-form top eigenpair of the 2 x 2 Gram matrices
                a, b, d = ((AQ[:, :, i] * AQ[:, :, j]).sum(1) for i, j in ((0, 0), (0, 1), (1, 1)))
                h = 0.5 * (a - d)
                lam = 0.5 * (a + d) + torch.sqrt(h * h + b * b)
                val = lam.clamp_min(0)
                v1 = torch.stack([b, lam - a], 1)  # eigenvector; (lam − d, b) when that is 0
                v2 = torch.stack([lam - d, b], 1)
                use2 = v2.norm(dim=1) > v1.norm(dim=1)
                v = torch.where(use2[:, None], v2, v1)
                v = torch.where(v.norm(dim=1, keepdim=True) > 0, v, torch.tensor([1.0, 0.0],
                                                                                  dtype=v.dtype))
                y = (Q @ v[:, :, None])[:, :, 0]
            elif AQ.shape[1] == 1:  # one output: the Gram matrix is v vᵀ, top pair (|v|², v)
                v = AQ[:, 0, :]
                val = (v * v).sum(1)
                y = torch.where((val > 0)[:, None], (Q @ v[:, :, None])[:, :, 0], Q[:, :, 0])
            else:
                Mk = AQ.transpose(1, 2) @ AQ
                w, V = torch.linalg.eigh(Mk)
                val = w[:, -1].clamp_min(0)
                y = (Q @ V[:, :, -1:])[:, :, 0]
            y = y / torch.linalg.vector_norm(y, dim=1, keepdim=True).clamp_min(1e-300)
            Fy = (self._F[pid] @ y[:, :, None])[:, :, 0]  # (N, fmax); padded rows are 0
            mp, mm = Fy.min(1).values, (-Fy).min(1).values
            sign = torch.where(mp >= mm, 1.0, -1.0).to(y.dtype)
            feas = torch.maximum(mp, mm) >= -FEAS_TOL
            val = torch.where(feas, val, torch.full_like(val, -1.0))
            y = y * sign[:, None]
            if collect_above is not None:
                sel = feas & (val >= collect_above ** 2)
                collected.append(y[sel].numpy())
            # scatter-max per pattern (keep the argmax direction)
            cur = best.clone()
            best = best.scatter_reduce(0, pid, val, reduce="amax")
            win = (val >= best[pid]) & (val > cur[pid]) & feas
            arg[pid[win]] = y[win]
        if bool((best < 0).any()):  # no feasible face found (numerical): fall back to ||A_p||₂
            bad = best < 0
            best[bad] = torch.linalg.matrix_norm(A[bad], ord=2) ** 2
        h = best.clamp_min(0).sqrt().numpy()
        U = (arg.numpy() @ self.Vr.T)
        if collect_above is not None:
            C = np.concatenate(collected, 0) if collected else np.zeros((0, self.r))
            return h, U, C @ self.Vr.T
        return h, U


def _chunks(group: tuple[int, Tensor, Tensor]):
    """A group of face spans (k, pid, Q) in pieces of at most ``_CHUNK`` spans."""
    k, pid, Q = group
    for a in range(0, len(pid), _CHUNK):
        yield k, pid[a:a + _CHUNK], Q[a:a + _CHUNK]


def cone_constrained_pca(A, B) -> tuple[float, np.ndarray]:
    """max_{u : B u ≥ 0, ||u|| ≤ 1} ||A u||₂ exactly (small problems): value and maximiser.

    A is (c, d), B (n, d) with a non-empty interior cone {Bu > 0} and rank(B) = d assumed
    pointed; solved by enumerating face spans of all row subsets of size < d (exact, slow).
    """
    A, B = as_numpy(A), as_numpy(B)
    d = B.shape[1]
    best, arg = -1.0, None
    R = A.T @ A
    for s in range(d):
        for S in itertools.combinations(range(B.shape[0]), s):
            if s:
                _, sv, Vt = np.linalg.svd(B[list(S)], full_matrices=True)
                if sv[-1] < 1e-10:
                    continue
                Q = Vt[s:].T
            else:
                Q = np.eye(d)
            w, V = np.linalg.eigh(Q.T @ R @ Q)
            y = Q @ V[:, -1]
            y /= np.linalg.norm(y)
            for sg in (1.0, -1.0):
                if (B @ (sg * y)).min() >= -1e-9 * np.linalg.norm(B, axis=1).max() and w[-1] > best:
                    best, arg = float(w[-1]), sg * y
    return math.sqrt(max(best, 0.0)), arg

