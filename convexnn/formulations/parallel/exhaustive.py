r"""Every block of the parallel program for low-rank data: the exact program, global certificates.

A block is an index s = (D_{1,1..m}, σ, D_2, t, ε) (module docstring of
:mod:`convexnn.formulations.parallel`). The first-layer patterns are the cells of the hyperplane
arrangement of X, enumerated exactly by :func:`convexnn.patterns.enumerate_patterns` (P of
them, O(n^{r−1}) for rank r). A sub-network is a multiset of m (pattern, sign) pairs, at least one
sign +1 (otherwise it outputs 0); order within a sub-network does not matter (its unit sums over
its neurons). Repeated pairs are kept: the l2 path norm is not invariant to splitting a neuron,
so two neurons with one pattern are not one neuron.

Second-layer patterns, row i, with h = Σ_j σ_j D_1j X q_j:

* no neuron active on row i: h_i = 0, the row carries no constraint (D_2[i] = 0);
* only σ = +1 neurons active: h_i ≥ 0 on the whole block, so D_2[i] = 1[h_i ≥ 0] = 1;
* only σ = −1 neurons active: h_i ≤ 0; D_2[i] = 0 (the block with D_2[i] = 1 only adds the
  points with h_i = 0, which the D_2[i] = 0 block already has, with the same output 0);
* both signs active ("mixed"): both values, 2^k blocks for k mixed rows.

Any D_2 in {0, 1}^n gives an exact block: on C_s the output D_2 h equals (h)_+ row by row,
so every feasible point is a network with the same objective, whether or not D_2 has an interior
witness. The list above contains every realised index (up to the dominated choices), so the
program over it *is* the exact program: its optimum is p* of the width-m architecture (c = 1;
for c > 1, single-output sub-networks) and certificates have scope "global". Depth 2 (m = 1):
the patterns with σ = +1 (the two-layer program). The count is P^m · 2^m · 2^k · 2c, exponential in
m and in r: :func:`count_blocks` reports it and :func:`enumerate_blocks` refuses above
``max_blocks`` with a clear error.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor

from ...patterns.arrangements import enumerate_patterns
from .blocks import ParallelBlocks

__all__ = ["enumerate_blocks", "count_blocks", "TooManyBlocks"]


class TooManyBlocks(ValueError):
    """The exhaustive block set exceeds the requested maximum."""


def _base_blocks(M: np.ndarray, m: int, depth: int) -> list[tuple[tuple[int, ...], tuple, int]]:
    """Multisets of m (pattern, sign) pairs with a +1, and their number of mixed rows."""
    P = M.shape[1]
    pairs = [(p, 1.0) for p in range(P)] + ([] if depth == 2 else [(p, -1.0) for p in range(P)])
    out = []
    for combo in itertools.combinations_with_replacement(range(len(pairs)), m):
        sel = [pairs[k] for k in combo]
        if all(sg < 0 for _, sg in sel):
            continue
        pos = np.zeros(M.shape[0], dtype=bool)
        neg = np.zeros(M.shape[0], dtype=bool)
        for p, sg in sel:
            (pos if sg > 0 else neg)[:] |= M[:, p]
        mixed = int((pos & neg).sum())
        out.append((tuple(p for p, _ in sel), tuple(sg for _, sg in sel), mixed))
    return out


def count_blocks(X: Tensor, *, width: int = 2, depth: int = 3, n_outputs: int = 1) -> int:
    """Number of blocks :func:`enumerate_blocks` would build (after the pattern enumeration)."""
    G = enumerate_patterns(X, max_patterns=None).gates
    M = (X.detach().cpu().double().numpy() @ G.detach().cpu().double().numpy()) >= 0
    m = 1 if depth == 2 else int(width)
    base = _base_blocks(M, m, depth)
    return int(sum(2 ** (0 if depth == 2 else k) for _, _, k in base)) * 2 * int(n_outputs)


def enumerate_blocks(X: Tensor, *, width: int = 2, depth: int = 3, n_outputs: int = 1,
                     max_blocks: int | None = 20000) -> ParallelBlocks:
    """Every block of the data ``X`` (module docstring), with explicit second-layer masks.

    Raises :class:`TooManyBlocks` when there would be more than ``max_blocks`` (None: no
    limit); the exact program is exponential in the rank of X and in the width."""
    if depth not in (2, 3):
        raise ValueError(f"depth must be 2 or 3, got {depth}")
    m = 1 if depth == 2 else int(width)
    if m < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    G = enumerate_patterns(X, max_patterns=None).gates.to(X)  # (d, P)
    M = (X @ G >= 0).cpu().numpy()
    base = _base_blocks(M, m, depth)
    total = sum(2 ** (0 if depth == 2 else k) for _, _, k in base) * 2 * int(n_outputs)
    if max_blocks is not None and total > max_blocks:
        raise TooManyBlocks(f"the exhaustive program has {total} blocks (> max_blocks="
                            f"{max_blocks}): {G.shape[1]} first-layer patterns, width {m}; use a "
                            "lower rank (rank=), a smaller width, or column generation")
    n = X.shape[0]
    gates, signs, masks = [], [], []
    for pats, sgs, _ in base:
        sg = np.asarray(sgs)
        act = M[:, list(pats)]  # (n, m)
        pos = (act & (sg > 0)).any(1)
        neg = (act & (sg < 0)).any(1)
        mixed = np.nonzero(pos & neg)[0]
        fixed = pos & ~neg
        choices = [()] if depth == 2 else itertools.product((0, 1), repeat=len(mixed))
        for ch in choices:
            m2 = fixed.copy() if depth == 3 else np.ones(n, dtype=bool)
            if len(ch):
                m2[mixed] = np.asarray(ch, dtype=bool)
            gates.append(G.T[list(pats)])
            signs.append(torch.as_tensor(sg))
            masks.append(torch.as_tensor(m2))
    gates_t = torch.stack(gates).to(X)
    signs_t = torch.stack(signs).to(X)
    masks_t = torch.stack(masks, 1).to(X)
    c = int(n_outputs)
    reps = 2 * c
    B = gates_t.shape[0]
    t = torch.arange(c, device=X.device).repeat_interleave(2).repeat(B)
    e = torch.tensor([1.0, -1.0], dtype=X.dtype, device=X.device).repeat(B * c)
    info = {"n_patterns": int(G.shape[1]), "width": m, "depth": depth, "exhaustive": True}
    return ParallelBlocks(gates_t.repeat_interleave(reps, 0), signs_t.repeat_interleave(reps, 0),
                          t, e, info, masks_t.repeat_interleave(reps, 1))
