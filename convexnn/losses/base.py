"""The three base losses (values, gradients, conjugates, proxes): see :mod:`convexnn.losses`."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["Loss", "SquaredLoss", "LogisticLoss", "CrossEntropyLoss"]


def _domain_tol(L: Tensor, tol: float) -> float:
    """The conjugates' domain tolerance: ``tol`` in float64, the rounding of L's own precision
    (64 ulp) when coarser: a float32 gradient's rows sum to 1 only to ~1e-7."""
    return max(tol, 64 * torch.finfo(L.dtype).eps)


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
        tol = _domain_tol(L, 1e-12)
        if bool((t < -tol).any()) or bool((t > 1 + tol).any()):
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
        if bool((P < -_domain_tol(L, 1e-12)).any()) or bool(
                ((P.sum(dim=1) - 1).abs() > _domain_tol(L, 1e-8)).any()):
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
