r"""Deep tree-structured parallel ReLU networks (depth L ≥ 3) with path regularisation.

The network is a sum of K sub-networks. Sub-network k is a complete tree of branching factor
w (``width``) and depth L. Levels l = 1 .. L-1 hold u_l = w^(L-1-l) ReLU units: level 1 are the
M = w^(L-2) first-layer neurons (the leaves), level L-1 is one top unit. Unit u of level l+1 has
the children u·w .. u·w+w-1 of level l (contiguous ordering), and every unit below the top has
one scalar edge weight a to its parent::

    z_1 = (X W1_kᵀ + b1_k)_+                                   (n, M)
    z_{l+1}[u] = ( Σ_{c child of u} a_l[c] · z_l[c] )_+       l = 1 .. L-2
    f(X) = Σ_k z_{L-1,k} w3_kᵀ                                 (n, c)

``edge_weights`` (K, S), S = Σ_{l=1}^{L-2} u_l, concatenates the levels' edges: the M level-1
edges first, then the u_2 level-2 edges, and so on (the top unit has none).

**Path regulariser**: per sub-network, the l2 norm over all input→output paths of the product
of the weights on the path (the bias is the weight of a constant input 1), summed over k::

    R(θ) = Σ_k ||w3_k|| · sqrt( Σ_j ||W̃1_k[j]||² · Π_{l=1}^{L-2} a_l[anc_l(j)]² ),
    W̃1 = [W1, b1],  anc_1(j) = j,  anc_{l+1}(j) = anc_l(j) // w.

R and f are invariant to rescaling a unit's incoming weights by s > 0 and its outgoing weight
by 1/s. For L = 3 this is :class:`~.parallel.ParallelReLUNetwork` with second-layer weights
``edge_weights`` (see :meth:`TreeParallelReLUNetwork.to_parallel`).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .base import as_tensor, read_npz, save_npz
from .parallel import ParallelContainer, ParallelReLUNetwork

__all__ = ["TreeParallelReLUNetwork", "TreeParallelReLUModule", "load_tree_parallel_network",
           "tree_level_sizes"]

FORMAT = "convexnn.TreeParallelReLUNetwork"


def tree_level_sizes(depth: int, width: int) -> list[int]:
    """Units per level ``[u_1, ..., u_{L-1}]``, u_l = width^(depth-1-l) (u_1 = leaves)."""
    depth, width = _check_depth_width(depth, width)
    return [width ** (depth - 1 - level) for level in range(1, depth)]


def _check_depth_width(depth, width) -> tuple[int, int]:
    if isinstance(depth, bool) or isinstance(width, bool):
        raise ValueError("depth and width must be integers")
    try:
        depth, width = operator.index(depth), operator.index(width)
    except TypeError as err:
        raise ValueError(f"depth and width must be integers, got {depth!r}, {width!r}") from err
    if depth < 3:
        raise ValueError(f"a tree parallel network has depth L >= 3, got {depth}")
    if width < 1:
        raise ValueError(f"width (branching factor) must be >= 1, got {width}")
    return depth, width


def _levels(a: Tensor, depth: int, width: int) -> list[Tensor]:
    """``edge_weights`` (K, S) split into the per-level slices (K, u_l), l = 1 .. L-2."""
    return list(torch.split(a, tree_level_sizes(depth, width)[:-1], dim=-1))


def _tree_forward(X: Tensor, W1: Tensor, b1: Tensor, a: Tensor, depth: int,
                  width: int) -> Tensor:
    """Top-unit outputs z_{L-1} of all K sub-networks, (n, K); batched over K."""
    z = torch.relu(torch.einsum("nd,kmd->nkm", X, W1) + b1)  # (n, K, M)
    n, K = z.shape[:2]
    for a_l in _levels(a, depth, width):
        z = torch.relu((z * a_l).reshape(n, K, a_l.shape[-1] // width, width).sum(-1))
    return z.reshape(n, K)


def _leaf_products(a: Tensor, depth: int, width: int) -> Tensor:
    """Π_l a_l[anc_l(j)] for every leaf j: (K, M) (signed product of edges leaf → top)."""
    prod = torch.ones_like(a[:, :1])
    for level, a_l in enumerate(_levels(a, depth, width)):
        prod = prod * a_l.repeat_interleave(width**level, dim=-1)
    return prod


def _path_norms(W1: Tensor, b1: Tensor, a: Tensor, w3: Tensor, depth: int,
                width: int) -> Tensor:
    row = ((W1**2).sum(-1) + b1**2) * _leaf_products(a, depth, width) ** 2  # (K, M)
    return row.sum(-1).sqrt() * torch.linalg.vector_norm(w3, dim=-1)


class TreeParallelReLUModule(nn.Module):
    """``torch.nn.Module`` computing a :class:`TreeParallelReLUNetwork` (K batched).

    Parameters ``W1`` (K, M, d), ``b1`` (K, M), ``a`` (K, S), ``w3`` (K, c); ``depth`` and
    ``width`` are plain ints. ``path_norm()`` returns the differentiable regulariser R(θ).
    """

    def __init__(self, W1: Tensor, b1: Tensor, a: Tensor, w3: Tensor, depth: int, width: int):
        super().__init__()
        self.depth, self.width = _check_depth_width(depth, width)
        self.W1 = nn.Parameter(W1.detach().clone())
        self.b1 = nn.Parameter(b1.detach().clone())
        self.a = nn.Parameter(a.detach().clone())
        self.w3 = nn.Parameter(w3.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return _tree_forward(x, self.W1, self.b1, self.a, self.depth, self.width) @ self.w3

    def path_norm(self) -> Tensor:
        return _path_norms(self.W1, self.b1, self.a, self.w3, self.depth, self.width).sum()


@dataclass
class TreeParallelReLUNetwork(ParallelContainer):
    """K parallel tree-structured ReLU sub-networks of depth L ≥ 3; see the module docstring."""

    first_layer_weights: Tensor  # (K, M, d), M = width^(depth-2)
    first_layer_bias: Tensor  # (K, M)
    edge_weights: Tensor  # (K, S), S = Σ_{l=1}^{L-2} width^(L-1-l)
    output_weights: Tensor  # (K, c)
    depth: int
    width: int

    def __post_init__(self) -> None:
        self.depth, self.width = _check_depth_width(self.depth, self.width)
        sizes = tree_level_sizes(self.depth, self.width)
        M, S = sizes[0], sum(sizes[:-1])
        W1 = self.first_layer_weights
        if W1.ndim != 3 or W1.shape[1] != M:
            raise ValueError(f"first_layer_weights must be (K, {M}, d) for depth {self.depth} "
                             f"and width {self.width}, got {tuple(W1.shape)}")
        K = W1.shape[0]
        if tuple(self.first_layer_bias.shape) != (K, M):
            raise ValueError(f"first_layer_bias must be ({K}, {M}), got "
                             f"{tuple(self.first_layer_bias.shape)}")
        if tuple(self.edge_weights.shape) != (K, S):
            raise ValueError(f"edge_weights must be ({K}, {S}) for depth {self.depth} and width "
                             f"{self.width}, got {tuple(self.edge_weights.shape)}")
        if self.output_weights.ndim != 2 or self.output_weights.shape[0] != K:
            raise ValueError(f"output_weights must be ({K}, c), got "
                             f"{tuple(self.output_weights.shape)}")

    # ------------------------------------------------------------------ shapes
    @property
    def n_leaves(self) -> int:
        """First-layer neurons per sub-network, M = width^(depth-2)."""
        return int(self.first_layer_weights.shape[1])

    def level_sizes(self) -> list[int]:
        """Units per level ``[u_1, ..., u_{L-1}]`` (see :func:`tree_level_sizes`)."""
        return tree_level_sizes(self.depth, self.width)

    def _params(self) -> tuple[Tensor, Tensor, Tensor]:
        return self.first_layer_weights, self.first_layer_bias, self.edge_weights

    # ----------------------------------------------------------------- forward
    def subnetwork_outputs(self, X) -> Tensor:
        """Top-unit output z_k(x) ≥ 0 of every sub-network before its output weights: (n, K)."""
        X = as_tensor(X, self.first_layer_weights)
        return _tree_forward(X, *self._params(), self.depth, self.width)

    def forward(self, X) -> Tensor:
        """Raw outputs f(X), shape (n, c)."""
        return self.subnetwork_outputs(X) @ self.output_weights

    __call__ = forward

    def leaf_path_products(self) -> Tensor:
        """Signed product of the edge weights from each leaf up to the top unit: (K, M)."""
        return _leaf_products(self.edge_weights, self.depth, self.width)

    def path_norms(self) -> Tensor:
        """Per-sub-network l2 path norms (K,); their sum is R(θ)."""
        return _path_norms(*self._params(), self.output_weights, self.depth, self.width)

    def prune(self, tol: float = 0.0) -> TreeParallelReLUNetwork:
        """Drop sub-networks whose path norm is ≤ tol (they contribute nothing when 0)."""
        keep = self.path_norms() > tol
        return TreeParallelReLUNetwork(*(t[keep] for t in self._params()),
                                       self.output_weights[keep], self.depth, self.width)

    # ------------------------------------------------------------------ export
    def to_torch(self) -> TreeParallelReLUModule:
        """An ``nn.Module`` computing the same function (parameters copied)."""
        W1 = self.first_layer_weights
        mod = TreeParallelReLUModule(*self._params(), self.output_weights, self.depth,
                                     self.width)
        return mod.to(dtype=W1.dtype, device=W1.device)

    @classmethod
    def from_torch(cls, module: TreeParallelReLUModule) -> TreeParallelReLUNetwork:
        return cls(module.W1.detach().clone(), module.b1.detach().clone(),
                   module.a.detach().clone(), module.w3.detach().clone(), module.depth,
                   module.width)

    def to(self, device=None, dtype=None) -> TreeParallelReLUNetwork:
        return TreeParallelReLUNetwork(
            *(t.to(device=device, dtype=dtype) for t in self._params()),
            self.output_weights.to(device=device, dtype=dtype), self.depth, self.width)

    def to_parallel(self) -> ParallelReLUNetwork:
        """The same depth-3 network as a :class:`ParallelReLUNetwork` (tensors shared)."""
        if self.depth != 3:
            raise ValueError(f"to_parallel needs depth 3, this network has depth {self.depth}")
        return ParallelReLUNetwork(*self._params(), self.output_weights)

    @classmethod
    def from_parallel(cls, net: ParallelReLUNetwork) -> TreeParallelReLUNetwork:
        """A depth-3 :class:`ParallelReLUNetwork` as a tree network (width = its m)."""
        if net.depth != 3:
            raise ValueError(f"from_parallel needs a depth-3 network, got depth {net.depth}")
        return cls(net.first_layer_weights, net.first_layer_bias, net.second_layer_weights,
                   net.output_weights, 3, net.width)

    # -------------------------------------------------------------------- I/O
    def save(self, path: str | Path) -> None:
        """Save to ``path`` (.npz of arrays + JSON metadata; no pickle)."""
        arrays = {"first_layer_weights": self.first_layer_weights,
                  "first_layer_bias": self.first_layer_bias,
                  "edge_weights": self.edge_weights,
                  "output_weights": self.output_weights}
        save_npz(path, arrays,
                 {"format": FORMAT, "version": 1, "depth": self.depth, "width": self.width})


def load_tree_parallel_network(path: str | Path) -> TreeParallelReLUNetwork:
    """Load a network saved by :meth:`TreeParallelReLUNetwork.save` (``allow_pickle=False``)."""
    meta, t = read_npz(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a convexnn TreeParallelReLUNetwork file")
    if meta.get("version") != 1:
        raise ValueError(f"{path}: unsupported TreeParallelReLUNetwork version "
                         f"{meta.get('version')!r}")
    return TreeParallelReLUNetwork(t["first_layer_weights"], t["first_layer_bias"],
                                   t["edge_weights"], t["output_weights"], meta["depth"],
                                   meta["width"])
