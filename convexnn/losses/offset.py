"""A loss with an unregularised output offset: see :class:`OffsetLoss`."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .base import Loss

__all__ = ["OffsetLoss"]


class OffsetLoss(Loss):
    """``L_b(Z) = min_b L(Z + 1 bᵀ)``: a loss with an unregularised output offset b ∈ R^c.

    Partial minimisation keeps it convex, so every program, solver and certificate written for
    a loss works unchanged with it. ∇L_b(Z) = ∇L(Z + 1 b*ᵀ) sums to zero over the samples, and
    L_b*(Λ) = L*(Λ) when 1ᵀΛ = 0 (else +∞): the dual of a program with an offset is that of the
    program without it plus the constraint 1ᵀΛ = 0. :meth:`project_dual` moves a candidate Λ
    onto that constraint inside L*'s domain; :meth:`grad` returns projected gradients.
    ``offset(Z, Y)`` is b* (squared: the mean residual; logistic and cross-entropy: Newton).

    ``reduce``: for samples spread over processes, a function summing a tensor over all of them
    (e.g. an all-reduce): the offset, the projection and the domain test then concern the
    union of the samples (every decision is taken on reduced values, so it agrees on every
    process), while values, gradients and conjugates stay this process's share. Not used by
    :meth:`prox`.
    """

    def __init__(self, base: Loss, reduce=None):
        self.base = base
        self.name = base.name
        self.smoothness = base.smoothness
        self.reduce = reduce

    def _sum(self, t: Tensor) -> Tensor:
        return t if self.reduce is None else self.reduce(t)

    def _count(self, Z: Tensor) -> float:
        if self.reduce is None:
            return float(Z.shape[0])
        return float(self.reduce(torch.tensor([float(Z.shape[0])], dtype=torch.float64,
                                              device=Z.device))[0])

    def offset(self, Z: Tensor, Y: Tensor, iters: int = 50) -> Tensor:
        """b* = argmin_b L(Z + 1 bᵀ), shape (c,)."""
        if self.name == "squared":
            if self.reduce is None:
                return (Y - Z).mean(0)
            return self.reduce((Y - Z).sum(0)) / self._count(Z)
        n = self._count(Z)
        b = getattr(self, "_b_last", None)  # warm start: successive calls move Z little
        if b is None or b.shape != (Z.shape[1],) or b.dtype != Z.dtype or b.device != Z.device \
                or not bool(torch.isfinite(b).all()):
            b = torch.zeros(Z.shape[1], dtype=Z.dtype, device=Z.device)
        f = self._value_sum(Z + b, Y)
        restart = True
        for _ in range(iters):
            W = Z + b
            g = self._sum(self.base.grad(W, Y).sum(0))
            if float(g.abs().max()) <= 1e-13 * n:
                break
            H = self._sum(self._hessian(W, Y))
            H = H + 1e-12 * (1.0 + float(H.diagonal().abs().max())) * torch.eye(
                H.shape[0], dtype=H.dtype, device=H.device)
            if self.name == "cross_entropy":  # invariant along 1: fix that direction
                H = H + float(H.diagonal().mean()) / H.shape[0]
            step = torch.linalg.solve(H, g)
            if self.name == "cross_entropy":
                step = step - step.mean()
            dec = float(g @ step)  # Newton decrement²: ≈ 2 (f − min), nothing left below eps
            if dec <= 4 * torch.finfo(Z.dtype).eps * abs(f):
                break
            t, fn = 1.0, math.inf
            for _ in range(80):  # backtracking on the (convex) objective in b
                fn = self._value_sum(Z + b - t * step, Y)
                if fn <= f - 0.25 * t * dec:
                    break
                t *= 0.5
            if not fn < f:  # no further decrease at working precision
                if restart and bool((b != 0).any()):  # a stale warm start: once from 0
                    restart = False
                    b = torch.zeros_like(b)
                    f = self._value_sum(Z, Y)
                    continue
                break
            b, f = b - t * step, fn
        self._b_last = b
        return b

    def _value_sum(self, W: Tensor, Y: Tensor) -> float:
        return float(self._sum(self.base.value(W, Y).reshape(1))[0])

    def cvxpy(self, Z, Y):
        """min_b L(Z + 1bᵀ) inside a minimisation: the base loss with a free offset variable."""
        import cvxpy as cp

        if len(Z.shape) == 1:
            return self.base.cvxpy(Z + cp.Variable(), Y)
        n, c = Z.shape
        return self.base.cvxpy(Z + np.ones((n, 1)) @ cp.Variable((1, c)), Y)

    def _hessian(self, W: Tensor, Y: Tensor) -> Tensor:
        """Σ_i ∇²ℓ(W_i): the Hessian of L(W + 1 bᵀ) in b."""
        if self.name == "logistic":
            s = torch.sigmoid(-Y * W)
            return (s * (1 - s)).sum().reshape(1, 1)
        if self.name == "cross_entropy":
            p = torch.softmax(W, 1)
            return torch.diag(p.sum(0)) - p.T @ p
        return W.shape[0] * torch.eye(W.shape[1], dtype=W.dtype, device=W.device)

    def value(self, Z: Tensor, Y: Tensor) -> Tensor:
        return self.base.value(Z + self.offset(Z, Y), Y)

    def grad(self, Z: Tensor, Y: Tensor) -> Tensor:
        return self.project_dual(self.base.grad(Z + self.offset(Z, Y), Y), Y)

    def project_dual(self, L: Tensor, Y: Tensor) -> Tensor:
        """Λ moved to 1ᵀΛ = 0 inside dom L* (a curvature-weighted shift; Λ itself when that
        fails, which :meth:`conjugate` then reports as +∞)."""
        e = self._sum(L.sum(0))
        if self.name == "squared":
            return L - e / self._count(L)
        if self.name == "logistic":
            t = (-Y * L).clamp(0, 1)
            w = t * (1 - t)
            ws = self._sum(w.sum().reshape(1))[0]
            if float(ws) <= 0:
                return L
            out = L - e * w / ws
        else:  # cross-entropy: P = Λ + Y on the simplex, shift P_i by H_i a (H_i 1 = 0)
            P = (L + Y).clamp_min(0)
            H = self._sum(torch.diag(P.sum(0)) - P.T @ P)
            a = torch.linalg.lstsq(H, -e[:, None]).solution[:, 0]
            out = L + P * a - P * (P @ a)[:, None]
        bad = torch.tensor([0.0 if bool(torch.isfinite(self.conjugate(out, Y))) else 1.0],
                           dtype=torch.float64, device=L.device)
        return out if float(self._sum(bad)[0]) == 0 else L

    def conjugate(self, L: Tensor, Y: Tensor) -> Tensor:
        e = float(self._sum(L.sum(0)).abs().max())
        mass = float(self._sum(L.abs().sum().reshape(1))[0])
        if e > 64 * torch.finfo(L.dtype).eps * max(1.0, mass):
            return torch.tensor(math.inf, dtype=L.dtype, device=L.device)
        return self.base.conjugate(L, Y)

    def link(self, Z: Tensor) -> Tensor:
        return self.base.link(Z)

    def prox(self, V: Tensor, Y: Tensor, t: float, iters: int = 30,
             Z0: Tensor | None = None) -> Tensor:
        """argmin_Z L_b(Z) + ||Z − V||²/(2t): Z = W − 1bᵀ with W = prox_{tL}(V + 1bᵀ) and b the
        root of Σ_i (V_i + b − W_i(b)) = 0 (monotone in b; Newton on its Jacobian)."""
        if self.name == "squared":
            Vm = V.mean(0)
            return (V - Vm + t * (Y - Y.mean(0))) / (1.0 + t) + Vm
        # b minimises the convex φ(b) = Σ_i e_t(V_i + b) (e_t: Moreau envelope of the loss),
        # whose gradient is g/t: damped Newton with backtracking on φ
        def envelope(b_, W0=None):
            W_ = self.base.prox(V + b_, Y, t, Z0=W0)
            return W_, float(self.base.value(W_, Y)) + float(((W_ - V - b_) ** 2).sum()) / (2 * t)

        eye = torch.eye(V.shape[1], dtype=V.dtype, device=V.device)
        b = torch.zeros(V.shape[1], dtype=V.dtype, device=V.device)
        W, phi = envelope(b)
        for _ in range(iters):
            g = (V + b - W).sum(0)
            if float(g.abs().max()) <= 1e-12 * (1.0 + float(V.abs().max())) * V.shape[0]:
                break
            Hs = self._hessian_rows(W, Y)  # per-sample Hessians (n, c, c)
            J = t * (Hs @ torch.linalg.inv(eye + t * Hs)).sum(0)  # dg/db = Σ tH (I + tH)⁻¹
            J = J + 1e-9 * (1.0 + float(J.diagonal().abs().max())) * eye
            step = torch.linalg.lstsq(J, g[:, None]).solution[:, 0]
            dec = float(g @ step) / t
            tau, ok = 1.0, False
            for _ in range(50):
                Wn, phin = envelope(b - tau * step, W)
                if phin <= phi - 0.25 * tau * dec:
                    ok = True
                    break
                tau *= 0.5
            if not ok:
                break
            b, W, phi = b - tau * step, Wn, phin
        g = (V + b - W).sum(0)
        if float(g.abs().max()) > 1e-9 * (1.0 + float(V.abs().max())) * V.shape[0]:
            b, W = self._prox_offset_bisect(V, Y, t, b)
        return W - b

    def _prox_offset_bisect(self, V: Tensor, Y: Tensor, t: float, b: Tensor,
                            sweeps: int = 10, steps: int = 60) -> tuple[Tensor, Tensor]:
        """Fallback for :meth:`prox`: cyclic bisection on each coordinate of g(b) = Σ_i
        (V_i + b − W_i(b)), which is non-decreasing in b_k and within [−n·t·G, n·t·G]
        (G bounds the loss gradient: 1 for logistic and cross-entropy)."""
        n = V.shape[0]
        b = b.clone()
        W = self.base.prox(V + b, Y, t)
        for _ in range(1 if b.numel() == 1 else sweeps):
            for k in range(b.numel()):
                lo_, hi_ = float(b[k]) - 2 * n * t - 1.0, float(b[k]) + 2 * n * t + 1.0
                for _ in range(steps):
                    b[k] = 0.5 * (lo_ + hi_)
                    W = self.base.prox(V + b, Y, t, Z0=W)
                    if float((V[:, k] + b[k] - W[:, k]).sum()) > 0:
                        hi_ = float(b[k])
                    else:
                        lo_ = float(b[k])
        return b, self.base.prox(V + b, Y, t, Z0=W)

    def _hessian_rows(self, W: Tensor, Y: Tensor) -> Tensor:
        if self.name == "logistic":
            s = torch.sigmoid(-Y * W)
            return (s * (1 - s))[:, :, None]
        p = torch.softmax(W, 1)
        return torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
