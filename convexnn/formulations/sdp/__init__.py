r"""Completely positive program of two-layer ReLU training and its SDP relaxation.

Prakhya, Birdal & Yurtsever (ICLR 2025, arXiv 2410.22311); papers.md §5, math.md §6.

**Training problem** (any width m, squared loss, weight decay β = ``reg``; X carries a ones
column when the first layer has a bias)::

    p* = inf_{m, u_j, v_j}  ½ ||Σ_j (X u_j)_+ v_jᵀ − Y||_F² + (β/2) Σ_j (||u_j||² + ||v_j||²).

**Lifting.** Per neuron λ_j = (α_j, β_j, u_j, v_j) ∈ R^{2n+d+c} with α_j = (X u_j)_+, β_j =
(−X u_j)_+, so X u = α − β, α, β ≥ 0, α ∘ β = 0. With Λ = Σ_j λ_j λ_jᵀ (blocks α|β|u|v)::

    (CP)  min_Λ  ½ ||Λ_αv − Y||² + (β/2)(tr Λ_uu + tr Λ_vv)
          s.t.   M Λ Mᵀ = 0  (M λ = X u − α + β),   tr Λ_αβ = 0,
                 Λ ∈ CP = conv{λλᵀ : λ_α, λ_β ≥ 0}

is *exact* (optimal value p*): every summand of the two trace constraints is ≥ 0, so each
neuron of a CP decomposition satisfies the ReLU exactly, and the network's objective is linear
in Λ. It is NP-hard because of the CP cone; we never solve it.

**SDP relaxation** (what the paper's code solves, papers.md §5.3): replace CP by the
doubly-nonnegative cone — Λ ⪰ 0 and Λ_{[αβ],[αβ]} ≥ 0 entrywise — and impose the complementarity
as diag(Λ_αβ) = 0. Its optimum p_SDP ≤ p*: a *relaxation*, a lower bound valid for networks of
every width. We solve it in **reduced coordinates** (facial reduction, exactly equivalent): for
Λ ⪰ 0, M Λ Mᵀ = 0 ⇔ range(Λ) ⊆ null(M) = {(b + X u, b, u, v)}, so Λ = T Z Tᵀ with Z ⪰ 0 of
size q = n + d + c (coordinates b | u | v, Z is Λ's β,u,v sub-block) and ::

    (SDP)  min_{Z ⪰ 0}  ½ ||Z_bv + X Z_uv − Y||² + (β/2)(tr Z_uu + tr Z_vv)
           s.t.  Λ_αβ = Z_bb + X Z_ub  has zero diagonal,
                 Λ_αα = Z_bb + X Z_ub + Z_bu Xᵀ + X Z_uu Xᵀ ≥ 0,  Λ_αβ ≥ 0,  Λ_ββ = Z_bb ≥ 0.

(``to_cvxpy(form="paper")`` is the independent reference: the paper's Λ with its selection
matrices, reduced through a numerical basis of null(M); the tests check it gives the same value.
The authors' unreduced model with M Λ Mᵀ = 0 has no strictly feasible point and is unreliable in
CVXPY — ``form="paper_unreduced"``, see :meth:`SDPRelaxation.to_cvxpy`.)

**Dual and the certified lower bound.** For any Γ (n x c), ω ∈ R^n and N ≥ 0 (2n x 2n,
multiplier of Λ_{[αβ],[αβ]} ≥ 0), Fenchel–Young on the loss gives, for every feasible Z,
objective ≥ −L*(Γ) + <S(Γ, ω, N), Z> with L*(Γ) = ½||Γ||² + <Γ, Y> and

    S = (β/2) diag(0, I_d, I_c) + sym-embedding of  Γ ↦ Z_bv + X Z_uv,  ω ↦ diag(Z_bb + X Z_ub),
        minus  T_abᵀ N T_ab,  T_ab = [[I, X], [I, 0]] on (b, u).

So S ⪰ 0 ⇒ −L*(Γ) ≤ p_SDP ≤ p*. The point D₀ = (Γ = 0, ω = δ·1, N = 0) has S(D₀) ≻ 0 for small
δ > 0 (a strictly feasible dual point). Given any estimate D (multipliers of a solver), with
λ_min(S(D)) = −ε, the blend (1 − θ) D + θ D₀, θ = ε / (ε + λ_min(S(D₀))), is dual feasible (S is
affine in D), and its value −L*((1 − θ) Γ) is a **proven lower bound** (eigenvalues computed in
float64 with a rounding margin). This is how both CVXPY's and our solver's duals are certified;
no primal value of an inexact solve is ever reported as a bound. Since λ_min(S(D₀)) ≤ β/2, this
"blend" repair needs λ_min(S(D)) accurate *relative to β*. The ADMM and the CVXPY path
therefore also certify Γ alone by the **neuron SDP** (:meth:`SDPRelaxation.neuron_bound`,
:mod:`convexnn.formulations.sdp_neuron`): with φ̄ a proven upper bound on the
doubly-nonnegative relaxation of max_{||u||≤1} ¼||Γᵀ(Xu)_+||², every −L*(sΓ) with
s ≤ β/(2√φ̄) is a lower bound on p_SDP; φ is scale-free, so first-order accuracy suffices (it
is what certifies an SCS solution), and the better of the two bounds is reported
(``DualBound.method``).

**Network extraction (upper bound).** Any network's objective upper-bounds p*. Two read-backs
(``fit_sdp(rounding=...)``): the paper's three-operator-splitting rounding (:mod:`.rounding`,
``"tos"``), and ours (``"polish"``, the default; its networks are far better than the
splitting's on every problem of benchmarks/results/sdp.md, part 9): (1) a pool of candidate
first-layer directions — the u-parts ±W_u of the eigenvectors of Z scaled by √eigenvalue (and of
the solver's factor); (2) the optimal output layer for these fixed unit directions, a convex
group lasso min_V ½||H Vᵀ − Y||² + β Σ_k ||v_k|| with H = (X û_k)_+ (exactly the weight-decay
objective after balancing each neuron), solved by FISTA; (3) local polishing of all weights by
L-BFGS on the non-convex objective. The gap  network objective − certified lower bound  is the
*tightness* reported; when it is ≈ 0 the network is a certified global optimum over all widths.

**Solvers / limits.** ``solver="ipm"`` (:func:`solve_ipm`, structured interior point with a
working set of the entrywise constraints) is accurate to ~1e-7 and the default up to n = 80;
its Schur complement grows with the working set, which limits it to a few hundred samples.
``solver="admm"`` (:func:`solve_admm`, first-order with restarted momentum, all
constraints; per iteration the positive eigenpairs of one q x q matrix — LAPACK's subset
driver on CPU — and products with the block Cholesky factor of TᵀT in O(n d q); from q = 700
on float32 iterates until they stall below a 1e-2 gap, then float64) is the default above
n = 80; it reaches 1e-3–1e-4 certified accuracy at a few hundred samples, and its accuracy
at n = 1000 is measured in benchmarks/results/sdp.md. ``solver="cvxpy"`` (Clarabel) is the
independent reference for small n (≈ 40–75). ``solver="lowrank"``
(:mod:`convexnn.solvers.lowrank_sdp`, Burer–Monteiro AL) matches CVXPY on small n but
converges slowly beyond n ≈ 40. Every solver's bound is
*valid* whatever its accuracy (it is certified, not read off the solver). Not implemented:
the paper's test-set threshold tuning protocol (deliberately; the benchmark reports it apart).
"""

from __future__ import annotations

from .lifting import congruence, lift_factor, lift_rows, off_pair_mask
from .neuron import NeuronBound, neuron_sdp_bound, scaled_gamma_bound
from .readback import extract_network, group_lasso_output, polish_network
from .relaxation import DualBound, SDPRelaxation, normalised, unscale_primal
from .rounding import TOSRounding, lifted_matrix, project_relu, round_tos

__all__ = ["SDPRelaxation", "DualBound", "fit_sdp", "extract_network", "polish_network",
           "solve_ipm", "solve_admm", "NeuronBound", "neuron_sdp_bound", "scaled_gamma_bound",
           "congruence", "lift_factor", "lift_rows", "off_pair_mask", "group_lasso_output",
           "normalised", "unscale_primal", "round_tos", "TOSRounding", "lifted_matrix",
           "project_relu"]

# the drivers live in the pipeline layer (convexnn.pipelines.sdp); importing them here lazily
# keeps the old path ``convexnn.formulations.sdp.fit_sdp`` working without an import cycle
_DRIVERS = ("fit_sdp", "solve_ipm", "solve_admm")


def __getattr__(name: str):
    if name in _DRIVERS:
        from importlib import import_module

        return getattr(import_module("convexnn.pipelines.sdp"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
