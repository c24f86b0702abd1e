"""Local search for the activation patterns that most violate a dual constraint: gates for the
pattern search of :mod:`convexnn.formulations.two_layer` (:func:`search_gates`), neurons for
the dual-guided descent of :mod:`convexnn.pipelines.descent` (:func:`search_neurons`, with its
start points)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .sampling import DEFAULT_CHUNK

__all__ = ["search_gates", "search_neurons", "data_starts", "neuron_starts", "pattern_starts"]


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


def search_neurons(X: Tensor, Lam: Tensor, starts: Tensor, iters: int = 20, reduce=None
                   ) -> tuple[Tensor, Tensor]:
    """Ascent of φ(u) = ||Λᵀ (X u)_+|| on the unit sphere from each column of ``starts``.

    Fixed point u ← Xᵀ D(u) Λ w / ||·|| with w = Λᵀ(Xu)_+ / ||Λᵀ(Xu)_+|| (on the cone of the
    current pattern φ² is a quadratic form and this is its power step). Returns the best unit
    vector of each start (d x K) and its φ (K,): a lower estimate of max_u φ(u).
    ``reduce``: a sum over processes holding blocks of rows of X and Λ (None: one process).
    """
    red = (lambda t: t) if reduce is None else reduce
    U = starts / torch.linalg.vector_norm(starts, dim=0, keepdim=True).clamp_min(1e-300)
    best_u, best_v = U, torch.full((U.shape[1],), -math.inf, dtype=X.dtype, device=X.device)
    for _ in range(iters + 1):
        Z = X @ U
        Q = red(Lam.T @ Z.clamp_min(0))  # (c, K)
        val = torch.linalg.vector_norm(Q, dim=0)
        better = val > best_v
        best_v = torch.where(better, val, best_v)
        best_u = torch.where(better[None, :], U, best_u)
        Wd = Q / val.clamp_min(1e-300)
        G = red(X.T @ (Lam @ Wd).mul_(Z >= 0))
        U = G / torch.linalg.vector_norm(G, dim=0, keepdim=True).clamp_min(1e-300)
    return best_u, best_v


def data_starts(X: Tensor, k: int, rng: np.random.Generator) -> Tensor:
    """k hyperplanes through the midpoint of two random samples (augmented: last row = bias)."""
    n, d = X.shape
    G = torch.as_tensor(rng.standard_normal((d, k)), dtype=X.dtype, device=X.device)
    i = torch.as_tensor(rng.integers(0, n, size=k), device=X.device)
    j = torch.as_tensor(rng.integers(0, n, size=k), device=X.device)
    mid = 0.5 * (X[i] + X[j])
    return torch.cat([G, -(mid * G.T).sum(1)[None]], 0)


def neuron_starts(X: Tensor, W1: Tensor, b1: Tensor, k: int, rng: np.random.Generator,
                   intercept: bool) -> tuple[Tensor, Tensor]:
    """Search starts: k data hyperplanes and the current neurons (augmented by the bias row
    when there is an intercept). Returns (starts, the neurons' own columns)."""
    own = torch.cat([W1, b1[:, None]], 1).T if intercept else W1.T
    data = data_starts(X, k, rng)
    return torch.cat([data if intercept else data[:-1], own], 1), own


def pattern_starts(Xs: Tensor, own: Tensor, Lam: Tensor, reduce=None) -> Tensor:
    """±Xᵀ D_p Λ w_p for each neuron's own pattern D_p (w_p: its output direction, ±1 for one
    output): the gradient directions of both output signs on the patterns already in use, so
    the search also finds a pattern's *other* sign (a group the network does not use yet)."""
    if own.shape[1] == 0:
        return own
    D = (Xs @ own >= 0).to(Xs.dtype)  # (n, m)
    red = (lambda t: t) if reduce is None else reduce
    Q = red(Lam.T @ ((Xs @ own).clamp_min(0)))  # (c, m)
    w = Q / torch.linalg.vector_norm(Q, dim=0, keepdim=True).clamp_min(1e-300)
    G = red(Xs.T @ (D * (Lam @ w)))
    return torch.cat([G, -G], 1)
