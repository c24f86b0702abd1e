r"""Vector-output two-layer ReLU networks as copositive programs (Sahiner et al., ICLR 2021).

Problem (weight decay β = ``reg``, loss summed over samples, X with a ones column for a bias)::

    p* = min_{m, u_j, v_j}  L( Σ_j (X u_j)_+ v_jᵀ , Y ) + (β/2) Σ_j (||u_j||² + ||v_j||²)
       = min  L( Σ_j (X u_j)_+ g_jᵀ , Y ) + β Σ_j ||g_j||   s.t. ||u_j|| = 1        (rescaling)

Its convex (Fenchel) dual is the semi-infinite program ::

    d* = max_Λ −L*(Λ)   s.t.   h(Λ) := max_{||u|| ≤ 1} ||Λᵀ (X u)_+||₂ ≤ β,

and weak duality holds for *every* network: L(F) ≥ <Λ, F> − L*(Λ) ≥ −β Σ ||u_j|| ||v_j|| − L*(Λ)
when h(Λ) ≤ β, and Σ ||u_j|| ||v_j|| ≤ ½ Σ (||u_j||² + ||v_j||²). Grouping u by activation pattern
(cells C_p of the arrangement of X, cones K_p = closure of C_p = {u : (2D_p − I) X u ≥ 0}),

    h(Λ) = max_p h_p(Λ),   h_p(Λ) = max_{u ∈ K_p, ||u|| ≤ 1} ||Λᵀ D_p X u||,

a *cone-constrained PCA* per pattern: max uᵀ R_p u over K_p ∩ unit ball, R_p = Xᵀ D_p Λ Λᵀ D_p X.
The primal is the copositive program min L(Σ_p D_p X V_p, Y) + β Σ_p ||V_p||_{*,K_p} (math.md §3).

What this module computes, and what each is:

* :func:`fit_exact` — **exact global optimum** for data of small rank r (all patterns enumerated
  by :mod:`convexnn.patterns`). Solver: *column generation* (fully corrective conditional
  gradient) on the atoms (X u)_+ gᵀ: a master problem — group-lasso over the current unit
  directions u_k, min_G L(Σ_k (X u_k)_+ g_kᵀ) + β Σ_k ||g_k||, solved accurately (squared loss: one
  conic QP handed straight to Clarabel, no modelling layer; other losses: CVXPY; FISTA without
  either) — alternates with the **exact oracle**, which evaluates h_p(Λ) for every
  pattern at Λ = ∇L(F) and adds the maximisers of the violated patterns. The master's solution *is*
  a network (neuron u_k·√||g_k||, output g_k/√||g_k||, balanced), so the primal value is attained
  by the returned network; the dual value −L*(sΛ), s = min(1, β / max_p h_p), is a proven lower
  bound on p* because the patterns are exhaustive and the oracle exact. Stops when the relative gap
  is ≤ tol: then ``certificate.scope == "global"``. This follows the paper's recipe (enumerate
  patterns, solve with an exact cone-constrained PCA oracle); the paper's Algorithm uses plain
  Frank–Wolfe with step 2/(2+k) (papers.md §2.5) — we use the fully corrective variant because it
  reaches 1e-6 relative gaps in tens of iterations instead of thousands.
* **Pruning** (:mod:`.prune`): every fit is reduced to at most n·c + 1 neurons with the same
  predictions and objective (Carathéodory over the atoms; :func:`prune_network` for any network).
* **Exact oracle** (:class:`ConeFaces`): the maximiser of uᵀ R u on K ∩ sphere lies in the relative
  interior of a face F of K, where it is a stationary point of the Rayleigh quotient on span(F),
  hence a top eigenvector of R restricted to span(F) (local maxima of a quadratic form on a sphere
  are global); if that top eigenspace is not simple the value is also attained on a lower face. So
  max = the largest top eigenvalue over the faces whose top eigenvector (±) lies in K. We work in
  the row space of X (r dims), find the facets of each K_p from cell adjacency when the patterns
  are exhaustive (flip one sign, look the sign vector up), else from the convex hull of its dual
  cone's generators (scipy/qhull), and enumerate the face spans ∩_{j∈S} {f_jᵀy = 0}, |S| < r:
  O(C(f_p, <r)) small eigenproblems per pattern, batched. (This is the exhaustive face search the
  paper describes; our face bookkeeping via facets is our own.)
* :func:`fit_relaxation` — the paper's **copositive relaxation**: the equivalent completely
  positive program min_{G_p ∈ C_p} ½ tr(Yᵀ M⁻¹ Y) + β² Σ tr G_p, M = I + 2 Σ D_p X G_p Xᵀ D_p, with
  C_p = conv{uuᵀ : u ∈ K_p} replaced by {G ⪰ 0 : F_p G F_pᵀ ≥ 0 entrywise} (F_p: facet rows of
  K_p; equivalent to using all n rows of (2D_p − I)X, since every row is a non-negative
  combination of facet rows). A *relaxation*: its value is ≤ the program over the same patterns.
  Reported: the proven lower bound (dual value at Z = M⁻¹Y, rescaled by the exact oracle so that it
  is dual feasible — solver inaccuracy cannot overstate it), the objective of the network read
  back from it (eigenvectors of G_p as hidden directions, output weights by the master problem: an
  upper bound), and the tightness (upper − lower)/upper. The relaxation is exact when r ≤ 2
  (every cone in R² is simplicial and CP = DNN in dimension ≤ 4) and whenever the optimal G_p have
  rank one; over sampled patterns it bounds only the sampled program (scope "sampled patterns").
* :func:`exact_sdp_reference` — an *independent* exact formulation for rank ≤ 3 used as the test
  reference: each cone K_p is triangulated into simplicial cones K_{p,t} (fan of its extreme
  rays); the unit ball of ||·||_{*,K_p} is the convex hull of the union of the unit balls of
  the ||·||_{*,K_{p,t}},
  and for a simplicial cone in dimension ≤ 4 the gauge is exactly
  min ½(tr A + tr B) s.t. [[A, V], [Vᵀ, B]] ⪰ 0, F_t A F_tᵀ ≥ 0 (its SDP dual is the dual-norm
  ball, i.e. copositivity of I − ΛΛᵀ on K_t, which equals PSD + F_tᵀ N F_t, N ≥ 0, by Diananda's
  theorem for dimension ≤ 4). Solved by CVXPY (Clarabel).
* :func:`fit_svd` — closed-form **soft-thresholded SVD**. If X is *spike-free*,
  {(Xu)_+ : ||u|| ≤ 1} ⊆ {Xz : ||z|| ≤ 1}, the ReLU features equal {Xz : ||z|| ≤ 1, Xz ≥ 0} and
  p* ≥ the nuclear-norm problem min ½||XW − Y||² + β||W||_* (drop Xz ≥ 0), with equality when its
  solution factors with Xz_k ≥ 0. Whitened data XXᵀ = I (n ≤ d) is spike-free (z = Xᵀ(Xu)_+) and
  the nuclear problem reduces to A = XW: A* = Σ_k (σ_k − β)_+ a_k b_kᵀ from the SVD of Y; it is
  the ReLU optimum iff every retained left singular vector a_k is sign-definite (one neuron
  u_k = Xᵀ a_k √(σ_k − β), v_k = b_k √(σ_k − β) each). Data with XᵀX = I (n ≥ d) give
  W* = SVT_β(XᵀY), exact iff X is spike-free (checked exactly with the oracle when the arrangement
  is enumerable) and X z_k ≥ 0 (or ≤ 0) for the retained left singular vectors z_k. Anything else
  is refused (or flagged with ``on_violation="warn"``, with an honest certificate).
  These conditions are our derivation from the definitions above (not taken from the paper's
  theorem statement); each is checked numerically against the exhaustive solve
  :func:`fit_exact` in ``tests/test_copositive.py`` (whitened one-hot targets, orthonormal
  spike-free columns, and a violated case that the exact solve proves sub-optimal).
* :func:`fit_column_generation` — the *active-set / column-generation mode for sampled
  patterns*: the same solver with the oracle scanning a large pool of sampled patterns (fresh
  pools each round), adding patterns whose dual constraint is violated until none is found. Its
  certificate proves optimality over the scanned patterns only (scope "sampled patterns").

Squared loss is the primary target; ``fit_exact`` and ``fit_column_generation`` also accept the
logistic and cross-entropy losses (the dual certificate holds for any convex loss);
``fit_svd`` and ``fit_relaxation`` are squared-loss only and refuse others.
"""

from .exact import fit_column_generation, fit_exact, solve_exact_program
from .master import atoms_to_network, solve_master
from .oracle import ConeFaces, cone_constrained_pca
from .prune import prune_network
from .reference import exact_sdp_reference
from .relaxation import fit_relaxation, relaxation_cvxpy
from .svd import fit_svd

__all__ = ["ConeFaces", "cone_constrained_pca", "solve_exact_program", "fit_exact", "fit_svd",
           "fit_relaxation", "fit_column_generation", "exact_sdp_reference", "relaxation_cvxpy",
           "atoms_to_network", "solve_master", "prune_network"]
