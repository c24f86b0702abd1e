"""Data-fit losses with gradients and convex conjugates.

Every loss is a convex function ``L(Z)`` of the prediction matrix ``Z`` (n x c) for fixed
targets ``Y`` (n x c), summed over samples (the papers' convention, not a mean):

* ``squared``:        L(Z) = 1/2 ||Z - Y||_F^2,                      L*(Λ) = 1/2 ||Λ||^2 + <Λ, Y>
* ``logistic``:       L(z) = Σ_i log(1 + exp(-y_i z_i)), y ∈ {±1},
                      L*(λ) = Σ t log t + (1-t) log(1-t),  t = -y λ ∈ [0, 1]
* ``cross_entropy``:  L(Z) = Σ_i logsumexp(Z_i) - <Z_i, Y_i>, Y one-hot,
                      L*(Λ) = Σ_i Σ_k P_ik log P_ik with P = Λ + Y in the simplex (row-wise)

The conjugates feed the Fenchel dual ``max_Λ -L*(Λ) - R*(-Aᵀ Λ)`` used by the certificates.
Scaling the gradient ``Λ = ∇L(Z)`` by ``s ∈ [0, 1]`` keeps it in the domain of ``L*`` for all
three losses, which is how a dual-feasible point is built.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["Loss", "SquaredLoss", "LogisticLoss", "CrossEntropyLoss", "get_loss", "LOSSES"]


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

    def conjugate(self, L: Tensor, Y: Tensor) -> Tensor:
        """Convex conjugate ``L*(Λ) = sup_Z <Λ, Z> - L(Z)`` (``+inf`` outside its domain)."""
        raise NotImplementedError

    def link(self, Z: Tensor) -> Tensor:
        """Map raw network outputs to the predicted quantity (identity for regression)."""
        return Z


class SquaredLoss(Loss):
    name = "squared"
    smoothness = 1.0

    def value(self, Z: Tensor, Y: Tensor) -> Tensor:
        return 0.5 * ((Z - Y) ** 2).sum()

    def grad(self, Z: Tensor, Y: Tensor) -> Tensor:
        return Z - Y

    def conjugate(self, L: Tensor, Y: Tensor) -> Tensor:
        return 0.5 * (L**2).sum() + (L * Y).sum()


class LogisticLoss(Loss):
    """Binary logistic loss; targets are ±1, predictions a single column."""

    name = "logistic"
    smoothness = 0.25

    def value(self, Z: Tensor, Y: Tensor) -> Tensor:
        return torch.nn.functional.softplus(-Y * Z).sum()

    def grad(self, Z: Tensor, Y: Tensor) -> Tensor:
        return -Y * torch.sigmoid(-Y * Z)

    def conjugate(self, L: Tensor, Y: Tensor) -> Tensor:
        t = -Y * L
        if bool((t < -1e-12).any()) or bool((t > 1 + 1e-12).any()):
            return torch.tensor(math.inf, dtype=L.dtype, device=L.device)
        t = t.clamp(0.0, 1.0)
        return (_xlogx(t) + _xlogx(1 - t)).sum()

    def link(self, Z: Tensor) -> Tensor:
        return torch.sigmoid(Z)


class CrossEntropyLoss(Loss):
    """Multi-class softmax cross-entropy; targets one-hot, predictions one column per class."""

    name = "cross_entropy"
    smoothness = 0.5

    def value(self, Z: Tensor, Y: Tensor) -> Tensor:
        return (torch.logsumexp(Z, dim=1) - (Z * Y).sum(dim=1)).sum()

    def grad(self, Z: Tensor, Y: Tensor) -> Tensor:
        return torch.softmax(Z, dim=1) - Y

    def conjugate(self, L: Tensor, Y: Tensor) -> Tensor:
        P = L + Y
        if bool((P < -1e-12).any()) or bool(((P.sum(dim=1) - 1).abs() > 1e-8).any()):
            return torch.tensor(math.inf, dtype=L.dtype, device=L.device)
        return _xlogx(P.clamp_min(0.0)).sum()

    def link(self, Z: Tensor) -> Tensor:
        return torch.softmax(Z, dim=1)


LOSSES: dict[str, type[Loss]] = {
    "squared": SquaredLoss,
    "logistic": LogisticLoss,
    "cross_entropy": CrossEntropyLoss,
}


def get_loss(loss: str | Loss) -> Loss:
    """Return a loss instance from its name (``squared``, ``logistic``, ``cross_entropy``)."""
    if isinstance(loss, Loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(LOSSES)}")
    return LOSSES[loss]()
