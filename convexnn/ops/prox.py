"""Proximal maps of the group penalties: group soft-thresholding, singular value thresholding."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["group_soft_threshold", "singular_value_threshold"]


def group_soft_threshold(x: Tensor, t: float | Tensor, dim: int | tuple[int, ...] = -1, *,
                         norms: Tensor | None = None) -> Tensor:
    """prox of t·||·||₂ per group: x · (1 − t/||x||)₊, groups reduced over ``dim``.

    ``t`` is a scalar or a tensor broadcasting against the (keepdim) norms; ``norms`` passes
    norms already computed (keepdim shape) to share them with the caller.
    """
    if norms is None:
        norms = torch.linalg.vector_norm(x, dim=dim, keepdim=True)
    return x * (1 - t / norms.clamp_min(1e-300)).clamp_min(0)


def singular_value_threshold(M: Tensor, t: float | Tensor, *, return_values: bool = False
                             ) -> Tensor | tuple[Tensor, Tensor]:
    """prox of t·||·||_* on (batched) matrices: U diag((σ − t)₊) Vᵀ.

    With ``return_values`` also returns the thresholded singular values (σ − t)₊.
    """
    U, s, Vh = torch.linalg.svd(M, full_matrices=False)
    s = (s - t).clamp_min(0)
    out = (U * s[..., None, :]) @ Vh
    return (out, s) if return_values else out
