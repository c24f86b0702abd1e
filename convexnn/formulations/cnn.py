r"""Convex programs of convolutional ReLU networks (Ergen & Pilanci, ICLR 2021, "Implicit convex
regularizers of CNN architectures").

The paper's full text was not available (papers.md §4: RECON). Every program below is derived
here from the stated non-convex model ([DERIVED]) and tested against an independent CVXPY
implementation and against the read-back torch network. Notation: images x_n, patches
x_{n,k} ∈ R^h at conv-output positions k = 1..K (:mod:`convexnn.patches`), X_k = patch k of
all samples, β = ``reg``, loss L summed over samples, gates g_p (p = 1..P) with patterns
D_{pk} = diag(1[X_k g_p ≥ 0]).

All programs share one shape (class :class:`_ConeGroupProgram`)::

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
     :func:`~convexnn.patches.enumerate_patch_patterns` the certificate's scope is "global");
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
   so the program's value is attained by the deeper network and upper-bounds its optimum; our
   derivation shows deeper stacks can be cheaper for spectrally sparse filters, so we could not
   confirm the paper's exactness claim for depth > 3 and do not claim it.

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
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import Tensor

from ..certificates import SCOPE_GLOBAL, SCOPE_SAMPLED, Certificate, relative, scaled_dual
from ..losses import Loss, get_loss
from ..networks_cnn import CircularCNN, ConvNetwork, ThreeLayerCNN
from ..patches import extract_patches, pooling_windows
from ..patterns import PatternSet

__all__ = ["ConvTwoLayerProgram", "ConvSharedFilterProgram", "CircularCNNProgram",
           "ThreeLayerCNNProgram", "solve", "fourier_basis", "sample_outer_patterns"]


# ============================================================================ generic base
class _ConeGroupProgram:
    """min L(A x) + β Σ_g w_g ||x_g|| (or nuclear) s.t. B x ≥ 0; last axis of x = group axis.

    Subclasses set ``shape``, ``gw`` (group weights broadcastable to ``shape[:-1]``),
    ``constrained``, ``nuclear`` and implement ``predict``, ``predict_adjoint``, and when
    constrained ``constraint`` / ``constraint_adjoint`` (C is any tensor; B x ≥ 0 ⇔ C ≥ 0).
    """

    shape: tuple
    constrained: bool = True
    nuclear: bool = False
    exact: bool = False  # exact program for the network (given all patterns)
    working_set: bool = False  # cutting planes over the cone rows (see ConvTwoLayerProgram)
    n_working_rows: int = 0

    def _setup(self, Y: Tensor, reg: float, loss: str | Loss) -> None:
        if reg <= 0:
            raise ValueError(f"reg must be > 0, got {reg}")
        self.Y = Y
        self.reg = float(reg)
        self.loss = get_loss(loss)
        self.c = Y.shape[1]

    def _setup_conv(self, images: Tensor, patterns: PatternSet, kernel_size: int,
                    stride: int, padding: int, intercept: bool) -> None:
        """The image data and convolution geometry shared by every CNN program."""
        self.data = images
        self.images = images
        self.patterns = patterns
        self.kernel_size, self.stride, self.padding = int(kernel_size), int(stride), int(padding)
        self.intercept = bool(intercept)
        self.in_channels = images.shape[1]

    # ------------------------------------------------------------------ shape
    def zeros(self) -> Tensor:
        return torch.zeros(self.shape, dtype=self.Y.dtype, device=self.Y.device)

    def _mats(self, x: Tensor) -> Tensor:
        """Nuclear groups as matrices (P, rows, h)."""
        return x.reshape(x.shape[1], -1, x.shape[-1])

    # ---------------------------------------------------------------- penalty
    def group_norms(self, x: Tensor) -> Tensor:
        if self.nuclear:
            return torch.linalg.svdvals(self._mats(x)).sum(-1)
        return torch.linalg.vector_norm(x, dim=-1)

    def penalty(self, x: Tensor) -> Tensor:
        if self.nuclear:
            return self.reg * self.group_norms(x).sum()
        return self.reg * (self.gw * self.group_norms(x)).sum()

    def prox(self, x: Tensor, step: float) -> Tensor:
        t = step * self.reg
        if self.nuclear:
            U, s, Vh = torch.linalg.svd(self._mats(x), full_matrices=False)
            return ((U * (s - t).clamp_min(0)[..., None, :]) @ Vh).reshape(x.shape)
        nrm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        thr = t * torch.as_tensor(self.gw, dtype=x.dtype, device=x.device)
        if torch.is_tensor(thr) and thr.ndim:
            thr = thr[..., None]
        return x * (1 - thr / nrm.clamp_min(1e-300)).clamp_min(0)

    def dual_ratio(self, y: Tensor) -> float:
        """max_g ||y_g||_dual / w_g."""
        if self.nuclear:
            return float(torch.linalg.matrix_norm(self._mats(y), ord=2).max())
        r = torch.linalg.vector_norm(y, dim=-1) / self.gw
        return float(r.max()) if r.numel() else 0.0

    # -------------------------------------------------------- FISTA protocol
    def linear(self, x: Tensor) -> Tensor:
        return self.predict(x)

    def smooth_value(self, Z: Tensor) -> Tensor:
        return self.loss.value(Z, self.Y)

    def smooth_grad(self, Z: Tensor) -> Tensor:
        return self.predict_adjoint(self.loss.grad(Z, self.Y))

    # ----------------------------------------------------------- AL protocol
    def augmented(self, mu: Tensor, rho: float) -> _Augmented:
        return _Augmented(self, mu, rho)

    def violation(self, state) -> float:
        C = state[1]
        return float((-C).clamp_min(0).max()) if C.numel() else 0.0

    # --------------------------------------------------------------- values
    def objective(self, x: Tensor) -> float:
        """Convex objective at x (ignores constraint violation)."""
        return float(self.loss.value(self.predict(x), self.Y) + self.penalty(x))

    def max_violation(self, x: Tensor) -> float:
        if not self.constrained:
            return 0.0
        C = self.constraint(x)
        return float((-C).clamp_min(0).max()) if C.numel() else 0.0

    def repair(self, x: Tensor) -> Tensor | None:
        """A feasible point near x, or None when the program has no repair direction."""
        return x

    def project_to_cones(self, x: Tensor) -> Tensor:
        raise ValueError(f"primal='feasible' is not implemented for {type(self).__name__}")

    def description(self) -> str:
        return type(self).__name__

    def scope(self) -> str:
        return SCOPE_GLOBAL if (self.exact and self.patterns.exhaustive) else SCOPE_SAMPLED

    def certificate(self, x: Tensor, mu: Tensor | None = None, refine: int = 0) -> Certificate:
        """Duality-gap certificate at x (``mu``: AL multipliers ≥ 0, shaped like C; ``refine``:
        projected-gradient steps improving μ for the fixed Λ, see :meth:`refine_multipliers`)."""
        return self.certify(x, mu, refine)[0]

    def network_objective(self, x: Tensor) -> tuple[Tensor, float]:
        """Predictions and non-convex objective of the network read back from x (the default
        builds the network; subclasses compute it without materialising all filters)."""
        net = self.to_network(x)
        Z = net.forward(self.data).to(self.Y)
        return Z, net.objective(self.data, self.Y, self.reg, self.loss)

    def certify(self, x: Tensor, mu: Tensor | None = None, refine: int = 0,
                lam: Tensor | None = None, check_violation: bool = True,
                primal: str = "network") -> tuple[Certificate, Tensor]:
        """Certificate and the point whose read-back network attains its primal value.

        Primal: the convex objective when x is feasible; otherwise the smaller of the objective
        at the repaired feasible point (when the program has a repair) and the true non-convex
        objective of the network read back from x (both are objectives of actual networks,
        hence valid upper bounds). Programs with ``primal_is_network = True`` always report the
        read-back network's objective (equal to the convex objective when x is feasible), which
        needs no feasibility check. Dual: −L*(sΛ) with Λ = ∇L at that point's predictions and s
        scaling (Λ, μ) to dual feasibility — a lower bound of the program's optimum for any
        μ ≥ 0 (μ lives on the rows of :meth:`constraint`, a subset of the cone rows when working
        sets are used; the missing rows get μ = 0). ``lam``: a second candidate Λ (e.g. a
        splitting solver's loss-gradient estimate, which must lie in the domain of L*); the
        larger of the two lower bounds is reported. ``check_violation``: measure the largest
        violation of the full cone constraints (``Certificate.constraint_violation``; NaN
        when skipped). ``primal="feasible"`` (programs with :meth:`project_to_cones`) certifies
        the exact projection of x onto the cones instead: a feasible point of the program, so
        its objective is never below the program's optimum and the gap measures how well the
        *program* is solved (for comparisons with other solvers of the same program).
        """
        if primal not in ("network", "feasible"):
            raise ValueError(f"primal must be 'network' or 'feasible', got {primal!r}")
        point = x
        if self.constrained and primal == "feasible":
            point = self.project_to_cones(x)
            viol = self.max_violation(point) if check_violation else math.nan
            Z, primal = self.network_objective(point)
        elif self.constrained and getattr(self, "primal_is_network", False):
            viol = self.max_violation(x) if check_violation else math.nan
            Z, primal = self.network_objective(x)
        else:
            viol = self.max_violation(x)
            Z = self.predict(x)
            primal = float(self.loss.value(Z, self.Y) + self.penalty(x))
            if self.constrained and viol > 0:
                Z, primal = self.network_objective(x)
                xr = self.repair(x)
                if xr is not None:
                    Zr = self.predict(xr)
                    pr = float(self.loss.value(Zr, self.Y) + self.penalty(xr))
                    if pr <= primal:
                        point, Z, primal = xr, Zr, pr
        best = None  # (dual, s, Λ, Aᵀ Λ, h)
        for cand in (self.loss.grad(Z, self.Y), lam):
            if cand is None:
                continue
            y = self.predict_adjoint(cand)
            h = self.dual_ratio(y)  # μ = 0: the cone-free bound
            if self.constrained and mu is not None:
                h = min(h, self.dual_ratio(y - self.constraint_adjoint(mu)))
            d_c, s_c = scaled_dual(self.loss, cand, self.Y, h, self.reg)
            if math.isfinite(d_c) and (best is None or d_c > best[0]):
                best = (d_c, s_c, cand, y, h)
        dual, s, lam_b, y, h = best
        if self.constrained and refine > 0:  # improve μ for the better candidate only
            mu_r = self.refine_multipliers(y, mu, refine)
            h_r = self.dual_ratio(y - self.constraint_adjoint(mu_r))
            if h_r < h:
                dual, s = scaled_dual(self.loss, lam_b, self.Y, h_r, self.reg)
        gap = max(primal - dual, 0.0)
        cert = Certificate(primal=primal, dual=dual, gap=gap, relative_gap=relative(gap, primal),
                           scope=self.scope(), problem=self.description(),
                           n_patterns=int(self.patterns.n_patterns), dual_scale=s,
                           constraint_violation=viol)
        return cert, point

    def _constraint_norm2(self) -> float:
        """Power-iteration estimate of ||B||² (cached)."""
        if getattr(self, "_bn2", None) is None:
            g = torch.Generator().manual_seed(1)
            v = torch.randn(self.shape, generator=g, dtype=self.Y.dtype).to(self.Y.device)
            lam = 1.0
            for _ in range(20):
                v = v / torch.linalg.vector_norm(v).clamp_min(1e-300)
                w = self.constraint_adjoint(self.constraint(v))
                lam = float(torch.linalg.vector_norm(w))
                v = w
            self._bn2 = max(lam * 1.05, 1e-12)
        return self._bn2

    def refine_multipliers(self, y: Tensor, mu: Tensor | None, iters: int) -> Tensor:
        """Accelerated projected gradient on min_{μ ≥ 0} ½ Σ_g ||y_g − (Bᵀμ)_g||², warm-started at
        ``mu``. For cones whose rows belong to one group (two-layer, circular) this minimises
        every group's bound ||y_g − (Bᵀμ)_g|| ≥ max_{u∈K_g,||u||≤1} <y_g, u> simultaneously; any
        μ ≥ 0 gives a valid bound."""
        if mu is None:
            mu = torch.zeros_like(self.constraint(self.zeros()))
        L = self._constraint_norm2()
        prev, z, t = mu, mu, 1.0
        for _ in range(iters):
            r = y - self.constraint_adjoint(z)
            new = (z + self.constraint(r) / L).clamp_min(0)
            t_new = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
            z = new + ((t - 1) / t_new) * (new - prev)
            prev, t = new, t_new
        return prev

    def lipschitz(self, iters: int = 15) -> float:
        """Power-iteration estimate of ||A||² times the loss smoothness."""
        g = torch.Generator().manual_seed(0)
        v = torch.randn(self.shape, generator=g, dtype=self.Y.dtype).to(self.Y.device)
        lam = 1.0
        for _ in range(iters):
            v = v / torch.linalg.vector_norm(v).clamp_min(1e-300)
            w = self.predict_adjoint(self.predict(v))
            lam = float(torch.linalg.vector_norm(w))
            if lam == 0 or not math.isfinite(lam):
                return 1.0
            v = w
        return max(lam * self.loss.smoothness, 1e-12)


class _Augmented:
    """Smooth part L(A x) + ||(μ − ρ C(x))_+||² / (2ρ) of the augmented Lagrangian (FISTA)."""

    def __init__(self, prog: _ConeGroupProgram, mu: Tensor, rho: float):
        self.prog, self.mu, self.rho = prog, mu, float(rho)
        self.penalty = prog.penalty
        self.prox = prog.prox

    def linear(self, x: Tensor):
        return (self.prog.predict(x), self.prog.constraint(x))

    def _shifted(self, C: Tensor) -> Tensor:
        return (self.mu - self.rho * C).clamp_min(0)

    def smooth_value(self, state) -> Tensor:
        Z, C = state
        return self.prog.loss.value(Z, self.prog.Y) + (self._shifted(C) ** 2).sum() / (2 * self.rho)

    def smooth_grad(self, state) -> Tensor:
        Z, C = state
        p = self.prog
        return p.predict_adjoint(p.loss.grad(Z, p.Y)) - p.constraint_adjoint(self._shifted(C))

    def updated_multipliers(self, state) -> Tensor:
        return self._shifted(state[1])


def _gate_repair(prog: _ConeGroupProgram, x: Tensor, C: Tensor, margins: Tensor,
                 directions: Tensor, group_max) -> Tensor:
    """x_g + t_g d_g with t_g = max_rows viol / margin (d_g: a direction inside the group's cone,
    margins = C(d) ≥ 0). Groups whose violated rows have zero margin are zeroed."""
    viol = (-C).clamp_min(0)
    if not bool((viol > 0).any()):
        return x
    ratio = torch.where(viol > 0, viol / margins.clamp_min(1e-300), torch.zeros_like(viol))
    t = group_max(ratio)
    bad = ~torch.isfinite(t) | (t > 1e150)
    t = torch.where(bad, torch.zeros_like(t), t)
    extra = (1,) * (x.ndim - t.ndim)
    x = x + t.reshape(t.shape + extra) * directions
    return torch.where(bad.reshape(bad.shape + extra), torch.zeros_like(x), x)


# =============================================================== 1. two-layer CNN
class ConvTwoLayerProgram(_ConeGroupProgram):
    """Two-layer CNN (conv → ReLU/gated → pooling → Linear); see module docstring, item 1.

    ``images`` (N, C, H, W); ``Y`` (N, c) in the loss's encoding; ``patterns`` gates over
    patches (h x P), from :func:`convexnn.patches.sample_patch_gates` or
    :func:`~convexnn.patches.enumerate_patch_patterns`. ``intercept``: the conv has a bias
    (patches carry a trailing 1). ``pool_size=None``: global pooling.
    """

    def __init__(self, images: Tensor, Y: Tensor, patterns: PatternSet, reg: float,
                 loss: str | Loss = "squared", activation: str = "relu", *, kernel_size: int,
                 stride: int = 1, padding: int = 0, intercept: bool = True,
                 pooling: str = "avg", pool_size: int | None = None, chunk_size: int = 256,
                 cache_limit: int = 30_000_000, working_set: bool | None = None,
                 init_rows: int = 24):
        if activation not in ("relu", "gated"):
            raise ValueError(f"activation must be 'relu' or 'gated', got {activation!r}")
        self._setup(Y, reg, loss)
        self._setup_conv(images, patterns, kernel_size, stride, padding, intercept)
        self.activation = activation
        N, Cin, H, W = images.shape
        self.G = patterns.gates.to(dtype=images.dtype, device=images.device)
        self.h, self.P = self.G.shape
        ho = (H + 2 * padding - kernel_size) // stride + 1
        wo = (W + 2 * padding - kernel_size) // stride + 1
        self.out_shape = (ho, wo)
        self.win = pooling_windows((ho, wo), pooling, pool_size)
        self.pooling, self.pool_size = pooling, pool_size
        self.a = self.win.n_windows
        self.N = N
        self.chunk = int(chunk_size)
        self.S = 2 if activation == "relu" else 1
        self.constrained = activation == "relu"
        self.nuclear = activation == "gated" and self.a * self.c > 1
        self.shape = (self.S, self.P, self.a, self.c, self.h)
        self.gw = 1.0
        self.exact = (activation == "relu" and self.a == 1 and self.c == 1
                      and pooling == "avg")
        if activation == "gated":
            self.exact = True  # exact for the gated architecture with these gates
        self._E = None
        if N * self.a * self.P * self.h <= cache_limit or self.constrained:
            self._E = self._features(0, N)
        self.primal_is_network = True
        if self.constrained:
            self._build_constraints()
            n_rows = N * self.win.size
            if working_set is None:  # cutting planes unless the cones have few rows
                working_set = n_rows > 4 * int(init_rows)
            if working_set:
                self.set_working_rows(*self.initial_rows(int(init_rows)))
            else:
                idx = torch.arange(n_rows, device=images.device).expand(self.P, self.a, n_rows)
                self.set_working_rows(idx, torch.ones(idx.shape, dtype=torch.bool,
                                                      device=images.device))
            self.working_set = bool(working_set)

    # ------------------------------------------------------------- features
    def _window_patches(self, s: int, e: int) -> Tensor:
        X = extract_patches(self.images[s:e], self.kernel_size, self.stride, self.padding,
                            self.intercept)  # (n, K, h)
        return X[:, self.win.index]  # (n, a, Kq, h)

    def _features(self, s: int, e: int) -> Tensor:
        """E (n, a, P, h) for samples s..e."""
        Xw = self._window_patches(s, e)
        pre = Xw @ self.G  # (n, a, Kq, P)
        if self.pooling == "max":
            val, kstar = pre.max(dim=2)  # (n, a, P)
            act = (val >= 0).to(Xw.dtype)
            Xs = torch.gather(Xw, 2, kstar[..., None].expand(-1, -1, -1, self.h))
            return Xs * act[..., None]
        M = (pre >= 0).to(Xw.dtype) * self.win.weight
        return torch.einsum("nqkp,nqkh->nqph", M, Xw)

    def _chunks(self):
        if self._E is not None:
            yield 0, self.N, self._E
            return
        for s in range(0, self.N, self.chunk):
            e = min(s + self.chunk, self.N)
            yield s, e, self._features(s, e)

    def _build_constraints(self) -> None:
        """Keep the window patches Xw (N, a, Kq, h); the row coefficients are recomputed from
        Xw @ G in sample chunks (:meth:`_coeffs`), never stored for all (sample, position,
        gate) triples."""
        self._Xw = self._window_patches(0, self.N)

    def _coeffs(self, s: int, e: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Row coefficients for samples s..e: the cone rows are α x_{n,k} + γ x_{n,k*} with
        α, γ of shape (n, a, Kq, P) (γ, x_{k*} (n, a, P, h) only for max pooling)."""
        Xw = self._Xw[s:e]
        pre = Xw @ self.G  # (n, a, Kq, P)
        if self.pooling != "max":
            return 2 * (pre >= 0).to(Xw.dtype) - 1, None, None
        val, kstar = pre.max(dim=2)
        act = (val >= 0).to(Xw.dtype)
        onehot = torch.zeros_like(pre).scatter_(2, kstar[:, :, None, :], 1.0)
        alpha = onehot * (2 * act[:, :, None, :] - 1) - (1 - onehot)
        Xstar = torch.gather(Xw, 2, kstar[..., None].expand(-1, -1, -1, self.h))
        return alpha, 1 - onehot, Xstar

    # ------------------------------------------------------------- operators
    def _V(self, x: Tensor) -> Tensor:
        return x[0] - x[1] if self.S == 2 else x[0]

    def predict(self, x: Tensor) -> Tensor:
        V = self._V(x).permute(1, 0, 3, 2).reshape(-1, self.c)  # (a·P·h, c), E's layout
        out = [E.reshape(E.shape[0], -1) @ V for _, _, E in self._chunks()]
        return torch.cat(out, 0)

    def predict_adjoint(self, R: Tensor) -> Tensor:
        g = 0
        for s, e, E in self._chunks():
            g = g + (R[s:e].T @ E.reshape(e - s, -1)).T  # (a·P·h, c)
        g = g.reshape(self.a, self.P, self.h, self.c).permute(1, 0, 3, 2)
        return torch.stack([g, -g]) if self.S == 2 else g[None]

    # ------------------------------------------------------------ cone rows
    # The cone K_{pq} has one row b per (sample n, window position k): b = α x_{n,k} (+ γ x_{n,k*}
    # for max pooling), b·v ≥ 0. Solvers see the rows of a *working set* W_{pq} (all rows for
    # small problems): ``constraint`` / ``constraint_adjoint`` act on W. Rows outside W are
    # checked by :meth:`violated_rows` / :meth:`max_violation` (in sample chunks) and added by
    # the cutting-plane driver; a multiplier vector on W extended by zeros is a valid μ ≥ 0 of
    # the full program, so certificates never depend on W.
    def _full_rows_chunk(self, x: Tensor, s: int, e: int) -> Tensor:
        """All cone rows applied to x for samples s..e: (n, a, Kq, S, P, c)."""
        alpha, gamma, Xstar = self._coeffs(s, e)
        T = torch.einsum("nqkh,spqch->nqkspc", self._Xw[s:e], x)
        C = alpha[:, :, :, None, :, None] * T
        if gamma is not None:
            Ts = torch.einsum("nqph,spqch->nqspc", Xstar, x)
            C = C + gamma[:, :, :, None, :, None] * Ts[:, :, None]
        return C

    def _row_chunks(self):
        per = max(1, 20_000_000 // max(1, self.a * self.win.size * self.S * self.P * self.c))
        for s in range(0, self.N, per):
            yield s, min(s + per, self.N)

    def _row_vectors(self, p_i: Tensor, q_i: Tensor, flat: Tensor) -> Tensor:
        """Row vectors b (..., h) of cones (p, q) for flat row indices n·Kq + k."""
        Kq = self.win.size
        n_i, k_i = flat // Kq, flat % Kq
        x = self._Xw[n_i, q_i, k_i]  # (..., h)
        g = self.G.T[p_i]  # (..., h)
        if self.pooling != "max":
            return torch.where(((x[..., None, :] @ g[..., :, None])[..., 0, 0] >= 0)[..., None],
                               x, -x)
        win = self._Xw[n_i, q_i]  # (..., Kq, h): the whole window of each row
        pre = (win @ g[..., :, None])[..., 0]
        val, kstar = pre.max(dim=-1)
        idx = kstar[..., None, None].expand(*kstar.shape, 1, self.h)
        xs = torch.gather(win, -2, idx)[..., 0, :]
        at_star = (k_i == kstar)[..., None]
        sign = torch.where(val >= 0, 1.0, -1.0).to(x.dtype)[..., None]
        return torch.where(at_star, sign * xs, xs - x)

    def _cone_index(self, R: int) -> tuple[Tensor, Tensor]:
        dev = self.images.device
        p_i = torch.arange(self.P, device=dev)[:, None, None].expand(self.P, self.a, R)
        q_i = torch.arange(self.a, device=dev)[None, :, None].expand(self.P, self.a, R)
        return p_i, q_i

    def set_working_rows(self, idx: Tensor, valid: Tensor) -> None:
        """Use rows ``idx`` (P, a, R) (flat n·Kq + k; entries with ``valid`` False are padding)
        as the working set of every cone (p, q)."""
        p_i, q_i = self._cone_index(idx.shape[2])
        self._Bw = self._row_vectors(p_i, q_i, idx) * valid[..., None].to(self.Y.dtype)
        self._ws_idx, self._ws_valid = idx, valid
        self._bn2 = None

    @property
    def n_working_rows(self) -> int:
        """Number of (valid) cone rows the solvers currently see."""
        return int(self._ws_valid.sum()) if self.constrained else 0

    def initial_rows(self, r: int) -> tuple[Tensor, Tensor]:
        """The r rows of every cone with the smallest normalised margin b·g_p / ||b|| at its own
        gate (the hyperplanes closest to g_p: the likeliest facets of the cone)."""
        n_rows = self.N * self.win.size
        r = max(1, min(int(r), n_rows))
        Gn = self.G / torch.linalg.vector_norm(self.G, dim=0).clamp_min(1e-300)
        best_v = best_i = None
        per = max(1, 20_000_000 // max(1, self.a * self.win.size * self.P))
        for s in range(0, self.N, per):
            e = min(s + per, self.N)
            Xw = self._Xw[s:e]  # (n, a, Kq, h)
            al, ga, Xs = self._coeffs(s, e)  # (n, a, Kq, P), γ and x_{k*} (n, a, P, h)
            bg = al * (Xw @ Gn)
            nb2 = al ** 2 * (Xw ** 2).sum(-1, keepdim=True)
            if ga is not None:
                bg = bg + ga * (Xs * Gn.T[None, None]).sum(-1)[:, :, None]
                nb2 = (nb2 + ga ** 2 * (Xs ** 2).sum(-1)[:, :, None]
                       + 2 * al * ga * torch.einsum("nqkh,nqph->nqkp", Xw, Xs))
            nb = nb2.clamp_min(0).sqrt()
            marg = bg / nb.clamp_min(1e-300)
            marg = torch.where(nb > 1e-12 * float(nb.max()), marg,
                               torch.full_like(marg, math.inf))
            v = marg.permute(3, 1, 0, 2).reshape(self.P, self.a, -1)  # (P, a, n·Kq)
            i = torch.arange(s * self.win.size, e * self.win.size,
                             device=v.device).expand_as(v)
            if best_v is not None:
                v, i = torch.cat([best_v, v], 2), torch.cat([best_i, i], 2)
            k = min(r, v.shape[2])
            best_v, sel = torch.topk(v, k, dim=2, largest=False)
            best_i = torch.gather(i, 2, sel)
        return best_i, torch.isfinite(best_v)

    def violated_rows(self, x: Tensor, per_cone: int, rel_tol: float = 1e-9
                      ) -> tuple[Tensor, Tensor, float]:
        """Up to ``per_cone`` most violated rows outside the working set for every cone, scored
        by max over the cone's groups (s, c) of −b·x_g / ||x_g|| (non-zero groups only).
        Returns (idx, valid, largest score)."""
        nrm = torch.linalg.vector_norm(x, dim=-1)  # (S, P, a, c)
        thr = 1e-9 * float(nrm.max()) if nrm.numel() else 0.0
        inv = torch.where(nrm > thr, 1.0 / nrm.clamp_min(1e-300), torch.zeros_like(nrm))
        inv = inv.permute(2, 0, 1, 3)  # (a, S, P, c)
        inws = torch.zeros(self.P, self.a, self.N * self.win.size, dtype=torch.bool,
                           device=x.device)
        inws.scatter_(2, self._ws_idx, self._ws_valid)
        best_v = best_i = None
        for s, e in self._row_chunks():
            C = self._full_rows_chunk(x, s, e)  # (n, a, Kq, S, P, c)
            sc = (-C * inv[None, :, None]).amax(dim=(3, 5))  # (n, a, Kq, P)
            v = sc.permute(3, 1, 0, 2).reshape(self.P, self.a, -1)
            i = torch.arange(s * self.win.size, e * self.win.size,
                             device=v.device).expand_as(v)
            v = torch.where(inws[:, :, s * self.win.size:e * self.win.size],
                            torch.full_like(v, -math.inf), v)
            if best_v is not None:
                v, i = torch.cat([best_v, v], 2), torch.cat([best_i, i], 2)
            k = min(per_cone, v.shape[2])
            best_v, sel = torch.topk(v, k, dim=2)
            best_i = torch.gather(i, 2, sel)
        top = float(best_v.max()) if best_v.numel() else -math.inf
        return best_i, best_v > rel_tol, top

    def add_rows(self, idx: Tensor, valid: Tensor) -> int:
        """Append rows to the working sets (cones with fewer new rows are padded); returns the
        number of rows added."""
        n_new = int(valid.sum())
        if n_new == 0:
            return 0
        keep = valid.any(dim=(0, 1))  # drop all-padding columns
        idx, valid = idx[:, :, keep], valid[:, :, keep]
        self.set_working_rows(torch.cat([self._ws_idx, torch.where(valid, idx, 0)], 2),
                              torch.cat([self._ws_valid, valid], 2))
        return n_new

    def multipliers_from_rows(self, duals: dict, rel_tol: float = 1e-12) -> Tensor:
        """μ on the working rows from per-group multipliers of full rows ({(s, p, q, c):
        (flat row indices, values ≥ 0)}, e.g. CVXPY's duals). Rows with a non-negligible
        multiplier that are outside the working set are added to it first."""
        top = max((float(v.max()) for _, v in duals.values() if len(v)), default=0.0)
        need: dict = {}
        for (_, p_, q_, _c), (flat, val) in duals.items():
            need.setdefault((p_, q_), set()).update(
                int(f) for f, v in zip(flat, val) if v > rel_tol * top)
        have = {}
        for p_ in range(self.P):
            for q_ in range(self.a):
                have[(p_, q_)] = {int(i): r for r, (i, ok) in enumerate(
                    zip(self._ws_idx[p_, q_].tolist(), self._ws_valid[p_, q_].tolist())) if ok}
        new = {k: sorted(v - set(have[k])) for k, v in need.items()}
        width = max((len(v) for v in new.values()), default=0)
        if width:
            idx = torch.zeros(self.P, self.a, width, dtype=torch.long, device=self.Y.device)
            valid = torch.zeros(self.P, self.a, width, dtype=torch.bool, device=self.Y.device)
            for (p_, q_), rows in new.items():
                idx[p_, q_, :len(rows)] = torch.as_tensor(rows, dtype=torch.long)
                valid[p_, q_, :len(rows)] = True
            R_old = self._ws_idx.shape[2]
            self.add_rows(idx, valid)
            for (p_, q_), rows in new.items():
                for j, f in enumerate(rows):
                    have[(p_, q_)][f] = R_old + j
        mu = torch.zeros(self.S, self.P, self.a, self.c, self._ws_idx.shape[2],
                         dtype=self.Y.dtype, device=self.Y.device)
        for (s_, p_, q_, c_), (flat, val) in duals.items():
            pos = have[(p_, q_)]
            for f, v in zip(flat, val):
                r = pos.get(int(f))
                if r is not None and v > 0:
                    mu[s_, p_, q_, c_, r] = float(v)
        return mu

    def constraint(self, x: Tensor) -> Tensor:
        """Working-set rows applied to x: C[s, p, q, c, r] ≥ 0 (shape (S, P, a, c, R))."""
        return torch.einsum("pqrh,spqch->spqcr", self._Bw, x)

    def constraint_adjoint(self, Mu: Tensor) -> Tensor:
        return torch.einsum("pqrh,spqcr->spqch", self._Bw, Mu)

    def max_violation(self, x: Tensor) -> float:
        """Largest violation max(−b·x_g, 0) over *all* cone rows (sample chunks)."""
        if not self.constrained:
            return 0.0
        v = 0.0
        for s, e in self._row_chunks():
            v = max(v, float((-self._full_rows_chunk(x, s, e)).clamp_min(0).max()))
        return v

    def project_to_cones(self, x: Tensor) -> Tensor:
        """Exact Euclidean projection of every non-zero group onto its full cone:
        Π_K(v) = v + Bᵀμ*, μ* = argmin_{μ ≥ 0} ||v + Bᵀμ||² (NNLS over *all* rows b of the cone;
        cost grows with N·K, meant for moderate problems). Round-off left by the projection is
        removed by v + t g_p (the gate lies in its cone with margins b·g_p ≥ 0), or, when a
        violated row has no margin, by zeroing the group."""
        from scipy.optimize import nnls

        if not self.constrained:
            return x
        x = x.clone()
        n_rows = self.N * self.win.size
        flat = torch.arange(n_rows, device=x.device)
        nrm = torch.linalg.vector_norm(x, dim=-1)  # (S, P, a, c)
        cache: dict = {}
        for s_, p_, q_, c_ in torch.nonzero(nrm > 0).tolist():
            if (p_, q_) not in cache:
                B = self._row_vectors(torch.full_like(flat, p_), torch.full_like(flat, q_), flat)
                cache[(p_, q_)] = (B, B @ self.G[:, p_])
            B, bg = cache[(p_, q_)]
            v = x[s_, p_, q_, c_]
            if float((B @ v).min()) >= 0:
                continue
            Bn = B.detach().cpu().double().numpy()
            m, _ = nnls(Bn.T, -v.detach().cpu().double().numpy(), maxiter=50 * Bn.shape[0])
            u = v + B.T @ torch.as_tensor(m, dtype=x.dtype, device=x.device)
            r = B @ u
            if float(r.min()) < 0:
                bad = r < 0
                if bool((bg[bad] <= 0).any()):
                    u = torch.zeros_like(u)
                else:
                    u = u + float((-r[bad] / bg[bad]).max()) * self.G[:, p_]
            x[s_, p_, q_, c_] = u
        return x

    def network_objective(self, x: Tensor) -> tuple[Tensor, float]:
        """Predictions and objective of the read-back network (true ReLU of every block,
        pooled), computed from x in sample chunks without building the filters."""
        if not self.constrained:
            Z = self.predict(x)
            return Z, float(self.loss.value(Z, self.Y) + self.penalty(x))
        out = []
        for s, e in self._row_chunks():
            T = torch.einsum("nqkh,spqch->nqkspc", self._Xw[s:e], x).clamp_min(0)
            if self.pooling == "max":
                pooled = T.amax(2)
            else:
                pooled = T.sum(2) * self.win.weight
            out.append((pooled[:, :, 0] - pooled[:, :, 1]).sum(dim=(1, 2)))
        Z = torch.cat(out, 0)
        return Z, float(self.loss.value(Z, self.Y) + self.penalty(x))

    def repair(self, x: Tensor) -> None:
        return None  # the certified primal is always the read-back network's objective

    def description(self) -> str:
        pool = f"{self.pooling} pooling" + ("" if self.pool_size is None or self.pooling == "none"
                                             else f" {self.pool_size}x{self.pool_size}")
        if self.activation == "gated":
            kind = "gated CNN: group nuclear-norm program (exact for the gated CNN)"
        elif self.exact:
            kind = "two-layer CNN: cone-constrained group lasso (exact over all patterns)"
        else:
            kind = ("two-layer CNN: output-separable cone-constrained group lasso "
                    "(a restriction of the exact program)")
        return f"{kind}, {pool}"

    # -------------------------------------------------------------- read-back
    def to_network(self, x: Tensor, tol: float = 0.0) -> ConvNetwork:
        dt, dev = x.dtype, x.device
        k, Cin = self.kernel_size, self.in_channels
        if self.activation == "relu":
            nrm = torch.linalg.vector_norm(x, dim=-1)  # (S, P, a, c)
            s_i, p_i, q_i, c_i = torch.nonzero(nrm > tol, as_tuple=True)
            z = x[s_i, p_i, q_i, c_i]  # (m, h)
            r = nrm[s_i, p_i, q_i, c_i].sqrt()
            U = z / r[:, None]
            m = len(r)
            A = torch.zeros(self.c, m * self.a, dtype=dt, device=dev)
            A[c_i, torch.arange(m, device=dev) * self.a + q_i] = torch.where(s_i == 0, r, -r)
            gates = None
        else:
            Mx = x[0].reshape(self.P, self.a * self.c, self.h)
            Ul, s_, Vh = torch.linalg.svd(Mx, full_matrices=False)  # (P,ac,q),(P,q),(P,q,h)
            p_i, r_i = torch.nonzero(s_ > tol, as_tuple=True)
            sq = s_[p_i, r_i].sqrt()
            U = Vh[p_i, r_i, :] * sq[:, None]  # (m, h)
            L = Ul[p_i, :, r_i] * sq[:, None]  # (m, a*c) indexed (q, c)
            m = len(sq)
            A = L.reshape(m, self.a, self.c).permute(2, 0, 1).reshape(self.c, m * self.a)
            gates = self.G.T[p_i]
        W, b = self._split(U)
        gw = gb = None
        if gates is not None:
            gw, gb = self._split(gates)
            gw = gw.reshape(-1, Cin, k, k)
        return ConvNetwork(W.reshape(-1, Cin, k, k), b, A.contiguous(), kernel_size=k,
                           stride=self.stride, padding=self.padding, pooling=self.pooling,
                           pool_size=self.pool_size, activation=self.activation,
                           gate_weight=gw, gate_bias=gb)

    def _split(self, U: Tensor) -> tuple[Tensor, Tensor]:
        if self.intercept:
            return U[:, :-1], U[:, -1].contiguous()
        return U, torch.zeros(U.shape[0], dtype=U.dtype, device=U.device)

    # --------------------------------------------------------------- CVXPY
    def to_cvxpy(self):
        """Independent CVXPY form, built with numpy loops over positions (small problems)."""
        return _cvxpy_two_layer(self)


class ConvSharedFilterProgram(_ConeGroupProgram):
    """Two-layer ReLU CNN whose filters are fixed at the (unit) gate directions, each feeding
    every pooled output and class: a group lasso on the output weights (module docstring,
    item 1b).

    Filter p is û_p = g_p/||g_p|| (g_p includes the bias entry when ``intercept``); its pooled
    ReLU features are Φ_p = pool(relu(conv(x; û_p))) (N x a), exact for any pooling. With
    output weights L_p ∈ R^{a x c} (x[p] = vec L_p) the program ::

        min_L  L( Σ_p Φ_p L_p , Y ) + β Σ_p ||L_p||_F

    equals the weight-decay objective of the ReLU CNN with filters √||L_p|| û_p and linear
    weights L_p/√||L_p|| (balanced: (β/2)(||u||² + ||A||²) = β ||L_p||_F), minimised over the
    output weights and the filter scales. Every atom û_p ⊗ L_p (û_p lies in its own cone K_p)
    is an atom of the exact vector-output program over the sampled patterns, so this is a
    restriction of it, like the output-separable program — but one filter serves all a·c
    outputs (penalty ||L_p||_F instead of the ℓ1 norm Σ_{q,c} |L_p[q,c]| of one-output
    filters), which is what trained CNNs do. Filters cannot move inside their cones here; use
    many gates. Unconstrained: ADMM (default; one n x n Cholesky factor) or FISTA.
    """

    def __init__(self, images: Tensor, Y: Tensor, patterns: PatternSet, reg: float,
                 loss: str | Loss = "squared", *, kernel_size: int, stride: int = 1,
                 padding: int = 0, intercept: bool = True, pooling: str = "avg",
                 pool_size: int | None = None, chunk_size: int = 256):
        self._setup(Y, reg, loss)
        self._setup_conv(images, patterns, kernel_size, stride, padding, intercept)
        N, Cin, H, W = images.shape
        self.N = N
        G = patterns.gates.to(dtype=images.dtype, device=images.device)
        self.G = G / torch.linalg.vector_norm(G, dim=0).clamp_min(1e-300)
        self.h, self.P = self.G.shape
        ho = (H + 2 * padding - kernel_size) // stride + 1
        wo = (W + 2 * padding - kernel_size) // stride + 1
        self.win = pooling_windows((ho, wo), pooling, pool_size)
        self.pooling, self.pool_size = pooling, pool_size
        self.a = self.win.n_windows
        self.shape = (self.P, self.a * self.c)
        self.constrained = False
        self.gw = 1.0
        net = self._network(self.G.T, torch.zeros(self.c, self.P * self.a, dtype=images.dtype,
                                                    device=images.device))
        feats = [net.features(images[s:s + chunk_size]) for s in range(0, N, chunk_size)]
        self.Phi = torch.cat(feats, 0).reshape(N, self.P, self.a)  # Flatten order (p, q)

    def _network(self, U: Tensor, A: Tensor) -> ConvNetwork:
        k, Cin = self.kernel_size, self.in_channels
        if self.intercept:
            W, b = U[:, :-1], U[:, -1].contiguous()
        else:
            W, b = U, torch.zeros(U.shape[0], dtype=U.dtype, device=U.device)
        return ConvNetwork(W.reshape(-1, Cin, k, k).contiguous(), b, A, kernel_size=k,
                           stride=self.stride, padding=self.padding, pooling=self.pooling,
                           pool_size=self.pool_size, activation="relu")

    def predict(self, x: Tensor) -> Tensor:
        return torch.einsum("npq,pqc->nc", self.Phi, x.reshape(self.P, self.a, self.c))

    def predict_adjoint(self, R: Tensor) -> Tensor:
        return torch.einsum("npq,nc->pqc", self.Phi, R).reshape(self.shape)

    def description(self) -> str:
        pool = f"{self.pooling} pooling" + ("" if self.pool_size is None or self.pooling == "none"
                                             else f" {self.pool_size}x{self.pool_size}")
        return ("two-layer ReLU CNN, filters fixed at the sampled gate directions and shared by "
                "all outputs: group lasso on the output weights (a restriction of the exact "
                f"program over the sampled patterns), {pool}")

    def to_network(self, x: Tensor, tol: float = 0.0) -> ConvNetwork:
        nrm = torch.linalg.vector_norm(x, dim=-1)
        keep = torch.nonzero(nrm > tol, as_tuple=True)[0]
        r = nrm[keep].sqrt()
        U = self.G.T[keep] * r[:, None]
        L = x[keep].reshape(-1, self.a, self.c) / r[:, None, None]  # (m, a, c)
        A = L.permute(2, 0, 1).reshape(self.c, -1)  # Flatten order (filter, window)
        return self._network(U, A.contiguous())

    def to_cvxpy(self):
        import cvxpy as cp

        Phi = self.Phi.detach().cpu().double().numpy()
        Y = self.Y.detach().cpu().double().numpy()
        Lv = cp.Variable((self.P, self.a * self.c))
        Z = 0
        for p in range(self.P):
            Z = Z + Phi[:, p] @ cp.reshape(Lv[p], (self.a, self.c), order="C")
        problem = cp.Problem(cp.Minimize(_cvxpy_loss(self.loss.name, Z, Y)
                                         + self.reg * cp.sum(cp.norm(Lv, 2, axis=1))))

        def assemble() -> Tensor:
            return torch.as_tensor(Lv.value, dtype=self.Y.dtype, device=self.Y.device)

        return problem, assemble


def _np_patches(images: np.ndarray, k: int, stride: int, padding: int,
                intercept: bool) -> np.ndarray:
    """Patches (N, K, h) by explicit slicing (independent of ``unfold``)."""
    N, C, H, W = images.shape
    Xp = np.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (H + 2 * padding - k) // stride + 1
    wo = (W + 2 * padding - k) // stride + 1
    out = []
    for i in range(ho):
        for j in range(wo):
            blk = Xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k].reshape(N, -1)
            if intercept:
                blk = np.concatenate([blk, np.ones((N, 1))], 1)
            out.append(blk)
    return np.stack(out, 1)


def _cvxpy_two_layer(prog: ConvTwoLayerProgram):
    import cvxpy as cp

    X = _np_patches(prog.images.detach().cpu().double().numpy(), prog.kernel_size, prog.stride,
                    prog.padding, prog.intercept)
    G = prog.G.detach().cpu().double().numpy()
    Y = prog.Y.detach().cpu().double().numpy()
    win = prog.win.index.numpy()
    N = X.shape[0]
    V = {}
    cone_cons = {}
    Zcols = [0] * prog.c
    cons, pen = [], 0
    for p in range(prog.P):
        g = G[:, p]
        for q in range(prog.a):
            ks = win[q]
            pre = np.stack([X[:, k] @ g for k in ks], 1)  # (N, Kq)
            if prog.pooling == "max":
                kst = pre.argmax(1)
                act = (pre[np.arange(N), kst] >= 0).astype(float)
                Xs = np.stack([X[n, ks[kst[n]]] for n in range(N)])
                E = act[:, None] * Xs
                rows = []
                for n in range(N):
                    for j, k in enumerate(ks):
                        if j == kst[n]:
                            rows.append((2 * act[n] - 1) * Xs[n])
                        else:
                            rows.append(Xs[n] - X[n, k])
                B = np.array(rows)
                flat = np.arange(N * len(ks))  # rows ordered (n, j): flat = n·Kq + j
            else:
                D = (pre >= 0).astype(float)
                E = prog.win.weight * sum(D[:, j:j + 1] * X[:, k] for j, k in enumerate(ks))
                B = np.concatenate([(2 * D[:, j:j + 1] - 1) * X[:, k] for j, k in enumerate(ks)])
                # rows ordered (j, n): flat = n·Kq + j
                flat = (np.arange(N)[None, :] * len(ks) + np.arange(len(ks))[:, None]).ravel()
            for c in range(prog.c):
                vs = []
                for s in range(prog.S):
                    v = cp.Variable(prog.h)
                    V[(s, p, q, c)] = v
                    vs.append(v)
                    if prog.activation == "relu":
                        cons.append(B @ v >= 0)
                        cone_cons[(s, p, q, c)] = (cons[-1], flat)
                if prog.nuclear:
                    V[("E", p, q, c)] = E
                else:
                    pen = pen + sum(cp.norm(v, 2) for v in vs)
                z = E @ (vs[0] - vs[1]) if prog.S == 2 else E @ vs[0]
                Zcols[c] = Zcols[c] + z
    if prog.nuclear:
        for p in range(prog.P):
            Mp = cp.vstack([cp.reshape(V[(0, p, q, c)], (1, prog.h), order="C")
                            for q in range(prog.a) for c in range(prog.c)])
            pen = pen + cp.normNuc(Mp)
    Z = cp.hstack([cp.reshape(z, (N, 1), order="C") for z in Zcols])
    problem = cp.Problem(cp.Minimize(_cvxpy_loss(prog.loss.name, Z, Y) + prog.reg * pen), cons)

    def assemble() -> Tensor:
        x = np.zeros(prog.shape)
        for key, v in V.items():
            if key[0] != "E":
                s, p, q, c = key
                x[s, p, q, c] = v.value
        return torch.as_tensor(x, dtype=prog.Y.dtype, device=prog.Y.device)

    def duals() -> dict:
        """{(s, p, q, c): (flat row indices, multipliers ≥ 0)} of the cone constraints."""
        return {k: (flat, np.maximum(np.asarray(con.dual_value).ravel(), 0.0))
                for k, (con, flat) in cone_cons.items()}

    assemble.duals = duals
    return problem, assemble


def _cvxpy_loss(name: str, Z, Y: np.ndarray):
    import cvxpy as cp

    if name == "squared":
        return 0.5 * cp.sum_squares(Z - Y)
    if name == "logistic":
        return cp.sum(cp.logistic(-cp.multiply(Y, Z)))
    if name == "cross_entropy":
        return cp.sum(cp.log_sum_exp(Z, axis=1)) - cp.sum(cp.multiply(Y, Z))
    raise NotImplementedError(f"no CVXPY form for loss {name!r}")


# ===================================================== 2. circular CNN (Fourier domain)
def fourier_basis(shape: tuple[int, ...], dtype=torch.float64) -> tuple[Tensor, Tensor]:
    """Real orthonormal DFT basis of R^d (d = prod(shape)), grouped by conjugate frequency pairs.

    Returns ``R`` (d, F, 2) — R[:, f, 0] ∝ cos, R[:, f, 1] ∝ sin (zero column for
    self-conjugate frequencies) — and group weights ``w`` (F,) with Σ_ω |ê_ω| = Σ_f w_f ||z_f||
    for z = Rᵀ e and ê the unitary complex DFT of e (w_f = √2 for pairs, 1 otherwise).
    """
    dims = [int(s) for s in shape]
    d = int(np.prod(dims))
    grids = np.meshgrid(*[np.arange(s) for s in dims], indexing="ij")
    t = np.stack([g.reshape(-1) for g in grids], 1)  # (d, ndim) positions
    seen, cols, weights = set(), [], []
    for idx in np.ndindex(*dims):
        if idx in seen:
            continue
        conj = tuple((-i) % s for i, s in zip(idx, dims))
        seen.add(idx)
        seen.add(conj)
        theta = 2 * np.pi * sum(t[:, a] * idx[a] / dims[a] for a in range(len(dims)))
        if conj == idx:
            cols.append(np.stack([np.cos(theta) / np.sqrt(d), np.zeros(d)], 1))
            weights.append(1.0)
        else:
            cols.append(np.stack([np.cos(theta), np.sin(theta)], 1) * np.sqrt(2.0 / d))
            weights.append(np.sqrt(2.0))
    R = np.stack(cols, 1)  # (d, F, 2)
    return torch.as_tensor(R, dtype=dtype), torch.as_tensor(weights, dtype=dtype)


class CircularCNNProgram(_ConeGroupProgram):
    """ℓ1-in-Fourier program of a circular CNN with one ReLU; module docstring, item 2.

    ``signals``: (N, d) 1-D signals or (N, 1, H, W) / (N, H, W) single-channel images; ``Y``
    (N, c); ``patterns``: gates over the raw signal (d x P), e.g.
    ``sample_gates(signals.reshape(N, -1), ...)``. No bias (it would break circulant
    structure). ``c > 1`` is the output-separable restriction.
    """

    def __init__(self, signals: Tensor, Y: Tensor, patterns: PatternSet, reg: float,
                 loss: str | Loss = "squared", *, n_circular: int = 1):
        self._setup(Y, reg, loss)
        if signals.ndim == 4:
            if signals.shape[1] != 1:
                raise ValueError("the circular CNN takes single-channel inputs")
            signals = signals[:, 0]
        self.spatial = tuple(signals.shape[1:])
        self.data = signals
        N = signals.shape[0]
        X = signals.reshape(N, -1)
        self.X = X
        self.d = X.shape[1]
        if int(n_circular) < 1:
            raise ValueError(f"n_circular must be >= 1, got {n_circular}")
        self.n_circular = int(n_circular)
        self.patterns = patterns
        self.G = patterns.gates.to(dtype=X.dtype, device=X.device)
        self.P = self.G.shape[1]
        R, w = fourier_basis(self.spatial, X.dtype)
        self.R = R.to(X.device)
        self.F = R.shape[1]
        self.gw = (w / math.sqrt(self.d)).to(X.device)
        self.Xt = torch.einsum("nd,dft->nft", X, self.R)  # data in Fourier coordinates
        self.M = (X @ self.G >= 0).to(X.dtype)  # (N, P)
        self.sgn = 2 * self.M - 1
        self.S = 2
        self.constrained = True
        self.shape = (2, self.P, self.c, self.F, 2)
        self.exact = self.n_circular == 1 and self.c == 1

    def predict(self, x: Tensor) -> Tensor:
        XV = torch.einsum("nft,spcft->nspc", self.Xt, x)
        return torch.einsum("np,npc->nc", self.M, XV[:, 0] - XV[:, 1])

    def predict_adjoint(self, R: Tensor) -> Tensor:
        g = torch.einsum("nft,np,nc->pcft", self.Xt, self.M, R)
        return torch.stack([g, -g])

    def constraint(self, x: Tensor) -> Tensor:
        XV = torch.einsum("nft,spcft->nspc", self.Xt, x)
        return self.sgn[:, None, :, None] * XV

    def constraint_adjoint(self, Mu: Tensor) -> Tensor:
        return torch.einsum("nft,nspc->spcft", self.Xt, self.sgn[:, None, :, None] * Mu)

    def repair(self, x: Tensor) -> Tensor:
        gz = torch.einsum("dp,dft->pft", self.G, self.R)  # gates in Fourier coordinates
        dirs = gz[None, :, None].expand(self.shape).contiguous()
        if getattr(self, "_margins", None) is None:
            self._margins = self.constraint(dirs)
        return _gate_repair(self, x, self.constraint(x), self._margins, dirs,
                            lambda r: r.amax(0))

    def description(self) -> str:
        base = f"circular CNN ({self.n_circular} circular layer(s)): ℓ1-in-Fourier program"
        return base + (" (exact over all patterns)" if self.exact else " (a restriction)")

    def end_to_end_filters(self, x: Tensor) -> Tensor:
        """Signal-domain end-to-end filters e (S, P, c, d) of the convex variables."""
        return torch.einsum("dft,spcft->spcd", self.R, x)

    def to_network(self, x: Tensor, tol: float = 0.0) -> CircularCNN:
        """One neuron per non-zero (s, p, class) block; see module docstring for the map."""
        pen = (torch.linalg.vector_norm(x, dim=-1) * self.gw).sum(-1)  # (S, P, c)
        s_i, p_i, c_i = torch.nonzero(pen > tol, as_tuple=True)
        E = self.end_to_end_filters(x)[s_i, p_i, c_i]  # (m, d)
        t = pen[s_i, p_i, c_i].sqrt()  # balanced scale: ||u_L|| = |w| = t
        m = len(t)
        W1 = torch.zeros(m, *self.spatial, dtype=x.dtype, device=x.device)
        WL = torch.zeros_like(W1)
        for j in range(m):
            W1[j], WL[j] = _factor_circular(E[j].reshape(self.spatial) / t[j])
        Wout = torch.zeros(self.c, m, dtype=x.dtype, device=x.device)
        Wout[c_i, torch.arange(m, device=x.device)] = torch.where(s_i == 0, t, -t)
        return CircularCNN(W1, WL, Wout, n_circular=self.n_circular)

    def to_cvxpy(self):
        return _cvxpy_circular(self)


def circular_pads(spatial: tuple[int, ...]) -> list[int]:
    """Leading (top/left) circular padding per spatial dim for a full-size 'same' conv."""
    return [(s - 1) // 2 for s in spatial]


def _factor_circular(e: Tensor) -> tuple[Tensor, Tensor]:
    """Filters (w1, wL), ||w1|| = 1, with ⟨corr_circ(x, w1), wL⟩ = ⟨x, e⟩ for every x, and
    ||wL|| = ||ê||_1 / √d (the minimum). corr_circ is ``Conv2d`` cross-correlation with the
    circular padding of :func:`circular_pads` (a phase in the Fourier domain)."""
    dims = tuple(e.shape)
    d = e.numel()
    ndim = len(dims)
    cdt = torch.complex128 if e.dtype == torch.float64 else torch.complex64
    fe = torch.fft.fftn(e.to(cdt))
    l1 = float(fe.abs().sum()) / math.sqrt(d)  # ||ê||_1 for the unitary DFT
    if l1 == 0:
        return torch.zeros_like(e), torch.zeros_like(e)
    w1_hat_u = (fe.abs() / math.sqrt(d) / l1).sqrt()  # unitary spectrum of w1, real even
    pads = circular_pads(dims)
    phase = 0
    for a in range(ndim):
        shape = [1] * ndim
        shape[a] = dims[a]
        om = torch.arange(dims[a], dtype=e.dtype, device=e.device).reshape(shape)
        phase = phase + 2 * math.pi * om * pads[a] / dims[a]
    # e[τ] = (w1 ⊛ wL)[τ + pad]  =>  FFT(e) = FFT(w1) FFT(wL) exp(+iφ)
    fw1 = w1_hat_u * math.sqrt(d)
    nz = fw1 > 0
    fwl = torch.zeros_like(fe)
    fwl[nz] = fe[nz] * torch.exp(-1j * phase.expand(dims))[nz] / fw1[nz]
    w1 = torch.fft.ifftn(fw1.to(fe.dtype)).real
    wl = torch.fft.ifftn(fwl).real
    return w1.to(e.dtype), wl.to(e.dtype)


def _cvxpy_circular(prog: CircularCNNProgram):
    import cvxpy as cp

    X = prog.X.detach().cpu().double().numpy()
    Y = prog.Y.detach().cpu().double().numpy()
    G = prog.G.detach().cpu().double().numpy()
    N, d = X.shape
    # independent spectral penalty: ||F e||_1 / sqrt(d) via numpy's DFT matrix (real/imag parts)
    dims = prog.spatial
    Fm = np.eye(d)
    Fm = np.fft.fftn(Fm.reshape(d, *dims), axes=tuple(range(1, len(dims) + 1))).reshape(d, d).T
    Fm = Fm / np.sqrt(d)  # unitary DFT matrix: ê = Fm @ e
    Fr, Fi = Fm.real, Fm.imag
    cons, pen = [], 0
    Zcols = [0] * prog.c
    E = {}
    for p in range(prog.P):
        D = (X @ G[:, p] >= 0).astype(float)
        for c in range(prog.c):
            es = []
            for s in range(2):
                e = cp.Variable(d)
                E[(s, p, c)] = e
                es.append(e)
                cons.append(cp.multiply(2 * D - 1, X @ e) >= 0)
                pen = pen + cp.sum(cp.norm(cp.vstack([Fr @ e, Fi @ e]), 2, axis=0)) / np.sqrt(d)
            Zcols[c] = Zcols[c] + cp.multiply(D, X @ (es[0] - es[1]))
    Z = cp.hstack([cp.reshape(z, (N, 1), order="C") for z in Zcols])
    problem = cp.Problem(cp.Minimize(_cvxpy_loss(prog.loss.name, Z, Y) + prog.reg * pen), cons)

    def assemble() -> Tensor:
        x = torch.zeros(prog.shape, dtype=prog.Y.dtype, device=prog.Y.device)
        for (s, p, c), e in E.items():
            et = torch.as_tensor(e.value, dtype=prog.Y.dtype, device=prog.Y.device)
            x[s, p, c] = torch.einsum("d,dft->ft", et, prog.R)
        return x

    return problem, assemble


# ======================================================= 3. three-layer CNN, two ReLUs
def sample_outer_patterns(prog_inner_masks: Tensor, Xp: Tensor, n_outer: int,
                          random_state: int | np.random.Generator | None = None,
                          include_identity: bool = True) -> Tensor:
    """Outer patterns D'_l (N x L) of hidden units of random inner networks.

    ``prog_inner_masks`` (N, K, G) patch masks, ``Xp`` (N, K, h) patches. Each hidden unit is
    Σ_{k,g} D_{gk} X_k q_{kg} with Gaussian q on a random subset of (k, g); its sign pattern is
    kept (deduplicated). ``include_identity`` adds the all-ones pattern (second ReLU active).
    """
    rng = random_state if isinstance(random_state, np.random.Generator) \
        else np.random.default_rng(random_state)
    N, K, Gn = prog_inner_masks.shape
    h = Xp.shape[2]
    Q = torch.as_tensor(rng.standard_normal((n_outer, K, Gn, h)), dtype=Xp.dtype,
                        device=Xp.device)
    keep = torch.as_tensor(rng.random((n_outer, K, Gn)) < 0.5, device=Xp.device)
    Q = Q * keep[..., None]
    H = torch.einsum("nkg,nkh,lkgh->nl", prog_inner_masks.to(Xp.dtype), Xp, Q)
    M = (H >= 0)
    if include_identity:
        M = torch.cat([torch.ones(N, 1, dtype=torch.bool, device=M.device), M], 1)
    Mu = torch.unique(M.T.to(torch.int8), dim=0, sorted=False).T.bool()
    Mu = Mu[:, Mu.any(0)]
    return Mu.to(Xp.dtype)


class ThreeLayerCNNProgram(_ConeGroupProgram):
    """Three-layer CNN with two ReLU layers and the ℓ1 path regulariser; docstring item 3.

    ``patterns``: inner gates over patches (h x G); ``outer``: outer masks (N x L) from
    :func:`sample_outer_patterns` (drawn here when None, with ``n_outer`` and
    ``random_state``). Variables x of shape (L, 2, c, K, G, 2, h).
    """

    def __init__(self, images: Tensor, Y: Tensor, patterns: PatternSet, reg: float,
                 loss: str | Loss = "squared", *, kernel_size: int, stride: int = 1,
                 padding: int = 0, intercept: bool = True, outer: Tensor | None = None,
                 n_outer: int = 8, random_state: int | None = None):
        self._setup(Y, reg, loss)
        self._setup_conv(images, patterns, kernel_size, stride, padding, intercept)
        self.Xp = extract_patches(images, kernel_size, stride, padding, intercept)  # (N, K, h)
        self.N, self.K, self.h = self.Xp.shape
        H, W = images.shape[2:]
        self.out_shape = ((H + 2 * padding - kernel_size) // stride + 1,
                          (W + 2 * padding - kernel_size) // stride + 1)
        self.G = patterns.gates.to(dtype=images.dtype, device=images.device)
        self.Gn = self.G.shape[1]
        pre = self.Xp @ self.G  # (N, K, G)
        self.Min = (pre >= 0).to(images.dtype)
        self.sgn_in = 2 * self.Min - 1
        if outer is None:
            outer = sample_outer_patterns(self.Min, self.Xp, n_outer, random_state)
        self.Mout = outer.to(dtype=images.dtype, device=images.device)  # (N, L)
        self.sgn_out = 2 * self.Mout - 1
        self.L = self.Mout.shape[1]
        self.eps = torch.tensor([1.0, -1.0], dtype=images.dtype, device=images.device)
        self.shape = (self.L, 2, self.c, self.K, self.Gn, 2, self.h)
        self.constrained = True
        self.gw = 1.0
        self.exact = self.c == 1

    def scope(self) -> str:
        return SCOPE_SAMPLED  # outer patterns are always sampled

    def _hidden(self, x: Tensor) -> Tensor:
        """H (N, L, 2, c) = Σ_{k,g} D_gk X_k (x[..., +, :] − x[..., −, :])."""
        V = x[..., 0, :] - x[..., 1, :]  # (L, 2, c, K, G, h)
        return torch.einsum("nkg,nkh,leckgh->nlec", self.Min, self.Xp, V)

    def predict(self, x: Tensor) -> Tensor:
        H = self._hidden(x)
        return torch.einsum("nl,e,nlec->nc", self.Mout, self.eps, H)

    def predict_adjoint(self, R: Tensor) -> Tensor:
        Wh = torch.einsum("nl,e,nc->nlec", self.Mout, self.eps, R)
        return self._hidden_adjoint(Wh)

    def _hidden_adjoint(self, Wh: Tensor) -> Tensor:
        g = torch.einsum("nkg,nkh,nlec->leckgh", self.Min, self.Xp, Wh)
        return torch.stack([g, -g], dim=5)

    def constraint(self, x: Tensor) -> Tensor:
        Cin = torch.einsum("nkg,nkh,leckgsh->nleckgs", self.sgn_in, self.Xp, x)
        Cout = self.sgn_out[:, :, None, None] * self._hidden(x)
        return torch.cat([Cin.reshape(-1), Cout.reshape(-1)])

    def constraint_adjoint(self, Mu: Tensor) -> Tensor:
        n_in = self.N * self.L * 2 * self.c * self.K * self.Gn * 2
        Min = Mu[:n_in].reshape(self.N, self.L, 2, self.c, self.K, self.Gn, 2)
        Mout = Mu[n_in:].reshape(self.N, self.L, 2, self.c)
        g = torch.einsum("nkg,nkh,nleckgs->leckgsh", self.sgn_in, self.Xp, Min)
        return g + self._hidden_adjoint(self.sgn_out[:, :, None, None] * Mout)

    def repair(self, x: Tensor) -> None:
        return None  # coupled outer constraints: certify the read-back network instead

    def description(self) -> str:
        return ("three-layer CNN (two ReLU layers, ℓ1 path regulariser): nested cone-constrained "
                "group lasso over sampled inner/outer patterns"
                + ("" if self.c == 1 else " (output-separable restriction)"))

    def to_network(self, x: Tensor, tol: float = 0.0) -> ThreeLayerCNN:
        """Filter u = q/√||q|| and second-layer weight ±√||q|| per non-zero block q; one hidden
        unit per (outer pattern, sign, class) with output weight ε on that class."""
        dt, dev = x.dtype, x.device
        nrm = torch.linalg.vector_norm(x, dim=-1)  # (L, 2, c, K, G, 2)
        idx = torch.nonzero(nrm > tol, as_tuple=True)
        l_i, e_i, c_i, k_i, g_i, s_i = idx
        q = x[idx]  # (m1, h)
        r = nrm[idx].sqrt()
        U = q / r[:, None]
        m1 = len(r)
        unit_key = (l_i * 2 + e_i) * self.c + c_i
        units, unit_of = torch.unique(unit_key, return_inverse=True)
        m2 = len(units)
        W2 = torch.zeros(m2, m1 * self.K, dtype=dt, device=dev)
        W2[unit_of, torch.arange(m1, device=dev) * self.K + k_i] = torch.where(s_i == 0, r, -r)
        W3 = torch.zeros(self.c, m2, dtype=dt, device=dev)
        uc = units % self.c
        ue = (units // self.c) % 2
        W3[uc, torch.arange(m2, device=dev)] = torch.where(ue == 0, 1.0, -1.0).to(dt)
        if self.intercept:
            W, b = U[:, :-1], U[:, -1].contiguous()
        else:
            W, b = U, torch.zeros(m1, dtype=dt, device=dev)
        k = self.kernel_size
        return ThreeLayerCNN(W.reshape(m1, self.in_channels, k, k), b, W2, W3, kernel_size=k,
                             stride=self.stride, padding=self.padding)

    def to_cvxpy(self):
        return _cvxpy_three_layer(self)


def _cvxpy_three_layer(prog: ThreeLayerCNNProgram):
    import cvxpy as cp

    X = _np_patches(prog.images.detach().cpu().double().numpy(), prog.kernel_size, prog.stride,
                    prog.padding, prog.intercept)
    G = prog.G.detach().cpu().double().numpy()
    Y = prog.Y.detach().cpu().double().numpy()
    Mout = prog.Mout.detach().cpu().double().numpy()
    N = X.shape[0]
    cons, pen = [], 0
    Zcols = [0] * prog.c
    V = {}
    for l in range(prog.L):
        for e, eps in enumerate((1.0, -1.0)):
            for c in range(prog.c):
                Hexpr = 0
                for k in range(prog.K):
                    for g in range(prog.Gn):
                        D = (X[:, k] @ G[:, g] >= 0).astype(float)
                        for s in range(2):
                            v = cp.Variable(prog.h)
                            V[(l, e, c, k, g, s)] = v
                            cons.append(cp.multiply(2 * D - 1, X[:, k] @ v) >= 0)
                            pen = pen + cp.norm(v, 2)
                            Hexpr = Hexpr + (1 if s == 0 else -1) * cp.multiply(D, X[:, k] @ v)
                cons.append(cp.multiply(2 * Mout[:, l] - 1, Hexpr) >= 0)
                Zcols[c] = Zcols[c] + eps * cp.multiply(Mout[:, l], Hexpr)
    Z = cp.hstack([cp.reshape(z, (N, 1), order="C") for z in Zcols])
    problem = cp.Problem(cp.Minimize(_cvxpy_loss(prog.loss.name, Z, Y) + prog.reg * pen), cons)

    def assemble() -> Tensor:
        x = np.zeros(prog.shape)
        for (l, e, c, k, g, s), v in V.items():
            x[l, e, c, k, g, s] = v.value
        return torch.as_tensor(x, dtype=prog.Y.dtype, device=prog.Y.device)

    return problem, assemble


# ============================================================ ADMM for the two-layer CNN
def _snap_to_domain(loss: Loss, lam: Tensor, Y: Tensor) -> Tensor:
    """The nearest point of dom L* along the obvious projection (a splitting solver's estimate
    of ∇L is in the domain only up to round-off); the dual bound is evaluated exactly there."""
    if loss.name == "cross_entropy":
        P = (lam + Y).clamp_min(0)
        P = P / P.sum(1, keepdim=True).clamp_min(1e-300)
        return P - Y
    if loss.name == "logistic":
        return -Y * (-Y * lam).clamp(0.0, 1.0)
    return lam


class _ADMMSplitting:
    """:class:`ConvTwoLayerProgram` in the protocol of :func:`convexnn.solvers.admm.admm`:
    A x = predictions, B x = the working-set cone rows, y-block weight γ.

    The normal matrix K = AᵀA + γ² I + BᵀB is cheap to invert: BᵀB is block diagonal with one
    h x h block per group, and the block depends only on the cone (p, q), not on the sign s or
    the class c: M_{pq} = Σ_{b ∈ W_{pq}} b bᵀ. (With all rows of an average-pooling cone,
    b = ±x_{n,k} and M_{pq} = Σ_{k∈W_q} X_kᵀ X_k is even the same for every gate.) So
    K₀ = γ² I + BᵀB = blockdiag(C_{pq}⁻¹) (C = I/γ² for the gated program, which has no B), and
    K is inverted once per working set, by the cheaper of

    * sample space (Woodbury): K⁻¹ = K₀⁻¹ − K₀⁻¹ Aᵀ N⁻¹ A K₀⁻¹ with the n x n matrix
      N = I + S Σ_{p,q} E_{pq} C_{pq} E_{pq}ᵀ (the same for every class: the program is
      output-separable);
    * feature space: on v − w the matrix is blockdiag(C_{pq}⁻¹) + S EᵀE ((a P h) square), on
      v + w it is blockdiag(C_{pq}⁻¹).

    γ = ``gamma_scale`` · (mean over cones of tr(M_{pq})/h)^{1/2} (gated: with the mean of
    tr(Σ_{k∈W_q} X_kᵀ X_k)/h), so the splitting is invariant to rescaling the images; the scale
    0.3 was the fastest of {0.1, 0.3, 1, 3} on small CNN programs (iterations to a 1e-3 gap).
    """

    def __init__(self, prog: ConvTwoLayerProgram, memory_limit: int = 60_000_000,
                 gamma_scale: float = 0.3):
        self.prog = prog
        self.has_cone = prog.constrained
        E = prog._E if prog._E is not None else prog._features(0, prog.N)
        self.E = E  # (N, a, P, h)
        N, a, P, h = E.shape
        S = prog.S
        eye = torch.eye(h, dtype=E.dtype, device=E.device)
        if self.has_cone:
            M = torch.einsum("pqrh,pqrj->pqhj", prog._Bw, prog._Bw)  # (P, a, h, h)
            g2 = float(torch.diagonal(M, dim1=2, dim2=3).sum()) / (P * a * h)
        else:
            g2 = 0.0
            for s_ in range(0, N, prog.chunk):
                Xw = prog._window_patches(s_, min(s_ + prog.chunk, N))
                g2 += float((Xw ** 2).sum())
            g2 /= a * h
            M = torch.zeros(P, a, h, h, dtype=E.dtype, device=E.device)
        self.gamma = gamma_scale * math.sqrt(max(g2, 1e-300))
        Cinv = self.gamma ** 2 * eye + M
        self.C = torch.linalg.inv(Cinv)
        self.C = 0.5 * (self.C + self.C.transpose(2, 3))
        aPh = a * P * h
        cost_n = N * N * aPh + N ** 3 / 3 if N * N <= memory_limit else math.inf
        cost_f = aPh * aPh * N + aPh ** 3 / 3 if aPh * aPh <= memory_limit else math.inf
        if not math.isfinite(min(cost_n, cost_f)):
            raise MemoryError(f"ADMM normal equations too large (n = {N}, a·P·h = {aPh}); use "
                              "fewer samples or patterns, or solver='al' / 'fista'")
        self.space = "samples" if cost_n <= cost_f else "features"
        self._last = self._Ax = None
        Ef = E.reshape(N, aPh)
        if self.space == "samples":
            EC = torch.einsum("nqph,pqhj->nqpj", E, self.C).reshape(N, aPh)
            Nm = S * (EC @ Ef.T)
            Nm = 0.5 * (Nm + Nm.T)
            Nm.diagonal().add_(1.0)
            self.chol = torch.linalg.cholesky(Nm)
        else:
            G = S * (Ef.T @ Ef)
            Gv = G.view(a, P, h, a, P, h)
            for q in range(a):
                for p in range(P):
                    Gv[q, p, :, q, p, :] += Cinv[p, q]
            self.chol = torch.linalg.cholesky(G)

    # ------------------------------------------------------------ protocol
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        p = self.prog
        # A x for the x returned by the last sample-space solve is t = N⁻¹ A x₀ (Woodbury:
        # A K⁻¹ r = A x₀ − (N − I) N⁻¹ A x₀ = N⁻¹ A x₀), which saves one product with A
        Ax = self._Ax if self._last is x else p.predict(x)
        return Ax, (p.constraint(x) if self.has_cone else None)

    def adjoint(self, r: Tensor, q: Tensor | None) -> Tensor:
        g = self.prog.predict_adjoint(r)
        if q is not None:
            g = g + self.prog.constraint_adjoint(q)
        return g

    def _K0inv(self, x: Tensor) -> Tensor:
        return torch.einsum("pqhj,spqcj->spqch", self.C, x)

    def solve_normal(self, rhs: Tensor) -> Tensor:
        p = self.prog
        if self.space == "samples":
            x0 = self._K0inv(rhs)
            t = torch.cholesky_solve(p.predict(x0), self.chol)
            x = x0 - self._K0inv(p.predict_adjoint(t))
            self._last, self._Ax = x, t
            return x
        a, P, h, c = p.a, p.P, p.h, p.c

        def feat(v):  # (P, a, c, h) -> (a·P·h, c) in E's layout
            return v.permute(1, 0, 3, 2).reshape(a * P * h, c)

        def unfeat(m):
            return m.reshape(a, P, h, c).permute(1, 0, 3, 2)

        if self.has_cone:
            s_ = self._K0inv((rhs[0] + rhs[1])[None])[0]
            d_ = unfeat(torch.cholesky_solve(feat(rhs[0] - rhs[1]), self.chol))
            return torch.stack([0.5 * (s_ + d_), 0.5 * (s_ - d_)])
        return unfeat(torch.cholesky_solve(feat(rhs[0]), self.chol))[None]

    def prox_f(self, v: Tensor, t: float, warm: Tensor | None = None) -> Tensor:
        return self.prog.loss.prox(v, self.prog.Y, t, Z0=warm)

    def prox_g(self, v: Tensor, t: float) -> Tensor:
        return self.prog.prox(v, t)


class _SharedADMMSplitting:
    """:class:`ConvSharedFilterProgram` in the protocol of :func:`convexnn.solvers.admm.admm`
    (no cone block): A x = Φ x per class with Φ (N x P·a), y-block weight γ. The normal matrix
    ΦᵀΦ + γ² I is inverted by Woodbury through the n x n (or P·a x P·a, whichever is smaller)
    Cholesky factor of γ² I + ΦΦᵀ (or of ΦᵀΦ + γ² I); γ² = ||Φ||_F² / (P·a) (mean eigenvalue)
    times 0.09 (the scale 0.3 of :class:`_ADMMSplitting`)."""

    has_cone = False

    def __init__(self, prog: ConvSharedFilterProgram, gamma_scale: float = 0.3):
        self.prog = prog
        Phi = prog.Phi.reshape(prog.N, -1)
        self.Phi = Phi
        N, Pa = Phi.shape
        self.gamma = gamma_scale * math.sqrt(max(float((Phi ** 2).sum()) / Pa, 1e-300))
        g2 = self.gamma ** 2
        self.samples = N <= Pa
        M = Phi @ Phi.T if self.samples else Phi.T @ Phi
        M.diagonal().add_(g2)
        self.chol = torch.linalg.cholesky(0.5 * (M + M.T))
        self._last = self._Ax = None

    def forward(self, x: Tensor) -> tuple[Tensor, None]:
        Ax = self._Ax if self._last is x else self.prog.predict(x)
        return Ax, None

    def adjoint(self, r: Tensor, q: None) -> Tensor:
        return self.prog.predict_adjoint(r)

    def solve_normal(self, rhs: Tensor) -> Tensor:
        p = self.prog
        R = rhs.reshape(p.P * p.a, p.c)
        if self.samples:  # (ΦᵀΦ + γ²I)⁻¹ = (I − Φᵀ (γ²I + ΦΦᵀ)⁻¹ Φ) / γ², and then Φ x = t
            t = torch.cholesky_solve(self.Phi @ R, self.chol)
            x = ((R - self.Phi.T @ t) / self.gamma ** 2).reshape(p.shape)
            self._last, self._Ax = x, t
            return x
        self._last = None
        return torch.cholesky_solve(R, self.chol).reshape(p.shape)

    def prox_f(self, v: Tensor, t: float, warm: Tensor | None = None) -> Tensor:
        return self.prog.loss.prox(v, self.prog.Y, t, Z0=warm)

    def prox_g(self, v: Tensor, t: float) -> Tensor:
        return self.prog.prox(v, t)


# ===================================================================== solver driver
def solve(prog: _ConeGroupProgram, *, solver: str = "auto", tol: float = 1e-6,
          max_iter: int = 10000, max_time: float | None = None, check_every: int = 10,
          x0: Tensor | None = None, verbose: int = 0, cvxpy_solver: str | None = None,
          cvxpy_options: dict | None = None, refine_iters: int = 0,
          final_refine_iters: int = 200, round_iters: int = 50, add_rows: int | None = None,
          primal: str = "network"):
    """Solve a CNN program and certify the result.

    ``solver``: ``"auto"`` (FISTA for gated programs, ADMM for the shared-filter program; for
    cone-constrained ones ADMM on :class:`ConvTwoLayerProgram` and the augmented Lagrangian
    otherwise), ``"admm"``,
    ``"fista"``, ``"al"`` or ``"cvxpy"`` (any installed CVXPY solver, ``cvxpy_solver``). Returns
    ``(x, certificate, SolverResult)``; stops on the certified relative gap ``tol`` or
    ``max_iter`` / ``max_time``. The returned x is the point whose read-back network attains
    ``certificate.primal``. ``refine_iters`` / ``final_refine_iters``: multiplier-refinement
    steps (:meth:`_ConeGroupProgram.refine_multipliers`) per monitoring check (AL only) / for
    the returned certificate (cone-constrained programs only).

    Cutting planes (cone programs whose ``working_set`` is on): the solver runs in rounds of
    ``round_iters`` iterations (doubling, at most 800); after each round the ``add_rows``
    (default: the program's initial count) most violated rows outside the working set of every
    cone are added and the solver is warm-started (ADMM re-factorises its normal matrix). The
    certificate is always for the full program (μ = 0 on rows outside the working set).

    ``primal``: ``"network"`` certifies the read-back network of the iterate (which may even
    beat the program's optimum when its neurons leave the sampled patterns); ``"feasible"``
    certifies the iterate's projection onto the cones (:meth:`ConvTwoLayerProgram.
    project_to_cones`), i.e. how well the program itself is solved.
    """
    from ..solvers import fista
    from ..solvers.cvxpy_backend import solve_cvxpy

    if solver == "auto":
        if isinstance(prog, ConvSharedFilterProgram):
            solver = "admm"
        elif not prog.constrained:
            solver = "fista"
        else:
            solver = "admm" if isinstance(prog, ConvTwoLayerProgram) else "al"
    x = prog.zeros() if x0 is None else x0
    if solver == "cvxpy":
        problem, assemble = prog.to_cvxpy()
        res = solve_cvxpy(problem, solver=cvxpy_solver, verbose=bool(verbose),
                          **(cvxpy_options or {}))
        mu = None
        if prog.constrained and hasattr(assemble, "duals"):
            mu = prog.multipliers_from_rows(assemble.duals())
        cert, x = prog.certify(assemble(), mu,
                               refine=final_refine_iters if prog.constrained else 0,
                               primal=primal)
        res.history.append(0, cert.primal, cert.gap, cert.relative_gap, res.seconds)
        res.x = x
        return x, cert, res
    if solver == "fista":
        if prog.constrained:
            raise ValueError("solver='fista' solves unconstrained (gated) programs; use 'al'")

        def monitor(x_, s_):
            c_ = prog.certificate(x_)
            return c_.primal, c_.gap, c_.relative_gap

        res = fista(prog, x, step=1.0 / prog.lipschitz(), tol=tol, max_iter=max_iter,
                    max_time=max_time, check_every=check_every, monitor=monitor,
                    verbose=verbose)
        return res.x, prog.certificate(res.x), res
    if solver == "al" and not prog.constrained:
        raise ValueError("solver='al' is for cone-constrained programs; use 'fista'")
    if solver == "admm" and not isinstance(prog, (ConvTwoLayerProgram,
                                                  ConvSharedFilterProgram)):
        raise ValueError("solver='admm' is implemented for the two-layer CNN programs; use "
                         "'al' or 'fista'")
    if solver == "al" and prog.working_set:
        raise ValueError("solver='al' runs on all cone rows: build the program with "
                         "working_set=False, or use solver='admm' (cutting planes)")
    if solver not in ("al", "admm"):
        raise ValueError(f"unknown solver {solver!r}; expected 'auto', 'admm', 'fista', 'al' "
                         "or 'cvxpy'")
    return _solve_rounds(prog, x, solver, tol=tol, max_iter=max_iter, max_time=max_time,
                         check_every=check_every, verbose=verbose, refine_iters=refine_iters,
                         final_refine_iters=final_refine_iters, round_iters=round_iters,
                         add_rows=add_rows, primal=primal)


def _solve_rounds(prog: _ConeGroupProgram, x: Tensor, inner: str, *, tol: float,
                  max_iter: int, max_time: float | None, check_every: int, verbose: int,
                  refine_iters: int, final_refine_iters: int, round_iters: int,
                  add_rows: int | None, primal: str = "network"):
    """ADMM / augmented Lagrangian, in cutting-plane rounds when the program uses working sets
    (see :func:`solve`). ADMM certificates also try the solver's loss-gradient estimate ρu
    (snapped into dom L*) and use its multipliers μ = (−ρw)_+; the factorisation time is part
    of the reported clock."""
    from ..solvers import augmented_lagrangian
    from ..solvers.admm import admm
    from ..solvers.base import History, SolverResult, StopReason

    t0 = time.perf_counter()
    hist = History()
    ws = bool(getattr(prog, "working_set", False)) and prog.constrained
    add = int(add_rows) if add_rows is not None else int(getattr(prog, "init_rows", 24))
    round_len = max(int(round_iters), check_every) if ws else max_iter
    total, rounds, setup, added = 0, 0, 0.0, 0
    mu = torch.zeros_like(prog.constraint(x)) if prog.constrained else None
    lam = None
    warm, split, rho = None, None, (1.0 if inner == "admm" else prog.loss.smoothness)
    reason = StopReason.MAX_ITER
    while True:
        start = time.perf_counter() - t0
        if max_time is not None and start >= max_time:
            reason = StopReason.MAX_TIME
            break
        n_it = min(max_iter - total, round_len)
        if n_it <= 0:
            reason = StopReason.MAX_ITER
            break
        left = None if max_time is None else max_time - start
        if inner == "admm":
            if split is None:
                ts = time.perf_counter()
                split = (_SharedADMMSplitting(prog)
                         if isinstance(prog, ConvSharedFilterProgram) else _ADMMSplitting(prog))
                setup += time.perf_counter() - ts
                left = None if left is None else max(left - (time.perf_counter() - ts), 0.0)

            def monitor(y, lam_, mu_):
                c_, _ = prog.certify(y, mu_, lam=_snap_to_domain(prog.loss, lam_, prog.Y),
                                     check_violation=False, primal=primal)
                return c_.primal, c_.gap, c_.relative_gap

            res = admm(split, x, rho=rho, tol=tol, max_iter=n_it, max_time=left,
                       check_every=check_every, monitor=monitor, verbose=verbose, warm=warm)
            warm = res.extras
            lam = _snap_to_domain(prog.loss, res.extras["lam"], prog.Y)
            if prog.constrained:
                mu = res.extras["mu"]
        else:
            def monitor(x_, s_, sub):
                c_, _ = prog.certify(x_, sub.updated_multipliers(s_), refine=refine_iters,
                                     check_violation=False, primal=primal)
                return c_.primal, c_.gap, c_.relative_gap

            res = augmented_lagrangian(prog, x, mu, rho=rho, tol=tol, max_iter=n_it,
                                       max_time=left, check_every=check_every,
                                       monitor=monitor, verbose=verbose)
            mu, rho = res.extras["mu"], res.extras["rho"]
        x = res.x
        h = res.history
        for i in range(len(h)):
            hist.append(h.iteration[i] + total, h.objective[i], h.gap[i], h.relative_gap[i],
                        h.seconds[i] + start)
        total += res.n_iter
        rounds += 1
        if res.stop_reason in (StopReason.GAP, StopReason.MAX_TIME):
            reason = res.stop_reason
            break
        if res.stop_reason == StopReason.STALLED and not ws:
            reason = res.stop_reason
            break
        if not ws:
            continue
        idx, valid, top = prog.violated_rows(x, add)
        R_old = mu.shape[-1]
        n_new = prog.add_rows(idx, valid)
        added += n_new
        if verbose:
            print(f"[cnn] round {rounds}: {total} iterations, +{n_new} cone rows "
                  f"(largest relative violation {top:.2e}, working rows "
                  f"{prog.n_working_rows})")
        if n_new:
            C_new = prog.constraint(x)[..., R_old:]
            mu = torch.cat([mu, torch.zeros_like(C_new)], -1)
            if warm is not None:
                warm = dict(warm)
                warm["s"] = torch.cat([warm["s"], C_new.clamp_min(0)], -1)
                warm["w"] = torch.cat([warm["w"], torch.zeros_like(C_new)], -1)
                split = None
        round_len = min(2 * round_len, 800)
    cert, xb = prog.certify(x, mu, refine=final_refine_iters if prog.constrained else 0,
                            lam=lam, primal=primal)
    if inner == "admm" and warm is not None:
        rho = warm["rho"]
    return xb, cert, SolverResult(
        x=x, history=hist, stop_reason=reason, n_iter=total,
        seconds=time.perf_counter() - t0,
        extras={"mu": mu, "rho": rho, "rounds": rounds, "rows_added": added,
                "working_rows": prog.n_working_rows if prog.constrained else 0,
                "setup_seconds": setup,
                "normal_space": None if split is None else getattr(split, "space", None)})
