"""Activation patterns of the data's hyperplane arrangement.

A pattern is a diagonal 0/1 matrix D = diag(1[X g ≥ 0]) for some gate vector g ∈ R^d (X already
carries a column of ones when the first layer has a bias). We store the *gates* G (d x P), never
the n x P masks, so masks can be recomputed in row chunks and memory stays O(nd + dP).

Sampling draws gates at random and keeps one gate per distinct pattern (deduplication by an
exact 64-bit modular hash of each mask column, accumulated over row chunks). A sampled set is a
subset of all patterns: the convex program over it is a restriction whose optimum is ≥ the
global optimum p*. ``exhaustive=True`` marks a set known to contain every pattern (exact
enumeration, see :func:`convexnn.patterns.enumerate_patterns`), which makes the program exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

__all__ = ["PatternSet", "sample_gates", "pattern_masks", "bool_masks", "mask_hashes",
           "deduplicate_gates", "DEFAULT_CHUNK"]

#: Default number of rows per chunk when masks are recomputed.
DEFAULT_CHUNK = 4096

_HASH_PRIME = (1 << 61) - 1


@dataclass
class PatternSet:
    """Gate vectors ``gates`` (d x P) whose masks 1[X g_i ≥ 0] define the patterns D_i."""

    gates: Tensor
    exhaustive: bool = False
    info: dict = field(default_factory=dict)

    @property
    def n_patterns(self) -> int:
        return int(self.gates.shape[1])

    def masks(self, X: Tensor) -> Tensor:
        """Boolean masks (rows of X x P). O(n P) memory: use on row chunks."""
        return pattern_masks(X, self.gates)

    def to(self, device=None, dtype=None) -> PatternSet:
        return PatternSet(self.gates.to(device=device, dtype=dtype), self.exhaustive,
                          dict(self.info))


def pattern_masks(X: Tensor, gates: Tensor) -> Tensor:
    return X @ gates >= 0


def bool_masks(X: Tensor, gates: Tensor, chunk: int = DEFAULT_CHUNK) -> Tensor:
    """1[X G ≥ 0] as bools (n x P bytes), built per row chunk: no n x P float product."""
    out = torch.empty((X.shape[0], gates.shape[1]), dtype=torch.bool, device=X.device)
    for s in range(0, X.shape[0], chunk):
        out[s:s + chunk] = pattern_masks(X[s:s + chunk], gates)
    return out


def mask_hashes(X: Tensor, gates: Tensor, chunk: int, seed: int = 12345) -> Tensor:
    """Exact-equality hashes of the columns of 1[X G ≥ 0], computed in row chunks.

    Sum of random 61-bit weights over active rows, modulo 2^61 - 1: order-independent, so equal
    masks hash equal; distinct masks collide with probability ~2^-61 per pair.
    """
    n = X.shape[0]
    gen = np.random.default_rng(seed)
    weights = torch.as_tensor(gen.integers(1, _HASH_PRIME, size=n, dtype=np.int64))
    h = torch.zeros(gates.shape[1], dtype=torch.int64)
    for s in range(0, n, chunk):
        m = pattern_masks(X[s:s + chunk], gates).cpu().to(torch.int64)
        h = (h + (m * weights[s:s + chunk, None] % _HASH_PRIME).sum(0)) % _HASH_PRIME
    return h


def deduplicate_gates(X: Tensor, gates: Tensor, *, drop_zero: bool = True,
                      chunk: int = DEFAULT_CHUNK, return_inverse: bool = False):
    """Keep the first gate of each distinct pattern (and drop the all-zero pattern).

    With ``return_inverse``, also return for every input column the index of its pattern among
    the kept gates (−1 for a dropped all-zero pattern), from the *same* mask computation — a
    gate with samples on its hyperplane (X g ≈ 0) may flip them at round-off if its masks are
    recomputed from a differently shaped product, so look-ups must not recompute.
    """
    h = mask_hashes(X, gates, chunk).numpy()
    uniq, first, inv = np.unique(h, return_index=True, return_inverse=True)
    order = np.argsort(first)
    keep = first[order]
    pos = np.empty(len(uniq), dtype=np.int64)
    pos[order] = np.arange(len(uniq))
    col = pos[inv.reshape(-1)]
    if drop_zero:
        nonzero = h[keep] != 0
        remap = np.full(len(keep), -1, dtype=np.int64)
        remap[nonzero] = np.arange(int(nonzero.sum()))
        keep, col = keep[nonzero], remap[col]
    kept = gates[:, torch.as_tensor(keep, device=gates.device)]
    return (kept, col) if return_inverse else kept


def sample_gates(X: Tensor, n_patterns: int, random_state: int | np.random.Generator | None = None,
                 *, kind: str = "gaussian", intercept_column: bool = False,
                 deduplicate: bool = True, drop_zero: bool = True,
                 chunk: int = DEFAULT_CHUNK) -> PatternSet:
    """Draw ``n_patterns`` random gates for the data ``X`` (n x d) and deduplicate them.

    kind:
      * ``"gaussian"`` — g ~ N(0, I_d), as in the papers' code.
      * ``"data"`` — scale-aware hyperplanes through data points: g_j ~ N(0, 1/σ_j²) on the
        features and, when ``intercept_column`` (X's last column is all ones), the offset puts
        the hyperplane through the midpoint of two random samples. Patterns are then invariant
        to feature scaling.
    Returns at most ``n_patterns`` gates (fewer after deduplication).
    """
    if n_patterns < 1:
        raise ValueError(f"n_patterns must be >= 1, got {n_patterns}")
    rng = random_state if isinstance(random_state, np.random.Generator) \
        else np.random.default_rng(random_state)
    n, d = X.shape
    Xc = X.detach().cpu().to(torch.float64).numpy()
    G = rng.standard_normal((d, n_patterns))
    if kind == "data":
        feat = slice(0, d - 1) if intercept_column else slice(0, d)
        scale = Xc[:, feat].std(axis=0)
        scale[scale == 0] = 1.0
        G[feat] /= scale[:, None]
        if intercept_column:
            # through the midpoint of two random samples (generically no sample lies on it)
            i = rng.integers(0, n, size=n_patterns)
            j = (i + rng.integers(1, n, size=n_patterns)) % n if n > 1 else i  # j ≠ i
            mid = 0.5 * (Xc[i][:, feat] + Xc[j][:, feat])
            G[d - 1] = -np.einsum("kd,dk->k", mid, G[feat])
    elif kind != "gaussian":
        raise ValueError(f"unknown gate kind {kind!r}; expected 'gaussian' or 'data'")
    gates = torch.as_tensor(G, dtype=X.dtype, device=X.device)
    if deduplicate:
        gates = deduplicate_gates(X, gates, drop_zero=drop_zero, chunk=chunk)
    return PatternSet(gates, exhaustive=False, info={"kind": kind, "n_sampled": n_patterns})
