r"""The paper's rounding: three-operator splitting from a relaxation solution to a network.

Prakhya, Birdal & Yurtsever (2024), papers.md §5.4 (the authors' script
``run_semidefinite_relaxation_prediction.py``). Given the relaxation's solution Λ̃ (p x p, rows
α | β | u | v, p = 2n + d + c), look for a factor W (p x R) with W Wᵀ ≈ Λ̃ whose every column is
an exact lifted neuron:

    min_W  φ(W) = ½ ||W Wᵀ − Λ̃||_F²   s.t.  W ∈ C = {M W = 0},  W ∈ 𝓜 = {per column: α, β ≥ 0,
                                                                       α ∘ β = 0}

by the Davis–Yin three-operator splitting (γ = 1/||Λ̃||_F, R = 300 columns, 1000 iterations)::

    W_k = P_C(Z_k),  V_k = P_𝓜(2 W_k − Z_k − 2γ (W_k W_kᵀ W_k − Λ̃ W_k)),  Z_{k+1} = Z_k − W_k + V_k,

started from the R leading eigenpairs of Λ̃ (zero columns if its rank is smaller). P_C is the
orthogonal projection onto null(M) = range(T) with T the lift (b | u | v) ↦ (b + X u | b | u | v)
— here T (TᵀT)⁻¹ Tᵀ through the block Cholesky factor of TᵀT
(:func:`convexnn.formulations.sdp.lifting.lift_factor` with a = 1); P_𝓜 clips negative α, β
entries and zeroes the smaller of (α_i, β_i) (ties keep both), as in the authors' code. The
network is U = P_u W, V = P_v W, i.e. predictions (X U)_+ Vᵀ: its objective is an upper bound on
p* whatever the splitting reached (𝓜 is non-convex, so no convergence is guaranteed).

The authors keep the iterate with the best *test* accuracy; we return the last iterate
(``select="last"``) or the one with the lowest *training* objective (``select="objective"``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from ...networks import TwoLayerNetwork
from .lifting import lift_factor
from .relaxation import SDPRelaxation

__all__ = ["TOSRounding", "round_tos", "lifted_matrix", "project_relu"]


@dataclass
class TOSRounding:
    """A network read off the splitting and how the splitting went."""

    network: TwoLayerNetwork
    objective: float          # the network's training objective (an upper bound on p*)
    iteration: int            # iterate the network comes from
    rounding_objective: float  # ½||W Wᵀ − Λ̃||² at the last iterate
    feasibility_c: float      # ||P_C(W) − W||_F at the last iterate (0: W = P_C(Z))
    feasibility_m: float      # ||P_𝓜(W) − W||_F at the last iterate
    seconds: float


def lifted_matrix(prob: SDPRelaxation, Z: Tensor) -> Tensor:
    """Λ = T Z Tᵀ (p x p, rows α | β | u | v) of a reduced solution Z (rows b | u | v)."""
    T = _lift(prob.X, torch.eye(prob.q, dtype=Z.dtype, device=Z.device), prob.n, prob.d)
    return T @ Z @ T.T


def _lift(X: Tensor, W: Tensor, n: int, d: int) -> Tensor:
    """T W: rows (b | u | v) ↦ (b + X u | b | u | v)."""
    b, u = W[:n], W[n:n + d]
    return torch.cat([b + X @ u, b, W[n:]], 0)


def _lift_adjoint(X: Tensor, B: Tensor, n: int) -> Tensor:
    """Tᵀ B: rows (α | β | u | v) ↦ (α + β | Xᵀ α + u | v)."""
    a, b, rest = B[:n], B[n:2 * n], B[2 * n:]
    d = X.shape[1]
    return torch.cat([a + b, X.T @ a + rest[:d], rest[d:]], 0)


def project_relu(B: Tensor, n: int) -> Tensor:
    """P_𝓜 of the authors' code: negative α, β entries → 0; the smaller of (α_i, β_i) → 0."""
    A, Bb = B[:n], B[n:2 * n]
    out = B.clone()
    out[:n] = torch.where((A < 0) | (Bb > A), torch.zeros_like(A), A)
    out[n:2 * n] = torch.where((Bb < 0) | (A > Bb), torch.zeros_like(Bb), Bb)
    return out


def round_tos(prob: SDPRelaxation, Z: Tensor, *, rank: int = 300, max_iter: int = 1000,
              step: float | None = None, select: str = "last") -> TOSRounding:
    """The paper's three-operator-splitting rounding of a relaxation solution Z (module doc).

    ``Z``: the reduced solution (q x q, rows b | u | v) of ``prob``; ``rank``: the number R of
    columns (neurons); ``step``: γ (default 1/||Λ̃||_F); ``select``: ``"last"`` iterate or the
    one with the lowest training ``"objective"``.
    """
    if select not in ("last", "objective"):
        raise ValueError(f"select must be 'last' or 'objective', got {select!r}")
    if rank < 1 or max_iter < 1:
        raise ValueError(f"rank and max_iter must be >= 1, got {rank}, {max_iter}")
    if Z.shape != (prob.q, prob.q):
        raise ValueError(f"Z must be {prob.q} x {prob.q}, got {tuple(Z.shape)}")
    t0 = time.perf_counter()
    X, n, d = prob.X, prob.n, prob.d
    Zs = 0.5 * (Z + Z.T).to(X)
    Lam = lifted_matrix(prob, Zs)
    nrm = float(torch.linalg.matrix_norm(Lam))
    if not nrm > 0:
        raise ValueError("the relaxation's solution is zero: nothing to round")
    gamma = 1.0 / nrm if step is None else float(step)
    evals, evecs = torch.linalg.eigh(Lam)
    evals, evecs = evals.flip(0)[:rank].clamp_min(0), evecs.flip(1)[:, :rank]
    Zk = torch.zeros(Lam.shape[0], rank, dtype=X.dtype, device=X.device)
    Zk[:, :evals.numel()] = evecs * evals.sqrt()
    solve = lift_factor(X, 1.0, prob.c)       # TᵀT = [[2I, X, 0], [Xᵀ, XᵀX + I, 0], [0, 0, I]]

    def proj_c(B: Tensor) -> Tensor:          # T (TᵀT)⁻¹ Tᵀ B
        return _lift(X, solve(solve(_lift_adjoint(X, B, n)), transpose=True), n, d)

    su, sv = slice(2 * n, 2 * n + d), slice(2 * n + d, None)
    best = (math.inf, -1, None)
    for k in range(max_iter):
        W = proj_c(Zk)
        G = W @ (W.T @ W) - _lift(X, Zs @ _lift_adjoint(X, W, n), n, d)    # W WᵀW − Λ̃ W
        Zk = Zk - W + project_relu(2.0 * W - Zk - 2.0 * gamma * G, n)
        if select == "objective" or k == max_iter - 1:
            U, V = W[su], W[sv]
            R = torch.relu(X @ U) @ V.T - prob.Y
            obj = float(0.5 * (R * R).sum() + 0.5 * prob.reg * ((U * U).sum() + (V * V).sum()))
            if select == "last" or obj < best[0]:
                best = (obj, k, prob.network(U.clone(), V.clone()))
    D = W @ W.T - Lam
    return TOSRounding(network=best[2], objective=best[0], iteration=best[1],
                       rounding_objective=0.5 * float((D * D).sum()),
                       feasibility_c=float(torch.linalg.matrix_norm(proj_c(W) - W)),
                       feasibility_m=float(torch.linalg.matrix_norm(project_relu(W, n) - W)),
                       seconds=time.perf_counter() - t0)
