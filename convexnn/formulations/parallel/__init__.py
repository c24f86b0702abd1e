r"""Convex program of path-regularised deep parallel ReLU networks (Ergen & Pilanci, NeurIPS 2023).

Model (:mod:`convexnn.networks.parallel`): K sub-networks, each with m first-layer neurons
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
sub-network) are implemented here; any depth L ≥ 4 in :mod:`.tree` / :mod:`.tree_program`
(derived here, as for depth 3): *tree-structured* sub-networks, every hidden unit feeding one
unit of the next layer with branching ``width`` at every level. With all patterns fixed the
output is linear in the path variables q_leaf = w̃ |a_2| … |a_{L−1}| ||v||, the l2 path norm is
||q||_F, and each level adds one family of cone rows, so the same cone-constrained group lasso
results (same solvers: the structured interior point, Clarabel, CVXPY, the augmented
Lagrangian; same column generation; an exhaustive enumeration for tiny low-rank data in
:mod:`.tree_exhaustive`). For *dense* layers of fixed width (a unit feeding several next-layer
units) the path variables of one first-layer neuron would have to stay parallel (rank one
across its outgoing paths); dropping that constraint gives the program of the tree with
duplicated neurons, whose path norm differs because the l2 path norm is not invariant to
splitting a neuron, so for dense deeper networks this program is a relaxation, not exact, and
is not offered. K = 1 gives a standard three-layer network of widths (m, 1).

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

and the same bounds hold with X and X_r exchanged. Verified numerically against the exhaustive
optima p*(X), p*(X_r) (both certified globally) on small nearly-low-rank cases in
``tests/test_parallel.py::test_approximation_bound_against_exhaustive_optima`` (κ = 1.9–2.4,
measured objective(X)/p*(X) = 1.002–1.006). The solution's first-layer weights lie in
the row space of X_r (projected explicitly), so X q = X_r q and the read-back network's
objective on the true X *equals* its objective on X_r; hence, when the X_r program is solved
over *all* its patterns with relative gap g, objective(X) ≤ κ (1 + g) p*(X). Each fit reports
σ_{r+1} and κ; with sampled patterns the bound is reported but flagged
(``patterns_exhaustive: False``): the sampled X_r program is only a restriction; with
``method="exhaustive"`` the X_r program is solved over all its blocks and ``ratio_bound`` =
κ · primal / dual ≥ objective(X) / p*(X) is reported.

Certificates: for Λ = ∇L at the read-back network's predictions and multipliers ν ≥ 0 of the
cone constraints C_s = {B_s q ≥ 0}, max_{q ∈ C_s, ||q||_F ≤ 1} <−A_sᵀΛ, q> ≤ ||−A_sᵀΛ + B_sᵀν_s||_F;
scaling Λ (and ν) by s = min(1, β / max_s(bound)) makes −L*(sΛ) a valid lower bound of the
program over the blocks, and the primal is the *network's* objective (always attained), so
``gap`` bounds the network's sub-optimality for the program over the blocks used (sampled or
found by column generation): "optimal over these patterns". Over *every* block
(:mod:`.exhaustive`, ``method="exhaustive"``: exact enumeration for low-rank data, exponential in
r·m) the program is the exact one and the certificate has scope "global": the gap then bounds
the network's distance to p* of the architecture (tested against CVXPY, against the two-layer
program at depth 2 and against Adam from random starts).

Modules: :mod:`.blocks` (pattern blocks), :mod:`.program` (the program, read-back,
certificate), :mod:`.augmented` (augmented Lagrangian terms), :mod:`.conic_form` (CVXPY and
sparse conic forms), :mod:`.approximation` (low-rank approximation and its bound),
:mod:`.pricing` (the dual pricing search), :mod:`.kkt` (structured Newton systems),
:mod:`.interior` and :mod:`.clarabel` (solvers over a block set); the drivers ``solve``,
``solve_pruned``, ``fit_parallel`` and column generation live in
:mod:`convexnn.pipelines.parallel` and are re-exported here lazily.

Verification: the program is checked against CVXPY (Clarabel) on small problems, and the
read-back identity "non-convex path-regularised objective = convex objective" in the tests.
"""

from __future__ import annotations

from .approximation import approximation_bound, low_rank
from .blocks import ParallelBlocks, sample_blocks
from .conic_form import cvxpy_multipliers, cvxpy_solution, to_cvxpy
from .program import ParallelProgram, certify

__all__ = ["ParallelBlocks", "ParallelProgram", "sample_blocks", "to_cvxpy", "cvxpy_solution",
           "cvxpy_multipliers", "solve", "solve_pruned", "certify", "low_rank",
           "approximation_bound", "fit_parallel", "SOLVERS"]

_DRIVERS = ("solve", "solve_pruned", "fit_parallel", "SOLVERS")


def __getattr__(name: str):
    # the drivers live one layer up (pipelines); imported on first use, so no import cycle
    if name in _DRIVERS:
        from ...pipelines import parallel as _pipeline

        return getattr(_pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
