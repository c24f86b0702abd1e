"""Data-fit losses with gradients and convex conjugates.

Every loss is a convex function ``L(Z)`` of the prediction matrix ``Z`` (n x c) for fixed
targets ``Y`` (n x c), summed over samples (the papers' convention, not a mean):

* ``squared``:        L(Z) = 1/2 ||Z - Y||_F^2,                      L*(Λ) = 1/2 ||Λ||^2 + <Λ, Y>
* ``logistic``:       L(z) = Σ_i log(1 + exp(-y_i z_i)), y ∈ {±1},
                      L*(λ) = Σ t log t + (1-t) log(1-t),  t = -y λ ∈ [0, 1]
* ``cross_entropy``:  L(Z) = Σ_i logsumexp(Z_i) - <Z_i, Y_i>, Y one-hot,
                      L*(Λ) = Σ_i Σ_k P_ik log P_ik with P = Λ + Y in the simplex (row-wise)

The conjugates feed the Fenchel dual ``max_Λ -L*(Λ) - R*(-Aᵀ Λ)`` used by the certificates;
``prox(V, Y, t) = argmin_Z L(Z) + ||Z − V||² / (2t)`` feeds splitting solvers (closed form for
the squared loss; a few safeguarded Newton steps, separable per sample, for the others).
Scaling the gradient ``Λ = ∇L(Z)`` by ``s ∈ [0, 1]`` keeps it in the domain of ``L*`` for all
three losses, which is how a dual-feasible point is built.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["Loss", "SquaredLoss", "LogisticLoss", "CrossEntropyLoss", "OffsetLoss", "get_loss",
           "LOSSES"]


def _xlogx(t: Tensor) -> Tensor:
    return torch.where(t > 0, t * torch.log(t.clamp_min(1e-300)), torch.zeros_like(t))


class Loss:
    """Base class: a convex loss of the predictions ``Z`` for fixed targets ``Y``."""

    name: str = "loss"
    #: Lipschitz constant of the gradient (curvature bound), used for step sizes.
    smoothness: float = 1.0

    def value(self, Z: Tensor, Y: Tensor) -> Tensor:
        raise NotImplementedError

    def grad(self, Z: Tensor, Y: Tensor) -> Tensor:
        raise NotImplementedError

    def value_and_grad(self, Z: Tensor, Y: Tensor) -> tuple[Tensor, Tensor]:
        return self.value(Z, Y), self.grad(Z, Y)

    def cvxpy(self, Z, Y):
        """The loss as a CVXPY expression of the prediction expression ``Z`` (targets ``Y``)."""
        raise NotImplementedError(f"no CVXPY form for loss {self.name!r}")

    def conjugate(self, L: Tensor, Y: Tensor) -> Tensor:
        """Convex conjugate ``L*(Λ) = sup_Z <Λ, Z> - L(Z)`` (``+inf`` outside its domain)."""
        raise NotImplementedError

    def link(self, Z: Tensor) -> Tensor:
        """Map raw network outputs to the predicted quantity (identity for regression)."""
        return Z

    def prox(self, V: Tensor, Y: Tensor, t: float, iters: int = 30,
             Z0: Tensor | None = None) -> Tensor:
        """``argmin_Z L(Z) + ||Z − V||² / (2t)`` (t > 0); ``Z0`` warm-starts iterative proxes."""
        raise NotImplementedError


class SquaredLoss(Loss):
    name = "squared"
    smoothness = 1.0

    def value(self, Z: Tensor, Y: Tensor) -> Tensor:
        return 0.5 * ((Z - Y) ** 2).sum()

    def grad(self, Z: Tensor, Y: Tensor) -> Tensor:
        return Z - Y

    def value_and_grad(self, Z: Tensor, Y: Tensor) -> tuple[Tensor, Tensor]:
        R = Z - Y
        return 0.5 * (R * R).sum(), R

    def cvxpy(self, Z, Y):
        import cvxpy as cp

        return 0.5 * cp.sum_squares(Z - Y)

    def conjugate(self, L: Tensor, Y: Tensor) -> Tensor:
        return 0.5 * (L**2).sum() + (L * Y).sum()

    def prox(self, V: Tensor, Y: Tensor, t: float, iters: int = 30,
             Z0: Tensor | None = None) -> Tensor:
        return (V + t * Y) / (1.0 + t)


class LogisticLoss(Loss):
    """Binary logistic loss; targets are ±1, predictions a single column."""

    name = "logistic"
    smoothness = 0.25

    def value(self, Z: Tensor, Y: Tensor) -> Tensor:
        return torch.nn.functional.softplus(-Y * Z).sum()

    def grad(self, Z: Tensor, Y: Tensor) -> Tensor:
        return -Y * torch.sigmoid(-Y * Z)

    def cvxpy(self, Z, Y):
        import cvxpy as cp

        return cp.sum(cp.logistic(-cp.multiply(Y, Z)))

    def conjugate(self, L: Tensor, Y: Tensor) -> Tensor:
        t = -Y * L
        if bool((t < -1e-12).any()) or bool((t > 1 + 1e-12).any()):
            return torch.tensor(math.inf, dtype=L.dtype, device=L.device)
        t = t.clamp(0.0, 1.0)
        return (_xlogx(t) + _xlogx(1 - t)).sum()

    def link(self, Z: Tensor) -> Tensor:
        return torch.sigmoid(Z)

    def prox(self, V: Tensor, Y: Tensor, t: float, iters: int = 200,
             Z0: Tensor | None = None) -> Tensor:
        # per entry, φ(z) = softplus(−y z) + (z − v)²/(2t) has an increasing derivative with
        # φ'(v − t) ≤ 0 ≤ φ'(v + t) (|softplus'| ≤ 1): Newton steps safeguarded by bisection
        lo, hi = V - t, V + t
        Z = V.clone() if Z0 is None else torch.minimum(torch.maximum(Z0, lo), hi)
        g_prev = torch.full_like(V, math.inf)
        eps = torch.finfo(V.dtype).eps
        floor = 1e3 * eps + 4 * eps * (float(V.abs().max()) + t) / t  # round-off level of φ'
        for _ in range(iters):
            s = torch.sigmoid(-Y * Z)
            g = -Y * s + (Z - V) / t
            if float(g.abs().max()) <= floor:
                break
            lo = torch.where(g <= 0, Z, lo)
            hi = torch.where(g >= 0, Z, hi)
            Zn = Z - g / (s * (1 - s) + 1.0 / t)
            # bisect where Newton leaves the bracket or stopped halving |φ'|
            bisect = (Zn <= lo) | (Zn >= hi) | (g.abs() > 0.5 * g_prev)
            Z = torch.where(bisect, 0.5 * (lo + hi), Zn)
            g_prev = torch.where(bisect, torch.full_like(g, math.inf), g.abs())
        return Z


class CrossEntropyLoss(Loss):
    """Multi-class softmax cross-entropy; targets one-hot, predictions one column per class."""

    name = "cross_entropy"
    smoothness = 0.5

    def value(self, Z: Tensor, Y: Tensor) -> Tensor:
        return (torch.logsumexp(Z, dim=1) - (Z * Y).sum(dim=1)).sum()

    def grad(self, Z: Tensor, Y: Tensor) -> Tensor:
        return torch.softmax(Z, dim=1) - Y

    def value_and_grad(self, Z: Tensor, Y: Tensor) -> tuple[Tensor, Tensor]:
        lse = torch.logsumexp(Z, dim=1, keepdim=True)  # one exp pass for both
        return lse.sum() - (Z * Y).sum(), torch.exp(Z - lse) - Y

    def cvxpy(self, Z, Y):
        import cvxpy as cp

        return cp.sum(cp.log_sum_exp(Z, axis=1)) - cp.sum(cp.multiply(Y, Z))

    def conjugate(self, L: Tensor, Y: Tensor) -> Tensor:
        P = L + Y
        if bool((P < -1e-12).any()) or bool(((P.sum(dim=1) - 1).abs() > 1e-8).any()):
            return torch.tensor(math.inf, dtype=L.dtype, device=L.device)
        return _xlogx(P.clamp_min(0.0)).sum()

    def link(self, Z: Tensor) -> Tensor:
        return torch.softmax(Z, dim=1)

    def prox(self, V: Tensor, Y: Tensor, t: float, iters: int = 100,
             Z0: Tensor | None = None) -> Tensor:
        # per row, φ(z) = lse(z) − <y, z> + ||z − v||²/(2t) is strongly convex; Newton with
        # Hessian diag(p) − p pᵀ + I/t (Sherman–Morrison) and per-row backtracking on φ
        a = 1.0 / t

        def phi(Z):
            return torch.logsumexp(Z, 1) - (Y * Z).sum(1) + 0.5 * a * ((Z - V) ** 2).sum(1)

        Z = V.clone() if Z0 is None else Z0.clone()
        f = phi(Z)
        for _ in range(iters):
            p = torch.softmax(Z, dim=1)
            g = p - Y + (Z - V) * a
            dinv = 1.0 / (p + a)
            u, w = dinv * g, dinv * p
            coef = (p * u).sum(1, keepdim=True) / (1.0 - (p * w).sum(1, keepdim=True))
            if float(g.abs().max()) <= 1e-12 * (1.0 + a * float(V.abs().max())):
                break
            step = u + coef * w
            dec = (g * step).sum(1)  # Newton decrement², ≥ 0
            tau = torch.ones_like(f)
            for _ in range(30):
                Zn = Z - tau[:, None] * step
                fn = phi(Zn)
                bad = fn > f - 0.25 * tau * dec + 1e-13 * (1.0 + f.abs())
                if not bool(bad.any()):
                    break
                tau = torch.where(bad, 0.5 * tau, tau)
            Z, f = Zn, fn
        return Z


class OffsetLoss(Loss):
    """``L_b(Z) = min_b L(Z + 1 bᵀ)``: a loss with an unregularised output offset b ∈ R^c.

    Partial minimisation keeps it convex, so every program, solver and certificate written for
    a loss works unchanged with it. ∇L_b(Z) = ∇L(Z + 1 b*ᵀ) sums to zero over the samples, and
    L_b*(Λ) = L*(Λ) when 1ᵀΛ = 0 (else +∞): the dual of a program with an offset is that of the
    program without it plus the constraint 1ᵀΛ = 0. :meth:`project_dual` moves a candidate Λ
    onto that constraint inside L*'s domain; :meth:`grad` returns projected gradients.
    ``offset(Z, Y)`` is b* (squared: the mean residual; logistic and cross-entropy: Newton).
    """

    def __init__(self, base: Loss):
        self.base = base
        self.name = base.name
        self.smoothness = base.smoothness

    def offset(self, Z: Tensor, Y: Tensor, iters: int = 50) -> Tensor:
        """b* = argmin_b L(Z + 1 bᵀ), shape (c,)."""
        if self.name == "squared":
            return (Y - Z).mean(0)
        b = getattr(self, "_b_last", None)  # warm start: successive calls move Z little
        if b is None or b.shape != (Z.shape[1],) or b.dtype != Z.dtype or b.device != Z.device \
                or not bool(torch.isfinite(b).all()):
            b = torch.zeros(Z.shape[1], dtype=Z.dtype, device=Z.device)
        f = float(self.base.value(Z + b, Y))
        restart = True
        for _ in range(iters):
            W = Z + b
            g = self.base.grad(W, Y).sum(0)
            if float(g.abs().max()) <= 1e-13 * Z.shape[0]:
                break
            H = self._hessian(W, Y)
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
                fn = float(self.base.value(Z + b - t * step, Y))
                if fn <= f - 0.25 * t * dec:
                    break
                t *= 0.5
            if not fn < f:  # no further decrease at working precision
                if restart and bool((b != 0).any()):  # a stale warm start: once from 0
                    restart = False
                    b = torch.zeros_like(b)
                    f = float(self.base.value(Z, Y))
                    continue
                break
            b, f = b - t * step, fn
        self._b_last = b
        return b

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
        e = L.sum(0)
        if self.name == "squared":
            return L - e / L.shape[0]
        if self.name == "logistic":
            t = (-Y * L).clamp(0, 1)
            w = t * (1 - t)
            if float(w.sum()) <= 0:
                return L
            out = L - e * w / w.sum()
        else:  # cross-entropy: P = Λ + Y on the simplex, shift P_i by H_i a (H_i 1 = 0)
            P = (L + Y).clamp_min(0)
            H = torch.diag(P.sum(0)) - P.T @ P
            a = torch.linalg.lstsq(H, -e[:, None]).solution[:, 0]
            out = L + P * a - P * (P @ a)[:, None]
        return out if bool(torch.isfinite(self.conjugate(out, Y))) else L

    def conjugate(self, L: Tensor, Y: Tensor) -> Tensor:
        e = float(L.sum(0).abs().max())
        if e > 64 * torch.finfo(L.dtype).eps * max(1.0, float(L.abs().sum())):
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


LOSSES: dict[str, type[Loss]] = {
    "squared": SquaredLoss,
    "logistic": LogisticLoss,
    "cross_entropy": CrossEntropyLoss,
}


def get_loss(loss: str | Loss, offset: bool = False) -> Loss:
    """A loss instance from its name (``squared``, ``logistic``, ``cross_entropy``); with
    ``offset``, wrapped in :class:`OffsetLoss` (an unregularised output offset)."""
    if isinstance(loss, Loss):
        lo = loss
    elif loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(LOSSES)}")
    else:
        lo = LOSSES[loss]()
    if offset and not isinstance(lo, OffsetLoss):
        return OffsetLoss(lo)
    return lo
