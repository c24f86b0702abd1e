"""Read-back of the network from the convex variables and the reverse map
(methods of :class:`TwoLayerProgram`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ...losses import Loss
from ...networks import TwoLayerNetwork
from ...patterns import (
    PatternSet,
    deduplicate_gates,
)

if TYPE_CHECKING:
    from .program import TwoLayerProgram


class _Readback:
    """Read-back methods of :class:`TwoLayerProgram` (a mixin)."""

    # -------------------------------------------------------------- read-back
    def _split(self, W: Tensor) -> tuple[Tensor, Tensor]:
        """Split augmented first-layer rows into (weights, bias)."""
        if self.intercept:
            return W[:, :-1], W[:, -1]
        return W, torch.zeros(W.shape[0], dtype=W.dtype, device=W.device)

    def to_network(self, x: Tensor, tol: float = 0.0) -> TwoLayerNetwork:
        """Read the non-convex network back from the convex variables (balanced weights)."""
        dt, dev = x.dtype, x.device
        if self.activation == "relu":
            nrm = torch.linalg.vector_norm(x, dim=2)  # (S, P, c)
            s_idx, p_idx, k_idx = torch.nonzero(nrm > tol, as_tuple=True)
            z = x[s_idx, p_idx, :, k_idx]  # (m, d)
            r = nrm[s_idx, p_idx, k_idx].sqrt()
            U = z / r[:, None]
            W2 = torch.zeros(self.c, len(r), dtype=dt, device=dev)
            W2[k_idx, torch.arange(len(r), device=dev)] = torch.where(s_idx == 0, r, -r)
            W, b = self._split(U)
            return TwoLayerNetwork(W, b, W2, "relu")
        # gated: one neuron per singular pair of each V_p
        U_, s_, Vh_ = torch.linalg.svd(x[0], full_matrices=False)  # (P,d,q),(P,q),(P,q,c)
        p_idx, q_idx = torch.nonzero(s_ > tol, as_tuple=True)
        sq = s_[p_idx, q_idx].sqrt()
        U = U_[p_idx, :, q_idx] * sq[:, None]
        W2 = (Vh_[p_idx, q_idx, :] * sq[:, None]).T.contiguous()
        gates = self.G.T[p_idx]
        W, b = self._split(U)
        gw, gb = self._split(gates)
        return TwoLayerNetwork(W, b, W2, "gated", gw, gb)

    @classmethod
    def from_network(cls, net: TwoLayerNetwork, X: Tensor, Y: Tensor, reg: float,
                     loss: str | Loss = "squared", *, intercept: bool = True,
                     extra_patterns: PatternSet | None = None) -> tuple[TwoLayerProgram, Tensor]:
        """Reverse map: a program over the network's own patterns (plus ``extra_patterns``) and
        the convex variables reproducing the network's predictions.

        ReLU neuron (u, b, v): its pattern is 1[X ũ ≥ 0] with ũ = (u, b), and it contributes
        ũ·v_k to v (v_k > 0) or ũ·|v_k| to w of every output k. The convex penalty is at most the
        network's weight decay (equal for balanced scalar-output networks).
        """
        net = net.to(device=X.device, dtype=X.dtype)
        Wa = net.first_layer_weights
        if intercept:
            Wa = torch.cat([Wa, net.first_layer_bias[:, None]], 1)
        elif bool((net.first_layer_bias != 0).any()):
            raise ValueError("the network has a first-layer bias but intercept=False")
        gates_src = Wa if net.activation == "relu" else (
            torch.cat([net.gate_weights, net.gate_bias[:, None]], 1) if intercept
            else net.gate_weights)
        G = gates_src.T.contiguous()
        if extra_patterns is not None:
            G = torch.cat([G, extra_patterns.gates.to(G)], 1)
        Gd, col = deduplicate_gates(X, G, drop_zero=False, return_inverse=True)
        exhaustive = bool(extra_patterns is not None and extra_patterns.exhaustive)
        prog = cls(X, Y, PatternSet(Gd, exhaustive=exhaustive), reg, loss, net.activation,
                   intercept=intercept)
        idx = torch.as_tensor(col[:Wa.shape[0]], device=X.device)  # each neuron's pattern
        x = prog.zeros()
        W2 = net.second_layer_weights  # (c, m)
        if net.activation == "relu":
            # neuron j adds ũ_j |v_kj| to v (v_kj > 0) or w (v_kj < 0) of its pattern, output k
            for s_, sel in ((0, W2 > 0), (1, W2 < 0)):
                contrib = (W2.abs() * sel).T[:, None, :] * Wa[:, :, None]  # (m, d, c)
                x[s_].index_add_(0, idx, contrib)
        else:
            x[0].index_add_(0, idx, Wa[:, :, None] * W2.T[:, None, :])
        return prog, x
