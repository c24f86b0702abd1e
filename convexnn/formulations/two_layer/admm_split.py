"""The ADMM splitting of the two-layer programs and a Lipschitz estimate."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ...ops.linalg import power_iteration

if TYPE_CHECKING:
    from .program import TwoLayerProgram


class _ADMMSplitting:
    """The program in the protocol of :func:`convexnn.solvers.admm.admm`.

    A x = Σ_p D_p X (v_p − w_p) (per output column), B x = ((2D_p − I) X x_{s,p,:,k}) for the
    ReLU cones (absent for gated ReLU), y-block weight γ = ``gamma_scale`` · sqrt(||X||_F² / d)
    (relative to the root-mean eigenvalue of XᵀX, so the splitting is invariant to rescaling
    X; 0.1 was fastest on every problem we measured: 20–30 iterations to a 1e-6 gap on the
    gated programs of benchmarks/bench_two_layer.py, against 200+ at 1 and 800+ at 3; a light
    y-block makes the x-step close to a Newton step on the loss). The normal matrix
    K = AᵀA + γ² I + BᵀB has the structure that makes ADMM cheap here: BᵀB is block diagonal
    with the *same* d x d block XᵀX for every group ((2D_p − I)² = I), so
    K₀ = γ² I + BᵀB = blockdiag(C⁻¹), C = (γ² I + XᵀX)⁻¹ (C = I / γ² for gated ReLU), and K is
    inverted once, by the cheaper of

    * sample space (Woodbury): K⁻¹ = K₀⁻¹ − K₀⁻¹ Aᵀ N⁻¹ A K₀⁻¹ with the n x n matrix
      N = I + A K₀⁻¹ Aᵀ = I + S · (X C Xᵀ) ∘ (M Mᵀ)  (M: the n x P masks, S: 2 for ReLU);
    * feature space: K restricted to v − w is C⁻¹ + S·G with the (Pd) x (Pd) Gram matrix
      G = (D X)ᵀ (D X) (accumulated over row chunks), while v + w only sees C⁻¹.
    """

    def __init__(self, prog: TwoLayerProgram, memory_limit: int = 60_000_000,
                 gamma_scale: float = 0.1, cone_weight: float = 1.0, space: str = "auto"):
        self.prog = prog
        X = prog.X
        self.has_cone = prog.activation == "relu"
        d, n, P, S = prog.d, prog.n, prog.P, prog.S
        XtX = X.T @ X
        self.gamma = gamma_scale * math.sqrt(max(float(XtX.diagonal().sum()) / d, 1e-300))
        g2 = self.gamma ** 2
        eye = torch.eye(d, dtype=X.dtype, device=X.device)
        self.delta = float(cone_weight)  # B is scaled by δ: the cone block weighs δ²
        self.C = torch.linalg.inv(g2 * eye + self.delta ** 2 * XtX) if self.has_cone \
            else eye / g2
        self.C = 0.5 * (self.C + self.C.T)
        M = prog.masks
        self.sgn = 2 * M - 1
        cost_n, cost_f = self._costs(prog, memory_limit)
        if not math.isfinite(min(cost_n, cost_f)):
            raise MemoryError(f"ADMM normal equations too large (n = {n}, P·d = {P * d}); use "
                              "solver='fista' (gated) or 'al' (ReLU)")
        if space not in ("auto", "samples", "features"):
            raise ValueError(f"space must be 'auto', 'samples' or 'features', got {space!r}")
        self.space = space if space != "auto" else (
            "samples" if cost_n <= cost_f else "features")
        Pd = P * d
        if self.space == "samples":
            N = S * (X @ self.C @ X.T) * (M @ M.T)
            N.diagonal().add_(1.0)  # N ⪰ I: well conditioned, so keep its explicit inverse
            self.inv = torch.cholesky_inverse(torch.linalg.cholesky(N))
        else:
            G = torch.zeros(Pd, Pd, dtype=X.dtype, device=X.device)
            for _, _, Xc, Mc in prog._chunks():
                DX = (Mc[:, :, None] * Xc[:, None, :]).reshape(Xc.shape[0], Pd)
                G += DX.T @ DX
            Cinv = torch.linalg.inv(self.C)
            G = S * G
            for p in range(P):
                G[p * d:(p + 1) * d, p * d:(p + 1) * d] += Cinv
            self.inv = torch.cholesky_inverse(torch.linalg.cholesky(G))  # K ⪰ C⁻¹ ⪰ γ² I

    @staticmethod
    def _costs(prog: TwoLayerProgram, memory_limit: int) -> tuple[float, float]:
        """Flop estimates of the two factorisations (inf when over the memory limit)."""
        n, Pd = prog.n, prog.P * prog.d
        cost_n = n * n * (prog.P + prog.d) + n ** 3 / 3 if n * n <= memory_limit else math.inf
        cost_f = Pd * Pd * n + Pd ** 3 / 3 if Pd * Pd <= memory_limit else math.inf
        return cost_n, cost_f

    @classmethod
    def fits(cls, prog: TwoLayerProgram, memory_limit: int = 60_000_000) -> bool:
        """Whether one of the factorisations fits in ``memory_limit`` entries."""
        return math.isfinite(min(cls._costs(prog, memory_limit)))

    # --------------------------------------------------------------- operators
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        p = self.prog
        if not self.has_cone:
            return p.matvec(x[0]), None
        XV = p.relu_state(x)
        return p.relu_predict(XV), self.delta * self.sgn[:, None, :, None] * XV

    def adjoint(self, r: Tensor, q: Tensor | None) -> Tensor:
        p = self.prog
        if not self.has_cone:
            return p.rmatvec(r)[None]
        Wm = p.masks[:, :, None] * r[:, None, :]  # (n, P, c)
        W = torch.stack([Wm, -Wm], 1)
        if q is not None:
            W = W + self.delta * self.sgn[:, None, :, None] * q
        return (p.X.T @ W.reshape(p.n, -1)).reshape(p.d, p.S, p.P, p.c).permute(1, 2, 0, 3)

    def _apply_C(self, r: Tensor) -> Tensor:
        return self.C @ r  # (d x d) @ (..., d, c)

    def _A(self, x: Tensor) -> Tensor:
        V = x[0] - x[1] if self.has_cone else x[0]
        return self.prog.matvec(V)

    def _At(self, r: Tensor) -> Tensor:
        g = self.prog.rmatvec(r)
        return torch.stack([g, -g]) if self.has_cone else g[None]

    def solve_normal(self, rhs: Tensor) -> Tensor:
        if self.space == "samples":
            x0 = self._apply_C(rhs)
            t = self.inv @ self._A(x0)
            return x0 - self._apply_C(self._At(t))
        p = self.prog
        Pd = p.P * p.d
        if self.has_cone:
            a = self._apply_C(rhs[0] + rhs[1])
            r = (rhs[0] - rhs[1]).reshape(Pd, p.c)
            b = (self.inv @ r).reshape(p.P, p.d, p.c)
            return torch.stack([0.5 * (a + b), 0.5 * (a - b)])
        return (self.inv @ rhs[0].reshape(Pd, p.c)).reshape(rhs.shape)

    def warm_state(self, x0: Tensor, rho: float) -> dict:
        """ADMM state at x0 that the first iteration leaves in place when x0 is optimal.

        z = A x0, s = (B x0)_+, u = ∇L(A x0)/ρ, w = 0, and v = q/(ργ) with q a subgradient of
        the penalty at x0 (β x0_g/||x0_g|| on non-zero groups, β U Vᵀ for nuclear-norm groups,
        the loss gradient's group part clipped to the β-ball on zero groups): then the z- and
        y-updates return A x0 and x0 exactly.
        """
        p = self.prog
        z, Bx = self.forward(x0)
        lam = p.loss.grad(z, p.Y)
        grad = self.adjoint(lam, None)  # Aᵀλ, shaped like x
        if p.nuclear:
            U, sv, Vh = torch.linalg.svd(x0, full_matrices=False)
            q = p.reg * (U * (sv > 0)[..., None, :]) @ Vh
            nz = (sv > 0).any(-1)[..., None, None]
            g_norm = torch.linalg.matrix_norm(grad, ord=2)[..., None, None]
        else:
            nrm = torch.linalg.vector_norm(x0, dim=2, keepdim=True)
            q = p.reg * x0 / nrm.clamp_min(1e-300)
            nz = nrm > 0
            g_norm = torch.linalg.vector_norm(grad, dim=2, keepdim=True)
        q = torch.where(nz, q, -grad * (p.reg / g_norm.clamp_min(p.reg)))
        return {"y": x0, "z": z, "u": lam / rho, "v": q / (rho * self.gamma),
                "s": Bx.clamp_min(0) if Bx is not None else None,
                "w": torch.zeros_like(Bx) if Bx is not None else None, "rho": rho}

    def prox_f(self, v: Tensor, t: float, warm: Tensor | None = None) -> Tensor:
        return self.prog.loss.prox(v, self.prog.Y, t, Z0=warm)

    def prox_g(self, v: Tensor, t: float) -> Tensor:
        return self.prog.prox(v, t)


def lipschitz_estimate(prog: TwoLayerProgram, iters: int = 20, seed: int = 0) -> float:
    """Power-iteration estimate of ||A||² times the loss smoothness (a starting step size)."""
    lam = power_iteration(prog.matvec, prog.rmatvec, (prog.P, prog.d, prog.c),
                          dtype=prog.X.dtype, device=prog.X.device, iters=iters, seed=seed)
    if lam == 0 or not math.isfinite(lam):
        return 1.0
    return max(lam * prog.loss.smoothness * prog.S, 1e-12)
