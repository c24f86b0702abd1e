"""The convex program over a block set: kernels, certificate, read-back (math in
:mod:`convexnn.formulations.parallel`)."""

from __future__ import annotations

import torch
from torch import Tensor

from ...certificates import SCOPE_GLOBAL, SCOPE_SAMPLED, Certificate, relative, scaled_dual
from ...losses import Loss, get_loss
from ...networks.parallel import ParallelReLUNetwork
from ...ops.prox import group_soft_threshold
from ...solvers.fista import accelerated_projected_gradient
from .augmented import AugmentedProgram
from .blocks import ParallelBlocks

__all__ = ["ParallelProgram", "certify", "network_pieces", "EXHAUSTIVE"]

#: ``block_source`` of a program over every block (:mod:`.exhaustive`)
EXHAUSTIVE = "exhaustive"


class ParallelProgram:
    """The convex program of a path-regularised parallel network over a block set.

    Variable x: (B, m, d), block b holding q_b. See the module docstring for the math.
    """

    def __init__(self, X: Tensor, Y: Tensor, blocks: ParallelBlocks, reg: float,
                 loss: str | Loss = "squared", *, depth: int = 3, intercept: bool = False):
        if reg <= 0:
            raise ValueError(f"reg must be > 0, got {reg}")
        if depth not in (2, 3):
            raise ValueError(f"depth must be 2 or 3, got {depth}")
        self.X, self.Y = X, Y
        self.reg = float(reg)
        self.loss = get_loss(loss)
        self.depth = depth
        self.intercept = intercept
        self.blocks = blocks.to(device=X.device, dtype=X.dtype)
        self.n, self.d = X.shape
        self.c = Y.shape[1]
        self.B, self.m = blocks.gates.shape[0], blocks.gates.shape[1]
        if depth == 2 and self.m != 1:
            raise ValueError("depth 2 needs blocks of width 1")
        if self.B and int(self.blocks.outputs.max()) >= self.c:
            raise ValueError("a block feeds an output index >= the number of outputs")
        self.M1, self.M2 = self.blocks.masks(X)
        if depth == 2:
            self.M2 = torch.ones_like(self.M2)
        self.sig = self.blocks.signs  # (B, m)
        self.eps = self.blocks.eps  # (B,)
        self.E = torch.zeros(self.B, self.c, dtype=X.dtype, device=X.device)
        self.E[torch.arange(self.B), self.blocks.outputs] = 1.0
        self.S1 = 2 * self.M1 - 1
        self.S2 = 2 * self.M2 - 1

    # ------------------------------------------------------------ description
    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.B, self.m, self.d)

    def zeros(self) -> Tensor:
        return torch.zeros(self.shape, dtype=self.X.dtype, device=self.X.device)

    #: where the blocks came from, for :meth:`description` (the certificate's scope text)
    block_source: str = "sampled"

    def description(self) -> str:
        out = "" if self.c == 1 else " (single-output sub-networks)"
        head = ("parallel depth-2" if self.depth == 2
                else f"path-regularised parallel depth-3 (width {self.m}){out}")
        if self.exhaustive:
            return (f"{head}: cone-constrained group lasso over all {self.B} pattern blocks "
                    "(exhaustive enumeration: the exact program of this architecture)")
        return (f"{head}: cone-constrained group lasso over {self.B} {self.block_source} "
                "pattern blocks (a restriction of the exact program)")

    @property
    def exhaustive(self) -> bool:
        """True when the blocks are every index of the data (:mod:`.exhaustive`): the program is
        then the exact one and its certificates are global."""
        return self.block_source == EXHAUSTIVE

    def to_dtype(self, dtype: torch.dtype) -> ParallelProgram:
        """The same program with data in ``dtype``."""
        p = ParallelProgram(self.X.to(dtype), self.Y.to(dtype), self.blocks, self.reg, self.loss,
                            depth=self.depth, intercept=self.intercept)
        p.block_source = self.block_source
        return p

    def subset(self, keep: Tensor) -> ParallelProgram:
        """The program over the blocks selected by the boolean mask ``keep``."""
        b = self.blocks
        blk = ParallelBlocks(b.gates[keep], b.signs[keep], b.outputs[keep], b.eps[keep],
                             dict(b.info),
                             None if b.second_masks is None else b.second_masks[:, keep])
        sub = ParallelProgram(self.X, self.Y, blk, self.reg, self.loss, depth=self.depth,
                              intercept=self.intercept)
        sub.block_source = self.block_source
        if self.exhaustive and not bool(keep.all()):
            sub.block_source = "pruned exhaustive"  # a restriction again
        return sub

    # ------------------------------------------------------------ kernels
    def linear(self, x: Tensor) -> Tensor:
        """State XQ = X q_bj for every block and neuron: (n, B, m)."""
        return (self.X @ x.reshape(-1, self.d).T).reshape(self.n, self.B, self.m)

    def pre2(self, XQ: Tensor) -> Tensor:
        """Second-layer pre-activation of the convex model Σ_j σ_j D_1j X q_j: (n, B)."""
        return (self.sig * self.M1 * XQ).sum(-1)

    def predict(self, XQ: Tensor) -> Tensor:
        """Convex-model predictions (uses the block masks): (n, c)."""
        return (self.M2 * self.pre2(XQ) * self.eps) @ self.E

    def network_predict(self, XQ: Tensor) -> Tensor:
        """Predictions of the read-back network (true ReLUs) from the same state."""
        z = (self.sig * XQ.clamp_min(0)).sum(-1).clamp_min(0)
        return (z * self.eps) @ self.E

    def constraints(self, XQ: Tensor) -> tuple[Tensor, Tensor]:
        """(2D_1 − I) X q (n, B, m) and (2D_2 − I) Σ σ D_1 X q (n, B): feasible iff ≥ 0."""
        return self.S1 * XQ, self.S2 * self.pre2(XQ)

    def violation(self, XQ: Tensor) -> float:
        c1, c2 = self.constraints(XQ)
        v = float((-c1).clamp_min(0).max()) if c1.numel() else 0.0
        if self.depth == 3 and c2.numel():
            v = max(v, float((-c2).clamp_min(0).max()))
        return v

    def adjoint(self, gh: Tensor, gq: Tensor | None = None) -> Tensor:
        """x-shaped Aᵀ for a gradient gh w.r.t. the pre-activations h (n, B) plus a gradient gq
        w.r.t. the state XQ (n, B, m)."""
        W = self.sig * self.M1 * gh[:, :, None]
        if gq is not None:
            W = W + gq
        return (self.X.T @ W.reshape(self.n, -1)).reshape(self.d, self.B, self.m).permute(1, 2, 0)

    def data_grad_h(self, lam: Tensor) -> Tensor:
        """∂<Λ, predict>/∂h: (n, B)."""
        return self.eps * self.M2 * (lam @ self.E.T)

    # ------------------------------------------------------------ penalty
    def group_norms(self, x: Tensor) -> Tensor:
        return torch.linalg.vector_norm(x.reshape(self.B, self.m * self.d), dim=1)

    def penalty(self, x: Tensor) -> Tensor:
        return self.reg * self.group_norms(x).sum()

    def prox(self, x: Tensor, step: float) -> Tensor:
        return group_soft_threshold(x, step * self.reg, norms=self.group_norms(x)[:, None, None])

    # ------------------------------------------------------------ FISTA / AL protocol
    def smooth_value(self, XQ: Tensor) -> Tensor:
        return self.loss.value(self.predict(XQ), self.Y)

    def smooth_grad(self, XQ: Tensor) -> Tensor:
        return self.adjoint(self.data_grad_h(self.loss.grad(self.predict(XQ), self.Y)))

    def augmented(self, mu: tuple[Tensor, Tensor], rho: float) -> AugmentedProgram:
        return AugmentedProgram(self, mu, rho)

    def zero_multipliers(self) -> tuple[Tensor, Tensor]:
        z = torch.zeros((self.n, self.B, self.m), dtype=self.X.dtype, device=self.X.device)
        return z, torch.zeros((self.n, self.B), dtype=self.X.dtype, device=self.X.device)

    def objective(self, x: Tensor) -> float:
        """Convex objective at x (block masks, not the true ReLUs)."""
        return float(self.loss.value(self.predict(self.linear(x)), self.Y) + self.penalty(x))

    def network_objective(self, x: Tensor) -> float:
        """Non-convex objective of the network read back from x (true ReLUs)."""
        return float(self.loss.value(self.network_predict(self.linear(x)), self.Y)
                     + self.penalty(x))

    # ------------------------------------------------------------ certificate
    def _dual_terms(self, lam: Tensor, nu: tuple[Tensor, Tensor] | None) -> Tensor:
        """x-shaped −(−AᵀΛ + Bᵀν) (its block norms bound the dual constraint)."""
        gh = self.data_grad_h(lam)
        gq = None
        if nu is not None:
            nu1, nu2 = nu
            gh = gh - (nu2 * self.S2 if self.depth == 3 else 0)
            gq = -nu1 * self.S1
        return self.adjoint(gh, gq)

    def refine_multipliers(self, lam: Tensor, nu: tuple[Tensor, Tensor], iters: int
                           ) -> tuple[Tensor, Tensor]:
        """Projected accelerated gradient on min_{ν ≥ 0} Σ_b ||A_bᵀΛ − B_bᵀν_b||² (any ν ≥ 0 is
        valid, so stopping early is safe)."""
        Xn = float(torch.linalg.matrix_norm(self.X, ord=2)) ** 2
        step = 1.0 / (Xn * (1 + self.m))

        def grad(z: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
            XG = self.linear(self._dual_terms(lam, z))  # G = AᵀΛ − Bᵀν
            return -self.S1 * XG, -self.S2 * self.pre2(XG)  # −B₁ G, −B₂ G

        return accelerated_projected_gradient(grad, tuple(nu), step, iters)

    def certificate(self, x: Tensor, nu: tuple[Tensor, Tensor] | None = None,
                    refine: int = 0, state: Tensor | None = None) -> Certificate:
        """Certificate of the network read back from x for the program over these blocks."""
        XQ = self.linear(x) if state is None else state
        Z = self.network_predict(XQ)
        lam = self.loss.grad(Z, self.Y)
        if refine:
            nu = self.refine_multipliers(lam, nu if nu is not None else self.zero_multipliers(),
                                         refine)
        h = self.group_norms(self._dual_terms(lam, nu))
        h_max = float(h.max()) if h.numel() else 0.0
        dual, s = scaled_dual(self.loss, lam, self.Y, h_max, self.reg)
        primal = float(self.loss.value(Z, self.Y) + self.penalty(x))
        gap = max(primal - dual, 0.0)
        return Certificate(primal=primal, dual=dual, gap=gap, relative_gap=relative(gap, primal),
                           scope=SCOPE_GLOBAL if self.exhaustive else SCOPE_SAMPLED,
                           problem=self.description(), n_patterns=self.B,
                           dual_scale=s, constraint_violation=self.violation(XQ))

    def barrier_rows(self) -> tuple[Tensor, Tensor, Tensor]:
        """For the interior-point solvers (:mod:`.kkt`): the second-layer rows that bind —
        neither vacuous (no active neuron) nor implied by the first layer (every active
        neuron's sign agrees with the row's) — as coefficients (n, B, 1, m) on the first-layer
        state, their indicator (n, B, 1), and the outputs' coefficients (n, B, m)."""
        M1, sig = self.M1, self.sig
        if self.depth == 3:
            implied = ((self.S2[:, :, None] * sig[None] >= 0) | (M1 == 0)).all(-1)
            need2 = ((M1 > 0).any(-1) & ~implied).to(M1.dtype)
            C2 = self.S2[:, :, None] * sig[None] * M1 * need2[:, :, None]
        else:
            need2, C2 = torch.zeros_like(self.M2), torch.zeros_like(M1)
        P = self.eps[None, :, None] * self.M2[:, :, None] * sig[None] * M1
        return C2[:, :, None, :], need2[..., None], P

    def row_multipliers(self, nu1: Tensor, nu2: Tensor) -> tuple[Tensor, Tensor]:
        """ν in this program's layout from the interior-point rows' (n, B, m), (n, B, 1)."""
        return nu1, nu2[..., 0]

    def extend_multipliers(self, nu: tuple[Tensor, Tensor], k: int) -> tuple[Tensor, Tensor]:
        """ν for ``k`` blocks prepended (zero there)."""
        z1 = torch.zeros((self.n, k, self.m), dtype=nu[0].dtype, device=nu[0].device)
        z2 = torch.zeros((self.n, k), dtype=nu[1].dtype, device=nu[1].device)
        return torch.cat([z1, nu[0]], 1), torch.cat([z2, nu[1]], 1)

    # ------------------------------------------------------------ read-back
    def to_network(self, x: Tensor, tol: float = 0.0) -> ParallelReLUNetwork:
        """One sub-network per block with ||q_b||_F > tol; same function and path norm."""
        nrm = self.group_norms(x)
        keep = torch.nonzero(nrm > tol).flatten()
        q = x[keep]  # (K, m, d)
        K = q.shape[0]
        dt, dev = x.dtype, x.device
        outw = torch.zeros(K, self.c, dtype=dt, device=dev)
        if self.depth == 2:
            a = nrm[keep].sqrt()
            W = q / a[:, None, None]
            outw[torch.arange(K), self.blocks.outputs[keep]] = self.eps[keep] * a
            w2 = None
        else:
            alpha = nrm[keep] ** (1.0 / 3.0)
            qn = torch.linalg.vector_norm(q, dim=2)  # (K, m)
            rho = (qn / alpha[:, None]).sqrt()
            W = torch.where(qn[..., None] > 0,
                            q / (alpha[:, None, None] * rho[..., None]).clamp_min(1e-300),
                            torch.zeros_like(q))
            w2 = self.sig[keep] * rho
            outw[torch.arange(K), self.blocks.outputs[keep]] = self.eps[keep] * alpha
        if self.intercept:
            W1, b1 = W[..., :-1], W[..., -1]
        else:
            W1, b1 = W, torch.zeros(W.shape[:2], dtype=dt, device=dev)
        return ParallelReLUNetwork(W1.contiguous(), b1.contiguous(), w2, outw)

    @classmethod
    def from_network(cls, net: ParallelReLUNetwork, X: Tensor, Y: Tensor, reg: float,
                     loss: str | Loss = "squared", *, intercept: bool = True,
                     extra_blocks: ParallelBlocks | None = None
                     ) -> tuple[ParallelProgram, Tensor]:
        """Reverse map: a program whose first blocks are the network's own sub-networks (plus
        ``extra_blocks``) and the variables reproducing it. Needs single-output sub-networks.

        Sub-network k ↦ q_j = w̃_j |a_j| ||v||, σ_j = sign a_j, ε = sign v_t: the convex objective
        equals the network's objective exactly (path norm = Σ ||q_k||_F)."""
        net = net.to(device=X.device, dtype=X.dtype)
        Wa, t, eps, vnorm = network_pieces(net, intercept)
        if net.depth == 2:
            a = torch.ones(Wa.shape[:2], dtype=X.dtype, device=X.device)
            sig = torch.ones_like(a)
        else:
            a = net.second_layer_weights
            sig = torch.where(a < 0, -1.0, 1.0).to(X.dtype)
        q = Wa * (a.abs() * vnorm[:, None])[..., None]
        # witness gates: w̃_j itself fixes D_1j; scaled by |a_j| it fixes D_2 as the network does
        gates = Wa * a.abs()[..., None]
        blocks = ParallelBlocks(gates, sig, t, eps)
        if extra_blocks is not None:
            eb = extra_blocks.to(device=X.device, dtype=X.dtype)
            m2 = None
            if eb.second_masks is not None:  # the network's own patterns, then the explicit ones
                m2 = torch.cat([blocks.masks(X)[1], eb.second_masks], 1)
            blocks = ParallelBlocks(torch.cat([gates, eb.gates]), torch.cat([sig, eb.signs]),
                                    torch.cat([t, eb.outputs]), torch.cat([eps, eb.eps]),
                                    second_masks=m2)
            q = torch.cat([q, torch.zeros_like(eb.gates)])
        prog = cls(X, Y, blocks, reg, loss, depth=net.depth, intercept=intercept)
        return prog, q


def network_pieces(net, intercept: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(first-layer weights with the bias as a last column (K, m, d), output index t, sign ε,
    |v_t|) of a parallel network whose sub-networks feed one output each."""
    Wa = net.first_layer_weights
    if intercept:
        Wa = torch.cat([Wa, net.first_layer_bias[..., None]], -1)
    elif bool((net.first_layer_bias != 0).any()):
        raise ValueError("the network has a first-layer bias but intercept=False")
    V = net.output_weights
    if bool(((V != 0).sum(1) > 1).any()):
        raise ValueError("from_network needs single-output sub-networks (one non-zero "
                         "output weight each)")
    t = V.abs().argmax(1)
    vt = V[torch.arange(V.shape[0]), t]
    return Wa, t, torch.where(vt < 0, -1.0, 1.0).to(Wa.dtype), vt.abs()


def certify(prog: ParallelProgram, x: Tensor, nu: tuple[Tensor, Tensor] | None = None,
            refine: int = 50, tol: float | None = None) -> Certificate:
    """Certificate of the network read back from x, always for a *feasible* point.

    If x violates its cones (an inexact first-order iterate), the read-back network uses
    patterns outside the blocks; it is then re-mapped onto its own blocks
    (:meth:`ParallelProgram.from_network`, where it is exactly feasible with the same objective)
    and certified for the program over (its blocks ∪ ``prog``'s blocks), with ν extended by 0.
    Violations ≤ ``tol``·(1 + max|Xq|) (solver round-off; default max(1e-8, 1e3·machine
    epsilon of x's dtype)) are kept and reported in ``constraint_violation``: the bound stays
    valid (the dual is a lower bound of the program over the blocks whatever the point), only
    the network's patterns may differ from the blocks' on round-off rows.
    """
    if tol is None:
        tol = max(1e-8, 1e3 * torch.finfo(x.dtype).eps)
    XQ = prog.linear(x)
    scale = 1.0 + float(XQ.abs().max()) if XQ.numel() else 1.0
    if prog.violation(XQ) <= tol * scale:  # interior-point round-off: reported, not repaired
        return prog.certificate(x, nu, refine=refine, state=XQ)
    net = prog.to_network(x)
    big, q = type(prog).from_network(net, prog.X, prog.Y, prog.reg, prog.loss,
                                     intercept=prog.intercept, extra_blocks=prog.blocks)
    nu2 = None if nu is None else prog.extend_multipliers(nu, big.B - prog.B)
    if prog.exhaustive:  # a superset of every index: still the exact program
        big.block_source = prog.block_source
    cert = big.certificate(q, nu2, refine=refine)
    cert.problem = prog.description() + " ∪ the read-back network's own blocks"
    return cert
