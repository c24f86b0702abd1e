r"""Every block of the depth-L (tree) program for tiny low-rank data: the exact program.

Built bottom-up, as :mod:`.exhaustive` does for depth 3. A level-1 option is a first-layer
pattern (a cell of the arrangement of X, :func:`convexnn.patterns.enumerate_patterns`). A
level-(l+1) option is a multiset of w (level-l option, sign σ) pairs with at least one σ = +1
(a unit whose children all enter negatively outputs 0) — siblings are interchangeable, so order
does not matter — together with its own pattern D on the rows: a child is *active* on a row
where its pattern is 1 (its pre-activation is then ≥ 0 on the cone, so it enters with the sign
of its edge), and row i of D is

* 0 where no child is active (the unit's pre-activation is 0; no constraint),
* 1 where only σ = +1 children are active (the pre-activation is ≥ 0 on the whole block),
* 0 where only σ = −1 children are active (D = 1 would only add points with value 0, which the
  D = 0 block has too, with the same output),
* 0 or 1 where both are active: 2^k options for k mixed rows.

Two more choices are dominated and dropped: a leaf whose pattern is all zero and a unit whose
pattern is all zero output 0, and any other option with its q set to 0 does the same on a
feasible set at least as large (a child that is active with value 0 leaves every rule above
satisfied: a forced D = 1 row then has pre-activation 0). The top-level options, times the 2c
choices (t, ε), are every index up to those dominated choices, so the program over them is
the exact program (scope "global"). The count grows like
(P^w · 2^w)^{w^{L−3}} · 2^{mixed rows}: only tiny problems (a handful of points, low rank,
w = 2, L = 4) are enumerable; :func:`enumerate_tree_blocks` refuses above ``max_blocks``.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor

from ...patterns.arrangements import enumerate_patterns
from .exhaustive import TooManyBlocks
from .tree import Tree, TreeBlocks, expand_outputs

__all__ = ["enumerate_tree_blocks"]


def _level_up(options: list[tuple], w: int, limit: int | None) -> list[tuple]:
    """Options of the next level from those of this one (module docstring). An option is
    (leaf pattern ids, signs per level, masks per upper level, active rows)."""
    pairs = [(o, 1.0) for o in options] + [(o, -1.0) for o in options]
    out: list[tuple] = []
    for combo in itertools.combinations_with_replacement(range(len(pairs)), w):
        sel = [pairs[k] for k in combo]
        if all(sg < 0 for _, sg in sel):
            continue
        pos = np.logical_or.reduce([o[3] for o, sg in sel if sg > 0])
        neg = np.logical_or.reduce([o[3] for o, sg in sel if sg < 0] or [np.zeros_like(pos)])
        mixed = np.nonzero(pos & neg)[0]
        leaves = sum((o[0] for o, _ in sel), ())
        depth_below = len(sel[0][0][1])
        signs = [sum((o[1][k] for o, _ in sel), ()) for k in range(depth_below)]
        signs.append(tuple(sg for _, sg in sel))
        uppers = [sum((o[2][k] for o, _ in sel), ()) for k in range(len(sel[0][0][2]))]
        for ch in itertools.product((False, True), repeat=len(mixed)):
            D = pos & ~neg
            D[mixed] = ch
            if not D.any():  # never active: dominated (module docstring)
                continue
            out.append((leaves, signs, uppers + [(D,)], D))
            if limit is not None and len(out) > limit:
                return out
    return out


def enumerate_tree_blocks(X: Tensor, tree: Tree, *, n_outputs: int = 1,
                          max_blocks: int | None = 20000) -> TreeBlocks:
    """Every block of the data ``X`` for depth-``tree.depth`` sub-networks (module
    docstring), with explicit upper-level masks. Raises :class:`TooManyBlocks` above
    ``max_blocks`` (None: no limit)."""
    G = enumerate_patterns(X, max_patterns=None).gates.to(X)  # (d, P)
    Mp = (X @ G >= 0).cpu().numpy()
    c = int(n_outputs)
    cap = None if max_blocks is None else max_blocks // (2 * c)
    options = [((p,), [], [], Mp[:, p]) for p in range(G.shape[1]) if Mp[:, p].any()]
    for _ in range(tree.depth - 2):
        options = _level_up(options, tree.width, cap)
        if cap is not None and len(options) > cap:
            raise TooManyBlocks(f"the exhaustive depth-{tree.depth} program has more than "
                                f"{max_blocks} blocks (max_blocks) on these {X.shape[0]} samples "
                                f"({G.shape[1]} first-layer patterns, branching {tree.width}); "
                                "use fewer samples, a lower rank, or sampled/searched patterns")
    if not options:
        raise ValueError("no block can output a non-zero value on these data")
    gates = torch.stack([G.T[list(o[0])] for o in options]).to(X)
    signs = torch.as_tensor(np.array([sum(o[1], ()) for o in options]), dtype=X.dtype,
                            device=X.device)
    upper = np.stack([np.stack(sum(o[2], ()), 1) for o in options], 1)  # (n, B, U)
    info = {"n_patterns": int(G.shape[1]), "width": tree.width, "depth": tree.depth,
            "exhaustive": True}
    return expand_outputs(gates, signs, tree, c, info,
                          torch.as_tensor(upper, dtype=X.dtype, device=X.device))
