"""What every fitting backend returns to an estimator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .certificates import Certificate
from .solvers.base import History

__all__ = ["FitResult"]


@dataclass
class FitResult:
    """A fitted model: the read-back network, its certificate, the solver trace, extras.

    ``network`` is any network container with ``forward(X) -> (n, c)``, ``objective(X, Y, reg,
    loss)`` and ``to_torch()``; ``info`` holds method-specific facts (stop reason, bounds, ...).
    """

    network: Any
    certificate: Certificate
    history: History
    info: dict[str, Any] = field(default_factory=dict)
