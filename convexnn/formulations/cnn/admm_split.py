"""The two-layer CNN programs in the protocol of :func:`convexnn.solvers.admm.admm`."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...losses import Loss
from .conv import ConvTwoLayerProgram
from .shared_filter import ConvSharedFilterProgram

__all__ = ["snap_to_domain", "ADMMSplitting", "SharedADMMSplitting"]


def snap_to_domain(loss: Loss, lam: Tensor, Y: Tensor) -> Tensor:
    """The nearest point of dom L* along the obvious projection (a splitting solver's estimate
    of ∇L is in the domain only up to round-off); the dual bound is evaluated exactly there."""
    if loss.name == "cross_entropy":
        P = (lam + Y).clamp_min(0)
        P = P / P.sum(1, keepdim=True).clamp_min(1e-300)
        return P - Y
    if loss.name == "logistic":
        return -Y * (-Y * lam).clamp(0.0, 1.0)
    return lam


class ADMMSplitting:
    """:class:`ConvTwoLayerProgram` in the protocol of :func:`convexnn.solvers.admm.admm`:
    A x = predictions, B x = the working-set cone rows, y-block weight γ.

    The normal matrix K = AᵀA + γ² I + BᵀB is cheap to invert: BᵀB is block diagonal with one
    h x h block per group, and the block depends only on the cone (p, q), not on the sign s or
    the class c: M_{pq} = Σ_{b ∈ W_{pq}} b bᵀ. (With all rows of an average-pooling cone,
    b = ±x_{n,k} and M_{pq} = Σ_{k∈W_q} X_kᵀ X_k is even the same for every gate.) So
    K₀ = γ² I + BᵀB = blockdiag(C_{pq}⁻¹) (C = I/γ² for the gated program, which has no B), and
    K is inverted once per working set, by the cheaper of

    * sample space (Woodbury): K⁻¹ = K₀⁻¹ − K₀⁻¹ Aᵀ N⁻¹ A K₀⁻¹ with the n x n matrix
      N = I + S Σ_{p,q} E_{pq} C_{pq} E_{pq}ᵀ (the same for every class: the program is
      output-separable);
    * feature space: on v − w the matrix is blockdiag(C_{pq}⁻¹) + S EᵀE ((a P h) square), on
      v + w it is blockdiag(C_{pq}⁻¹).

    γ = ``gamma_scale`` · (mean over cones of tr(M_{pq})/h)^{1/2} (gated: with the mean of
    tr(Σ_{k∈W_q} X_kᵀ X_k)/h), so the splitting is invariant to rescaling the images; the scale
    0.3 was the fastest of {0.1, 0.3, 1, 3} on small CNN programs (iterations to a 1e-3 gap).
    """

    def __init__(self, prog: ConvTwoLayerProgram, memory_limit: int = 60_000_000,
                 gamma_scale: float = 0.3):
        self.prog = prog
        self.has_cone = prog.constrained
        E = prog._E if prog._E is not None else prog._features(0, prog.N)
        self.E = E  # (N, a, P, h)
        N, a, P, h = E.shape
        S = prog.S
        eye = torch.eye(h, dtype=E.dtype, device=E.device)
        if self.has_cone:
            M = torch.einsum("pqrh,pqrj->pqhj", prog._Bw, prog._Bw)  # (P, a, h, h)
            g2 = float(torch.diagonal(M, dim1=2, dim2=3).sum()) / (P * a * h)
        else:
            g2 = 0.0
            for s_ in range(0, N, prog.chunk):
                Xw = prog._window_patches(s_, min(s_ + prog.chunk, N))
                g2 += float((Xw ** 2).sum())
            g2 /= a * h
            M = torch.zeros(P, a, h, h, dtype=E.dtype, device=E.device)
        self.gamma = gamma_scale * math.sqrt(max(g2, 1e-300))
        Cinv = self.gamma ** 2 * eye + M
        self.C = torch.linalg.inv(Cinv)
        self.C = 0.5 * (self.C + self.C.transpose(2, 3))
        aPh = a * P * h
        cost_n = N * N * aPh + N ** 3 / 3 if N * N <= memory_limit else math.inf
        cost_f = aPh * aPh * N + aPh ** 3 / 3 if aPh * aPh <= memory_limit else math.inf
        if not math.isfinite(min(cost_n, cost_f)):
            raise MemoryError(f"ADMM normal equations too large (n = {N}, a·P·h = {aPh}); use "
                              "fewer samples or patterns, or solver='al' / 'fista'")
        self.space = "samples" if cost_n <= cost_f else "features"
        self._last = self._Ax = None
        Ef = E.reshape(N, aPh)
        if self.space == "samples":
            EC = torch.einsum("nqph,pqhj->nqpj", E, self.C).reshape(N, aPh)
            Nm = S * (EC @ Ef.T)
            Nm = 0.5 * (Nm + Nm.T)
            Nm.diagonal().add_(1.0)
            self.chol = torch.linalg.cholesky(Nm)
        else:
            G = S * (Ef.T @ Ef)
            Gv = G.view(a, P, h, a, P, h)
            for q in range(a):
                for p in range(P):
                    Gv[q, p, :, q, p, :] += Cinv[p, q]
            self.chol = torch.linalg.cholesky(G)

    # ------------------------------------------------------------ protocol
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        p = self.prog
        # A x for the x returned by the last sample-space solve is t = N⁻¹ A x₀ (Woodbury:
        # A K⁻¹ r = A x₀ − (N − I) N⁻¹ A x₀ = N⁻¹ A x₀), which saves one product with A
        Ax = self._Ax if self._last is x else p.predict(x)
        return Ax, (p.constraint(x) if self.has_cone else None)

    def adjoint(self, r: Tensor, q: Tensor | None) -> Tensor:
        g = self.prog.predict_adjoint(r)
        if q is not None:
            g = g + self.prog.constraint_adjoint(q)
        return g

    def _K0inv(self, x: Tensor) -> Tensor:
        return torch.einsum("pqhj,spqcj->spqch", self.C, x)

    def solve_normal(self, rhs: Tensor) -> Tensor:
        p = self.prog
        if self.space == "samples":
            x0 = self._K0inv(rhs)
            t = torch.cholesky_solve(p.predict(x0), self.chol)
            x = x0 - self._K0inv(p.predict_adjoint(t))
            self._last, self._Ax = x, t
            return x
        a, P, h, c = p.a, p.P, p.h, p.c

        def feat(v):  # (P, a, c, h) -> (a·P·h, c) in E's layout
            return v.permute(1, 0, 3, 2).reshape(a * P * h, c)

        def unfeat(m):
            return m.reshape(a, P, h, c).permute(1, 0, 3, 2)

        if self.has_cone:
            s_ = self._K0inv((rhs[0] + rhs[1])[None])[0]
            d_ = unfeat(torch.cholesky_solve(feat(rhs[0] - rhs[1]), self.chol))
            return torch.stack([0.5 * (s_ + d_), 0.5 * (s_ - d_)])
        return unfeat(torch.cholesky_solve(feat(rhs[0]), self.chol))[None]

    def prox_f(self, v: Tensor, t: float, warm: Tensor | None = None) -> Tensor:
        return self.prog.loss.prox(v, self.prog.Y, t, Z0=warm)

    def prox_g(self, v: Tensor, t: float) -> Tensor:
        return self.prog.prox(v, t)


class SharedADMMSplitting:
    """:class:`ConvSharedFilterProgram` in the protocol of :func:`convexnn.solvers.admm.admm`
    (no cone block): A x = Φ x per class with Φ (N x P·a), y-block weight γ. The normal matrix
    ΦᵀΦ + γ² I is inverted by Woodbury through the n x n (or P·a x P·a, whichever is smaller)
    Cholesky factor of γ² I + ΦΦᵀ (or of ΦᵀΦ + γ² I); γ² = ||Φ||_F² / (P·a) (mean eigenvalue)
    times 0.09 (the scale 0.3 of :class:`ADMMSplitting`)."""

    has_cone = False

    def __init__(self, prog: ConvSharedFilterProgram, gamma_scale: float = 0.3):
        self.prog = prog
        Phi = prog.Phi.reshape(prog.N, -1)
        self.Phi = Phi
        N, Pa = Phi.shape
        self.gamma = gamma_scale * math.sqrt(max(float((Phi ** 2).sum()) / Pa, 1e-300))
        g2 = self.gamma ** 2
        self.samples = N <= Pa
        M = Phi @ Phi.T if self.samples else Phi.T @ Phi
        M.diagonal().add_(g2)
        self.chol = torch.linalg.cholesky(0.5 * (M + M.T))
        self._last = self._Ax = None

    def forward(self, x: Tensor) -> tuple[Tensor, None]:
        Ax = self._Ax if self._last is x else self.prog.predict(x)
        return Ax, None

    def adjoint(self, r: Tensor, q: None) -> Tensor:
        return self.prog.predict_adjoint(r)

    def solve_normal(self, rhs: Tensor) -> Tensor:
        p = self.prog
        R = rhs.reshape(p.P * p.a, p.c)
        if self.samples:  # (ΦᵀΦ + γ²I)⁻¹ = (I − Φᵀ (γ²I + ΦΦᵀ)⁻¹ Φ) / γ², and then Φ x = t
            t = torch.cholesky_solve(self.Phi @ R, self.chol)
            x = ((R - self.Phi.T @ t) / self.gamma ** 2).reshape(p.shape)
            self._last, self._Ax = x, t
            return x
        self._last = None
        return torch.cholesky_solve(R, self.chol).reshape(p.shape)

    def prox_f(self, v: Tensor, t: float, warm: Tensor | None = None) -> Tensor:
        return self.prog.loss.prox(v, self.prog.Y, t, Z0=warm)

    def prox_g(self, v: Tensor, t: float) -> Tensor:
        return self.prog.prox(v, t)

