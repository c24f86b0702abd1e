"""Circular CNN with one ReLU: the ℓ1-in-Fourier program (package docstring, item 2)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ...losses import Loss
from ...networks.cnn import CircularCNN
from ...patterns import PatternSet
from .base import ConeGroupProgram, gate_repair
from .cvxpy_forms import cvxpy_circular

__all__ = ["fourier_basis", "CircularCNNProgram", "circular_pads", "factor_circular"]


def fourier_basis(shape: tuple[int, ...], dtype=torch.float64) -> tuple[Tensor, Tensor]:
    """Real orthonormal DFT basis of R^d (d = prod(shape)), grouped by conjugate frequency pairs.

    Returns ``R`` (d, F, 2) — R[:, f, 0] ∝ cos, R[:, f, 1] ∝ sin (zero column for
    self-conjugate frequencies) — and group weights ``w`` (F,) with Σ_ω |ê_ω| = Σ_f w_f ||z_f||
    for z = Rᵀ e and ê the unitary complex DFT of e (w_f = √2 for pairs, 1 otherwise).
    """
    dims = [int(s) for s in shape]
    d = int(np.prod(dims))
    grids = np.meshgrid(*[np.arange(s) for s in dims], indexing="ij")
    t = np.stack([g.reshape(-1) for g in grids], 1)  # (d, ndim) positions
    seen, cols, weights = set(), [], []
    for idx in np.ndindex(*dims):
        if idx in seen:
            continue
        conj = tuple((-i) % s for i, s in zip(idx, dims))
        seen.add(idx)
        seen.add(conj)
        theta = 2 * np.pi * sum(t[:, a] * idx[a] / dims[a] for a in range(len(dims)))
        if conj == idx:
            cols.append(np.stack([np.cos(theta) / np.sqrt(d), np.zeros(d)], 1))
            weights.append(1.0)
        else:
            cols.append(np.stack([np.cos(theta), np.sin(theta)], 1) * np.sqrt(2.0 / d))
            weights.append(np.sqrt(2.0))
    R = np.stack(cols, 1)  # (d, F, 2)
    return torch.as_tensor(R, dtype=dtype), torch.as_tensor(weights, dtype=dtype)


class CircularCNNProgram(ConeGroupProgram):
    """ℓ1-in-Fourier program of a circular CNN with one ReLU; module docstring, item 2.

    ``signals``: (N, d) 1-D signals or (N, 1, H, W) / (N, H, W) single-channel images; ``Y``
    (N, c); ``patterns``: gates over the raw signal (d x P), e.g.
    ``sample_gates(signals.reshape(N, -1), ...)``. No bias (it would break circulant
    structure). ``c > 1`` is the output-separable restriction.
    """

    def __init__(self, signals: Tensor, Y: Tensor, patterns: PatternSet, reg: float,
                 loss: str | Loss = "squared", *, n_circular: int = 1):
        self._setup(Y, reg, loss)
        if signals.ndim == 4:
            if signals.shape[1] != 1:
                raise ValueError("the circular CNN takes single-channel inputs")
            signals = signals[:, 0]
        self.spatial = tuple(signals.shape[1:])
        self.data = signals
        N = signals.shape[0]
        X = signals.reshape(N, -1)
        self.X = X
        self.d = X.shape[1]
        if int(n_circular) < 1:
            raise ValueError(f"n_circular must be >= 1, got {n_circular}")
        self.n_circular = int(n_circular)
        self.patterns = patterns
        self.G = patterns.gates.to(dtype=X.dtype, device=X.device)
        self.P = self.G.shape[1]
        R, w = fourier_basis(self.spatial, X.dtype)
        self.R = R.to(X.device)
        self.F = R.shape[1]
        self.gw = (w / math.sqrt(self.d)).to(X.device)
        self.Xt = torch.einsum("nd,dft->nft", X, self.R)  # data in Fourier coordinates
        self.M = (X @ self.G >= 0).to(X.dtype)  # (N, P)
        self.sgn = 2 * self.M - 1
        self.S = 2
        self.constrained = True
        self.shape = (2, self.P, self.c, self.F, 2)
        self.exact = self.n_circular == 1 and self.c == 1

    def predict(self, x: Tensor) -> Tensor:
        XV = torch.einsum("nft,spcft->nspc", self.Xt, x)
        return torch.einsum("np,npc->nc", self.M, XV[:, 0] - XV[:, 1])

    def predict_adjoint(self, R: Tensor) -> Tensor:
        g = torch.einsum("nft,np,nc->pcft", self.Xt, self.M, R)
        return torch.stack([g, -g])

    def constraint(self, x: Tensor) -> Tensor:
        XV = torch.einsum("nft,spcft->nspc", self.Xt, x)
        return self.sgn[:, None, :, None] * XV

    def constraint_adjoint(self, Mu: Tensor) -> Tensor:
        return torch.einsum("nft,nspc->spcft", self.Xt, self.sgn[:, None, :, None] * Mu)

    def repair(self, x: Tensor) -> Tensor:
        gz = torch.einsum("dp,dft->pft", self.G, self.R)  # gates in Fourier coordinates
        dirs = gz[None, :, None].expand(self.shape).contiguous()
        if getattr(self, "_margins", None) is None:
            self._margins = self.constraint(dirs)
        return gate_repair(self, x, self.constraint(x), self._margins, dirs,
                            lambda r: r.amax(0))

    def description(self) -> str:
        base = f"circular CNN ({self.n_circular} circular layer(s)): ℓ1-in-Fourier program"
        return base + (" (exact over all patterns)" if self.exact else " (a restriction)")

    def end_to_end_filters(self, x: Tensor) -> Tensor:
        """Signal-domain end-to-end filters e (S, P, c, d) of the convex variables."""
        return torch.einsum("dft,spcft->spcd", self.R, x)

    def to_network(self, x: Tensor, tol: float = 0.0) -> CircularCNN:
        """One neuron per non-zero (s, p, class) block; see module docstring for the map."""
        pen = (torch.linalg.vector_norm(x, dim=-1) * self.gw).sum(-1)  # (S, P, c)
        s_i, p_i, c_i = torch.nonzero(pen > tol, as_tuple=True)
        E = self.end_to_end_filters(x)[s_i, p_i, c_i]  # (m, d)
        t = pen[s_i, p_i, c_i].sqrt()  # balanced scale: ||u_L|| = |w| = t
        m = len(t)
        W1 = torch.zeros(m, *self.spatial, dtype=x.dtype, device=x.device)
        WL = torch.zeros_like(W1)
        for j in range(m):
            W1[j], WL[j] = factor_circular(E[j].reshape(self.spatial) / t[j])
        Wout = torch.zeros(self.c, m, dtype=x.dtype, device=x.device)
        Wout[c_i, torch.arange(m, device=x.device)] = torch.where(s_i == 0, t, -t)
        return CircularCNN(W1, WL, Wout, n_circular=self.n_circular)

    def to_cvxpy(self):
        return cvxpy_circular(self)


def circular_pads(spatial: tuple[int, ...]) -> list[int]:
    """Leading (top/left) circular padding per spatial dim for a full-size 'same' conv."""
    return [(s - 1) // 2 for s in spatial]


def factor_circular(e: Tensor) -> tuple[Tensor, Tensor]:
    """Filters (w1, wL), ||w1|| = 1, with ⟨corr_circ(x, w1), wL⟩ = ⟨x, e⟩ for every x, and
    ||wL|| = ||ê||_1 / √d (the minimum). corr_circ is ``Conv2d`` cross-correlation with the
    circular padding of :func:`circular_pads` (a phase in the Fourier domain)."""
    dims = tuple(e.shape)
    d = e.numel()
    ndim = len(dims)
    cdt = torch.complex128 if e.dtype == torch.float64 else torch.complex64
    fe = torch.fft.fftn(e.to(cdt))
    l1 = float(fe.abs().sum()) / math.sqrt(d)  # ||ê||_1 for the unitary DFT
    if l1 == 0:
        return torch.zeros_like(e), torch.zeros_like(e)
    w1_hat_u = (fe.abs() / math.sqrt(d) / l1).sqrt()  # unitary spectrum of w1, real even
    pads = circular_pads(dims)
    phase = 0
    for a in range(ndim):
        shape = [1] * ndim
        shape[a] = dims[a]
        om = torch.arange(dims[a], dtype=e.dtype, device=e.device).reshape(shape)
        phase = phase + 2 * math.pi * om * pads[a] / dims[a]
    # e[τ] = (w1 ⊛ wL)[τ + pad]  =>  FFT(e) = FFT(w1) FFT(wL) exp(+iφ)
    fw1 = w1_hat_u * math.sqrt(d)
    nz = fw1 > 0
    fwl = torch.zeros_like(fe)
    fwl[nz] = fe[nz] * torch.exp(-1j * phase.expand(dims))[nz] / fw1[nz]
    w1 = torch.fft.ifftn(fw1.to(fe.dtype)).real
    wl = torch.fft.ifftn(fwl).real
    return w1.to(e.dtype), wl.to(e.dtype)
