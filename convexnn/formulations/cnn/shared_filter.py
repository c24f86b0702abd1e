"""Shared-filter two-layer CNN program (package docstring, item 1b)."""

from __future__ import annotations

import torch
from torch import Tensor

from ...losses import Loss
from ...networks.cnn import ConvNetwork
from ...patterns import PatternSet
from ...patterns.patches import pooling_windows
from .base import ConeGroupProgram
from .cvxpy_forms import cvxpy_loss

__all__ = ["ConvSharedFilterProgram"]


class ConvSharedFilterProgram(ConeGroupProgram):
    """Two-layer ReLU CNN whose filters are fixed at the (unit) gate directions, each feeding
    every pooled output and class: a group lasso on the output weights (module docstring,
    item 1b).

    Filter p is û_p = g_p/||g_p|| (g_p includes the bias entry when ``intercept``); its pooled
    ReLU features are Φ_p = pool(relu(conv(x; û_p))) (N x a), exact for any pooling. With
    output weights L_p ∈ R^{a x c} (x[p] = vec L_p) the program ::

        min_L  L( Σ_p Φ_p L_p , Y ) + β Σ_p ||L_p||_F

    equals the weight-decay objective of the ReLU CNN with filters √||L_p|| û_p and linear
    weights L_p/√||L_p|| (balanced: (β/2)(||u||² + ||A||²) = β ||L_p||_F), minimised over the
    output weights and the filter scales. Every atom û_p ⊗ L_p (û_p lies in its own cone K_p)
    is an atom of the exact vector-output program over the sampled patterns, so this is a
    restriction of it, like the output-separable program — but one filter serves all a·c
    outputs (penalty ||L_p||_F instead of the ℓ1 norm Σ_{q,c} |L_p[q,c]| of one-output
    filters), which is what trained CNNs do. Filters cannot move inside their cones here; use
    many gates. Unconstrained: ADMM (default; one n x n Cholesky factor) or FISTA.
    """

    def __init__(self, images: Tensor, Y: Tensor, patterns: PatternSet, reg: float,
                 loss: str | Loss = "squared", *, kernel_size: int, stride: int = 1,
                 padding: int = 0, intercept: bool = True, pooling: str = "avg",
                 pool_size: int | None = None, chunk_size: int = 256):
        self._setup(Y, reg, loss)
        self._setup_conv(images, patterns, kernel_size, stride, padding, intercept)
        N, Cin, H, W = images.shape
        self.N = N
        G = patterns.gates.to(dtype=images.dtype, device=images.device)
        self.G = G / torch.linalg.vector_norm(G, dim=0).clamp_min(1e-300)
        self.h, self.P = self.G.shape
        ho = (H + 2 * padding - kernel_size) // stride + 1
        wo = (W + 2 * padding - kernel_size) // stride + 1
        self.win = pooling_windows((ho, wo), pooling, pool_size)
        self.pooling, self.pool_size = pooling, pool_size
        self.a = self.win.n_windows
        self.shape = (self.P, self.a * self.c)
        self.constrained = False
        self.gw = 1.0
        net = self._network(self.G.T, torch.zeros(self.c, self.P * self.a, dtype=images.dtype,
                                                    device=images.device))
        feats = [net.features(images[s:s + chunk_size]) for s in range(0, N, chunk_size)]
        self.Phi = torch.cat(feats, 0).reshape(N, self.P, self.a)  # Flatten order (p, q)

    def _network(self, U: Tensor, A: Tensor) -> ConvNetwork:
        k, Cin = self.kernel_size, self.in_channels
        if self.intercept:
            W, b = U[:, :-1], U[:, -1].contiguous()
        else:
            W, b = U, torch.zeros(U.shape[0], dtype=U.dtype, device=U.device)
        return ConvNetwork(W.reshape(-1, Cin, k, k).contiguous(), b, A, kernel_size=k,
                           stride=self.stride, padding=self.padding, pooling=self.pooling,
                           pool_size=self.pool_size, activation="relu")

    def predict(self, x: Tensor) -> Tensor:
        return torch.einsum("npq,pqc->nc", self.Phi, x.reshape(self.P, self.a, self.c))

    def predict_adjoint(self, R: Tensor) -> Tensor:
        return torch.einsum("npq,nc->pqc", self.Phi, R).reshape(self.shape)

    def description(self) -> str:
        pool = f"{self.pooling} pooling" + ("" if self.pool_size is None or self.pooling == "none"
                                             else f" {self.pool_size}x{self.pool_size}")
        return ("two-layer ReLU CNN, filters fixed at the sampled gate directions and shared by "
                "all outputs: group lasso on the output weights (a restriction of the exact "
                f"program over the sampled patterns), {pool}")

    def to_network(self, x: Tensor, tol: float = 0.0) -> ConvNetwork:
        nrm = torch.linalg.vector_norm(x, dim=-1)
        keep = torch.nonzero(nrm > tol, as_tuple=True)[0]
        r = nrm[keep].sqrt()
        U = self.G.T[keep] * r[:, None]
        L = x[keep].reshape(-1, self.a, self.c) / r[:, None, None]  # (m, a, c)
        A = L.permute(2, 0, 1).reshape(self.c, -1)  # Flatten order (filter, window)
        return self._network(U, A.contiguous())

    def to_cvxpy(self):
        import cvxpy as cp

        Phi = self.Phi.detach().cpu().double().numpy()
        Y = self.Y.detach().cpu().double().numpy()
        Lv = cp.Variable((self.P, self.a * self.c))
        Z = 0
        for p in range(self.P):
            Z = Z + Phi[:, p] @ cp.reshape(Lv[p], (self.a, self.c), order="C")
        problem = cp.Problem(cp.Minimize(cvxpy_loss(self.loss.name, Z, Y)
                                         + self.reg * cp.sum(cp.norm(Lv, 2, axis=1))))

        def assemble() -> Tensor:
            return torch.as_tensor(Lv.value, dtype=self.Y.dtype, device=self.Y.device)

        return problem, assemble
