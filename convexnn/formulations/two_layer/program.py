"""The program: data, patterns, kernels (A, Aᵀ), penalty and prox, the FISTA and
augmented-Lagrangian protocols (see the package docstring)."""

from __future__ import annotations

import torch
from torch import Tensor

from ...losses import Loss, get_loss
from ...ops.prox import group_soft_threshold, singular_value_threshold
from ...patterns import (
    DEFAULT_CHUNK,
    PatternSet,
    bool_masks,
)
from .certificate import _Certificates
from .readback import _Readback


class TwoLayerProgram(_Certificates, _Readback):
    """The convex program of a two-layer network over a pattern set (see module docstring)."""

    def __init__(self, X: Tensor, Y: Tensor, patterns: PatternSet, reg: float,
                 loss: str | Loss = "squared", activation: str = "relu", *,
                 intercept: bool = False, chunk_size: int = DEFAULT_CHUNK,
                 mask_cache_limit: int = 50_000_000):
        if activation not in ("relu", "gated"):
            raise ValueError(f"activation must be 'relu' or 'gated', got {activation!r}")
        if reg <= 0:
            raise ValueError(f"reg must be > 0, got {reg}")
        self.X, self.Y = X, Y
        self.patterns = patterns
        self.G = patterns.gates.to(dtype=X.dtype, device=X.device)
        self.reg = float(reg)
        self.loss = get_loss(loss)
        self.activation = activation
        self.intercept = intercept
        self.n, self.d = X.shape
        self.c = Y.shape[1]
        self.P = self.G.shape[1]
        self.S = 2 if activation == "relu" else 1
        self.chunk = int(chunk_size)
        self.nuclear = activation == "gated" and self.c > 1
        self._M = None  # bool masks (1 byte per entry), when n·P ≤ mask_cache_limit
        self._Mf = None  # float masks, made on first use by the ReLU kernels only
        if self.n * self.P <= mask_cache_limit:
            self._M = bool_masks(X, self.G, self.chunk)

    # ------------------------------------------------------------ description
    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.S, self.P, self.d, self.c)

    def zeros(self) -> Tensor:
        return torch.zeros(self.shape, dtype=self.X.dtype, device=self.X.device)

    def description(self) -> str:
        if self.activation == "gated":
            return ("gated ReLU: group-l2 lasso" if self.c == 1
                    else "gated ReLU: group nuclear-norm program") + " over the patterns"
        if self.c == 1:
            return "ReLU: cone-constrained group lasso (Pilanci & Ergen) over the patterns"
        return ("ReLU vector output: output-separable cone-constrained group lasso "
                "(a restriction of the copositive program) over the patterns")

    # ---------------------------------------------------------------- kernels
    def _chunks(self):
        for s in range(0, self.n, self.chunk):
            e = min(s + self.chunk, self.n)
            Xc = self.X[s:e]
            M = self._M[s:e] if self._M is not None else Xc @ self.G >= 0
            yield s, e, Xc, M.to(Xc.dtype)

    @property
    def masks(self) -> Tensor:
        """All masks (n x P) as floats; O(nP) memory (the ReLU program's kernels: its cone
        constraints are O(nP) anyway). The gated kernels never form it: they use the bool
        cache or recompute the masks per row chunk."""
        if self._Mf is None:
            M = self._M if self._M is not None else self.X @ self.G >= 0
            if self._M is None:
                return M.to(self.X.dtype)
            self._Mf = M.to(self.X.dtype)
        return self._Mf

    def matvec(self, V: Tensor) -> Tensor:
        """A V = Σ_p D_p X V_p for V of shape (P, d, c); returns (n, c)."""
        Vf = V.permute(1, 0, 2).reshape(self.d, self.P * self.c)
        out = []
        for _, _, Xc, M in self._chunks():
            XV = (Xc @ Vf).reshape(-1, self.P, self.c)
            out.append(torch.einsum("npc,np->nc", XV, M))
        return torch.cat(out, 0)

    def rmatvec(self, R: Tensor) -> Tensor:
        """Aᵀ R = (Xᵀ D_p R)_p for R of shape (n, c); returns (P, d, c)."""
        acc = torch.zeros(self.d, self.P * self.c, dtype=R.dtype, device=R.device)
        for s, e, Xc, M in self._chunks():
            W = (M[:, :, None] * R[s:e, None, :]).reshape(e - s, self.P * self.c)
            acc += Xc.T @ W
        return acc.reshape(self.d, self.P, self.c).permute(1, 0, 2)

    # ---------------------------------------------------------------- penalty
    def group_norms(self, x: Tensor) -> Tensor:
        """Per-group norms: (S, P, c) column norms, or (S, P) nuclear norms."""
        if self.nuclear:
            return torch.linalg.svdvals(x).sum(-1)
        return torch.linalg.vector_norm(x, dim=2)

    def penalty(self, x: Tensor) -> Tensor:
        return self.reg * self.group_norms(x).sum()

    def prox(self, x: Tensor, step: float) -> Tensor:
        t = step * self.reg
        if self.nuclear:
            return singular_value_threshold(x, t)
        return group_soft_threshold(x, t, dim=2)

    def prox_penalty(self, x: Tensor, step: float) -> tuple[Tensor, Tensor]:
        """(prox(x, step), penalty at it) sharing one SVD / one set of norms."""
        t = step * self.reg
        if self.nuclear:
            out, s = singular_value_threshold(x, t, return_values=True)
            return out, self.reg * s.sum()
        nrm = torch.linalg.vector_norm(x, dim=2, keepdim=True)
        return group_soft_threshold(x, t, norms=nrm), self.reg * (nrm - t).clamp_min(0).sum()

    def dual_norms(self, Gr: Tensor) -> Tensor:
        """Dual norm of each group of a gradient-shaped array (spectral or l2)."""
        if self.nuclear:
            return torch.linalg.matrix_norm(Gr, ord=2)
        return torch.linalg.vector_norm(Gr, dim=2)

    # -------------------------------------------------- gated: smooth protocol
    def linear(self, x: Tensor) -> Tensor:
        V = x[0] - x[1] if self.S == 2 else x[0]
        return self.matvec(V)

    def smooth_value(self, Z: Tensor) -> Tensor:
        return self.loss.value(Z, self.Y)

    def smooth_grad(self, Z: Tensor) -> Tensor:
        g = self.rmatvec(self.loss.grad(Z, self.Y))
        return torch.stack([g, -g]) if self.S == 2 else g[None]

    def smooth_value_grad(self, Z: Tensor) -> tuple[Tensor, Tensor]:
        """Value and gradient at the state Z sharing one loss evaluation (for an offset loss,
        one inner solve for b*: ∇L_b(Z) = ∇L(Z + 1 b*ᵀ))."""
        base, W = self.loss, Z
        if hasattr(self.loss, "offset") and hasattr(self.loss, "base"):
            base, W = self.loss.base, Z + self.loss.offset(Z, self.Y)
        g = self.rmatvec(base.grad(W, self.Y))
        return base.value(W, self.Y), (torch.stack([g, -g]) if self.S == 2 else g[None])

    # ---------------------------------------------------- ReLU: AL protocol
    def relu_state(self, x: Tensor) -> Tensor:
        """X x for every group: (n, S, P, c)."""
        xf = x.permute(2, 0, 1, 3).reshape(self.d, -1)
        return (self.X @ xf).reshape(self.n, self.S, self.P, self.c)

    def relu_predict(self, XV: Tensor) -> Tensor:
        """Convex-model predictions Σ_p D_p X (v_p − w_p) from the state."""
        return torch.einsum("npc,np->nc", XV[:, 0] - XV[:, 1], self.masks)

    def constraint(self, XV: Tensor) -> Tensor:
        """(2D_p − I) X x_{s,p,:,k}: must be ≥ 0. Shape (n, S, P, c)."""
        sgn = 2 * self.masks - 1
        return sgn[:, None, :, None] * XV

    def augmented(self, mu: Tensor, rho: float) -> _AugmentedReLU:
        return _AugmentedReLU(self, mu, rho)

    def violation(self, XV: Tensor) -> float:
        return float((-self.constraint(XV)).clamp_min(0).max()) if XV.numel() else 0.0

    def network_predict(self, XV: Tensor) -> Tensor:
        """Predictions of the read-back ReLU network: Σ_p (X v_p)_+ − (X w_p)_+."""
        return (XV[:, 0].clamp_min(0) - XV[:, 1].clamp_min(0)).sum(1)

    def objective(self, x: Tensor) -> float:
        """Convex objective at x (uses the pattern masks, not the network's true ReLU)."""
        if self.activation == "relu":
            Z = self.relu_predict(self.relu_state(x))
        else:
            Z = self.linear(x)
        return float(self.loss.value(Z, self.Y) + self.penalty(x))


class _AugmentedReLU:
    """Smooth part of the augmented Lagrangian of the ReLU program, in the FISTA protocol.

    f_ρ(x) = L(Σ_p D_p X (v_p − w_p)) + (ρ/2) ||(μ/ρ − C(x))_+||²,  C(x) = (2D_p − I) X x.
    """

    def __init__(self, prog: TwoLayerProgram, mu: Tensor, rho: float):
        self.prog, self.mu, self.rho = prog, mu, float(rho)
        self.penalty = prog.penalty
        self.prox = prog.prox

    def linear(self, x: Tensor) -> Tensor:
        return self.prog.relu_state(x)

    def _shifted(self, XV: Tensor) -> Tensor:
        return (self.mu - self.rho * self.prog.constraint(XV)).clamp_min(0)

    def smooth_value(self, XV: Tensor) -> Tensor:
        p = self.prog
        Z = p.relu_predict(XV)
        return p.loss.value(Z, p.Y) + (self._shifted(XV) ** 2).sum() / (2 * self.rho)

    def multiplier_term(self, XV: Tensor) -> Tensor:
        """Bᵀ μ̃ with μ̃ = (μ − ρ C)_+ ≥ 0, shaped like x."""
        p = self.prog
        sgn = 2 * p.masks - 1
        W = sgn[:, None, :, None] * self._shifted(XV)
        return (p.X.T @ W.reshape(p.n, -1)).reshape(p.d, p.S, p.P, p.c).permute(1, 2, 0, 3)

    def smooth_grad(self, XV: Tensor) -> Tensor:
        p = self.prog
        Z = p.relu_predict(XV)
        R = p.loss.grad(Z, p.Y)
        M = p.masks
        sgn = 2 * M - 1
        Wm = (M[:, :, None] * R[:, None, :])
        sh = self._shifted(XV)
        Wfull = torch.stack([Wm, -Wm], 1) - sgn[:, None, :, None] * sh
        return (p.X.T @ Wfull.reshape(p.n, -1)).reshape(p.d, p.S, p.P, p.c).permute(1, 2, 0, 3)

    def updated_multipliers(self, XV: Tensor) -> Tensor:
        return self._shifted(XV)
