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

from .base import CrossEntropyLoss, LogisticLoss, Loss, SquaredLoss
from .offset import OffsetLoss

__all__ = ["Loss", "SquaredLoss", "LogisticLoss", "CrossEntropyLoss", "OffsetLoss", "get_loss",
           "LOSSES"]


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
