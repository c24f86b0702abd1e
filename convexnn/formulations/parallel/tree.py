r"""Tree-structured sub-networks of any depth L ≥ 3: structure, pattern blocks, sampling.

A sub-network of depth L and branching w is a complete tree: M = w^{L−2} first-layer neurons
(leaves, level 1), u_l = w^{L−1−l} ReLU units at level l = 1..L−1 (one top unit), unit k of
level l+1 summing its children kw..kw+w−1 of level l through scalar edge weights
(:mod:`convexnn.networks.parallel_tree`). Depth 3 is the width-w sub-network of
:mod:`convexnn.formulations.parallel`.

**Convex program** (derived here, as for depth 3; module docstring of
:mod:`convexnn.formulations.parallel`). Put q_j = w̃_j · Π_l |a_{anc_l(j)}| · ||v|| ∈ R^d for
leaf j (the product of the weights on its paths), σ the signs of the edges and ε, t the sign
and index of the single output. With all patterns fixed — D_{1j} = 1[X q_j ≥ 0] and, for a unit
u of level l ≥ 2, D_{lu} = 1[h_{lu} ≥ 0] with

    h_1 = X q,    h_{l+1,u} = Σ_{c child of u} σ_c D_{lc} h_{lc},

the sub-network's output is ε e_t D_{L−1} h_{L−1}, *linear* in q, on the polyhedral cone
C_s = {q : (2D_l − I) h_l ≥ 0 for every level l}. Its l2 path norm is ||q||_F. One block per
index s = (first-layer patterns, σ, upper patterns, t, ε) gives the cone-constrained group
lasso  min_{q_s ∈ C_s} L(Σ_s ε_s e_{t_s} D_{L−1,s} h_{L−1,s}(q_s), Y) + β Σ_s ||q_s||_F, exact
over every index (every network maps to a feasible point with its objective; every feasible
point reads back to a network with the same objective, :meth:`TreeProgram.to_network`), a
restriction over a subset. The signs σ carry the edges' signs because ReLU is positively
homogeneous: (a z)_+ = |a| (sign(a) z)_+.

Storage (:class:`TreeBlocks`): witness gates (B, M, d) — positive multiples of q, whose forward
pass fixes every pattern — signs (B, S), S = Σ_{l=1}^{L−2} u_l, concatenated by level (the M
leaf edges first), outputs t (B,), ε (B,) and optional explicit upper-level masks (n, B, U),
U = Σ_{l=2}^{L−1} u_l, concatenated by level (exhaustive enumeration).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ...ops.linalg import sum_groups
from ...patterns import sample_gates

__all__ = ["Tree", "TreeBlocks", "sample_tree_blocks", "tree_block_keys", "tree_values"]


@dataclass(frozen=True)
class Tree:
    """Shape of a complete tree sub-network: ``depth`` L ≥ 3, branching ``width`` w ≥ 1."""

    depth: int
    width: int

    def __post_init__(self) -> None:
        if int(self.depth) < 3:
            raise ValueError(f"a tree sub-network has depth >= 3, got {self.depth}")
        if int(self.width) < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")

    @property
    def units(self) -> list[int]:
        """Units per level l = 1..L−1 (leaves first, one top unit last)."""
        return [self.width ** (self.depth - 1 - lev) for lev in range(1, self.depth)]

    @property
    def n_leaves(self) -> int:
        return self.units[0]

    @property
    def n_signs(self) -> int:
        return sum(self.units[:-1])

    @property
    def n_upper(self) -> int:
        return sum(self.units[1:])

    def split(self, t: Tensor, upper: bool = False) -> list[Tensor]:
        """Split the last axis of a sign (or, ``upper``, an upper-mask) tensor by level."""
        sizes = self.units[1:] if upper else self.units[:-1]
        return list(torch.split(t, sizes, dim=-1))

    def group(self, t: Tensor) -> Tensor:
        """Sum the last axis over each unit's w children: (..., u_l) → (..., u_l / w)."""
        return sum_groups(t, self.width)

    def expand(self, t: Tensor) -> Tensor:
        """Adjoint of :meth:`group`: each unit's value repeated over its children."""
        return t.repeat_interleave(self.width, dim=-1)

    def ancestors(self) -> list[np.ndarray]:
        """anc_l(j) for every leaf j, l = 1..L−1 (index of leaf j's level-l unit)."""
        j = np.arange(self.n_leaves)
        return [j // self.width ** lev for lev in range(self.depth - 1)]


def tree_forward(H1: Tensor, signs: Tensor, tree: Tree) -> list[Tensor]:
    """Pre-activations of every level of the ReLU tree from the leaves' H1 (..., M) and signs
    (..., S) broadcast against it: [h_1, ..., h_{L−1}] with h_{L−1} (..., 1)."""
    hs = [H1]
    for s in tree.split(signs):
        hs.append(tree.group(s * hs[-1].clamp_min(0)))
    return hs


def tree_values(X: Tensor, q: Tensor, signs: Tensor, r: Tensor, tree: Tree) -> Tensor:
    """⟨r_k, g_q(X)⟩ / ||q||_F for a batch of trees: q (..., M, d), signs (..., S), r (..., n)."""
    H = torch.einsum("nd,...md->...nm", X, q)
    g = tree_forward(H, signs[..., None, :], tree)[-1][..., 0].clamp_min(0)
    nrm = torch.linalg.vector_norm(q.flatten(-2), dim=-1).clamp_min(1e-300)
    return (g * r).sum(-1) / nrm


@dataclass
class TreeBlocks:
    """Blocks of the depth-L program (module docstring): witness ``gates`` (B, M, d), ``signs``
    (B, S), ``outputs`` (B,), ``eps`` (B,), optional explicit ``upper_masks`` (n, B, U)."""

    gates: Tensor
    signs: Tensor
    outputs: Tensor
    eps: Tensor
    tree: Tree
    info: dict = field(default_factory=dict)
    upper_masks: Tensor | None = None

    def __post_init__(self) -> None:
        B, M = self.gates.shape[:2]
        if M != self.tree.n_leaves or self.signs.shape != (B, self.tree.n_signs):
            raise ValueError(f"tree blocks of depth {self.tree.depth}, width {self.tree.width} "
                             f"need gates (B, {self.tree.n_leaves}, d) and signs "
                             f"(B, {self.tree.n_signs}); got {tuple(self.gates.shape)} and "
                             f"{tuple(self.signs.shape)}")

    @property
    def n_blocks(self) -> int:
        return int(self.gates.shape[0])

    def to(self, device=None, dtype=None) -> TreeBlocks:
        um = self.upper_masks
        return TreeBlocks(self.gates.to(device=device, dtype=dtype),
                          self.signs.to(device=device, dtype=dtype), self.outputs.to(device),
                          self.eps.to(device=device, dtype=dtype), self.tree, dict(self.info),
                          None if um is None else um.to(device=device, dtype=dtype))

    def subset(self, keep: Tensor) -> TreeBlocks:
        um = self.upper_masks
        return TreeBlocks(self.gates[keep], self.signs[keep], self.outputs[keep], self.eps[keep],
                          self.tree, dict(self.info), None if um is None else um[:, keep])

    def masks(self, X: Tensor) -> list[Tensor]:
        """Masks of every level on X: [(n, B, M), (n, B, u_2), ..., (n, B, 1)] (float). A unit
        of level ≥ 2 without an active child is inactive (its value is 0 either way; so its
        parent's rows never bind on it)."""
        H = torch.einsum("nd,bmd->nbm", X, self.gates.to(X))
        hs = tree_forward(H, self.signs.to(X)[None], self.tree)
        ms = [(hs[0] >= 0).to(X.dtype)]
        for h in hs[1:]:
            ms.append(((h >= 0) & (self.tree.group(ms[-1]) > 0)).to(X.dtype))
        if self.upper_masks is not None:
            if self.upper_masks.shape[:2] != ms[-1].shape[:2]:
                raise ValueError("explicit upper-level masks do not match the data's rows")
            ms = ms[:1] + self.tree.split(self.upper_masks.to(X), upper=True)
        return ms


def path_coefficients(masks: list[Tensor], signs: Tensor, tree: Tree) -> list[Tensor]:
    """C_l (n, B, M), l = 1..L: h_{l,u} = Σ_{leaves j under u} C_l[·, ·, j] x·q_j, and the
    block's output ε C_L x·q (C_L includes the top mask)."""
    C = [torch.ones_like(masks[0])]
    for lev, s in enumerate(tree.split(signs)):
        f = s[None] * masks[lev]
        C.append(C[-1] * f.repeat_interleave(tree.width ** lev, dim=-1))
    C.append(C[-1] * masks[-1])
    return C


def tree_block_keys(masks: list[Tensor], signs: Tensor) -> list[bytes]:
    """Exact keys (every level's patterns and the signs) of each block."""
    parts = [np.packbits(m.detach().cpu().numpy().astype(bool), axis=0) for m in masks]
    sg = np.packbits(signs.detach().cpu().numpy() > 0, axis=1)
    return [b"|".join(p[:, b].tobytes() for p in parts) + b"#" + sg[b].tobytes()
            for b in range(signs.shape[0])]


def expand_outputs(gates: Tensor, signs: Tensor, tree: Tree, c: int, info: dict,
                   upper: Tensor | None = None) -> TreeBlocks:
    """One block per (base block, output t, sign ε)."""
    B, reps = gates.shape[0], 2 * c
    t = torch.arange(c, device=gates.device).repeat_interleave(2).repeat(B)
    e = torch.tensor([1.0, -1.0], dtype=gates.dtype, device=gates.device).repeat(B * c)
    return TreeBlocks(gates.repeat_interleave(reps, 0), signs.repeat_interleave(reps, 0), t, e,
                      tree, info, None if upper is None else upper.repeat_interleave(reps, 1))


def useful_distinct(X: Tensor, gates: Tensor, signs: Tensor, tree: Tree) -> Tensor:
    """Indices of the blocks that are distinct and can output a positive value somewhere."""
    blk = TreeBlocks(gates, signs, torch.zeros(gates.shape[0], dtype=torch.long),
                     torch.ones(gates.shape[0], dtype=X.dtype), tree)
    ms = blk.masks(X)
    useful = (path_coefficients(ms, blk.signs, tree)[-1] > 0).any(2).any(0)
    seen, keep = set(), []
    for b, k in enumerate(tree_block_keys(ms, blk.signs)):
        if bool(useful[b]) and k not in seen:
            seen.add(k)
            keep.append(b)
    return torch.as_tensor(keep, dtype=torch.long, device=gates.device)


def random_signs(rng: np.random.Generator, shape: tuple[int, int], tree: Tree) -> np.ndarray:
    """Random ±1 edge signs (k, S) with at least one +1 among every unit's children (a unit
    whose children all enter negatively outputs 0)."""
    k = shape[0]
    sg = np.where(rng.random((k, tree.n_signs)) < 0.5, 1.0, -1.0)
    off = 0
    for u in tree.units[:-1]:
        first = off + tree.width * np.arange(u // tree.width)
        pick = first[None] + rng.integers(0, tree.width, size=(k, len(first)))
        np.put_along_axis(sg, pick, 1.0, axis=1)
        off += u
    return sg


def sample_tree_blocks(X: Tensor, n_blocks: int, tree: Tree, *, n_outputs: int = 1,
                       random_state=None, gate_kind: str = "gaussian",
                       intercept_column: bool = False, n_gates: int | None = None) -> TreeBlocks:
    """``n_blocks`` sampled base blocks (× 2c for t, ε), deduplicated: leaves drawn from
    :func:`convexnn.patterns.sample_gates` with random positive scales and random signs."""
    if n_blocks < 1:
        raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
    rng = random_state if isinstance(random_state, np.random.Generator) \
        else np.random.default_rng(random_state)
    M = tree.n_leaves
    G = sample_gates(X, n_gates or max(2 * n_blocks, 8), rng, kind=gate_kind,
                     intercept_column=intercept_column).gates  # d x P
    idx = rng.integers(0, G.shape[1], size=(n_blocks, M))
    scale = torch.as_tensor(np.exp(rng.standard_normal((n_blocks, M))), dtype=X.dtype)
    gates = (G.T[torch.as_tensor(idx)] * scale[..., None]).to(X.device)
    signs = torch.as_tensor(random_signs(rng, (n_blocks, M), tree), dtype=X.dtype,
                            device=X.device)
    keep = useful_distinct(X, gates, signs, tree)
    info = {"n_sampled": n_blocks, "n_gates": int(G.shape[1]), "width": tree.width,
            "depth": tree.depth}
    return expand_outputs(gates[keep], signs[keep], tree, n_outputs, info)
