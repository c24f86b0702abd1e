"""The depth-L (tree) program over a block set: kernels, multipliers, read-back (math in
:mod:`.tree`). The certificate, penalty and prox are those of :class:`.ParallelProgram`."""

from __future__ import annotations

import torch
from torch import Tensor

from ...losses import Loss, get_loss
from ...networks.parallel_tree import TreeParallelReLUNetwork
from ...solvers.fista import accelerated_projected_gradient
from .program import ParallelProgram, network_pieces
from .tree import Tree, TreeBlocks, path_coefficients

__all__ = ["TreeProgram"]


class TreeProgram(ParallelProgram):
    """The convex program of a parallel network of depth-L tree sub-networks over a block set.

    Variable x: (B, M, d), block b holding q_b (one row per leaf). Multipliers ν: one tensor
    per level, (n, B, u_l)."""

    def __init__(self, X: Tensor, Y: Tensor, blocks: TreeBlocks, reg: float,
                 loss: str | Loss = "squared", *, intercept: bool = False):
        if reg <= 0:
            raise ValueError(f"reg must be > 0, got {reg}")
        self.X, self.Y, self.reg, self.loss = X, Y, float(reg), get_loss(loss)
        self.tree: Tree = blocks.tree
        self.depth, self.intercept = self.tree.depth, intercept
        self.blocks = blocks.to(device=X.device, dtype=X.dtype)
        self.n, self.d = X.shape
        self.c = Y.shape[1]
        self.B, self.m = blocks.gates.shape[0], self.tree.n_leaves
        if self.B and int(self.blocks.outputs.max()) >= self.c:
            raise ValueError("a block feeds an output index >= the number of outputs")
        self.masks = self.blocks.masks(X)
        self.S = [2 * mk - 1 for mk in self.masks]
        self.S1 = self.S[0]
        self.sig = self.blocks.signs
        self.sigs = self.tree.split(self.sig)
        self.eps = self.blocks.eps
        self.E = torch.zeros(self.B, self.c, dtype=X.dtype, device=X.device)
        self.E[torch.arange(self.B), self.blocks.outputs] = 1.0

    def description(self) -> str:
        out = "" if self.c == 1 else " (single-output sub-networks)"
        head = (f"path-regularised parallel depth-{self.depth} trees (branching "
                f"{self.tree.width}, {self.m} first-layer neurons){out}")
        if self.exhaustive:
            return (f"{head}: cone-constrained group lasso over all {self.B} pattern blocks "
                    "(exhaustive enumeration: the exact program of this architecture)")
        return (f"{head}: cone-constrained group lasso over {self.B} {self.block_source} "
                "pattern blocks (a restriction of the exact program)")

    def to_dtype(self, dtype: torch.dtype) -> TreeProgram:
        p = TreeProgram(self.X.to(dtype), self.Y.to(dtype), self.blocks, self.reg, self.loss,
                        intercept=self.intercept)
        p.block_source = self.block_source
        return p

    def with_blocks(self, blocks: TreeBlocks) -> TreeProgram:
        return TreeProgram(self.X, self.Y, blocks, self.reg, self.loss, intercept=self.intercept)

    def subset(self, keep: Tensor) -> TreeProgram:
        sub = self.with_blocks(self.blocks.subset(keep))
        sub.block_source = self.block_source
        if self.exhaustive and not bool(keep.all()):
            sub.block_source = "pruned exhaustive"
        return sub

    # ------------------------------------------------------------ kernels
    def levels(self, XQ: Tensor) -> list[Tensor]:
        """Pre-activations of the convex model, every level: [(n, B, M), ..., (n, B, 1)]."""
        hs = [XQ]
        for lev, s in enumerate(self.sigs):
            hs.append(self.tree.group(s * self.masks[lev] * hs[-1]))
        return hs

    def pre2(self, XQ: Tensor) -> Tensor:
        """Top unit's pre-activation (n, B)."""
        return self.levels(XQ)[-1][..., 0]

    def predict(self, XQ: Tensor) -> Tensor:
        return (self.masks[-1][..., 0] * self.pre2(XQ) * self.eps) @ self.E

    def network_predict(self, XQ: Tensor) -> Tensor:
        h = XQ
        for s in self.sigs:
            h = self.tree.group(s * h.clamp_min(0))
        return (h[..., 0].clamp_min(0) * self.eps) @ self.E

    def constraints(self, XQ: Tensor) -> tuple[Tensor, ...]:
        return tuple(s * h for s, h in zip(self.S, self.levels(XQ)))

    def violation(self, XQ: Tensor) -> float:
        return max((float((-c).clamp_min(0).max()) for c in self.constraints(XQ) if c.numel()),
                   default=0.0)

    def adjoint(self, gh: Tensor, gq: list[Tensor] | None = None) -> Tensor:
        """x-shaped adjoint of a gradient ``gh`` (n, B) w.r.t. the top pre-activation plus
        gradients ``gq`` w.r.t. every level's pre-activations (a list, leaves first)."""
        W = gh[..., None]
        if gq is not None:
            W = W + gq[-1]
        for lev in range(len(self.sigs) - 1, -1, -1):
            W = self.tree.expand(W) * self.sigs[lev] * self.masks[lev]
            if gq is not None:
                W = W + gq[lev]
        return (self.X.T @ W.reshape(self.n, -1)).reshape(self.d, self.B, self.m).permute(1, 2, 0)

    def data_grad_h(self, lam: Tensor) -> Tensor:
        return self.eps * self.masks[-1][..., 0] * (lam @ self.E.T)

    def zero_multipliers(self) -> tuple[Tensor, ...]:
        kw = {"dtype": self.X.dtype, "device": self.X.device}
        return tuple(torch.zeros((self.n, self.B, u), **kw) for u in self.tree.units)

    def augmented(self, mu: tuple[Tensor, ...], rho: float) -> TreeAugmented:
        return TreeAugmented(self, mu, rho)

    # ------------------------------------------------------------ certificate
    def _dual_terms(self, lam: Tensor, nu: tuple[Tensor, ...] | None) -> Tensor:
        gq = None if nu is None else [-v * s for v, s in zip(nu, self.S)]
        return self.adjoint(self.data_grad_h(lam), gq)

    def refine_multipliers(self, lam: Tensor, nu: tuple[Tensor, ...], iters: int
                           ) -> tuple[Tensor, ...]:
        """As :meth:`ParallelProgram.refine_multipliers`; ||B||² ≤ ||X||² Σ_l w^{l−1}."""
        Xn = float(torch.linalg.matrix_norm(self.X, ord=2)) ** 2
        step = 1.0 / (Xn * sum(self.tree.width ** k for k in range(self.depth - 1)))

        def grad(z: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            hs = self.levels(self.linear(self._dual_terms(lam, z)))
            return tuple(-s * h for s, h in zip(self.S, hs))

        return accelerated_projected_gradient(grad, tuple(nu), step, iters)

    def barrier_rows(self) -> tuple[Tensor, Tensor, Tensor]:
        """Rows of every level ≥ 2 that bind (neither vacuous nor implied by the level below,
        as in :class:`.tree_conic.TreeConicStructure`) for the interior-point solvers: their
        coefficients (n, B, U, M) on the first-layer state, indicator (n, B, U), and the
        outputs' coefficients (n, B, M); U = Σ_{l≥2} u_l, levels concatenated."""
        C = path_coefficients(self.masks, self.sig, self.tree)
        w, M = self.tree.width, self.m
        rows, needs = [], []
        for lev in range(1, self.depth - 1):
            u = self.tree.units[lev]
            act = self.masks[lev - 1].reshape(self.n, self.B, u, w) > 0
            agree = (self.S[lev][..., None] * self.sigs[lev - 1].reshape(1, self.B, u, w)
                     >= 0) | ~act
            need = (act.any(-1) & ~agree.all(-1)).to(self.X.dtype)
            under = torch.arange(M, device=self.X.device) // w ** lev  # leaf -> its unit
            ind = (under[None, :] == torch.arange(u, device=self.X.device)[:, None])
            rows.append((self.S[lev] * need)[..., None] * C[lev][:, :, None, :] * ind.to(C[0]))
            needs.append(need)
        return torch.cat(rows, 2), torch.cat(needs, 2), self.eps[None, :, None] * C[-1]

    def row_multipliers(self, nu1: Tensor, nu2: Tensor) -> tuple[Tensor, ...]:
        """ν per level from the interior-point rows' (n, B, M), (n, B, U)."""
        return (nu1, *self.tree.split(nu2, upper=True))

    def extend_multipliers(self, nu: tuple[Tensor, ...], k: int) -> tuple[Tensor, ...]:
        """ν for ``k`` blocks prepended (zero there)."""
        return tuple(torch.cat([torch.zeros((self.n, k, v.shape[2]), dtype=v.dtype,
                                            device=v.device), v], 1) for v in nu)

    # ------------------------------------------------------------ read-back
    def to_network(self, x: Tensor, tol: float = 0.0) -> TreeParallelReLUNetwork:
        """One sub-network per block with ||q_b||_F > tol; same function and path norm: leaf
        weights q_j/||q_j||, the edge from unit u to its parent |a_u| = N_u / N_parent
        (N = the Frobenius norm of q over a unit's leaves), output weight ε ||q_b||_F."""
        keep = torch.nonzero(self.group_norms(x) > tol).flatten()
        q = x[keep]  # (K, M, d)
        K, tree = q.shape[0], self.tree
        N = torch.linalg.vector_norm(q, dim=2) ** 2  # (K, M) squared norms per unit
        norms = [N.sqrt()]
        for _ in range(self.depth - 2):
            N = tree.group(N)
            norms.append(N.sqrt())
        edges = []
        for lev in range(self.depth - 2):
            parent = tree.expand(norms[lev + 1])
            mag = torch.where(parent > 0, norms[lev] / parent.clamp_min(1e-300), 0.0)
            edges.append(self.sigs[lev][keep] * mag)
        W = torch.where(norms[0][..., None] > 0, q / norms[0][..., None].clamp_min(1e-300), 0.0)
        outw = torch.zeros(K, self.c, dtype=x.dtype, device=x.device)
        outw[torch.arange(K), self.blocks.outputs[keep]] = self.eps[keep] * norms[-1][:, 0]
        if self.intercept:
            W1, b1 = W[..., :-1], W[..., -1]
        else:
            W1, b1 = W, torch.zeros(W.shape[:2], dtype=x.dtype, device=x.device)
        return TreeParallelReLUNetwork(W1.contiguous(), b1.contiguous(),
                                       torch.cat(edges, 1).contiguous(), outw,
                                       depth=self.depth, width=tree.width)

    @classmethod
    def from_network(cls, net: TreeParallelReLUNetwork, X: Tensor, Y: Tensor, reg: float,
                     loss: str | Loss = "squared", *, intercept: bool = True,
                     extra_blocks: TreeBlocks | None = None) -> tuple[TreeProgram, Tensor]:
        """The network's own blocks (plus ``extra_blocks``) and the point reproducing it:
        q_j = w̃_j Π|a| ||v|| (single-output sub-networks), witness gates w̃_j Π|a|."""
        net = net.to(device=X.device, dtype=X.dtype)
        tree = Tree(net.depth, net.width)
        Wa, t, eps, vnorm = network_pieces(net, intercept)
        a = net.edge_weights
        prod = torch.ones(Wa.shape[:2], dtype=X.dtype, device=X.device)
        for lev, al in enumerate(tree.split(a.abs())):
            prod = prod * al.repeat_interleave(tree.width ** lev, dim=-1)
        gates = Wa * prod[..., None]
        q = gates * vnorm[:, None, None]
        sig = torch.where(a < 0, -1.0, 1.0).to(X.dtype)
        blocks = TreeBlocks(gates, sig, t, eps, tree)
        if extra_blocks is not None:
            eb = extra_blocks.to(device=X.device, dtype=X.dtype)
            up = None
            if eb.upper_masks is not None:
                own = torch.cat(blocks.masks(X)[1:], -1)
                up = torch.cat([own, eb.upper_masks], 1)
            blocks = TreeBlocks(torch.cat([gates, eb.gates]), torch.cat([sig, eb.signs]),
                                torch.cat([t, eb.outputs]), torch.cat([eps, eb.eps]), tree,
                                upper_masks=up)
            q = torch.cat([q, torch.zeros_like(eb.gates)])
        return cls(X, Y, blocks, reg, loss, intercept=intercept), q


class TreeAugmented:
    """Smooth part of the augmented Lagrangian (FISTA protocol), one multiplier per level:
    f_ρ(x) = L(A x) + (1/2ρ) Σ_l ||(μ_l − ρ C_l(x))_+||²."""

    def __init__(self, prog: TreeProgram, mu: tuple[Tensor, ...], rho: float):
        self.prog, self.mu, self.rho = prog, mu, float(rho)
        self.penalty, self.prox, self.linear = prog.penalty, prog.prox, prog.linear

    def updated_multipliers(self, XQ: Tensor) -> tuple[Tensor, ...]:
        return tuple((m - self.rho * c).clamp_min(0)
                     for m, c in zip(self.mu, self.prog.constraints(XQ)))

    def smooth_value(self, XQ: Tensor) -> Tensor:
        p = self.prog
        shifted = self.updated_multipliers(XQ)
        return p.loss.value(p.predict(XQ), p.Y) + sum((s**2).sum() for s in shifted) / (
            2 * self.rho)

    def smooth_grad(self, XQ: Tensor) -> Tensor:
        p = self.prog
        lam = p.loss.grad(p.predict(XQ), p.Y)
        gq = [-s * S for s, S in zip(self.updated_multipliers(XQ), p.S)]
        return p.adjoint(p.data_grad_h(lam), gq)
