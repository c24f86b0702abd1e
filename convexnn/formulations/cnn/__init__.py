r"""Convex programs of convolutional ReLU networks (Ergen & Pilanci, ICLR 2021, "Implicit convex
regularizers of CNN architectures").

The paper's full text was not available (papers.md §4: RECON). Every program below is derived
here from the stated non-convex model ([DERIVED]) and tested against an independent CVXPY
implementation and against the read-back torch network. Notation: images x_n, patches
x_{n,k} ∈ R^h at conv-output positions k = 1..K (:mod:`convexnn.patterns.patches`), X_k = patch k of
all samples, β = ``reg``, loss L summed over samples, gates g_p (p = 1..P) with patterns
D_{pk} = diag(1[X_k g_p ≥ 0]).

All programs share one shape (class :class:`ConeGroupProgram`)::

    min_x  L(A x, Y) + β Σ_groups w_g ||x_g||_2     s.t.  B x ≥ 0         (ReLU)
    min_x  L(A x, Y) + β Σ_p ||X_p||_*                                     (gated, nuclear)

with the last axis of x the group axis. Dual (any μ ≥ 0, Λ): −L*(Λ) ≤ optimum whenever
||(AᵀΛ − Bᵀμ)_g|| ≤ β w_g for every group; the certificate takes Λ = ∇L at the certified
point's predictions (and, for ADMM, also the solver's own estimate of ∇L), μ from the solver
(zero on cone rows outside the working set, see below), and scales Λ until feasible — a valid
lower bound for any μ ≥ 0. The reported primal value is always the non-convex objective of an
actual network: for the two-layer program the network read back from the iterate, whose
neurons are the true ReLUs of its blocks (so no feasibility is needed; when the iterate leaves
its cones the network uses patterns outside the sampled set and can even beat the sampled
program: primal < dual then only means that), or — ``primal="feasible"`` — the network of the
iterate's exact projection onto the cones, a feasible point of the program. ``solve`` returns
the point whose read-back network attains the primal value.

Solvers (``solve``): FISTA for the gated program, ADMM for the shared-filter one; for the cone
programs ADMM (:mod:`convexnn.solvers.admm`) with one cached factorisation (every cone's Gram
matrix BᵀB is an h x h block, so the normal equations reduce to an n x n Cholesky factor by
Woodbury, shared by all classes) and **cutting planes**: a cone K_{pq} has N·|W_q| rows but
only a few are facets near the solution, so the solver sees a working set of rows per cone
(initially the rows closest to the gate), and after each round the most violated rows of the
full cone are added. A multiplier vector on the working rows, extended by zeros, is a valid
μ ≥ 0 of the full program, so certificates never depend on the working set. The augmented
Lagrangian (``solver="al"``) runs on all rows (circular and three-layer programs).

1. **Two-layer CNN** :class:`ConvTwoLayerProgram` — conv (m filters u_j ∈ R^h) → ReLU →
   pooling (a windows W_q: global/local average, global/local max, or none) → Flatten →
   Linear (A_j ∈ R^{c x a} per filter), weight decay (β/2) Σ_j (||u_j||² + ||A_j||_F²).
   For gate p and window q the pooled ReLU is linear on the cone K_{pq}:

   * average (weights π = 1/|W_q|): E_{pq}(n) = π Σ_{k∈W_q} D_{pk}(n) x_{n,k},
     K_{pq} = {u : (2D_{pk} − I) X_k u ≥ 0, k ∈ W_q};
   * max: k*(n) = argmax_{k∈W_q} x_{n,k}ᵀ g_p, act(n) = 1[x_{n,k*}ᵀ g_p ≥ 0],
     E_{pq}(n) = act(n) x_{n,k*(n)}, K_{pq} = {u : (x_{n,k*} − x_{n,k})ᵀ u ≥ 0 (k ∈ W_q),
     (2 act(n) − 1) x_{n,k*}ᵀ u ≥ 0}; on K_{pq}, max_{k∈W_q} (x_{n,k}ᵀ u)_+ = E_{pq}(n)ᵀ u.

   ReLU program (x[s, p, q, c] ∈ R^h, s ∈ {+, −})::

       min L( Z ) + β Σ ||x[s,p,q,c]||,   Z[n,c] = Σ_{p,q} E_{pq}(n)ᵀ (x[+,p,q,c] − x[−,p,q,c]),
       s.t. x[s,p,q,c] ∈ K_{pq}.

   Which variants are exact (equal to the non-convex training problem's optimum once the
   patterns are complete and the width is at least the number of non-zero blocks):

   * **global average pooling, scalar target (c = 1): exact** over all patterns of the stacked
     patch matrix [X_1; …; X_K] (the paper's ℓ2 group-lasso program; with
     :func:`~convexnn.patterns.enumerate_patch_patterns` the certificate's scope is "global");
   * **global max pooling, scalar target: exact** over all regions of the finer arrangement
     that also fixes each window's arg-max (hyperplanes x_{n,k} − x_{n,k'}); we only sample it,
     so max-pooling certificates are always "sampled patterns";
   * **local average / local max pooling, no pooling (a > 1), or c > 1 classes: not exact.**
     Each filter then feeds an a·c vector and the exact program is a cone-constrained
     nuclear-norm (copositive) program (papers.md §4.4; for *global* pooling with c ≥ 1 it is
     solved exactly for tiny filters by :func:`~convexnn.formulations.copositive_cnn.
     fit_exact_cnn`). Here we solve the **output-separable restriction** (every filter feeds
     one pooled output and one class): its optimum upper-bounds the network optimum over the
     sampled patterns and its solutions are networks of the same architecture;
   * every variant with ``activation="gated"`` (below) is exact for the gated CNN.

   Gated program (``activation="gated"``): gates fixed, x[p] ∈ R^{a x c x h}, penalty
   β Σ_p ||x[p]||_* (ℓ2 when a·c = 1). **Exact** for the gated CNN conv → 1[conv_g ≥ 0]·conv →
   pooling → Linear (any width ≥ Σ rank): one neuron per singular triple. For max pooling the
   gated pool takes the value at the gate's arg-max.

1b. **Shared-filter program** :class:`ConvSharedFilterProgram` — the same architecture with
   the filters fixed at the (unit) gate directions û_p (û_p ∈ K_p) and output weights
   L_p ∈ R^{a x c} shared by all windows and classes: min L(Σ_p Φ_p L_p) + β Σ_p ||L_p||_F with
   the exact ReLU features Φ_p = pool(relu(conv(x; û_p))). Another restriction of the exact
   (copositive) program over the sampled patterns; its atoms are the ones trained CNNs use
   (one filter for all outputs), so with many gates it fits much better than the
   output-separable program when a·c > 1 (benchmarks/results/cnn.md).

2. **Multi-layer circular CNN with one ReLU** :class:`CircularCNNProgram` — single-channel
   signals/images x ∈ R^d (d = H·W), neuron j: ``n_circular`` circular convolutions with
   full-size filters u_{1j}, …, then a full-size (fully connected) filter u_{Lj}, ReLU,
   output weights w_j ∈ R^c. Constraint ||u_{lj}||_2 ≤ 1 on the circular filters, weight decay
   (β/2)(||u_{Lj}||² + ||w_j||²) on the last two layers (the Ergen–Pilanci deep-network
   convention; [RECON] for this paper). The pre-activation is xᵀ e_j with the end-to-end filter
   e_j = u_{1j} ⊛ … ⊛ u_{Lj}; with the unitary DFT ê = F e, F(a ⊛ b) = √d â ⊙ b̂ and
   Cauchy–Schwarz, min ||u_L|| over factorisations = ||ê||_1 / √d for one circular layer.
   Program, in the real orthonormal Fourier basis z = Rᵀ e (frequency pairs {ω, −ω} form groups
   of two real coordinates, weight √2; self-conjugate frequencies weight 1)::

       min L( Σ_p D_p X R (z[+,p] − z[−,p]) ) + (β/√d) Σ_{s,p,f} w_f ||z[s,p,f]||
       s.t. (2D_p − I) X R z[s,p] ≥ 0

   — ℓ1 of the spectrum (group-ℓ1 over conjugate pairs in real coordinates). **Exact** for
   ``n_circular = 1`` over all patterns (scalar output). Read-back: û_1 = sqrt(|ê|/||ê||_1)
   (real, even), û_L = ê / (√d û_1) (up to the conv padding phase), balanced with w. For
   ``n_circular > 1`` the extra layers are read back as identity (delta) filters of unit norm,
   so the program's value is attained by the deeper network and upper-bounds its optimum
   (checked numerically: tests/test_cnn.py::test_circular_matches_cvxpy reads the depth-2
   network back and compares its objective with the certified primal and an independent CVXPY
   optimum). The paper's abstract (arXiv 2006.14798, ICLR 2021) states that multi-layer
   circular CNNs with one ReLU are equivalent to an ℓ1-in-Fourier program; its full theorem
   (the norm constraints of the extra layers) was not available to us, and our derivation shows
   deeper stacks can be cheaper for spectrally sparse filters, so exactness for
   ``n_circular > 1`` is not claimed (``exact`` is False: certificates are for the program).

3. **Three-layer CNN with two ReLU layers** :class:`ThreeLayerCNNProgram` — sub-network j:
   filters u_{jr} (conv) → ReLU → one hidden unit Σ_{r,k} a_{jrk} (x_kᵀ u_{jr})_+ → ReLU →
   output weights w_j ∈ R^c. Regulariser: the ℓ1 path norm R = Σ_j Σ_{r,k} ||u_{jr}|| |a_{jrk}|
   ||w_j||_1-per-output (our choice; it makes the convex program width-independent and matches
   the "ℓ1-regularised" statement of the paper's v1 abstract; the paper's exact regulariser is
   [NOT FOUND]). Objective L + β R. Splitting a filter per position costs nothing under R, so
   with inner gates g (patterns D_{gk} at position k) and sampled outer patterns D'_l of the
   hidden unit, the program is (x[l,ε,c,k,g,σ] ∈ R^h)::

       min L(Z) + β Σ ||x[l,ε,c,k,g,σ]||,
       H[l,ε,c] = Σ_{k,g} D_{gk} X_k (x[l,ε,c,k,g,+] − x[l,ε,c,k,g,−]),
       Z[:,c] = Σ_{l,ε} ε D'_l H[l,ε,c],
       s.t. (2D_{gk} − I) X_k x[l,ε,c,k,g,σ] ≥ 0,  (2D'_l − I) H[l,ε,c] ≥ 0.

   Exact for c = 1 over all inner and outer patterns; the outer patterns are always sampled
   (random inner networks), so its certificates are over the sampled patterns. For c > 1 it is
   the output-separable restriction.

Memory: features E (N x a x P x h) are cached below ``cache_limit`` entries and rebuilt per
sample chunk otherwise (gated path). The two-layer cone program keeps the row coefficients
(N x a x Kq x P) and the working sets (P x a x R x h); everything that touches *all* cone rows
(violation checks, the read-back network's predictions) runs in sample chunks of at most 2·10⁷
entries, so O(N K S P c) is never materialised. The circular and three-layer programs keep
all their rows (O(N K S P c) for the three-layer multipliers).

Layout of this package (mathematics only; the solve drivers live in
:mod:`convexnn.pipelines.cnn`): :mod:`.base` (the shared program shape, certificate),
:mod:`.conv` and :mod:`.working_set` (two-layer program and its cone rows), :mod:`.shared_filter`,
:mod:`.circular`, :mod:`.three_layer`, :mod:`.admm_split` (ADMM splittings of the two-layer
programs), :mod:`.cvxpy_forms` (independent CVXPY models for tests).
"""

from .base import ConeGroupProgram
from .circular import CircularCNNProgram, fourier_basis
from .conv import ConvTwoLayerProgram
from .shared_filter import ConvSharedFilterProgram
from .three_layer import ThreeLayerCNNProgram, sample_outer_patterns

__all__ = ["ConvTwoLayerProgram", "ConvSharedFilterProgram", "CircularCNNProgram",
           "ThreeLayerCNNProgram", "solve", "fourier_basis", "sample_outer_patterns",
           "ConeGroupProgram"]


def __getattr__(name: str):
    """``solve`` moved to :mod:`convexnn.pipelines.cnn` (a higher layer); imported lazily so
    that this package never imports a pipeline at import time."""
    if name == "solve":
        from ...pipelines.cnn import solve

        return solve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
