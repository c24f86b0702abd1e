r"""Convex programs of two-layer ReLU and gated-ReLU networks.

Sources: Pilanci & Ergen (ICML 2020); Mishkin, Sahiner & Pilanci (ICML 2022).

Data X (n x d, with a ones column when the first layer has a bias), targets Y (n x c), weight
decay β = ``reg``, patterns D_p = diag(1[X g_p ≥ 0]), p = 1..P (see :mod:`convexnn.patterns`),
cones K_p = {u : (2D_p − I) X u ≥ 0}. The variable is x ∈ R^{S x P x d x c}.

**ReLU** (``activation="relu"``, S = 2: x[0] = v, x[1] = w)::

    min  L( Σ_p D_p X (v_p − w_p), Y ) + β Σ_{p,k} (||v_{p,:,k}|| + ||w_{p,:,k}||)
    s.t. (2D_p − I) X v_{p,:,k} ≥ 0,  (2D_p − I) X w_{p,:,k} ≥ 0.

For c = 1 this is exactly the scalar-output program of Pilanci & Ergen. For c > 1 it is the
*output-separable* restriction of the copositive program (math.md §3): every neuron feeds one
output, so its optimum upper-bounds the vector-output network optimum; the exact vector-output
program is in :mod:`convexnn.formulations.copositive`. Read-back: each non-zero column block
z = v_{p,:,k} (or w) is a neuron u = z / sqrt||z||, output weight ±sqrt||z|| on output k.

**Gated ReLU** (``activation="gated"``, S = 1): the unconstrained group program ::

    min  L( Σ_p D_p X V_p, Y ) + β Σ_p ||V_p||_{*}          (||·||_* = ||·||_2 when c = 1)

exactly equivalent to the gated network f(x) = Σ_j 1[gᵀ_j x ≥ 0] (u_jᵀ x) v_jᵀ with gates g_p,
weight decay β/2 Σ(||u||² + ||v||²), one neuron per singular pair of V_p (neurons serve all
outputs through the nuclear norm). Prox: singular-value soft-thresholding.

Certificates follow :mod:`convexnn.certificates`; for the cone-constrained groups the dual-norm
bound uses non-negative multipliers μ (from the augmented Lagrangian) via
max_{u ∈ K, ||u|| ≤ 1} <y, u> ≤ ||y + Bᵀμ|| for K = {u : B u ≥ 0}, μ ≥ 0.

Memory: the n x P masks are cached as bools (n·P bytes) when n·P ≤ ``mask_cache_limit`` and
recomputed per row chunk otherwise; the gated path (FISTA) never forms an n x P float array.
The ReLU path stores X x (n x S x P x c) and the multipliers μ (same size): O(nP) is
inherent to the cone constraints.
"""

# every name importable from the former module stays importable from here
from .admm_split import _ADMMSplitting, lipschitz_estimate  # noqa: F401
from .certificate import _EXTRAPOLATE, _extrapolate, _gated_certificate, _nnls  # noqa: F401
from .cvxpy_form import _has_cvxpy, cvxpy_solution, to_cvxpy  # noqa: F401
from .path import reg_max, reg_path  # noqa: F401
from .program import TwoLayerProgram, _AugmentedReLU  # noqa: F401
from .search import solve_with_search  # noqa: F401
from .solve import _solve_admm, _solve_fista, solve  # noqa: F401

__all__ = ["TwoLayerProgram"]
