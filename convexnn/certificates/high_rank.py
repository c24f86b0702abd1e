r"""Global lower bounds where the arrangement is too large to enumerate (high-rank data).

Notation of :mod:`.global_`. The norm bound h ≤ min(||Λ||₂ ||X̃||₂, Σ_i ||λ_i|| ||x̃_i||)
needs no solve and holds for every u.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["SCOPE_NORM_BOUND", "norm_h_bound"]

SCOPE_NORM_BOUND = "global (norm bound)"


def norm_h_bound(Xa: Tensor, lam: Tensor) -> float:
    """h(Λ) ≤ min(||Λ||₂ ||X̃||₂, Σ_i ||λ_i|| ||x̃_i||), valid for every u."""
    Xop = float(torch.linalg.matrix_norm(Xa, ord=2))
    return min(float(torch.linalg.matrix_norm(lam, ord=2)) * Xop,
               float((torch.linalg.vector_norm(lam, dim=1)
                      * torch.linalg.vector_norm(Xa, dim=1)).sum()))
