r"""Convex program of path-regularised deep parallel ReLU networks (Ergen & Pilanci, NeurIPS 2023).

Model (:mod:`convexnn.networks_parallel`): K sub-networks, each with m first-layer neurons
(augmented weights w̃_j = [w_j; b_j] ∈ R^d, X carries a ones column for the bias), one
second-layer ReLU unit (weights a ∈ R^m) and output weights v ∈ R^c::

    f(X) = Σ_k ( Σ_j (X w̃_kj)_+ a_kj )_+ v_kᵀ,     R(θ) = Σ_k ||v_k|| sqrt(Σ_j ||w̃_kj||² a_kj²)

(R = the l2 norm over all input→output paths of each sub-network of the product of the path's
weights, summed over sub-networks) and the non-convex training problem

    p* = min_θ  L(f(X), Y) + β R(θ)          (L summed over samples, β = ``reg``).

Which regulariser, and why (papers.md §3 CAUTION): the paper states the problem with an l2
path norm per sub-network summed over sub-networks ("group" sparsity over sub-networks). The
l2-over-paths norm inside a sub-network is *not* invariant to splitting a first-layer neuron
into copies, so the width m is fixed (a hyper-parameter) and only K is free; this is the form
implemented. Depth 2 (m = 1, no second layer) is the two-layer special case, R = Σ ||w̃|| ||v||.

**Exact convex program** (derived here; structure as in papers.md §3.2, the paper's own
equations could not be read — see "verification" below). Put q_j = w̃_j |a_j| ||v|| ∈ R^d,
σ_j = sign(a_j), ε = ±1 and t the output of a single-output sub-network (v = ε||v|| e_t). By
positive homogeneity of the ReLU the sub-network computes ε e_t (Σ_j σ_j (X q_j)_+)_+ and its
path norm is ||q||_F. Fix first-layer patterns D_{1j} = diag(1[X q_j ≥ 0]) and the second-layer
pattern D_2 = diag(1[Σ_j σ_j (X q_j)_+ ≥ 0]); on the polyhedral cone

    C_s = { q ∈ R^{m x d} : (2D_{1j} − I) X q_j ≥ 0 ∀j,  (2D_2 − I) Σ_j σ_j D_{1j} X q_j ≥ 0 }

the sub-network output is *linear* in q: ε e_t D_2 Σ_j σ_j D_{1j} X q_j. With one block per index
s = (D_{11..1m}, σ, D_2, t, ε) ("block" below) the program is the cone-constrained group lasso

    min_{q_s ∈ C_s}  L( Σ_s ε_s e_{t_s} ⊗ D_{2,s} Σ_j σ_{sj} D_{1,sj} X q_{sj}, Y )
                     + β Σ_s ||q_s||_F.

Equivalence: every network maps to a feasible point with the same objective (two sub-networks
with the same index merge: C_s is a convex cone and ||·||_F is subadditive), and every feasible
point reads back (:meth:`ParallelProgram.to_network`) to a network with one sub-network per
non-zero block and *exactly* the same objective. Hence over all indices the program equals p*
(for c = 1; for c > 1 it is exact for the architecture whose sub-networks each feed one output,
a restriction of vector-output sub-networks, so its value upper-bounds theirs), with
K* ≤ number of non-zero blocks at an optimum. Any subset of indices gives a restriction
(value ≥ p*); certificates then have scope "sampled patterns".

**Which blocks.** Sampling indices blindly (``method="sampled"``, :func:`sample_blocks`) covers
few of the O(n^{m r}) indices that matter: measured on breast_cancer / wine, the program over
60 sampled base blocks ends at 3.0x / 2.4x the objective Adam reaches on the same architecture,
the column-generation model at 0.82x / 0.87x (benchmarks/results/parallel.md).
:mod:`.parallel_cg` (``method="cg"``, the default) grows the block set where the dual says the
restriction binds — the dual constraint of the *full* program at Λ = ∇L(f(X)) is
max_{t, ε, σ, ||q||_F ≤ 1} ⟨−ε Λ_{:,t}, (Σ_j σ_j (X q_j)_+)_+⟩ ≤ β, and every sub-network q with
a larger value names a block (its own patterns) whose addition lowers the program's value and
*proves* the current network is not globally optimal. A batched local search over that
non-convex pricing problem supplies the blocks; the program over them is re-solved; repeat.

**Solvers** (:func:`solve`): the structured primal-dual interior-point method of
:mod:`.parallel_interior` (default), its barrier-method fallback, Clarabel on the sparse conic
form (:mod:`.parallel_clarabel`), CVXPY (the test reference) and the first-order augmented
Lagrangian (for problems too large to factorise).

Depth. Depth 2 (m = 1) and depth 3 (m first-layer neurons → one second-layer unit per
sub-network) are implemented. The construction extends (derived here, not implemented) to
deeper *tree-structured* sub-networks, where every hidden unit feeds one unit of the next layer:
with all patterns fixed the output is linear in the path variables q_path = w̃_1 |w_2| … |w_L|,
the l2 path norm is ||q||_F, and each layer adds one family of cone rows, so the same
cone-constrained group lasso results. For *dense* layers of fixed width (a unit feeding several
next-layer units) the path variables of one first-layer neuron must stay parallel (rank one
across its outgoing paths); dropping that constraint gives the program of the tree with
duplicated neurons, whose path norm differs because the l2 path norm is not invariant to
splitting a neuron, so for dense deeper networks this program is a relaxation, not exact.
K = 1 gives a standard three-layer network of widths (m, 1).

Size: the first-layer patterns number O(n^r) (r = rank X), the second-layer patterns of a block
are an arrangement in dimension ≤ m·r, so there are O(n^{m r}) of them: the exact program is
exponential in r·m (hence the paper's approximation).

**Polynomial-time approximation** (reconstructed, papers.md §3.3 [RECON]; the theorem of the
paper could not be read, so the bound below is *derived and proved here*, not quoted). Replace X
by its rank-r truncation X_r (SVD, σ_{r+1} = ||X − X_r||_2): all pattern counts become
polynomial in n (O(n^r) and O(n^{m r}) for constant r, m), and the program on X_r is solved.
Guarantee (proof in :func:`approximation_bound`): for every network θ,
||f_θ(X) − f_θ(X_r)||_F ≤ σ_{r+1} √m R(θ). Consequently, writing p*(·) for the optimal value,

* Lipschitz losses (logistic: G = 1, cross-entropy: G = √2 per sample, so ≤ G√n in l2):
  p*(X_r) ≤ (1 + G √n √m σ_{r+1} / β) p*(X);
* squared loss: p*(X_r) ≤ (1 + √m σ_{r+1} ||Y||_F / (2β))² p*(X);

and the same bounds hold with X and X_r exchanged. The solution's first-layer weights lie in
the row space of X_r (projected explicitly), so X q = X_r q and the read-back network's
objective on the true X *equals* its objective on X_r; hence, when the X_r program is solved
over *all* its patterns with relative gap g, objective(X) ≤ κ (1 + g) p*(X). Each fit reports
σ_{r+1} and κ; with sampled patterns the bound is reported but flagged
(``patterns_exhaustive: False``): the sampled X_r program is only a restriction.

Certificates: for Λ = ∇L at the read-back network's predictions and multipliers ν ≥ 0 of the
cone constraints C_s = {B_s q ≥ 0}, max_{q ∈ C_s, ||q||_F ≤ 1} <−A_sᵀΛ, q> ≤ ||−A_sᵀΛ + B_sᵀν_s||_F;
scaling Λ (and ν) by s = min(1, β / max_s(bound)) makes −L*(sΛ) a valid lower bound of the
program over the blocks, and the primal is the *network's* objective (always attained), so
``gap`` bounds the network's sub-optimality for the program over the blocks used (sampled or
found by column generation): "optimal over these patterns". No global claim is made: that
would need the pricing problem solved exactly (enumeration, exponential in r·m).

Verification: the program is checked against CVXPY (Clarabel) on small problems, and the
read-back identity "non-convex path-regularised objective = convex objective" in the tests.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..certificates import SCOPE_SAMPLED, Certificate, relative, scaled_dual
from ..losses import Loss, get_loss
from ..networks_parallel import ParallelReLUNetwork
from ..patterns import sample_gates
from ..results import FitResult
from ..solvers.base import SolverResult

__all__ = ["ParallelBlocks", "ParallelProgram", "sample_blocks", "to_cvxpy", "cvxpy_solution",
           "cvxpy_multipliers", "solve", "solve_pruned", "certify", "low_rank",
           "approximation_bound", "fit_parallel", "SOLVERS"]


# ------------------------------------------------------------------------------- blocks
@dataclass
class ParallelBlocks:
    """Indices s of the convex program, stored by *witness* gates (data-independent).

    ``gates`` (B, m, d): positive multiples of first-layer gates; the first-layer patterns are
    1[X g_j ≥ 0] and the second-layer pattern 1[Σ_j σ_j (X g_j)_+ ≥ 0] (so each block has a
    non-zero feasible point, its witness). ``signs`` (B, m) ±1, ``outputs`` (B,) in [0, c),
    ``eps`` (B,) ±1. Depth 2: m = 1, σ = +1 (the second-layer ReLU is then the identity).
    """

    gates: Tensor
    signs: Tensor
    outputs: Tensor
    eps: Tensor
    info: dict = field(default_factory=dict)

    @property
    def n_blocks(self) -> int:
        return int(self.gates.shape[0])

    def to(self, device=None, dtype=None) -> ParallelBlocks:
        return ParallelBlocks(self.gates.to(device=device, dtype=dtype),
                              self.signs.to(device=device, dtype=dtype), self.outputs.to(device),
                              self.eps.to(device=device, dtype=dtype), dict(self.info))

    def masks(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """First-layer masks (n, B, m) and second-layer masks (n, B) on the data X (float)."""
        XG = torch.einsum("nd,bmd->nbm", X, self.gates.to(X))
        M1 = (XG >= 0).to(X.dtype)
        h = (self.signs.to(X) * XG.clamp_min(0)).sum(-1)
        M2 = (h >= 0).to(X.dtype)
        return M1, M2


def _block_keys(M1: Tensor, signs: Tensor, M2: Tensor) -> list[bytes]:
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
    keys = _block_keys(M1, signs, M2)
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


# ------------------------------------------------------------------------------ program
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
        return (f"{head}: cone-constrained group lasso over {self.B} {self.block_source} "
                "pattern blocks (a restriction of the exact program)")

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
                             dict(b.info))
        sub = ParallelProgram(self.X, self.Y, blk, self.reg, self.loss, depth=self.depth,
                              intercept=self.intercept)
        sub.block_source = self.block_source
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
        nrm = self.group_norms(x)[:, None, None]
        return x * (1 - step * self.reg / nrm.clamp_min(1e-300)).clamp_min(0)

    # ------------------------------------------------------------ FISTA / AL protocol
    def smooth_value(self, XQ: Tensor) -> Tensor:
        return self.loss.value(self.predict(XQ), self.Y)

    def smooth_grad(self, XQ: Tensor) -> Tensor:
        return self.adjoint(self.data_grad_h(self.loss.grad(self.predict(XQ), self.Y)))

    def augmented(self, mu: tuple[Tensor, Tensor], rho: float) -> _Augmented:
        return _Augmented(self, mu, rho)

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
        z, prev, t = nu, nu, 1.0
        for _ in range(iters):
            G = self._dual_terms(lam, z)  # = AᵀΛ − Bᵀν
            XG = self.linear(G)
            g1 = -self.S1 * XG  # −B₁ G
            g2 = -self.S2 * self.pre2(XG)
            new = ((z[0] - step * g1).clamp_min(0), (z[1] - step * g2).clamp_min(0))
            tn = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
            w = (t - 1) / tn
            z = (new[0] + w * (new[0] - prev[0]), new[1] + w * (new[1] - prev[1]))
            prev, t = new, tn
        return prev

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
                           scope=SCOPE_SAMPLED, problem=self.description(), n_patterns=self.B,
                           dual_scale=s, constraint_violation=self.violation(XQ))

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
        Wa = net.first_layer_weights
        if intercept:
            Wa = torch.cat([Wa, net.first_layer_bias[..., None]], -1)
        elif bool((net.first_layer_bias != 0).any()):
            raise ValueError("the network has a first-layer bias but intercept=False")
        V = net.output_weights
        nz = (V != 0).sum(1)
        if bool((nz > 1).any()):
            raise ValueError("from_network needs single-output sub-networks (one non-zero "
                             "output weight each)")
        t = V.abs().argmax(1)
        vt = V[torch.arange(V.shape[0]), t]
        eps = torch.where(vt < 0, -1.0, 1.0).to(X.dtype)
        vnorm = vt.abs()
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
            blocks = ParallelBlocks(torch.cat([gates, eb.gates]), torch.cat([sig, eb.signs]),
                                    torch.cat([t, eb.outputs]), torch.cat([eps, eb.eps]))
            q = torch.cat([q, torch.zeros_like(eb.gates)])
        prog = cls(X, Y, blocks, reg, loss, depth=net.depth, intercept=intercept)
        return prog, q


class _Augmented:
    """Smooth part of the augmented Lagrangian, FISTA protocol:
    f_ρ(x) = L(A x) + (1/2ρ)(||(μ₁ − ρ C₁(x))_+||² + ||(μ₂ − ρ C₂(x))_+||²) (C₂ for depth 3)."""

    def __init__(self, prog: ParallelProgram, mu: tuple[Tensor, Tensor], rho: float):
        self.prog, self.mu, self.rho = prog, mu, float(rho)
        self.penalty = prog.penalty
        self.prox = prog.prox
        self.linear = prog.linear

    def _shifted(self, XQ: Tensor) -> tuple[Tensor, Tensor]:
        c1, c2 = self.prog.constraints(XQ)
        s1 = (self.mu[0] - self.rho * c1).clamp_min(0)
        s2 = (self.mu[1] - self.rho * c2).clamp_min(0)
        if self.prog.depth == 2:
            s2 = torch.zeros_like(s2)
        return s1, s2

    def smooth_value(self, XQ: Tensor) -> Tensor:
        p = self.prog
        s1, s2 = self._shifted(XQ)
        return (p.loss.value(p.predict(XQ), p.Y)
                + ((s1**2).sum() + (s2**2).sum()) / (2 * self.rho))

    def smooth_grad(self, XQ: Tensor) -> Tensor:
        p = self.prog
        lam = p.loss.grad(p.predict(XQ), p.Y)
        s1, s2 = self._shifted(XQ)
        return p.adjoint(p.data_grad_h(lam) - s2 * p.S2, -s1 * p.S1)

    def updated_multipliers(self, XQ: Tensor) -> tuple[Tensor, Tensor]:
        return self._shifted(XQ)


def _lipschitz(prog: ParallelProgram, iters: int = 15, seed: int = 0) -> float:
    """Power-iteration estimate of ||A||² × loss smoothness (initial step size)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(prog.shape, generator=g, dtype=prog.X.dtype).to(prog.X.device)
    v /= torch.linalg.vector_norm(v)
    lam = 1.0
    for _ in range(iters):
        w = prog.adjoint(prog.data_grad_h(prog.predict(prog.linear(v))))
        lam = float(torch.linalg.vector_norm(w))
        if lam == 0 or not math.isfinite(lam):
            return 1.0
        v = w / lam
    return max(lam * prog.loss.smoothness, 1e-12)


# ----------------------------------------------------------------------------- CVXPY form
def to_cvxpy(prog: ParallelProgram):
    """The same program in CVXPY (small problems; the test reference).

    Returns ``(problem, Q)`` with ``Q[j]`` the d x B matrix of the j-th neuron of every block.
    """
    import cvxpy as cp

    X = prog.X.detach().cpu().double().numpy()
    Y = prog.Y.detach().cpu().double().numpy()
    M1 = prog.M1.detach().cpu().double().numpy()
    M2 = prog.M2.detach().cpu().double().numpy()
    sig = prog.sig.detach().cpu().double().numpy()
    eps = prog.eps.detach().cpu().double().numpy()
    E = prog.E.detach().cpu().double().numpy()
    Q = [cp.Variable((prog.d, prog.B)) for _ in range(prog.m)]
    cons = []
    h = 0
    for j in range(prog.m):
        XQ = X @ Q[j]
        cons.append(cp.multiply(2 * M1[:, :, j] - 1, XQ) >= 0)
        h = h + cp.multiply(M1[:, :, j] * sig[None, :, j], XQ)
    if prog.depth == 3:
        cons.append(cp.multiply(2 * M2 - 1, h) >= 0)
    Z = cp.multiply(M2 * eps[None, :], h) @ E
    pen = cp.sum(cp.norm(cp.vstack(Q), 2, axis=0))
    name = prog.loss.name
    if name == "squared":
        data = 0.5 * cp.sum_squares(Z - Y)
    elif name == "logistic":
        data = cp.sum(cp.logistic(-cp.multiply(Y, Z)))
    elif name == "cross_entropy":
        data = cp.sum(cp.log_sum_exp(Z, axis=1)) - cp.sum(cp.multiply(Y, Z))
    else:  # pragma: no cover
        raise NotImplementedError(f"no CVXPY form for loss {name!r}")
    return cp.Problem(cp.Minimize(data + prog.reg * pen), cons), Q


def cvxpy_solution(prog: ParallelProgram, Q) -> Tensor:
    arr = np.stack([q.value for q in Q], 0)  # (m, d, B)
    return torch.as_tensor(arr.transpose(2, 0, 1).copy(), dtype=prog.X.dtype,
                           device=prog.X.device)


def cvxpy_multipliers(prog: ParallelProgram, problem) -> tuple[Tensor, Tensor] | None:
    """The solver's multipliers ν ≥ 0 of the cone constraints (None if unavailable); clipped
    at 0 (any ν ≥ 0 gives a valid dual bound, so clipping is safe)."""
    try:
        cons = problem.constraints
        nu1 = np.stack([np.asarray(cons[j].dual_value) for j in range(prog.m)], -1)
        nu2 = (np.asarray(cons[prog.m].dual_value) if prog.depth == 3
               else np.zeros((prog.n, prog.B)))
    except (TypeError, ValueError, IndexError):
        return None
    kw = {"dtype": prog.X.dtype, "device": prog.X.device}
    return (torch.as_tensor(nu1, **kw).clamp_min(0), torch.as_tensor(nu2, **kw).clamp_min(0))


SOLVERS = ("auto", "pd", "barrier", "clarabel", "cvxpy", "al")


# ------------------------------------------------------------------------------- driver
def solve(prog: ParallelProgram, *, solver: str = "auto", tol: float = 1e-7,
          max_iter: int = 20000, max_time: float | None = None, check_every: int = 10,
          x0: Tensor | None = None, verbose: int = 0, cvxpy_solver: str | None = None,
          cvxpy_options: dict | None = None) -> tuple[Tensor, Certificate, SolverResult]:
    """Solve the program over its blocks. Returns ``(x, certificate, result)``; the certificate
    is that of the read-back network and ``result.extras["multipliers"]`` holds ν.

    ``solver``: ``"pd"`` (structured primal-dual interior point,
    :mod:`.parallel_interior`, the default through ``"auto"``), ``"barrier"`` (log-barrier
    method, same module), ``"clarabel"`` (Clarabel on the sparse conic form,
    :mod:`.parallel_clarabel`), ``"cvxpy"`` (any installed CVXPY solver, Clarabel by default; the
    test reference) or ``"al"`` (augmented Lagrangian + FISTA from :mod:`convexnn.solvers`,
    first-order, for problems too large to factorise). ``"auto"`` is ``"pd"``, or Clarabel when a
    block has no strictly feasible witness (a data point on one of its hyperplanes). ``x0``
    warm-starts ``"pd"``/``"barrier"`` (blocks where it is non-zero; it must lie in the cones)
    and ``"al"``."""
    from ..solvers import augmented_lagrangian
    from ..solvers.cvxpy_backend import solve_cvxpy

    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; expected one of {SOLVERS}")
    if solver in ("auto", "pd", "barrier"):
        from .parallel_interior import NotStrictlyFeasible, solve_interior

        # interior-point methods need float64 (their Newton matrices are ill-conditioned near
        # the optimum): a lower-precision program is solved in float64 and mapped back
        p64 = prog if prog.X.dtype == torch.float64 else prog.to_dtype(torch.float64)
        try:
            opts = {} if x0 is None else {"x0": x0.to(torch.float64)}
            x, nu, res = solve_interior(p64, method="barrier" if solver == "barrier" else "pd",
                                        tol=tol, max_time=max_time, verbose=verbose, **opts)
            x = x.to(prog.X.dtype)
            nu = (nu[0].to(prog.X.dtype), nu[1].to(prog.X.dtype))
        except NotStrictlyFeasible:
            if solver != "auto":
                raise
            return solve(prog, solver="clarabel", tol=tol, max_time=max_time, verbose=verbose)
        res.extras["multipliers"] = nu
        return x, certify(prog, x, nu, refine=0), res
    if solver == "clarabel":
        from .parallel_clarabel import solve_clarabel

        x, nu, res = solve_clarabel(prog, tol=tol, max_time=max_time, verbose=verbose)
        res.extras["multipliers"] = nu
        cert = certify(prog, x, nu, refine=0)
        res.extras["relative_gap"] = cert.relative_gap
        return x, cert, res
    if solver == "cvxpy":
        problem, Q = to_cvxpy(prog)
        res = solve_cvxpy(problem, solver=cvxpy_solver or "CLARABEL", verbose=bool(verbose),
                          **(cvxpy_options or {}))
        x = cvxpy_solution(prog, Q)
        # interior-point solutions are dense at ~1e-9: zero the negligible blocks (0 is in every
        # cone, and the certificate below is computed for the pruned point itself)
        nrm = prog.group_norms(x)
        x = x * (nrm > 1e-7 * float(nrm.max()))[:, None, None] if nrm.numel() else x
        nu = cvxpy_multipliers(prog, problem)
        res.extras["multipliers"] = nu
        cert = certify(prog, x, nu, refine=0 if nu is not None else 200)
        res.history.append(0, cert.primal, cert.gap, cert.relative_gap, res.seconds)
        res.extras["relative_gap"] = cert.relative_gap
        return x, cert, res
    x = prog.zeros() if x0 is None else x0
    L0 = _lipschitz(prog)

    def monitor(x_, s_, sub):
        c_ = prog.certificate(x_, sub.updated_multipliers(s_), state=s_)
        return c_.primal, c_.gap, c_.relative_gap

    res = augmented_lagrangian(prog, x, prog.zero_multipliers(), rho=prog.loss.smoothness,
                               tol=tol, max_iter=max_iter, max_time=max_time,
                               check_every=check_every, monitor=monitor, verbose=verbose)
    res.extras["initial_lipschitz"] = L0
    sub = prog.augmented(res.extras["mu"], res.extras["rho"])
    nu = sub.updated_multipliers(prog.linear(res.x))
    res.extras["multipliers"] = nu
    cert = certify(prog, res.x, nu, refine=50)
    res.extras["relative_gap"] = cert.relative_gap
    return res.x, cert, res


def solve_pruned(prog: ParallelProgram, *, solver: str = "auto", tol: float = 1e-7,
                 prune: float = 1e-6, max_time: float | None = None, verbose: int = 0,
                 **options) -> tuple[ParallelProgram, Tensor, Certificate, SolverResult]:
    """Solve, drop the blocks whose norm is ≤ ``prune``·max (interior-point solutions leave the
    blocks that are zero at the optimum at ~μ-sized norms) and re-solve over the kept blocks.

    Returns ``(kept program, x, certificate, result)``; the certificate is for the program over
    the kept blocks (dropping them afterwards without re-solving would perturb Λ and loosen the
    bound by ~||X||²·(dropped norms))."""
    t0 = time.perf_counter()
    x, cert, res = solve(prog, solver=solver, tol=tol, max_time=max_time, verbose=verbose,
                         **options)
    nrm = prog.group_norms(x)
    keep = nrm > prune * float(nrm.max()) if nrm.numel() and float(nrm.max()) > 0 \
        else torch.zeros_like(nrm, dtype=torch.bool)
    if bool(keep.all()):
        return prog, x, cert, res
    sub = prog.subset(keep)
    left = None if max_time is None else max(max_time - (time.perf_counter() - t0), 1.0)
    xs, cs, rs = solve(sub, solver=solver, tol=tol, max_time=left, verbose=verbose, **options)
    rs.extras["dropped_blocks"] = int((~keep).sum())
    rs.seconds += res.seconds
    return sub, xs, cs, rs


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
    big, q = ParallelProgram.from_network(net, prog.X, prog.Y, prog.reg, prog.loss,
                                          intercept=prog.intercept, extra_blocks=prog.blocks)
    nu2 = None
    if nu is not None:
        K = big.B - prog.B
        z1 = torch.zeros((prog.n, K, prog.m), dtype=x.dtype, device=x.device)
        z2 = torch.zeros((prog.n, K), dtype=x.dtype, device=x.device)
        nu2 = (torch.cat([z1, nu[0]], 1), torch.cat([z2, nu[1]], 1))
    cert = big.certificate(q, nu2, refine=refine)
    cert.problem = prog.description() + " ∪ the read-back network's own blocks"
    return cert


# ------------------------------------------------------------------ low-rank approximation
def low_rank(X: Tensor, rank: int) -> tuple[Tensor, float]:
    """Rank-``rank`` truncation X_r of X and σ_{r+1} = ||X − X_r||_2 (0 if rank ≥ rank X)."""
    U, s, Vh = torch.linalg.svd(X, full_matrices=False)
    r = int(rank)
    Xr = (U[:, :r] * s[:r]) @ Vh[:r]
    tail = float(s[r]) if r < s.shape[0] else 0.0
    return Xr, tail


def approximation_bound(loss: str | Loss, sigma_tail: float, width: int, reg: float,
                        Y: Tensor) -> dict:
    r"""The factor κ with p*(X_r) ≤ κ p*(X) (and p*(X) ≤ κ p*(X_r)); proof.

    Lemma: for a sub-network with parameters q (path norm ||q||_F) and inputs x, x',
    |g(x) − g(x')| ≤ Σ_j |σ_j((xᵀq_j)_+ − (x'ᵀq_j)_+)| ≤ Σ_j |(x − x')ᵀ q_j| (ReLU is
    1-Lipschitz, twice), so over the n rows ||g(X) − g(X')||_2 ≤ Σ_j ||(X − X')q_j||
    ≤ σ_{r+1} Σ_j ||q_j|| ≤ σ_{r+1} √m ||q||_F; summing sub-networks (output weights folded in),
    ||f(X) − f(X_r)||_F ≤ σ_{r+1} √m R(θ) =: δ(θ).
    Take θ* optimal for X; R(θ*) ≤ p*(X)/β (the loss is ≥ 0).
    * Lipschitz loss (per-row gradient norm ≤ G): L(f(X_r)) ≤ L(f(X)) + G √n δ, hence
      p*(X_r) ≤ p*(X) + G √n σ √m p*(X)/β.
    * Squared loss: √(2L(f(X_r))) ≤ √(2L(f(X))) + δ; with a = √(2L*), b = βR*, p = a²/2 + b,
      ½(a + c b)² + b ≤ p (1 + c √(p/2))² (a ≤ √(2p), b ≤ p), c = σ√m/β, and p ≤ ½||Y||².
    Exchanging X and X_r gives the reverse inequality.
    """
    lo = get_loss(loss)
    c = sigma_tail * math.sqrt(width) / reg
    n = Y.shape[0]
    if lo.name == "squared":
        kappa = (1.0 + c * float(torch.linalg.vector_norm(Y)) / 2.0) ** 2
        form = "(1 + sqrt(m) sigma_{r+1} ||Y||_F / (2 reg))^2"
    else:
        G = 1.0 if lo.name == "logistic" else math.sqrt(2.0)
        kappa = 1.0 + G * math.sqrt(n) * c
        form = "1 + G sqrt(n) sqrt(m) sigma_{r+1} / reg" + f" (G = {G:.4g})"
    return {"sigma_tail": float(sigma_tail), "kappa": float(kappa), "form": form,
            "statement": "p*(X_r) <= kappa p*(X) and p*(X) <= kappa p*(X_r) (derived; "
                         "see convexnn.formulations.parallel.approximation_bound)"}


def fit_parallel(X: Tensor, Y: Tensor, *, reg: float, depth: int = 3, width: int = 2,
                 n_patterns: int = 20, loss: str | Loss = "squared", random_state=None,
                 intercept: bool = True, rank: int | None = None, method: str = "cg",
                 solver: str = "auto", tol: float = 1e-7, max_iter: int = 20000,
                 max_time: float | None = None, verbose: int = 0, gate_kind: str = "gaussian",
                 cvxpy_solver: str | None = None, cg_options: dict | None = None) -> FitResult:
    """Fit the parallel network by its convex program and read the network back.

    ``method="cg"`` (default): column generation (:mod:`.parallel_cg`) from ``n_patterns``
    sampled base blocks, adding the blocks whose dual constraint a pattern search finds violated
    (``cg_options`` → :func:`.parallel_cg.fit_parallel_cg`). ``method="sampled"``: the program
    over ``n_patterns`` sampled base blocks only. ``rank`` switches to the polynomial-time
    approximation (program on the rank-``rank`` truncation of X, then projected; reported with
    its guarantee factor). ``X`` carries the ones column when ``intercept``. ``info`` reports
    the objective on X, the stop reason and the method's facts."""
    if method not in ("cg", "sampled"):
        raise ValueError(f"method must be 'cg' or 'sampled', got {method!r}")
    Xs, tail = (X, 0.0) if rank is None else low_rank(X, rank)
    rng = random_state if isinstance(random_state, np.random.Generator) \
        else np.random.default_rng(random_state)
    extra: dict = {}
    if method == "cg":
        from .parallel_cg import fit_parallel_cg

        res_cg = fit_parallel_cg(Xs, Y, reg=reg, depth=depth, width=width, loss=loss,
                                 intercept=intercept, n_init_blocks=n_patterns, tol=tol,
                                 max_time=max_time, solver=solver, random_state=rng,
                                 gate_kind=gate_kind, verbose=verbose,
                                 intercept_column=intercept and rank is None,
                                 **(cg_options or {}))
        prog, x, cert = res_cg.info.pop("_program"), res_cg.info.pop("_x"), res_cg.certificate
        nu = res_cg.info.pop("_multipliers")
        history, extra = res_cg.history, res_cg.info
        stop, n_iter, seconds = extra["stop_reason"], extra["n_rounds"], extra["seconds"]
    else:
        blocks = sample_blocks(Xs, n_patterns, width=width, depth=depth, n_outputs=Y.shape[1],
                               random_state=rng, gate_kind=gate_kind,
                               intercept_column=intercept and rank is None)
        prog0 = ParallelProgram(Xs, Y, blocks, reg, loss, depth=depth, intercept=intercept)
        opts = {"cvxpy_solver": cvxpy_solver} if solver == "cvxpy" else {}
        if solver == "al":
            opts["max_iter"] = max_iter
        prog, x, cert, res = solve_pruned(prog0, solver=solver, tol=tol, max_time=max_time,
                                          verbose=verbose, **opts)
        nu = res.extras.get("multipliers")
        history, stop, n_iter, seconds = res.history, res.stop_reason, res.n_iter, res.seconds
        extra = {"n_sampled_blocks": prog0.B}
    if rank is not None:
        # the optimal q lie in the row space of X_r (an orthogonal component changes nothing but
        # adds norm): project, so that X q = X_r q and the network's objective on X equals its
        # objective on X_r exactly
        Vr = torch.linalg.svd(Xs, full_matrices=False)[2][:rank]
        x = (x @ Vr.T) @ Vr
        cert = certify(prog, x, nu, refine=20)
    net = prog.to_network(x)
    info = {"stop_reason": stop, "n_iter": n_iter, "seconds": seconds,
            "n_blocks": prog.B, "n_subnetworks": net.n_subnetworks,
            "objective": net.objective(X[:, :-1] if intercept else X, Y, reg, loss),
            "program": cert.problem, **extra, "method": method}
    if rank is not None:
        m = 1 if depth == 2 else width
        info["approximation"] = dict(approximation_bound(loss, tail, m, reg, Y), rank=int(rank),
                                     objective_on_Xr=cert.primal, patterns_exhaustive=False)
    return FitResult(network=net, certificate=cert, history=history, info=info)
