"""Cone rows of the two-layer CNN program and their working sets (cutting planes); a mixin of
:class:`convexnn.formulations.cnn.conv.ConvTwoLayerProgram`.

The cone K_{pq} has one row b per (sample n, window position k): b = α x_{n,k} (+ γ x_{n,k*} for
max pooling), b·v ≥ 0. Solvers see the rows of a *working set* W_{pq} (all rows for small
problems): ``constraint`` / ``constraint_adjoint`` act on W. Rows outside W are checked by
:meth:`ConeRowsMixin.violated_rows` / :meth:`ConeRowsMixin.max_violation` (in sample chunks) and
added by the cutting-plane driver; a multiplier vector on W extended by zeros is a valid μ ≥ 0
of the full program, so certificates never depend on W.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["ConeRowsMixin"]


class ConeRowsMixin:
    """Working-set cone rows (needs ``_Xw``, ``_coeffs``, ``G``, ``win``, ``S``, ``P``, ``a``,
    ``c``, ``h``, ``N``, ``Y`` from the program)."""

    def _full_rows_chunk(self, x: Tensor, s: int, e: int) -> Tensor:
        """All cone rows applied to x for samples s..e: (n, a, Kq, S, P, c)."""
        alpha, gamma, Xstar = self._coeffs(s, e)
        T = torch.einsum("nqkh,spqch->nqkspc", self._Xw[s:e], x)
        C = alpha[:, :, :, None, :, None] * T
        if gamma is not None:
            Ts = torch.einsum("nqph,spqch->nqspc", Xstar, x)
            C = C + gamma[:, :, :, None, :, None] * Ts[:, :, None]
        return C

    def _row_chunks(self):
        per = max(1, 20_000_000 // max(1, self.a * self.win.size * self.S * self.P * self.c))
        for s in range(0, self.N, per):
            yield s, min(s + per, self.N)

    def _row_vectors(self, p_i: Tensor, q_i: Tensor, flat: Tensor) -> Tensor:
        """Row vectors b (..., h) of cones (p, q) for flat row indices n·Kq + k."""
        Kq = self.win.size
        n_i, k_i = flat // Kq, flat % Kq
        x = self._Xw[n_i, q_i, k_i]  # (..., h)
        g = self.G.T[p_i]  # (..., h)
        if self.pooling != "max":
            return torch.where(((x[..., None, :] @ g[..., :, None])[..., 0, 0] >= 0)[..., None],
                               x, -x)
        win = self._Xw[n_i, q_i]  # (..., Kq, h): the whole window of each row
        pre = (win @ g[..., :, None])[..., 0]
        val, kstar = pre.max(dim=-1)
        idx = kstar[..., None, None].expand(*kstar.shape, 1, self.h)
        xs = torch.gather(win, -2, idx)[..., 0, :]
        at_star = (k_i == kstar)[..., None]
        sign = torch.where(val >= 0, 1.0, -1.0).to(x.dtype)[..., None]
        return torch.where(at_star, sign * xs, xs - x)

    def _cone_index(self, R: int) -> tuple[Tensor, Tensor]:
        dev = self.images.device
        p_i = torch.arange(self.P, device=dev)[:, None, None].expand(self.P, self.a, R)
        q_i = torch.arange(self.a, device=dev)[None, :, None].expand(self.P, self.a, R)
        return p_i, q_i

    def set_working_rows(self, idx: Tensor, valid: Tensor) -> None:
        """Use rows ``idx`` (P, a, R) (flat n·Kq + k; entries with ``valid`` False are padding)
        as the working set of every cone (p, q)."""
        p_i, q_i = self._cone_index(idx.shape[2])
        self._Bw = self._row_vectors(p_i, q_i, idx) * valid[..., None].to(self.Y.dtype)
        self._ws_idx, self._ws_valid = idx, valid
        self._bn2 = None

    @property
    def n_working_rows(self) -> int:
        """Number of (valid) cone rows the solvers currently see."""
        return int(self._ws_valid.sum()) if self.constrained else 0

    def initial_rows(self, r: int) -> tuple[Tensor, Tensor]:
        """The r rows of every cone with the smallest normalised margin b·g_p / ||b|| at its own
        gate (the hyperplanes closest to g_p: the likeliest facets of the cone)."""
        n_rows = self.N * self.win.size
        r = max(1, min(int(r), n_rows))
        Gn = self.G / torch.linalg.vector_norm(self.G, dim=0).clamp_min(1e-300)
        best_v = best_i = None
        per = max(1, 20_000_000 // max(1, self.a * self.win.size * self.P))
        for s in range(0, self.N, per):
            e = min(s + per, self.N)
            Xw = self._Xw[s:e]  # (n, a, Kq, h)
            al, ga, Xs = self._coeffs(s, e)  # (n, a, Kq, P), γ and x_{k*} (n, a, P, h)
            bg = al * (Xw @ Gn)
            nb2 = al ** 2 * (Xw ** 2).sum(-1, keepdim=True)
            if ga is not None:
                bg = bg + ga * (Xs * Gn.T[None, None]).sum(-1)[:, :, None]
                nb2 = (nb2 + ga ** 2 * (Xs ** 2).sum(-1)[:, :, None]
                       + 2 * al * ga * torch.einsum("nqkh,nqph->nqkp", Xw, Xs))
            nb = nb2.clamp_min(0).sqrt()
            marg = bg / nb.clamp_min(1e-300)
            marg = torch.where(nb > 1e-12 * float(nb.max()), marg,
                               torch.full_like(marg, math.inf))
            v = marg.permute(3, 1, 0, 2).reshape(self.P, self.a, -1)  # (P, a, n·Kq)
            i = torch.arange(s * self.win.size, e * self.win.size,
                             device=v.device).expand_as(v)
            if best_v is not None:
                v, i = torch.cat([best_v, v], 2), torch.cat([best_i, i], 2)
            k = min(r, v.shape[2])
            best_v, sel = torch.topk(v, k, dim=2, largest=False)
            best_i = torch.gather(i, 2, sel)
        return best_i, torch.isfinite(best_v)

    def violated_rows(self, x: Tensor, per_cone: int, rel_tol: float = 1e-9
                      ) -> tuple[Tensor, Tensor, float]:
        """Up to ``per_cone`` most violated rows outside the working set for every cone, scored
        by max over the cone's groups (s, c) of −b·x_g / ||x_g|| (non-zero groups only).
        Returns (idx, valid, largest score)."""
        nrm = torch.linalg.vector_norm(x, dim=-1)  # (S, P, a, c)
        thr = 1e-9 * float(nrm.max()) if nrm.numel() else 0.0
        inv = torch.where(nrm > thr, 1.0 / nrm.clamp_min(1e-300), torch.zeros_like(nrm))
        inv = inv.permute(2, 0, 1, 3)  # (a, S, P, c)
        inws = torch.zeros(self.P, self.a, self.N * self.win.size, dtype=torch.bool,
                           device=x.device)
        inws.scatter_(2, self._ws_idx, self._ws_valid)
        best_v = best_i = None
        for s, e in self._row_chunks():
            C = self._full_rows_chunk(x, s, e)  # (n, a, Kq, S, P, c)
            sc = (-C * inv[None, :, None]).amax(dim=(3, 5))  # (n, a, Kq, P)
            v = sc.permute(3, 1, 0, 2).reshape(self.P, self.a, -1)
            i = torch.arange(s * self.win.size, e * self.win.size,
                             device=v.device).expand_as(v)
            v = torch.where(inws[:, :, s * self.win.size:e * self.win.size],
                            torch.full_like(v, -math.inf), v)
            if best_v is not None:
                v, i = torch.cat([best_v, v], 2), torch.cat([best_i, i], 2)
            k = min(per_cone, v.shape[2])
            best_v, sel = torch.topk(v, k, dim=2)
            best_i = torch.gather(i, 2, sel)
        top = float(best_v.max()) if best_v.numel() else -math.inf
        return best_i, best_v > rel_tol, top

    def add_rows(self, idx: Tensor, valid: Tensor) -> int:
        """Append rows to the working sets (cones with fewer new rows are padded); returns the
        number of rows added."""
        n_new = int(valid.sum())
        if n_new == 0:
            return 0
        keep = valid.any(dim=(0, 1))  # drop all-padding columns
        idx, valid = idx[:, :, keep], valid[:, :, keep]
        self.set_working_rows(torch.cat([self._ws_idx, torch.where(valid, idx, 0)], 2),
                              torch.cat([self._ws_valid, valid], 2))
        return n_new

    def multipliers_from_rows(self, duals: dict, rel_tol: float = 1e-12) -> Tensor:
        """μ on the working rows from per-group multipliers of full rows ({(s, p, q, c):
        (flat row indices, values ≥ 0)}, e.g. CVXPY's duals). Rows with a non-negligible
        multiplier that are outside the working set are added to it first."""
        top = max((float(v.max()) for _, v in duals.values() if len(v)), default=0.0)
        need: dict = {}
        for (_, p_, q_, _c), (flat, val) in duals.items():
            need.setdefault((p_, q_), set()).update(
                int(f) for f, v in zip(flat, val) if v > rel_tol * top)
        have = {}
        for p_ in range(self.P):
            for q_ in range(self.a):
                have[(p_, q_)] = {int(i): r for r, (i, ok) in enumerate(
                    zip(self._ws_idx[p_, q_].tolist(), self._ws_valid[p_, q_].tolist())) if ok}
        new = {k: sorted(v - set(have[k])) for k, v in need.items()}
        width = max((len(v) for v in new.values()), default=0)
        if width:
            idx = torch.zeros(self.P, self.a, width, dtype=torch.long, device=self.Y.device)
            valid = torch.zeros(self.P, self.a, width, dtype=torch.bool, device=self.Y.device)
            for (p_, q_), rows in new.items():
                idx[p_, q_, :len(rows)] = torch.as_tensor(rows, dtype=torch.long)
                valid[p_, q_, :len(rows)] = True
            R_old = self._ws_idx.shape[2]
            self.add_rows(idx, valid)
            for (p_, q_), rows in new.items():
                for j, f in enumerate(rows):
                    have[(p_, q_)][f] = R_old + j
        mu = torch.zeros(self.S, self.P, self.a, self.c, self._ws_idx.shape[2],
                         dtype=self.Y.dtype, device=self.Y.device)
        for (s_, p_, q_, c_), (flat, val) in duals.items():
            pos = have[(p_, q_)]
            for f, v in zip(flat, val):
                r = pos.get(int(f))
                if r is not None and v > 0:
                    mu[s_, p_, q_, c_, r] = float(v)
        return mu

    def constraint(self, x: Tensor) -> Tensor:
        """Working-set rows applied to x: C[s, p, q, c, r] ≥ 0 (shape (S, P, a, c, R))."""
        return torch.einsum("pqrh,spqch->spqcr", self._Bw, x)

    def constraint_adjoint(self, Mu: Tensor) -> Tensor:
        return torch.einsum("pqrh,spqcr->spqch", self._Bw, Mu)

    def max_violation(self, x: Tensor) -> float:
        """Largest violation max(−b·x_g, 0) over *all* cone rows (sample chunks)."""
        if not self.constrained:
            return 0.0
        v = 0.0
        for s, e in self._row_chunks():
            v = max(v, float((-self._full_rows_chunk(x, s, e)).clamp_min(0).max()))
        return v

    def project_to_cones(self, x: Tensor) -> Tensor:
        """Exact Euclidean projection of every non-zero group onto its full cone:
        Π_K(v) = v + Bᵀμ*, μ* = argmin_{μ ≥ 0} ||v + Bᵀμ||² (NNLS over *all* rows b of the cone;
        cost grows with N·K, meant for moderate problems). Round-off left by the projection is
        removed by v + t g_p (the gate lies in its cone with margins b·g_p ≥ 0), or, when a
        violated row has no margin, by zeroing the group."""
        from scipy.optimize import nnls

        if not self.constrained:
            return x
        x = x.clone()
        n_rows = self.N * self.win.size
        flat = torch.arange(n_rows, device=x.device)
        nrm = torch.linalg.vector_norm(x, dim=-1)  # (S, P, a, c)
        cache: dict = {}
        for s_, p_, q_, c_ in torch.nonzero(nrm > 0).tolist():
            if (p_, q_) not in cache:
                B = self._row_vectors(torch.full_like(flat, p_), torch.full_like(flat, q_), flat)
                cache[(p_, q_)] = (B, B @ self.G[:, p_])
            B, bg = cache[(p_, q_)]
            v = x[s_, p_, q_, c_]
            if float((B @ v).min()) >= 0:
                continue
            Bn = B.detach().cpu().double().numpy()
            m, _ = nnls(Bn.T, -v.detach().cpu().double().numpy(), maxiter=50 * Bn.shape[0])
            u = v + B.T @ torch.as_tensor(m, dtype=x.dtype, device=x.device)
            r = B @ u
            if float(r.min()) < 0:
                bad = r < 0
                if bool((bg[bad] <= 0).any()):
                    u = torch.zeros_like(u)
                else:
                    u = u + float((-r[bad] / bg[bad]).max()) * self.G[:, p_]
            x[s_, p_, q_, c_] = u
        return x
