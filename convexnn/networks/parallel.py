r"""Deep parallel ReLU networks with path regularisation (Ergen & Pilanci, NeurIPS 2023).

A parallel network is a sum of K sub-networks. Sub-network k of depth 3 has m first-layer
neurons (weights W1_k ∈ R^{m x d}, bias b1_k ∈ R^m), one second-layer ReLU unit with weights
w2_k ∈ R^m and output weights w3_k ∈ R^c::

    f(x) = Σ_k  ( Σ_j (W1_k[j]ᵀ x + b1_k[j])_+ · w2_k[j] )_+ · w3_k          (depth 3)
    f(x) = Σ_k  (W1_k[0]ᵀ x + b1_k[0])_+ · w3_k                   (depth 2, m = 1)

**Path regulariser** (the one this container and the convex program carry): for every
sub-network, the l2 norm over all of its input→output paths of the product of the weights on
the path, summed over sub-networks (the bias is the weight of a constant input 1)::

    R(θ) = Σ_k sqrt( Σ_{i,j,t} W̃1_k[j,i]² · w2_k[j]² · w3_k[t]² )
         = Σ_k ||w3_k|| · sqrt( Σ_j ||W̃1_k[j]||² w2_k[j]² ),        W̃1 = [W1, b1]

and the training objective is ``loss(f(X), Y) + reg · R(θ)`` (loss summed over samples). For
depth 2 (m = 1) R = Σ_k ||W̃1_k|| ||w3_k||, which is what two-layer weight decay
(reg/2)(||W̃1||² + ||w3||²) equals after optimal rescaling. R is invariant to the ReLU rescalings
(W̃1_k[j], w2_k[j]) → (a W̃1_k[j], w2_k[j]/a) and (w2_k, w3_k) → (b w2_k, w3_k/b), a, b > 0.

Note (papers.md §3 CAUTION): the l2-over-paths norm *inside* a sub-network is not invariant to
splitting a first-layer neuron into copies, so the width m of every sub-network is a fixed
hyper-parameter of the model; only the number K of sub-networks is free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..losses import Loss, get_loss
from .base import as_tensor, read_npz, save_npz

__all__ = ["ParallelReLUNetwork", "ParallelReLUModule", "load_parallel_network"]


class ParallelReLUModule(nn.Module):
    """``torch.nn.Module`` computing a :class:`ParallelReLUNetwork` (all K sub-networks batched).

    Parameters: ``W1`` (K, m, d), ``b1`` (K, m), ``w2`` (K, m) (depth 3 only), ``w3`` (K, c).
    ``path_norm()`` returns the differentiable path regulariser R(θ).
    """

    def __init__(self, W1: Tensor, b1: Tensor, w2: Tensor | None, w3: Tensor):
        super().__init__()
        self.W1 = nn.Parameter(W1.detach().clone())
        self.b1 = nn.Parameter(b1.detach().clone())
        self.w2 = None if w2 is None else nn.Parameter(w2.detach().clone())
        self.w3 = nn.Parameter(w3.detach().clone())

    @property
    def depth(self) -> int:
        return 2 if self.w2 is None else 3

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(torch.einsum("nd,kmd->nkm", x, self.W1) + self.b1)  # (n, K, m)
        if self.w2 is None:
            z = h.sum(-1)  # m = 1
        else:
            z = torch.relu((h * self.w2).sum(-1))  # (n, K)
        return z @ self.w3

    def path_norm(self) -> Tensor:
        row = (self.W1**2).sum(-1) + self.b1**2  # (K, m)
        if self.w2 is not None:
            row = row * self.w2**2
        return (row.sum(-1).sqrt() * torch.linalg.vector_norm(self.w3, dim=-1)).sum()


class ParallelContainer:
    """Shapes, path regulariser and training objective of a parallel network with
    ``first_layer_weights`` (K, m, d), ``output_weights`` (K, c), ``forward`` and per-sub-network
    ``path_norms`` (shared by the parallel network containers)."""

    @property
    def n_subnetworks(self) -> int:
        return int(self.first_layer_weights.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.first_layer_weights.shape[2])

    @property
    def n_outputs(self) -> int:
        return int(self.output_weights.shape[1])

    def path_norm(self) -> Tensor:
        """The path regulariser R(θ) (see the module docstring)."""
        return self.path_norms().sum()

    def objective(self, X, Y, reg: float, loss: str | Loss = "squared") -> float:
        """Non-convex training objective ``loss(f(X), Y) + reg · R(θ)`` (loss summed)."""
        lo = get_loss(loss)
        Z = self.forward(X)
        Yt = as_tensor(Y, Z)
        if Yt.ndim == 1:
            Yt = Yt[:, None]
        return float(lo.value(Z, Yt) + reg * self.path_norm())


@dataclass
class ParallelReLUNetwork(ParallelContainer):
    """K parallel ReLU sub-networks of depth 2 or 3; see the module docstring for the math."""

    first_layer_weights: Tensor  # (K, m, d)
    first_layer_bias: Tensor  # (K, m)
    second_layer_weights: Tensor | None  # (K, m) for depth 3, None for depth 2
    output_weights: Tensor  # (K, c)

    def __post_init__(self) -> None:
        W1 = self.first_layer_weights
        if W1.ndim != 3:
            raise ValueError(f"first_layer_weights must be (K, m, d), got {tuple(W1.shape)}")
        K, m, _ = W1.shape
        if self.first_layer_bias.shape != (K, m):
            raise ValueError(f"first_layer_bias must be ({K}, {m}), got "
                             f"{tuple(self.first_layer_bias.shape)}")
        if self.second_layer_weights is None:
            if m != 1:
                raise ValueError("a depth-2 parallel network has one neuron per sub-network "
                                 f"(m = 1), got m = {m}")
        elif self.second_layer_weights.shape != (K, m):
            raise ValueError(f"second_layer_weights must be ({K}, {m}), got "
                             f"{tuple(self.second_layer_weights.shape)}")
        if self.output_weights.ndim != 2 or self.output_weights.shape[0] != K:
            raise ValueError(f"output_weights must be ({K}, c), got "
                             f"{tuple(self.output_weights.shape)}")

    # ------------------------------------------------------------------ shapes
    @property
    def depth(self) -> int:
        return 2 if self.second_layer_weights is None else 3

    @property
    def width(self) -> int:
        return int(self.first_layer_weights.shape[1])

    # ----------------------------------------------------------------- forward
    def subnetwork_outputs(self, X) -> Tensor:
        """Scalar output z_k(x) ≥ 0 of every sub-network before its output weights: (n, K)."""
        W1 = self.first_layer_weights
        X = as_tensor(X, W1)
        h = torch.relu(torch.einsum("nd,kmd->nkm", X, W1) + self.first_layer_bias)
        if self.second_layer_weights is None:
            return h.sum(-1)
        return torch.relu((h * self.second_layer_weights).sum(-1))

    def forward(self, X) -> Tensor:
        """Raw outputs f(X), shape (n, c)."""
        return self.subnetwork_outputs(X) @ self.output_weights

    __call__ = forward

    def path_norms(self) -> Tensor:
        """Per-sub-network l2 path norms (K,); their sum is R(θ)."""
        row = (self.first_layer_weights**2).sum(-1) + self.first_layer_bias**2
        if self.second_layer_weights is not None:
            row = row * self.second_layer_weights**2
        return row.sum(-1).sqrt() * torch.linalg.vector_norm(self.output_weights, dim=-1)

    def prune(self, tol: float = 0.0) -> ParallelReLUNetwork:
        """Drop sub-networks whose path norm is ≤ tol (they contribute nothing when 0)."""
        keep = self.path_norms() > tol
        w2 = None if self.second_layer_weights is None else self.second_layer_weights[keep]
        return ParallelReLUNetwork(self.first_layer_weights[keep], self.first_layer_bias[keep],
                                   w2, self.output_weights[keep])

    # ------------------------------------------------------------------ export
    def to_torch(self) -> ParallelReLUModule:
        """An ``nn.Module`` computing the same function (parameters copied)."""
        W1 = self.first_layer_weights
        mod = ParallelReLUModule(W1, self.first_layer_bias, self.second_layer_weights,
                                 self.output_weights)
        return mod.to(dtype=W1.dtype, device=W1.device)

    @classmethod
    def from_torch(cls, module: ParallelReLUModule) -> ParallelReLUNetwork:
        w2 = None if module.w2 is None else module.w2.detach().clone()
        return cls(module.W1.detach().clone(), module.b1.detach().clone(), w2,
                   module.w3.detach().clone())

    def to(self, device=None, dtype=None) -> ParallelReLUNetwork:
        def mv(t):
            return None if t is None else t.to(device=device, dtype=dtype)

        return ParallelReLUNetwork(mv(self.first_layer_weights), mv(self.first_layer_bias),
                                   mv(self.second_layer_weights), mv(self.output_weights))

    # -------------------------------------------------------------------- I/O
    def save(self, path: str | Path) -> None:
        """Save to ``path`` (.npz of arrays + JSON metadata; no pickle)."""
        arrays = {"first_layer_weights": self.first_layer_weights,
                  "first_layer_bias": self.first_layer_bias,
                  "output_weights": self.output_weights}
        if self.second_layer_weights is not None:
            arrays["second_layer_weights"] = self.second_layer_weights
        save_npz(path, arrays,
                 {"format": "convexnn.ParallelReLUNetwork", "version": 1, "depth": self.depth})


def load_parallel_network(path: str | Path) -> ParallelReLUNetwork:
    """Load a network saved by :meth:`ParallelReLUNetwork.save` (``allow_pickle=False``)."""
    meta, t = read_npz(path)
    if meta.get("format") != "convexnn.ParallelReLUNetwork":
        raise ValueError(f"{path}: not a convexnn ParallelReLUNetwork file")
    return ParallelReLUNetwork(t["first_layer_weights"], t["first_layer_bias"],
                               t.get("second_layer_weights"), t["output_weights"])
