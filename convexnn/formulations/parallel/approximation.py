"""Polynomial-time approximation: the program on a rank-r truncation of X, and its bound."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...losses import Loss, get_loss

__all__ = ["low_rank", "approximation_bound"]


def low_rank(X: Tensor, rank: int) -> tuple[Tensor, float]:
    """Rank-``rank`` truncation X_r of X and σ_{r+1} = ||X − X_r||_2 (0 if rank ≥ rank X)."""
    U, s, Vh = torch.linalg.svd(X, full_matrices=False)
    r = int(rank)
    Xr = (U[:, :r] * s[:r]) @ Vh[:r]
    tail = float(s[r]) if r < s.shape[0] else 0.0
    return Xr, tail


def approximation_bound(loss: str | Loss, sigma_tail: float, width: int, reg: float,
                        Y: Tensor) -> dict:
    r"""The factor κ with p*(X_r) ≤ κ p*(X) (and p*(X) ≤ κ p*(X_r)); proof.

    Lemma: for a sub-network with parameters q (path norm ||q||_F) and inputs x, x',
    |g(x) − g(x')| ≤ Σ_j |σ_j((xᵀq_j)_+ − (x'ᵀq_j)_+)| ≤ Σ_j |(x − x')ᵀ q_j| (ReLU is
    1-Lipschitz, twice), so over the n rows ||g(X) − g(X')||_2 ≤ Σ_j ||(X − X')q_j||
    ≤ σ_{r+1} Σ_j ||q_j|| ≤ σ_{r+1} √m ||q||_F; summing sub-networks (output weights folded in),
    ||f(X) − f(X_r)||_F ≤ σ_{r+1} √m R(θ) =: δ(θ).
    Take θ* optimal for X; R(θ*) ≤ p*(X)/β (the loss is ≥ 0).
    * Lipschitz loss (per-row gradient norm ≤ G): L(f(X_r)) ≤ L(f(X)) + G √n δ, hence
      p*(X_r) ≤ p*(X) + G √n σ √m p*(X)/β.
    * Squared loss: √(2L(f(X_r))) ≤ √(2L(f(X))) + δ; with a = √(2L*), b = βR*, p = a²/2 + b,
      ½(a + c b)² + b ≤ p (1 + c √(p/2))² (a ≤ √(2p), b ≤ p), c = σ√m/β, and p ≤ ½||Y||².
    Exchanging X and X_r gives the reverse inequality.
    """
    lo = get_loss(loss)
    c = sigma_tail * math.sqrt(width) / reg
    n = Y.shape[0]
    if lo.name == "squared":
        kappa = (1.0 + c * float(torch.linalg.vector_norm(Y)) / 2.0) ** 2
        form = "(1 + sqrt(m) sigma_{r+1} ||Y||_F / (2 reg))^2"
    else:
        G = 1.0 if lo.name == "logistic" else math.sqrt(2.0)
        kappa = 1.0 + G * math.sqrt(n) * c
        form = "1 + G sqrt(n) sqrt(m) sigma_{r+1} / reg" + f" (G = {G:.4g})"
    return {"sigma_tail": float(sigma_tail), "kappa": float(kappa), "form": form,
            "statement": "p*(X_r) <= kappa p*(X) and p*(X) <= kappa p*(X_r) (derived; "
                         "see convexnn.formulations.parallel.approximation_bound)"}
