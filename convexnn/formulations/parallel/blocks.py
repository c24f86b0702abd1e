"""Pattern blocks of the parallel program: witnesses, keys, sampling."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ...patterns import sample_gates

__all__ = ["ParallelBlocks", "block_keys", "sample_blocks"]


@dataclass
class ParallelBlocks:
    """Indices s of the convex program, stored by *witness* gates (data-independent).

    ``gates`` (B, m, d): positive multiples of first-layer gates; the first-layer patterns are
    1[X g_j ≥ 0] and the second-layer pattern 1[Σ_j σ_j (X g_j)_+ ≥ 0] (so each block has a
    non-zero feasible point, its witness). ``signs`` (B, m) ±1, ``outputs`` (B,) in [0, c),
    ``eps`` (B,) ±1. Depth 2: m = 1, σ = +1 (the second-layer ReLU is then the identity).
    ``second_masks`` (n, B), optional: explicit second-layer patterns on the training data
    (exhaustive enumeration, :mod:`.exhaustive`, where a pattern need not have a witness); they
    override the witnesses' second-layer patterns and are only valid for that data.
    """

    gates: Tensor
    signs: Tensor
    outputs: Tensor
    eps: Tensor
    info: dict = field(default_factory=dict)
    second_masks: Tensor | None = None

    @property
    def n_blocks(self) -> int:
        return int(self.gates.shape[0])

    def to(self, device=None, dtype=None) -> ParallelBlocks:
        return ParallelBlocks(self.gates.to(device=device, dtype=dtype),
                              self.signs.to(device=device, dtype=dtype), self.outputs.to(device),
                              self.eps.to(device=device, dtype=dtype), dict(self.info),
                              None if self.second_masks is None
                              else self.second_masks.to(device=device, dtype=dtype))

    def masks(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """First-layer masks (n, B, m) and second-layer masks (n, B) on the data X (float)."""
        XG = torch.einsum("nd,bmd->nbm", X, self.gates.to(X))
        M1 = (XG >= 0).to(X.dtype)
        h = (self.signs.to(X) * XG.clamp_min(0)).sum(-1)
        M2 = (h >= 0).to(X.dtype)
        if self.second_masks is not None:
            if self.second_masks.shape != M2.shape:
                raise ValueError("explicit second-layer masks do not match the data's rows")
            M2 = self.second_masks.to(M2)
        return M1, M2


def block_keys(M1: Tensor, signs: Tensor, M2: Tensor) -> list[bytes]:
    """Order-independent (over j) exact keys of (D_1j, σ_j)_j and D_2 for each block."""
    m1 = np.packbits(M1.detach().cpu().numpy().astype(bool), axis=0)  # (bytes, B, m)
    m2 = np.packbits(M2.detach().cpu().numpy().astype(bool), axis=0)  # (bytes, B)
    sg = signs.detach().cpu().numpy() > 0
    keys = []
    for b in range(M2.shape[1]):
        parts = sorted(m1[:, b, j].tobytes() + bytes([int(sg[b, j])]) for j in range(m1.shape[2]))
        keys.append(b"|".join(parts) + b"#" + m2[:, b].tobytes())
    return keys


def _dedupe(X: Tensor, gates: Tensor, signs: Tensor) -> tuple[Tensor, Tensor]:
    """Keep one block per distinct index; drop blocks that can only output zero."""
    blk = ParallelBlocks(gates, signs, torch.zeros(gates.shape[0], dtype=torch.long),
                         torch.ones(gates.shape[0], dtype=X.dtype))
    M1, M2 = blk.masks(X)
    useful = ((M2[:, :, None] * M1 * (signs.to(X) > 0)[None]).sum((0, 2)) > 0)
    keys = block_keys(M1, signs, M2)
    seen, keep = set(), []
    for b, k in enumerate(keys):
        if bool(useful[b]) and k not in seen:
            seen.add(k)
            keep.append(b)
    idx = torch.as_tensor(keep, dtype=torch.long, device=gates.device)
    return gates[idx], signs[idx]


def _expand(gates: Tensor, signs: Tensor, c: int, info: dict) -> ParallelBlocks:
    """One block per (base block, output t, sign ε)."""
    B = gates.shape[0]
    reps = 2 * c
    t = torch.arange(c, device=gates.device).repeat_interleave(2).repeat(B)
    e = torch.tensor([1.0, -1.0], dtype=gates.dtype, device=gates.device).repeat(B * c)
    return ParallelBlocks(gates.repeat_interleave(reps, 0), signs.repeat_interleave(reps, 0),
                          t, e, info)


def sample_blocks(X: Tensor, n_blocks: int, *, width: int = 2, depth: int = 3,
                  n_outputs: int = 1, random_state=None, gate_kind: str = "gaussian",
                  intercept_column: bool = False, n_gates: int | None = None) -> ParallelBlocks:
    """Sample ``n_blocks`` base indices (then × 2c for outputs and signs ε), deduplicated.

    First-layer gates come from :func:`convexnn.patterns.sample_gates` (``n_gates`` of them,
    default ``max(2·n_blocks, 8)``); a base block picks m of them at random with random signs σ
    (at least one +1) and random positive scales, which fixes its second-layer pattern.
    The result is a *subset* of all indices: the program over it is a restriction.
    """
    if depth not in (2, 3):
        raise ValueError(f"depth must be 2 or 3, got {depth}")
    if n_blocks < 1:
        raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
    rng = random_state if isinstance(random_state, np.random.Generator) \
        else np.random.default_rng(random_state)
    m = 1 if depth == 2 else int(width)
    if m < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    ng = n_gates or max(2 * n_blocks, 8)
    G = sample_gates(X, ng, rng, kind=gate_kind, intercept_column=intercept_column).gates  # d x P
    P = G.shape[1]
    idx = rng.integers(0, P, size=(n_blocks, m))
    sg = np.where(rng.random((n_blocks, m)) < 0.5, 1.0, -1.0)
    if depth == 2:
        sg[:] = 1.0
    sg[np.arange(n_blocks), rng.integers(0, m, size=n_blocks)] = 1.0  # at least one +1
    scale = np.exp(rng.standard_normal((n_blocks, m)))
    gates = G.T[torch.as_tensor(idx)] * torch.as_tensor(scale, dtype=X.dtype)[..., None]
    signs = torch.as_tensor(sg, dtype=X.dtype)
    gates, signs = _dedupe(X, gates.to(X.device), signs.to(X.device))
    info = {"n_sampled": n_blocks, "n_gates": int(P), "width": m, "depth": depth}
    return _expand(gates, signs, n_outputs, info)
