"""Structured Newton systems of the parallel program: barrier terms, block Cholesky +
Woodbury solves, strictly feasible starts (the methods are in :mod:`.interior`)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...solvers.fista import accelerated_projected_gradient

__all__ = ["NotStrictlyFeasible", "loss_hessian_blocks", "BarrierTerms", "check_witness",
           "witness_weights", "woodbury_solver", "cholesky_jitter"]


class NotStrictlyFeasible(ValueError):
    """A block's witness lies on the boundary of its cone (a data point on a hyperplane)."""


def loss_hessian_blocks(loss, Z: Tensor, Y: Tensor) -> Tensor:
    """Per-sample Hessian blocks ∇²L(Z), shape (n, c, c) (smoothness·I for unknown losses)."""
    n, c = Z.shape
    name = getattr(loss, "name", "")
    eye = torch.eye(c, dtype=Z.dtype, device=Z.device)
    if name == "squared":
        return eye.expand(n, c, c).clone()
    if name == "logistic":
        s = torch.sigmoid(Y * Z)
        return (s * (1 - s))[:, :, None]
    if name == "cross_entropy":
        P = torch.softmax(Z, dim=1)
        return torch.diag_embed(P) - P[:, :, None] * P[:, None, :]
    return float(loss.smoothness) * eye.expand(n, c, c).clone()


class BarrierTerms:
    """Tensors of the barrier problem for fixed blocks."""

    def __init__(self, prog):
        self.prog = prog
        X = prog.X
        self.X = X
        self.n, self.d = X.shape
        self.B, self.m, self.c = prog.B, prog.m, prog.c
        self.reg = prog.reg
        self.loss = prog.loss
        self.Y = prog.Y
        # first-layer rows (drop all-zero data rows: their constraint is 0 ≥ 0)
        self.S1 = prog.S1
        self.v1 = (torch.linalg.vector_norm(X, dim=1) > 0).to(X.dtype)[:, None, None] \
            * torch.ones_like(self.S1)
        # upper rows (n, B, R) and their coefficients on the first-layer state (n, B, R, m);
        # the outputs' coefficients P (n, B, m)
        self.C2, self.need2, self.P = prog.barrier_rows()
        self.E = prog.E  # (B, c)
        self.n_barrier = float(self.v1.sum() + self.need2.sum() + self.B)
        self.XX = (X[:, :, None] * X[:, None, :]).reshape(self.n, self.d * self.d)

    # -------------------------------------------------------------- pieces
    def state(self, q: Tensor) -> Tensor:
        return (self.X @ q.reshape(-1, self.d).T).reshape(self.n, self.B, self.m)

    def upper(self, U: Tensor) -> Tensor:
        """The upper rows' values (n, B, R) at the first-layer state U (n, B, m)."""
        return (self.C2 * U[:, :, None, :]).sum(-1)

    def upper_adjoint(self, w: Tensor) -> Tensor:
        """Adjoint of :meth:`upper`: (n, B, R) → (n, B, m)."""
        return (self.C2 * w[..., None]).sum(2)

    def upper_gram(self, w2: Tensor) -> Tensor:
        """Σ_r w2 C_r C_rᵀ per sample and block, flattened (n, B·m·m)."""
        A2 = self.C2 * w2[..., None].sqrt()
        return torch.einsum("nbrj,nbrk->nbjk", A2, A2).reshape(self.n, -1)

    def slacks(self, U: Tensor) -> tuple[Tensor, Tensor]:
        s1 = self.S1 * U
        s2 = self.upper(U)
        # rows that are not constraints get slack 1 (log 1 = 0, no gradient)
        s1 = torch.where(self.v1 > 0, s1, torch.ones_like(s1))
        s2 = torch.where(self.need2 > 0, s2, torch.ones_like(s2))
        return s1, s2

    def predict(self, U: Tensor) -> Tensor:
        return (self.P * U).sum(-1) @ self.E

    def norm_terms(self, q: Tensor, mu: float) -> tuple[Tensor, Tensor, Tensor]:
        """Smoothed group norm φ_μ(q_s) = μ + s − μ log(2μ(μ + s)/β²), s = √(μ² + β²||q_s||²),
        its gradient coefficient β²/(μ + s) and s."""
        r2 = (q.reshape(self.B, -1) ** 2).sum(-1)
        b2 = self.reg**2
        s = torch.sqrt(mu**2 + b2 * r2)
        val = mu + s - mu * torch.log(2 * mu * (mu + s) / b2)
        return val, b2 / (mu + s), s

    def value(self, q: Tensor, mu: float) -> float:
        U = self.state(q)
        s1, s2 = self.slacks(U)
        if bool((s1 <= 0).any()) or bool((s2 <= 0).any()):
            return math.inf
        Z = self.predict(U)
        nv, _, _ = self.norm_terms(q, mu)
        bar = torch.log(s1).sum() + torch.log(s2).sum()
        return float(self.loss.value(Z, self.Y) + nv.sum() - mu * bar)

    def gradient(self, q: Tensor, mu: float, U: Tensor | None = None
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """∇φ_μ(q) as (B, md), and the state pieces (U, s1, s2, Z) it used."""
        U = self.state(q) if U is None else U
        s1, s2 = self.slacks(U)
        Z = self.predict(U)
        lam = self.loss.grad(Z, self.Y)  # (n, c)
        GU = (lam @ self.E.T)[:, :, None] * self.P
        GU = GU - mu * (self.v1 * self.S1 / s1) - mu * self.upper_adjoint(1 / s2)
        g = (self.X.T @ GU.reshape(self.n, -1)).reshape(self.d, self.B, self.m)
        g = g.permute(1, 2, 0).reshape(self.B, -1)
        _, coef, _ = self.norm_terms(q, mu)
        g = g + coef[:, None] * q.reshape(self.B, -1)
        return g, U, s1, s2, Z

    def newton(self, q: Tensor, mu: float, weights: tuple[Tensor, Tensor] | None = None
               ) -> tuple[Tensor, float]:
        """Step Δq = −(∇²)⁻¹ ∇φ_μ(q) and λ² = −⟨∇φ_μ, Δq⟩. The cone rows enter the Hessian
        with weights w = μ/s² (barrier) or the given primal-dual weights w = ν/s."""
        B, m, d, n = self.B, self.m, self.d, self.n
        md = m * d
        g, U, s1, s2, Z = self.gradient(q, mu)
        if weights is None:
            w1, w2 = mu * self.v1 / s1**2, mu * self.need2 / s2**2
        else:
            w1, w2 = weights
        # block Hessians K_s: cone rows Xᵀ D X (one GEMM against the d² products of the rows)
        K = (w1.reshape(n, B * m).T @ self.XX).reshape(B, m, d, d)
        K = torch.diag_embed(K.permute(0, 2, 3, 1)).permute(0, 3, 1, 4, 2)  # (B, m, d, m, d)
        if bool(self.need2.any()):
            K = K + (self.upper_gram(w2).T @ self.XX).reshape(B, m, m, d, d).permute(
                0, 1, 3, 2, 4)
        K = K.reshape(B, md, md)
        # smoothed norm: ∇²φ = β²/(μ+s) [I − β² q qᵀ / (s (μ + s))]
        qf = q.reshape(B, md)
        _, coef, sn = self.norm_terms(q, mu)
        b2 = self.reg**2
        K.diagonal(dim1=1, dim2=2).add_(coef[:, None])
        K -= (coef * b2 / (sn * (mu + sn)))[:, None, None] * qf[:, :, None] * qf[:, None, :]
        # data term by Woodbury: Φ_s (nc x md) = L_iᵀ[:, t_s] ⊗ (P_isj x_i)_j
        solve = woodbury_solver(self, K, Z, offset=0)

        step = -solve(g)
        dec = float(-(g * step).sum())
        return step.reshape(B, m, d), dec

    def max_step(self, q: Tensor, dq: Tensor) -> float:
        """Largest α with q + αΔq strictly inside the cones (∞ if unbounded)."""
        U, dU = self.state(q), self.state(dq)
        s1, _ = self.slacks(U)
        ds1 = self.S1 * dU * self.v1
        s2 = self.upper(U)
        ds2 = self.upper(dU) * self.need2
        alpha = math.inf
        for sl, ds in ((s1, ds1), (s2, ds2)):
            neg = ds < 0
            if bool(neg.any()):
                alpha = min(alpha, float((-sl[neg] / ds[neg]).min()))
        return alpha


def check_witness(bar: BarrierTerms, W: Tensor, rel: float = 1e-10) -> None:
    """Raise :class:`NotStrictlyFeasible` unless every cone row is positive at the witnesses
    by more than ``rel``·(row scale): a row at round-off level is on the boundary."""
    U = bar.state(W)
    s1, s2 = bar.slacks(U)
    xn = torch.linalg.vector_norm(bar.X, dim=1)
    wn = torch.linalg.vector_norm(W, dim=2)  # (B, m)
    sc1 = xn[:, None, None] * wn[None]
    sc2 = (bar.C2.abs() * sc1[:, :, None, :]).sum(-1)
    if bool(((s1 <= rel * sc1) & (bar.v1 > 0)).any()) \
            or bool(((s2 <= rel * sc2) & (bar.need2 > 0)).any()):
        raise NotStrictlyFeasible("a block's witness lies on the boundary of its cone (a data "
                                  "point on one of its hyperplanes)")


def witness_weights(bar: BarrierTerms, W: Tensor, iters: int = 300,
                     c0: Tensor | None = None) -> Tensor:
    """argmin_{c ≥ 0} L(Σ_s c_s A_s W_s) + β Σ_s c_s (unit directions W_s) by accelerated
    projected gradient from c0 (default 0)."""
    Zs = (bar.P * bar.state(W)).sum(-1)  # (n, B): unit direction outputs (before E)
    F = lambda cc: (Zs * cc[None]) @ bar.E  # noqa: E731
    Lip = float(torch.linalg.matrix_norm(Zs, ord=2)) ** 2 * float(bar.loss.smoothness)
    cc = torch.zeros(bar.B, dtype=W.dtype, device=W.device) if c0 is None else c0.clone()
    if Lip <= 0:
        return cc
    return accelerated_projected_gradient(
        lambda yk: ((bar.loss.grad(F(yk), bar.Y) @ bar.E.T) * Zs).sum(0) + bar.reg, cc,
        1.0 / Lip, iters)


def woodbury_solver(bar: BarrierTerms, K: Tensor, Z: Tensor, offset: int):
    """Solver for (blockdiag(K_s) + Φᵀ H Φ) x = rhs, rhs (B, D) with the q part at columns
    ``offset:``; Φ_s maps q_s to the predictions (column t_s), H = ∇²L(Z) per sample.

    Woodbury: (K + FᵀF)⁻¹ = K⁻¹ − K⁻¹Fᵀ(I + F K⁻¹ Fᵀ)⁻¹F K⁻¹ with F = H^{1/2}Φ. When H is
    diagonal across outputs (squared loss, or one output) I + F K⁻¹ Fᵀ is block-diagonal over the
    outputs: one n x n Cholesky per output instead of one (nc) x (nc)."""
    B, m, d, n, c = bar.B, bar.m, bar.d, bar.n, bar.c
    md = m * d
    X = bar.X
    kw = {"dtype": X.dtype, "device": X.device}
    D = K.shape[1]
    a = (bar.P[..., None] * X[:, None, None, :]).reshape(n, B, md)
    Hb = loss_hessian_blocks(bar.loss, Z, bar.Y)
    Kc = cholesky_jitter(K)
    diagonal = c == 1 or getattr(bar.loss, "name", "") == "squared"
    if diagonal:
        out = bar.prog.blocks.outputs.to(X.device)
        h = Hb.diagonal(dim1=1, dim2=2).clamp_min(0).sqrt()  # (n, c)
        Phi = torch.zeros(B, D, n, **kw)
        Phi[:, offset:] = a.permute(1, 2, 0) * h.T[out][:, None, :]
        V = torch.linalg.solve_triangular(Kc, Phi, upper=False)
        groups = [torch.nonzero(out == k).flatten() for k in range(c)]
        Mcs = []
        for idx in groups:
            Vk = (V if idx.numel() == B else V[idx]).reshape(-1, n)
            Mk = Vk.T @ Vk
            Mk.diagonal().add_(1.0)
            Mcs.append(cholesky_jitter(Mk[None])[0])

        def solve(rhs: Tensor) -> Tensor:
            y = torch.cholesky_solve(rhs[..., None], Kc)[..., 0]
            w = torch.einsum("bkn,bk->bn", Phi, y)  # per block, then summed per output
            corr = torch.zeros(B, n, **kw)
            for k, idx in enumerate(groups):
                if idx.numel():
                    zz = torch.cholesky_solve(w[idx].sum(0)[:, None], Mcs[k])[:, 0]
                    corr[idx] = zz
            return y - torch.cholesky_solve(torch.einsum("bkn,bn->bk", Phi, corr)[..., None],
                                            Kc)[..., 0]

        return solve
    Hb = Hb + 1e-12 * torch.eye(c, **kw)[None]
    Lc = torch.linalg.cholesky(Hb)  # (n, c, c), H_i = L_i L_iᵀ
    LtE = torch.einsum("nab,sb->nsa", Lc.transpose(1, 2), bar.E)  # (n, B, c)
    Phi = torch.zeros(B, D, n * c, **kw)
    Phi[:, offset:] = torch.einsum("nsk,nsa->skna", a, LtE).reshape(B, md, n * c)
    V = torch.linalg.solve_triangular(Kc, Phi, upper=False)
    Vf = V.reshape(B * D, n * c)
    M = Vf.T @ Vf
    M.diagonal().add_(1.0)
    Mc = cholesky_jitter(M[None])[0]

    def solve_full(rhs: Tensor) -> Tensor:
        y = torch.cholesky_solve(rhs[..., None], Kc)[..., 0]
        w = torch.einsum("bkn,bk->n", Phi, y)
        zz = torch.cholesky_solve(w[:, None], Mc)[:, 0]
        return y - torch.cholesky_solve(torch.einsum("bkn,n->bk", Phi, zz)[..., None],
                                        Kc)[..., 0]

    return solve_full


def cholesky_jitter(K: Tensor) -> Tensor:
    """Batched Cholesky with a diagonal jitter on the (rare) numerically indefinite blocks."""
    L, info = torch.linalg.cholesky_ex(K)
    if bool((info != 0).any()):
        scale = K.diagonal(dim1=-2, dim2=-1).abs().amax(-1).clamp_min(1e-300)
        jitter = 1e-14
        for _ in range(12):
            Kj = K + torch.diag_embed((jitter * scale)[:, None].expand(K.shape[:-1]))
            L, info = torch.linalg.cholesky_ex(Kj)
            if not bool((info != 0).any()):
                break
            jitter *= 100
        else:
            raise torch.linalg.LinAlgError("barrier Hessian not positive definite")
    return L
