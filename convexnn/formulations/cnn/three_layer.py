"""Three-layer CNN with two ReLU layers (package docstring, item 3)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ...certificates import SCOPE_SAMPLED
from ...losses import Loss
from ...networks.cnn import ThreeLayerCNN
from ...patterns import PatternSet
from ...patterns.patches import extract_patches
from .base import ConeGroupProgram
from .cvxpy_forms import cvxpy_three_layer

__all__ = ["sample_outer_patterns", "ThreeLayerCNNProgram"]


def sample_outer_patterns(prog_inner_masks: Tensor, Xp: Tensor, n_outer: int,
                          random_state: int | np.random.Generator | None = None,
                          include_identity: bool = True) -> Tensor:
    """Outer patterns D'_l (N x L) of hidden units of random inner networks.

    ``prog_inner_masks`` (N, K, G) patch masks, ``Xp`` (N, K, h) patches. Each hidden unit is
    Σ_{k,g} D_{gk} X_k q_{kg} with Gaussian q on a random subset of (k, g); its sign pattern is
    kept (deduplicated). ``include_identity`` adds the all-ones pattern (second ReLU active).
    """
    rng = random_state if isinstance(random_state, np.random.Generator) \
        else np.random.default_rng(random_state)
    N, K, Gn = prog_inner_masks.shape
    h = Xp.shape[2]
    Q = torch.as_tensor(rng.standard_normal((n_outer, K, Gn, h)), dtype=Xp.dtype,
                        device=Xp.device)
    keep = torch.as_tensor(rng.random((n_outer, K, Gn)) < 0.5, device=Xp.device)
    Q = Q * keep[..., None]
    H = torch.einsum("nkg,nkh,lkgh->nl", prog_inner_masks.to(Xp.dtype), Xp, Q)
    M = (H >= 0)
    if include_identity:
        M = torch.cat([torch.ones(N, 1, dtype=torch.bool, device=M.device), M], 1)
    Mu = torch.unique(M.T.to(torch.int8), dim=0, sorted=False).T.bool()
    Mu = Mu[:, Mu.any(0)]
    return Mu.to(Xp.dtype)


class ThreeLayerCNNProgram(ConeGroupProgram):
    """Three-layer CNN with two ReLU layers and the ℓ1 path regulariser; docstring item 3.

    ``patterns``: inner gates over patches (h x G); ``outer``: outer masks (N x L) from
    :func:`sample_outer_patterns` (drawn here when None, with ``n_outer`` and
    ``random_state``). Variables x of shape (L, 2, c, K, G, 2, h).
    """

    def __init__(self, images: Tensor, Y: Tensor, patterns: PatternSet, reg: float,
                 loss: str | Loss = "squared", *, kernel_size: int, stride: int = 1,
                 padding: int = 0, intercept: bool = True, outer: Tensor | None = None,
                 n_outer: int = 8, random_state: int | None = None):
        self._setup(Y, reg, loss)
        self._setup_conv(images, patterns, kernel_size, stride, padding, intercept)
        self.Xp = extract_patches(images, kernel_size, stride, padding, intercept)  # (N, K, h)
        self.N, self.K, self.h = self.Xp.shape
        H, W = images.shape[2:]
        self.out_shape = ((H + 2 * padding - kernel_size) // stride + 1,
                          (W + 2 * padding - kernel_size) // stride + 1)
        self.G = patterns.gates.to(dtype=images.dtype, device=images.device)
        self.Gn = self.G.shape[1]
        pre = self.Xp @ self.G  # (N, K, G)
        self.Min = (pre >= 0).to(images.dtype)
        self.sgn_in = 2 * self.Min - 1
        if outer is None:
            outer = sample_outer_patterns(self.Min, self.Xp, n_outer, random_state)
        self.Mout = outer.to(dtype=images.dtype, device=images.device)  # (N, L)
        self.sgn_out = 2 * self.Mout - 1
        self.L = self.Mout.shape[1]
        self.eps = torch.tensor([1.0, -1.0], dtype=images.dtype, device=images.device)
        self.shape = (self.L, 2, self.c, self.K, self.Gn, 2, self.h)
        self.constrained = True
        self.gw = 1.0
        self.exact = self.c == 1

    def scope(self) -> str:
        return SCOPE_SAMPLED  # outer patterns are always sampled

    def _hidden(self, x: Tensor) -> Tensor:
        """H (N, L, 2, c) = Σ_{k,g} D_gk X_k (x[..., +, :] − x[..., −, :])."""
        V = x[..., 0, :] - x[..., 1, :]  # (L, 2, c, K, G, h)
        return torch.einsum("nkg,nkh,leckgh->nlec", self.Min, self.Xp, V)

    def predict(self, x: Tensor) -> Tensor:
        H = self._hidden(x)
        return torch.einsum("nl,e,nlec->nc", self.Mout, self.eps, H)

    def predict_adjoint(self, R: Tensor) -> Tensor:
        Wh = torch.einsum("nl,e,nc->nlec", self.Mout, self.eps, R)
        return self._hidden_adjoint(Wh)

    def _hidden_adjoint(self, Wh: Tensor) -> Tensor:
        g = torch.einsum("nkg,nkh,nlec->leckgh", self.Min, self.Xp, Wh)
        return torch.stack([g, -g], dim=5)

    def constraint(self, x: Tensor) -> Tensor:
        Cin = torch.einsum("nkg,nkh,leckgsh->nleckgs", self.sgn_in, self.Xp, x)
        Cout = self.sgn_out[:, :, None, None] * self._hidden(x)
        return torch.cat([Cin.reshape(-1), Cout.reshape(-1)])

    def constraint_adjoint(self, Mu: Tensor) -> Tensor:
        n_in = self.N * self.L * 2 * self.c * self.K * self.Gn * 2
        Min = Mu[:n_in].reshape(self.N, self.L, 2, self.c, self.K, self.Gn, 2)
        Mout = Mu[n_in:].reshape(self.N, self.L, 2, self.c)
        g = torch.einsum("nkg,nkh,nleckgs->leckgsh", self.sgn_in, self.Xp, Min)
        return g + self._hidden_adjoint(self.sgn_out[:, :, None, None] * Mout)

    def repair(self, x: Tensor) -> None:
        return None  # coupled outer constraints: certify the read-back network instead

    def description(self) -> str:
        return ("three-layer CNN (two ReLU layers, ℓ1 path regulariser): nested cone-constrained "
                "group lasso over sampled inner/outer patterns"
                + ("" if self.c == 1 else " (output-separable restriction)"))

    def to_network(self, x: Tensor, tol: float = 0.0) -> ThreeLayerCNN:
        """Filter u = q/√||q|| and second-layer weight ±√||q|| per non-zero block q; one hidden
        unit per (outer pattern, sign, class) with output weight ε on that class."""
        dt, dev = x.dtype, x.device
        nrm = torch.linalg.vector_norm(x, dim=-1)  # (L, 2, c, K, G, 2)
        idx = torch.nonzero(nrm > tol, as_tuple=True)
        l_i, e_i, c_i, k_i, g_i, s_i = idx
        q = x[idx]  # (m1, h)
        r = nrm[idx].sqrt()
        U = q / r[:, None]
        m1 = len(r)
        unit_key = (l_i * 2 + e_i) * self.c + c_i
        units, unit_of = torch.unique(unit_key, return_inverse=True)
        m2 = len(units)
        W2 = torch.zeros(m2, m1 * self.K, dtype=dt, device=dev)
        W2[unit_of, torch.arange(m1, device=dev) * self.K + k_i] = torch.where(s_i == 0, r, -r)
        W3 = torch.zeros(self.c, m2, dtype=dt, device=dev)
        uc = units % self.c
        ue = (units // self.c) % 2
        W3[uc, torch.arange(m2, device=dev)] = torch.where(ue == 0, 1.0, -1.0).to(dt)
        if self.intercept:
            W, b = U[:, :-1], U[:, -1].contiguous()
        else:
            W, b = U, torch.zeros(m1, dtype=dt, device=dev)
        k = self.kernel_size
        return ThreeLayerCNN(W.reshape(m1, self.in_channels, k, k), b, W2, W3, kernel_size=k,
                             stride=self.stride, padding=self.padding)

    def to_cvxpy(self):
        return cvxpy_three_layer(self)
