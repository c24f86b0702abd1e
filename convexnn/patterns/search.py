"""Local search for the activation patterns that most violate a dual constraint (used by the
pattern search of :mod:`convexnn.formulations.two_layer`)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .sampling import DEFAULT_CHUNK

__all__ = ["search_gates"]


def search_gates(X: Tensor, directions: Tensor, starts: Tensor, *, iters: int = 25,
                 chunk: int = DEFAULT_CHUNK, gated: bool = False) -> tuple[Tensor, Tensor]:
    """Local search for the activation patterns that most violate a dual constraint.

    For each column λ of ``directions`` (n x q) and each start u₀ (columns of ``starts``,
    d x K), ascend φ(u) = λᵀ (X u)_+ on the unit sphere by the fixed-point iteration
    u ← Xᵀ (1[X u ≥ 0] ∘ λ) / ||·|| (on the cone of the current pattern φ is linear with
    gradient Xᵀ D(u) λ, and the step maximises that linearisation over the sphere), keeping
    the best iterate of each start. A returned gate u lies in the cone of its own pattern
    D(u), so φ(u) = max over that cone's unit directions at least; φ(u) > β proves that the
    pattern D(u) violates the dual constraint  max_{u ∈ K_D, ||u|| ≤ 1} λᵀ D X u ≤ β  of a
    program that lacks it (the search itself is a heuristic: finding no violation proves
    nothing). Batched over all q·K pairs; memory O(n·K) per direction, in row chunks.

    ``gated=True`` scores each iterate by the gated dual constraint instead,
    ψ(u) = ||Xᵀ D(u) λ|| ≥ φ(u) (the weight is not confined to the gate's cone); for vector
    outputs ψ with one column λ_k lower-bounds the spectral norm ||Xᵀ D Λ||₂, so ψ > β again
    proves a violation.

    Returns ``(gates, values)``: gates (d x q·K) unit vectors, values (q·K,) their φ.
    """
    n, d = X.shape
    U0 = starts / torch.linalg.vector_norm(starts, dim=0, keepdim=True).clamp_min(1e-300)
    gates, values = [], []
    for j in range(directions.shape[1]):
        lam = directions[:, j:j + 1]
        U = U0.clone()
        best_u, best_v = U.clone(), torch.full((U.shape[1],), -math.inf, dtype=X.dtype,
                                               device=X.device)
        for _ in range(iters + 1):
            G = torch.zeros_like(U)
            val = torch.zeros(U.shape[1], dtype=X.dtype, device=X.device)
            for s in range(0, n, chunk):
                Z = X[s:s + chunk] @ U
                A = (Z >= 0).to(X.dtype) * lam[s:s + chunk]
                G += X[s:s + chunk].T @ A
                val += (A * Z).sum(0)
            if gated:
                val = torch.linalg.vector_norm(G, dim=0)
            better = val > best_v
            best_v = torch.where(better, val, best_v)
            best_u[:, better] = U[:, better]
            U = G / torch.linalg.vector_norm(G, dim=0, keepdim=True).clamp_min(1e-300)
        gates.append(best_u)
        values.append(best_v)
    return torch.cat(gates, 1), torch.cat(values)
