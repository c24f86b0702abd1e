"""Two-layer CNN program (conv → ReLU/gated → pooling → Linear); package docstring, item 1."""

from __future__ import annotations

import torch
from torch import Tensor

from ...losses import Loss
from ...networks.cnn import ConvNetwork
from ...patterns import PatternSet
from ...patterns.patches import MAX_POOL_SOURCE, extract_patches, pooling_windows
from .base import ConeGroupProgram
from .cvxpy_forms import cvxpy_two_layer
from .working_set import ConeRowsMixin

__all__ = ["ConvTwoLayerProgram"]


class ConvTwoLayerProgram(ConeRowsMixin, ConeGroupProgram):
    """Two-layer CNN (conv → ReLU/gated → pooling → Linear); see module docstring, item 1.

    ``images`` (N, C, H, W); ``Y`` (N, c) in the loss's encoding; ``patterns`` gates over
    patches (h x P), from :func:`convexnn.patterns.patches.sample_patch_gates` or
    :func:`~convexnn.patterns.patches.enumerate_patch_patterns`. ``intercept``: the conv has a bias
    (patches carry a trailing 1). ``pool_size=None``: global pooling.
    """

    def __init__(self, images: Tensor, Y: Tensor, patterns: PatternSet, reg: float,
                 loss: str | Loss = "squared", activation: str = "relu", *, kernel_size: int,
                 stride: int = 1, padding: int = 0, intercept: bool = True,
                 pooling: str = "avg", pool_size: int | None = None, chunk_size: int = 256,
                 cache_limit: int = 30_000_000, working_set: bool | None = None,
                 init_rows: int = 24):
        if activation not in ("relu", "gated"):
            raise ValueError(f"activation must be 'relu' or 'gated', got {activation!r}")
        self._setup(Y, reg, loss)
        self._setup_conv(images, patterns, kernel_size, stride, padding, intercept)
        self.activation = activation
        N, Cin, H, W = images.shape
        self.G = patterns.gates.to(dtype=images.dtype, device=images.device)
        self.h, self.P = self.G.shape
        ho = (H + 2 * padding - kernel_size) // stride + 1
        wo = (W + 2 * padding - kernel_size) // stride + 1
        self.out_shape = (ho, wo)
        self.win = pooling_windows((ho, wo), pooling, pool_size)
        self.pooling, self.pool_size = pooling, pool_size
        self.a = self.win.n_windows
        self.N = N
        self.chunk = int(chunk_size)
        self.S = 2 if activation == "relu" else 1
        self.constrained = activation == "relu"
        self.nuclear = activation == "gated" and self.a * self.c > 1
        self.shape = (self.S, self.P, self.a, self.c, self.h)
        self.gw = 1.0
        max_enum = (patterns.info.get("source") == MAX_POOL_SOURCE
                    and patterns.info.get("pool_size") == pool_size)
        self.exact = (activation == "relu" and self.a == 1 and self.c == 1
                      and (pooling == "avg" or (pooling == "max" and max_enum)))
        if activation == "gated":
            self.exact = True  # exact for the gated architecture with these gates
        self._E = None
        if N * self.a * self.P * self.h <= cache_limit or self.constrained:
            self._E = self._features(0, N)
        self.primal_is_network = True
        if self.constrained:
            self._build_constraints()
            n_rows = N * self.win.size
            if working_set is None:  # cutting planes unless the cones have few rows
                working_set = n_rows > 4 * int(init_rows)
            if working_set:
                self.set_working_rows(*self.initial_rows(int(init_rows)))
            else:
                idx = torch.arange(n_rows, device=images.device).expand(self.P, self.a, n_rows)
                self.set_working_rows(idx, torch.ones(idx.shape, dtype=torch.bool,
                                                      device=images.device))
            self.working_set = bool(working_set)

    # ------------------------------------------------------------- features
    def _window_patches(self, s: int, e: int) -> Tensor:
        X = extract_patches(self.images[s:e], self.kernel_size, self.stride, self.padding,
                            self.intercept)  # (n, K, h)
        return X[:, self.win.index]  # (n, a, Kq, h)

    def _features(self, s: int, e: int) -> Tensor:
        """E (n, a, P, h) for samples s..e."""
        Xw = self._window_patches(s, e)
        pre = Xw @ self.G  # (n, a, Kq, P)
        if self.pooling == "max":
            val, kstar = pre.max(dim=2)  # (n, a, P)
            act = (val >= 0).to(Xw.dtype)
            Xs = torch.gather(Xw, 2, kstar[..., None].expand(-1, -1, -1, self.h))
            return Xs * act[..., None]
        M = (pre >= 0).to(Xw.dtype) * self.win.weight
        return torch.einsum("nqkp,nqkh->nqph", M, Xw)

    def _chunks(self):
        if self._E is not None:
            yield 0, self.N, self._E
            return
        for s in range(0, self.N, self.chunk):
            e = min(s + self.chunk, self.N)
            yield s, e, self._features(s, e)

    def _build_constraints(self) -> None:
        """Keep the window patches Xw (N, a, Kq, h); the row coefficients are recomputed from
        Xw @ G in sample chunks (:meth:`_coeffs`), never stored for all (sample, position,
        gate) triples."""
        self._Xw = self._window_patches(0, self.N)

    def _coeffs(self, s: int, e: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Row coefficients for samples s..e: the cone rows are α x_{n,k} + γ x_{n,k*} with
        α, γ of shape (n, a, Kq, P) (γ, x_{k*} (n, a, P, h) only for max pooling)."""
        Xw = self._Xw[s:e]
        pre = Xw @ self.G  # (n, a, Kq, P)
        if self.pooling != "max":
            return 2 * (pre >= 0).to(Xw.dtype) - 1, None, None
        val, kstar = pre.max(dim=2)
        act = (val >= 0).to(Xw.dtype)
        onehot = torch.zeros_like(pre).scatter_(2, kstar[:, :, None, :], 1.0)
        alpha = onehot * (2 * act[:, :, None, :] - 1) - (1 - onehot)
        Xstar = torch.gather(Xw, 2, kstar[..., None].expand(-1, -1, -1, self.h))
        return alpha, 1 - onehot, Xstar

    # ------------------------------------------------------------- operators
    def _V(self, x: Tensor) -> Tensor:
        return x[0] - x[1] if self.S == 2 else x[0]

    def predict(self, x: Tensor) -> Tensor:
        V = self._V(x).permute(1, 0, 3, 2).reshape(-1, self.c)  # (a·P·h, c), E's layout
        out = [E.reshape(E.shape[0], -1) @ V for _, _, E in self._chunks()]
        return torch.cat(out, 0)

    def predict_adjoint(self, R: Tensor) -> Tensor:
        g = 0
        for s, e, E in self._chunks():
            g = g + (R[s:e].T @ E.reshape(e - s, -1)).T  # (a·P·h, c)
        g = g.reshape(self.a, self.P, self.h, self.c).permute(1, 0, 3, 2)
        return torch.stack([g, -g]) if self.S == 2 else g[None]


    def network_objective(self, x: Tensor) -> tuple[Tensor, float]:
        """Predictions and objective of the read-back network (true ReLU of every block,
        pooled), computed from x in sample chunks without building the filters."""
        if not self.constrained:
            Z = self.predict(x)
            return Z, float(self.loss.value(Z, self.Y) + self.penalty(x))
        out = []
        for s, e in self._row_chunks():
            T = torch.einsum("nqkh,spqch->nqkspc", self._Xw[s:e], x).clamp_min(0)
            if self.pooling == "max":
                pooled = T.amax(2)
            else:
                pooled = T.sum(2) * self.win.weight
            out.append((pooled[:, :, 0] - pooled[:, :, 1]).sum(dim=(1, 2)))
        Z = torch.cat(out, 0)
        return Z, float(self.loss.value(Z, self.Y) + self.penalty(x))

    def repair(self, x: Tensor) -> None:
        return None  # the certified primal is always the read-back network's objective

    def description(self) -> str:
        pool = f"{self.pooling} pooling" + ("" if self.pool_size is None or self.pooling == "none"
                                             else f" {self.pool_size}x{self.pool_size}")
        if self.activation == "gated":
            kind = "gated CNN: group nuclear-norm program (exact for the gated CNN)"
        elif self.exact:
            kind = "two-layer CNN: cone-constrained group lasso (exact over all patterns)"
        else:
            kind = ("two-layer CNN: output-separable cone-constrained group lasso "
                    "(a restriction of the exact program)")
        return f"{kind}, {pool}"

    # -------------------------------------------------------------- read-back
    def to_network(self, x: Tensor, tol: float = 0.0) -> ConvNetwork:
        dt, dev = x.dtype, x.device
        k, Cin = self.kernel_size, self.in_channels
        if self.activation == "relu":
            nrm = torch.linalg.vector_norm(x, dim=-1)  # (S, P, a, c)
            s_i, p_i, q_i, c_i = torch.nonzero(nrm > tol, as_tuple=True)
            z = x[s_i, p_i, q_i, c_i]  # (m, h)
            r = nrm[s_i, p_i, q_i, c_i].sqrt()
            U = z / r[:, None]
            m = len(r)
            A = torch.zeros(self.c, m * self.a, dtype=dt, device=dev)
            A[c_i, torch.arange(m, device=dev) * self.a + q_i] = torch.where(s_i == 0, r, -r)
            gates = None
        else:
            Mx = x[0].reshape(self.P, self.a * self.c, self.h)
            Ul, s_, Vh = torch.linalg.svd(Mx, full_matrices=False)  # (P,ac,q),(P,q),(P,q,h)
            p_i, r_i = torch.nonzero(s_ > tol, as_tuple=True)
            sq = s_[p_i, r_i].sqrt()
            U = Vh[p_i, r_i, :] * sq[:, None]  # (m, h)
            L = Ul[p_i, :, r_i] * sq[:, None]  # (m, a*c) indexed (q, c)
            m = len(sq)
            A = L.reshape(m, self.a, self.c).permute(2, 0, 1).reshape(self.c, m * self.a)
            gates = self.G.T[p_i]
        W, b = self._split(U)
        gw = gb = None
        if gates is not None:
            gw, gb = self._split(gates)
            gw = gw.reshape(-1, Cin, k, k)
        return ConvNetwork(W.reshape(-1, Cin, k, k), b, A.contiguous(), kernel_size=k,
                           stride=self.stride, padding=self.padding, pooling=self.pooling,
                           pool_size=self.pool_size, activation=self.activation,
                           gate_weight=gw, gate_bias=gb)

    def _split(self, U: Tensor) -> tuple[Tensor, Tensor]:
        if self.intercept:
            return U[:, :-1], U[:, -1].contiguous()
        return U, torch.zeros(U.shape[0], dtype=U.dtype, device=U.device)

    # --------------------------------------------------------------- CVXPY
    def to_cvxpy(self):
        """Independent CVXPY form, built with numpy loops over positions (small problems)."""
        return cvxpy_two_layer(self)

