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

(The paper's unreduced form with M Λ Mᵀ = 0 is available as ``to_cvxpy(form="paper")``; the test
suite checks both give the same value.)

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

**Network extraction (upper bound).** Any network's objective upper-bounds p*. We do not use the
paper's three-operator-splitting rounding; instead (justified by simplicity and by the
certificate, which measures the result): (1) a pool of candidate first-layer directions — the
u-parts ±W_u of the eigenvectors of Z scaled by √eigenvalue (and of the solver's factor); (2)
the optimal output layer for these fixed unit directions, a convex group lasso
min_V ½||H Vᵀ − Y||² + β Σ_k ||v_k|| with H = (X û_k)_+ (exactly the weight-decay objective
after balancing each neuron), solved by FISTA; (3) local polishing of all weights by L-BFGS on
the non-convex objective. The gap  network objective − certified lower bound  is the
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
the paper's TOS rounding, and the paper's test-set threshold tuning protocol (deliberately).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ..certificates import SCOPE_GLOBAL, Certificate, relative
from ..losses import get_loss
from ..networks import TwoLayerNetwork
from ..results import FitResult
from ..solvers.base import History, StopReason

if TYPE_CHECKING:   # sdp_neuron imports from this module
    from .sdp_neuron import NeuronBound

__all__ = ["SDPRelaxation", "DualBound", "fit_sdp", "extract_network", "polish_network"]

_EPS = float(np.finfo(np.float64).eps)
# measured crossover (benchmarks/results/sdp.md): the interior-point method is the more
# accurate and robust choice on small problems, the ADMM is faster from about here on
_AUTO_IPM_MAX_N = 80
# from this SDP size on the ADMM starts in float32 (1.8x faster per iteration at n = 1000;
# every certificate stays float64) and switches to float64 once the stopping measure
# max(gap estimate, 10 r_primal) has improved by less than _STALL_GAIN over the last
# _STALL_CHECKS checks while below _STALL_BELOW. Measured (benchmarks/results/sdp.md,
# part 7): float64 throughout is better at q = 531 (1e-3 in 205 s; mixed 288 s), float32 at
# q = 781 and 1031 for 7.5 and 15 minute budgets. float32 caps the accuracy near 1e-3; far
# above that its best-so-far measure moves in steps (at q = 1031 a 20-check rule came within
# 10 % of firing at a gap of 9e-2), so plateaus there are the method's, not the precision's.
_LARGE_Q = 700
_STALL_CHECKS = 40
_STALL_GAIN = 0.05
_STALL_BELOW = 1e-2


@dataclass
class DualBound:
    """A certified lower bound −L*((1 − θ) Γ) ≤ p_SDP ≤ p* and how it was obtained."""

    value: float           # the proven lower bound
    raw_value: float       # −L*(Γ) of the unrepaired estimate (a bound only if lam_min ≥ 0)
    lam_min: float         # λ_min(S(D)) of the estimate
    theta: float           # Γ is scaled by 1 − θ
    lam0: float            # λ_min(S(D₀)) of the strictly feasible point blended with (nan: none)
    delta: float           # ω = δ·1 of that point (nan: none)
    method: str = "blend"  # "blend" (with D₀, trace bound) or "neuron" (:mod:`.sdp_neuron`)


class SDPRelaxation:
    """The doubly-nonnegative SDP relaxation of the lifted CP program (see module docstring).

    Factor protocol for :func:`convexnn.solvers.lowrank_sdp.burer_monteiro_al` (Z = W Wᵀ,
    W of shape (q, r), rows b | u | v): ``objective``, ``equality``, ``inequality``.
    """

    def __init__(self, X: Tensor, Y: Tensor, reg: float, *, intercept: bool = False):
        if reg <= 0:
            raise ValueError(f"reg must be > 0, got {reg}")
        if Y.ndim == 1:
            Y = Y[:, None]
        if X.shape[0] != Y.shape[0]:
            raise ValueError(f"X and Y have different numbers of samples: {X.shape[0]} != "
                             f"{Y.shape[0]}")
        self.X, self.Y = X, Y.to(X)
        self.reg = float(reg)
        self.intercept = intercept
        self.n, self.d = X.shape
        self.c = Y.shape[1]
        self.q = self.n + self.d + self.c
        n, d = self.n, self.d
        self.sb, self.su, self.sv = slice(0, n), slice(n, n + d), slice(n + d, self.q)
        self._slater = None

    # ------------------------------------------------------------ factor protocol
    def parts(self, W: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(A, B, U, V): the α, β, u, v rows of the lifted factor (A = B + X U)."""
        B, U, V = W[self.sb], W[self.su], W[self.sv]
        return B + self.X @ U, B, U, V

    def predictions(self, W: Tensor) -> Tensor:
        A, _, _, V = self.parts(W)
        return A @ V.T

    def objective(self, W: Tensor) -> Tensor:
        A, _, U, V = self.parts(W)
        R = A @ V.T - self.Y
        return 0.5 * (R * R).sum() + 0.5 * self.reg * ((U * U).sum() + (V * V).sum())

    def equality(self, W: Tensor) -> Tensor:
        """diag(Λ_αβ) (must vanish)."""
        A, B, _, _ = self.parts(W)
        return (A * B).sum(1)

    def inequality(self, W: Tensor) -> Tensor:
        """Λ_{[αβ],[αβ]} (2n x 2n, must be ≥ 0 entrywise)."""
        A, B, _, _ = self.parts(W)
        AB = torch.cat([A, B], 0)
        return AB @ AB.T

    def violation(self, W: Tensor) -> float:
        """Largest constraint violation of Z = W Wᵀ, relative to max(1, largest |Λ_ab| entry)."""
        G = self.inequality(W)
        h = self.equality(W)
        scale = max(1.0, float(G.abs().max()))
        return max(float(h.abs().max()), float((-G).clamp_min(0).max())) / scale

    # ---------------------------------------------------------- network <-> factor
    def lift_network(self, net: TwoLayerNetwork) -> Tensor:
        """The factor W (q x m) of the lifted network: column j = ((−X ũ_j)_+, ũ_j, v_j).

        ``objective(W)`` equals the network's objective and all constraints hold exactly.
        """
        net = net.to(device=self.X.device, dtype=self.X.dtype)
        if net.activation != "relu":
            raise ValueError("only ReLU networks can be lifted")
        U = net.first_layer_weights
        if self.intercept:
            U = torch.cat([U, net.first_layer_bias[:, None]], 1)
        elif bool((net.first_layer_bias != 0).any()):
            raise ValueError("the network has a first-layer bias but intercept=False")
        U = U.T  # d x m
        return torch.cat([(-(self.X @ U)).clamp_min(0), U, net.second_layer_weights], 0)

    def network(self, U: Tensor, V: Tensor) -> TwoLayerNetwork:
        """Network from first-layer columns U (d x m, bias last if intercept) and V (c x m)."""
        W1 = U.T.contiguous()
        if self.intercept:
            return TwoLayerNetwork(W1[:, :-1].contiguous(), W1[:, -1].contiguous(),
                                   V.contiguous(), "relu")
        return TwoLayerNetwork(W1, torch.zeros(W1.shape[0], dtype=W1.dtype, device=W1.device),
                               V.contiguous(), "relu")

    # ------------------------------------------------------------------ matrix form
    def lagrangian_matrix(self, Gamma: Tensor, omega: Tensor, N: Tensor) -> Tensor:
        """S(Γ, ω, N) (q x q): objective ≥ −L*(Γ) + <S, Z> on the feasible set (N ≥ 0)."""
        n, X = self.n, self.X
        sb, su, sv = self.sb, self.su, self.sv
        S = torch.zeros(self.q, self.q, dtype=X.dtype, device=X.device)
        idx_u = torch.arange(self.d) + n
        idx_v = torch.arange(self.c) + n + self.d
        S[idx_u, idx_u] += 0.5 * self.reg
        S[idx_v, idx_v] += 0.5 * self.reg
        # <Γ, Z_bv + X Z_uv>
        S[sb, sv] += 0.5 * Gamma
        S[su, sv] += 0.5 * (X.T @ Gamma)
        # <ω, diag(Z_bb + X Z_ub)>
        ib = torch.arange(n)
        S[ib, ib] += omega
        S[sb, su] += 0.5 * omega[:, None] * X
        # −<N, T_ab Z_[bu] T_abᵀ>
        Ns = 0.5 * (N + N.T)
        N11, N12, N21, N22 = Ns[:n, :n], Ns[:n, n:], Ns[n:, :n], Ns[n:, n:]
        S[sb, sb] -= N11 + N12 + N21 + N22
        S[sb, su] -= (N11 + N21) @ X
        S[su, su] -= X.T @ (N11 @ X)
        # symmetrise the off-diagonal blocks that were filled on one side only
        S[sv, sb] = S[sb, sv].T
        S[sv, su] = S[su, sv].T
        S[su, sb] = S[sb, su].T
        return S

    def _slater_point(self) -> tuple[float, float]:
        """δ maximising λ_min(S(0, δ·1, 0)) and that eigenvalue (closed form via σ_max(X))."""
        if self._slater is None:
            Xd = self.X.detach().cpu().double().numpy()
            sv = np.linalg.svd(Xd, compute_uv=False)
            s = float(sv[0]) if sv.size else 0.0
            rank = int((sv > sv[0] * 1e-12).sum()) if sv.size else 0
            b = 0.5 * self.reg

            def lam0(delta: float) -> float:
                pair = 0.5 * ((delta + b) - math.sqrt((delta - b) ** 2 + (delta * s) ** 2))
                vals = [pair, b]
                if self.n > rank:
                    vals.append(delta)
                return min(vals)

            grid = np.geomspace(1e-8, 1e4, 400) * b / max(1.0, s * s)
            best = max(grid, key=lam0)
            fine = np.linspace(best / 1.1, best * 1.1, 201)
            best = float(max(fine, key=lam0))
            # exact eigenvalue check of the closed form (cheap relative to the certificate)
            self._slater = (best, lam0(best))
        return self._slater

    def dual_bound(self, Gamma: Tensor, omega: Tensor, N: Tensor,
                   upper: float | None = None) -> DualBound:
        """Certified lower bound from any dual estimate (see the module docstring).

        With ``upper`` (any proven upper bound on p_SDP, e.g. ½||Y||² or a network's objective)
        the trace bound is also used and the larger bound returned: every optimal Z is
        balanced (rescaling u ↦ t u, v ↦ v / t keeps feasibility), so tr Z_uu = tr Z_vv ≤
        upper/β and tr Z_bb ≤ ||X||² tr Z_uu (from M Λ Mᵀ = 0 and diag Λ_αβ = 0); hence
        p_SDP ≥ −L*(Γ) + T·min(0, λ_min(S)) with T = (2 + ||X||²)·upper/β.
        """
        Gamma = Gamma.to(torch.float64)
        omega = omega.to(torch.float64)
        N = N.to(torch.float64).clamp_min(0)
        prob = self if self.X.dtype == torch.float64 else SDPRelaxation(
            self.X.double(), self.Y.double(), self.reg, intercept=self.intercept)
        S = prob.lagrangian_matrix(Gamma, omega, N)
        lam = float(torch.linalg.eigvalsh(S)[0])
        margin = 1e3 * self.q * _EPS * float(torch.linalg.matrix_norm(S))
        delta, lam0 = self._slater_point()
        lam0 = lam0 - 1e3 * self.q * _EPS * (abs(delta) + self.reg
                                              + float(torch.linalg.matrix_norm(self.X.double(), 2)))
        eps = max(0.0, -(lam - margin))
        theta = 0.0 if eps == 0.0 else eps / (eps + lam0)
        sq = get_loss("squared")
        Y = self.Y.to(torch.float64)
        value = float(-sq.conjugate((1.0 - theta) * Gamma, Y))
        raw = float(-sq.conjugate(Gamma, Y))
        if upper is not None and math.isfinite(upper):
            x2 = float(torch.linalg.matrix_norm(self.X.double(), 2)) ** 2
            T = (2.0 + x2) * max(float(upper), 0.0) / self.reg * (1 + 1e-12)
            value = max(value, raw - T * eps)
        return DualBound(value=value, raw_value=raw, lam_min=lam, theta=theta, lam0=lam0,
                         delta=delta)

    def blocks_from_matrix(self, Z: Tensor) -> dict[str, Tensor]:
        X = self.X
        sb, su, sv = self.sb, self.su, self.sv
        Zbb, Zbu, Zuu = Z[sb, sb], Z[sb, su], Z[su, su]
        Lab = Zbb + X @ Zbu.T
        return {"aa": Lab + Zbu @ X.T + X @ Zuu @ X.T, "ab": Lab, "bb": Zbb,
                "av": Z[sb, sv] + X @ Z[su, sv], "uu": Zuu, "vv": Z[sv, sv]}

    def objective_matrix(self, Z: Tensor) -> float:
        B = self.blocks_from_matrix(Z)
        R = B["av"] - self.Y
        return float(0.5 * (R * R).sum()
                     + 0.5 * self.reg * (torch.trace(B["uu"]) + torch.trace(B["vv"])))

    # ------------------------------------------------------------------------ CVXPY
    def to_cvxpy(self, form: str = "reduced"):
        """The relaxation as a CVXPY problem; returns ``(problem, handles)``.

        ``form="reduced"``: Z ⪰ 0 (q x q), used for solving and certification (the handles hold
        the constraints whose duals feed :meth:`dual_bound`). ``form="paper"``: the unreduced
        (2n+d+c)² variable with M Λ Mᵀ = 0 as in the authors' code (a cross-check only).
        """
        import cvxpy as cp

        X = self.X.detach().cpu().double().numpy()
        Y = self.Y.detach().cpu().double().numpy()
        n, d, c = self.n, self.d, self.c
        if form == "reduced":
            q = self.q
            Z = cp.Variable((q, q), PSD=True)
            Zbb, Zbu, Zuu = Z[:n, :n], Z[:n, n:n + d], Z[n:n + d, n:n + d]
            Zbv, Zuv, Zvv = Z[:n, n + d:], Z[n:n + d, n + d:], Z[n + d:, n + d:]
            Lab = Zbb + X @ Zbu.T
            Laa = Lab + Zbu @ X.T + X @ Zuu @ X.T
            Lav = Zbv + X @ Zuv
            cons = {"aa": Laa >= 0, "ab": Lab >= 0, "bb": Zbb >= 0, "diag": cp.diag(Lab) == 0}
            obj = 0.5 * cp.sum_squares(Lav - Y) + 0.5 * self.reg * (cp.trace(Zuu) + cp.trace(Zvv))
            problem = cp.Problem(cp.Minimize(obj), list(cons.values()))
            return problem, {"Z": Z, **cons}
        if form == "paper":
            p = 2 * n + d + c
            L = cp.Variable((p, p), PSD=True)
            M = np.hstack([-np.eye(n), np.eye(n), X, np.zeros((n, c))])
            Lav = L[:n, 2 * n + d:]
            obj = 0.5 * cp.sum_squares(Lav - Y) + 0.5 * self.reg * (
                cp.trace(L[2 * n:, 2 * n:]))
            cons = [M @ L @ M.T == 0, cp.diag(L[:n, n:2 * n]) == 0, L[:2 * n, :2 * n] >= 0]
            return cp.Problem(cp.Minimize(obj), cons), {"Lambda": L}
        raise ValueError(f"form must be 'reduced' or 'paper', got {form!r}")

    def neuron_bound(self, Gamma: Tensor, **neuron_kwargs) -> tuple[DualBound, NeuronBound]:
        """The "neuron" certificate of a loss multiplier Γ alone (any Γ, however obtained).

        A proven φ̄ ≥ φ(Γ) from :func:`convexnn.formulations.sdp_neuron.neuron_sdp_bound`
        (keyword arguments passed on), then max_{s ≤ reg/(2√φ̄)} −L*(sΓ) ≤ p_SDP. Returns the
        bound (``method="neuron"``, ``theta`` = 1 − s) and the inner solve's ``NeuronBound``.
        """
        from .sdp_neuron import neuron_sdp_bound, scaled_gamma_bound

        X64, Y64 = self.X.to(torch.float64), self.Y.to(torch.float64)
        Gamma = Gamma.to(device=X64.device, dtype=torch.float64)
        nb = neuron_sdp_bound(X64, Gamma, **neuron_kwargs)
        value, s = scaled_gamma_bound(Gamma, Y64, self.reg, nb.phi_upper)
        raw = float(-get_loss("squared").conjugate(Gamma, Y64))
        return DualBound(value=value, raw_value=raw, lam_min=nb.lam_min, theta=1.0 - s,
                         lam0=math.nan, delta=math.nan, method="neuron"), nb

    def certify_cvxpy(self, handles, neuron: bool = True,
                      neuron_tol: float = 1e-4) -> tuple[DualBound, Tensor]:
        """Certified lower bound from a solved reduced CVXPY problem; also returns Z.

        The "blend" bound of the solver's duals (:meth:`dual_bound`) and, with ``neuron``, the
        "neuron" bound (:meth:`neuron_bound`, to relative accuracy ``neuron_tol``) of the loss
        multiplier Γ = Λ_αv(Z) − Y read off the primal solution; the larger is returned. The
        blend needs the duals accurate relative to reg: it is tight for an interior-point
        solver (Clarabel) but can be far off for a first-order one (SCS at eps = 1e-3).
        """
        dt = torch.float64
        Z = torch.as_tensor(handles["Z"].value, dtype=dt)
        Zs = 0.5 * (Z + Z.T)
        prob = SDPRelaxation(self.X.double(), self.Y.double(), self.reg, intercept=self.intercept)
        Gamma = prob.blocks_from_matrix(Zs)["av"] - prob.Y

        def dv(name):
            return torch.as_tensor(np.asarray(handles[name].dual_value, dtype=float), dtype=dt)

        n = self.n
        N = torch.zeros(2 * n, 2 * n, dtype=dt)
        Naa, Nab, Nbb = dv("aa"), dv("ab"), dv("bb")
        N[:n, :n] = 0.5 * (Naa + Naa.T)
        N[:n, n:] = 0.5 * Nab
        N[n:, :n] = 0.5 * Nab.T
        N[n:, n:] = 0.5 * (Nbb + Nbb.T)
        om = dv("diag").reshape(-1)
        # the sign convention of equality duals is solver-dependent; ω is free, try both
        cands = [prob.dual_bound(Gamma, s * om, N) for s in (1.0, -1.0)]
        if neuron:
            cands.append(prob.neuron_bound(Gamma, tol=neuron_tol, max_iter=20000)[0])
        return max(cands, key=lambda b: b.value), Zs.to(self.X)

    def factor_from_matrix(self, Z: Tensor, rank: int | None = None, tol: float = 1e-9) -> Tensor:
        """W with W Wᵀ ≈ Z from the leading eigenpairs (eigenvalues > tol·λ_max)."""
        evals, evecs = torch.linalg.eigh(0.5 * (Z + Z.T))
        evals, evecs = evals.flip(0), evecs.flip(1)
        keep = evals > tol * max(float(evals[0]), 1e-300)
        if rank is not None:
            keep[rank:] = False
        return evecs[:, keep] * evals[keep].sqrt()


# ------------------------------------------------------------- interior-point solver
def _normalised(prob: SDPRelaxation) -> tuple[SDPRelaxation, float, float]:
    """The equivalent problem with ||X||₂ = 1 and ||Y||_F = 1 (see :func:`solve_ipm`)."""
    sx = float(torch.linalg.matrix_norm(prob.X, 2))
    ky = float(torch.linalg.vector_norm(prob.Y))
    if sx <= 0 or ky <= 0:
        raise ValueError("X and Y must be nonzero")
    return (SDPRelaxation(prob.X / sx, prob.Y / ky, prob.reg / (sx * ky),
                          intercept=prob.intercept), sx, ky)


def _unscale_primal(pn: SDPRelaxation, sx: float, ky: float, Zn: Tensor) -> Tensor:
    """Z of the original problem from Z' of the normalised one (:func:`_normalised`)."""
    t = math.sqrt(sx * ky)
    dt, dev = Zn.dtype, Zn.device
    dsc = torch.cat([torch.full((pn.n,), t, dtype=dt, device=dev),
                     torch.full((pn.d,), t / sx, dtype=dt, device=dev),
                     torch.full((pn.c,), ky / t, dtype=dt, device=dev)])
    return dsc[:, None] * Zn * dsc[None, :]


def _congruence(prob: SDPRelaxation):
    """(Z ↦ T Z Tᵀ, E ↦ Tᵀ E T) for the rows T = (α | β | v) of the lift, in O(n² (d + c)).

    Row i of the α block is e_{b_i} + x_i (on u), of the β block e_{b_i}, of the v block e_{v_k};
    so T Z Tᵀ holds Λ_[αβ], Λ_αv, Λ_βv and Z_vv.
    """
    X, n, d = prob.X, prob.n, prob.d

    def gram(Z: Tensor, out: Tensor | None = None) -> Tensor:   # T Z Tᵀ in O(n² (d + c))
        Zb, Zu = Z[:n], Z[n:n + d]
        A = torch.addmm(Zb, X, Zu)
        K = Z.new_empty(2 * n + Z.shape[0] - n - d, 2 * n + Z.shape[0] - n - d) \
            if out is None else out
        K[:n, :n].copy_(A[:, :n]).addmm_(A[:, n:n + d], X.T)          # Λ_αα
        K[:n, n:2 * n] = A[:, :n]                                      # Λ_αβ
        K[n:2 * n, :n] = A[:, :n].T
        K[:n, 2 * n:] = A[:, n + d:]                                   # Λ_αv
        K[2 * n:, :n] = A[:, n + d:].T
        K[n:2 * n, n:2 * n] = Zb[:, :n]                                # Λ_ββ = Z_bb
        K[n:2 * n, 2 * n:] = Zb[:, n + d:]
        K[2 * n:, n:2 * n] = Zb[:, n + d:].T
        K[2 * n:, 2 * n:] = Z[n + d:, n + d:]
        return K

    def adjoint(E: Tensor) -> Tensor:       # Tᵀ E T for symmetric E, O(n² d)
        Eaa, Eab, Eav = E[:n, :n], E[:n, n:2 * n], E[:n, 2 * n:]
        Ebb, Ebv, Evv = E[n:2 * n, n:2 * n], E[n:2 * n, 2 * n:], E[2 * n:, 2 * n:]
        Sbb = Eaa + Eab + Eab.T + Ebb
        Sbu = (Eaa + Eab.T) @ X
        Suu = X.T @ Eaa @ X
        Sbv, Suv = Eav + Ebv, X.T @ Eav
        return torch.cat([torch.cat([Sbb, Sbu, Sbv], 1), torch.cat([Sbu.T, Suu, Suv], 1),
                          torch.cat([Sbv.T, Suv.T, Evv], 1)], 0)

    return gram, adjoint


def _lift_factor(X: Tensor, a: float, c: int):
    """M ↦ L⁻¹ M (L⁻ᵀ M if ``transpose``) for the block Cholesky factor L Lᵀ = G of

        G = [[2 I_n, X, 0], [Xᵀ, XᵀX + a I_d, 0], [0, 0, I_c]]

    (TᵀT of the lifts: a = 0, c = #outputs for the relaxation's rows α | β | v; a = 1, c = 0
    for the neuron SDP's rows α | β | u). L = [[√2 I, 0, 0], [Xᵀ/√2, L_u, 0], [0, 0, I]] with
    L_u L_uᵀ = XᵀX/2 + a I, so one application costs O(n d k) for k columns instead of the
    O(q² k) of a dense root. None if XᵀX/2 + aI is numerically singular (then the ADMM falls
    back on its dense pseudo-inverse root)."""
    n, d = X.shape
    S = 0.5 * (X.T @ X) + a * torch.eye(d, dtype=X.dtype, device=X.device)
    Lu, bad = torch.linalg.cholesky_ex(S)
    if int(bad) != 0:
        return None
    dg = torch.diagonal(Lu).abs()
    # pivots this small mean XᵀX is numerically rank deficient (cond(G) ≳ 1 / (100 eps))
    if float(dg.min()) <= 10.0 * float(torch.finfo(X.dtype).eps) ** 0.5 * float(dg.max()):
        return None
    r2 = math.sqrt(2.0)
    Xs = X / r2

    def solve(M: Tensor, transpose: bool = False) -> Tensor:
        Mb, Mu, Mv = M[:n], M[n:n + d], M[n + d:]
        if transpose:   # Lᵀ = [[√2 I, X/√2], [0, L_uᵀ]] on (b, u)
            yu = torch.linalg.solve_triangular(Lu.T, Mu, upper=True)
            yb = (Mb - Xs @ yu) / r2
        else:
            yb = Mb / r2
            yu = torch.linalg.solve_triangular(Lu, Mu - Xs.T @ yb, upper=False)
        return torch.cat([yb, yu, Mv], 0)

    return solve


def _off_pair_mask(n: int, device: torch.device | str | None = None) -> Tensor:
    """2n x 2n bool mask of the [αβ] block's sign-constrained entries: every entry except the
    complementary pairs (α_i, β_i), (β_i, α_i), which are fixed to zero instead."""
    ia = torch.arange(n, device=device)
    m = torch.ones(2 * n, 2 * n, dtype=torch.bool, device=device)
    m[ia, ia + n] = False
    m[ia + n, ia] = False
    return m


def _lift_rows(prob: SDPRelaxation) -> Tensor:
    """The rows T = (α | β | v) of the lift as a dense (2n + c) x q matrix (see
    :func:`_congruence` for the structured products with it)."""
    X, n, d, c, q = prob.X, prob.n, prob.d, prob.c, prob.q
    dt, dev = X.dtype, X.device
    T = torch.zeros(2 * n + c, q, dtype=dt, device=dev)
    eye = torch.eye(n, dtype=dt, device=dev)
    T[:n, :n] = eye
    T[:n, n:n + d] = X
    T[n:2 * n, :n] = eye
    T[2 * n:, n + d:] = torch.eye(c, dtype=dt, device=dev)
    return T


def _rank2_problem(prob: SDPRelaxation, WP: Tensor, WR: Tensor):
    """(P)/(D) of :mod:`convexnn.solvers.sdp_ipm` for the reduced relaxation.

    Rows of T (t = 2n + c): a_i = e_{b_i} + x_i (on u), b_i = e_{b_i}, v_k = e_{v_k}, so
    T Z Tᵀ holds Λ_[αβ] = T_ab Z T_abᵀ, Λ_αv and Z_vv. Constraints: Q = Λ_αv entries (targets
    Y), E = diag(Λ_αβ), I = −2 Λ_e ≤ 0 for the working set of pairs e = (p, p') of the
    2n x 2n block. The dual variables are exactly (Γ, ω, N) of :meth:`lagrangian_matrix`.
    """
    from ..solvers.sdp_ipm import Rank2SDP

    Y, n, d, c, q = prob.Y, prob.n, prob.d, prob.c, prob.q
    dt, dev = prob.X.dtype, prob.X.device
    T = _lift_rows(prob)
    ia = torch.arange(n, device=dev)
    P = torch.cat([ia.repeat_interleave(c), ia, WP.to(dev)])
    R = torch.cat([(2 * n + torch.arange(c, device=dev)).repeat(n), ia + n, WR.to(dev)])
    coef = torch.cat([torch.ones(n * c + n, dtype=dt, device=dev),
                      -2.0 * torch.ones(WP.numel(), dtype=dt, device=dev)])
    C = torch.zeros(q, q, dtype=dt, device=dev)
    C[n:, n:] = 0.5 * prob.reg * torch.eye(d + c, dtype=dt, device=dev)

    gram, adjoint = _congruence(prob)
    return Rank2SDP(T=T, C=C, P=P, R=R, coef=coef, b=Y.reshape(-1).clone(), n_quad=n * c,
                    n_eq=n, gram_fn=gram, adjoint_fn=adjoint)


def _seed_pairs(X: Tensor, neighbors: int) -> tuple[Tensor, Tensor]:
    """Initial working set of entries of Λ_[αβ] (index pairs p < p' of the 2n x 2n block).

    Measured on CVXPY solutions: the active Λ_αβ(i, k) ≥ 0 constraints (i ≠ k) are mostly
    between angular nearest neighbours (i active ⇒ k active for every neuron), the active
    Λ_ββ(i, k) ≥ 0 between the most anti-aligned samples. We seed with ``neighbors`` nearest
    neighbours (both orders) and the farthest sample; the IPM adds whatever else is violated.
    """
    n = X.shape[0]
    dev = X.device
    Xn = X / torch.linalg.vector_norm(X, dim=1, keepdim=True).clamp_min(1e-300)
    cos = Xn @ Xn.T
    cos.fill_diagonal_(-3.0)
    rows, cols = [], []
    k = min(neighbors, n - 1)
    if k > 0:
        nb = torch.topk(cos, k, dim=1).indices
        i = torch.arange(n, device=dev).repeat_interleave(k)
        j = nb.reshape(-1)
        rows += [i, j]
        cols += [n + j, n + i]
    if n > 1:
        cos.fill_diagonal_(3.0)
        far = torch.topk(-cos, 1, dim=1).indices.reshape(-1)
        i = torch.arange(n, device=dev)
        rows.append(n + i)
        cols.append(n + far)
    if not rows:
        e = torch.zeros(0, dtype=torch.long, device=dev)
        return e, e
    a, b = torch.cat(rows), torch.cat(cols)
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    keep = (lo != hi) & ~((lo < n) & (hi == lo + n))
    key = torch.unique(lo[keep] * (2 * n) + hi[keep])
    return key // (2 * n), key % (2 * n)


def solve_ipm(prob: SDPRelaxation, *, tol: float = 1e-8, max_iter: int = 300,
              max_time: float | None = None, neighbors: int = 3, add_tol: float = 1e-7,
              add_max: int | None = None, add_every: int = 3, feasible_dual: bool = True,
              verbose: int = 0) -> tuple[DualBound, Tensor, dict]:
    r"""Solve the relaxation with the structured interior-point method; certify the result.

    1. *Normalise*: X' = X/||X||₂, Y' = Y/||Y||_F, β' = β/(||X||₂ ||Y||_F) is the same SDP
       (Z' = D Z D with D = diag(I/t, (s/t) I, (t/κ) I), t² = sκ; objective scaled by 1/κ²).
    2. *Working set*: the 4n² entrywise constraints Λ_[αβ] ≥ 0 are imposed on a working set
       (seeded by :func:`_seed_pairs`); once the interior-point iterate is within 1e-2 of
       optimality, entries of T Z Tᵀ that are < −``add_tol``·max diag Λ outside the set are added
       (up to ``add_max`` per iteration), until none is violated at the final iterate. A dual
       point with N = 0 off the working set is a dual point of the full problem, so the bound in
       step 3 is valid whatever the working set; it is tight once no constraint is violated.
    3. *Certificate*: the multipliers (Γ', ω', N') are mapped back (Γ = κΓ', ω = κω'/s,
       N = κN'/s) and passed to :meth:`SDPRelaxation.dual_bound` on the *original* data, which
       checks λ_min(S) in float64 with a rounding margin and repairs if needed.

    Returns ``(bound, Z, info)`` with Z in the original coordinates.
    """
    from ..solvers.sdp_ipm import primal_dual_ipm

    pn, sx, ky = _normalised(prob)
    n, q = pn.n, pn.q
    dt, dev = pn.X.dtype, pn.X.device
    WP, WR = _seed_pairs(pn.X, neighbors)
    rp = _rank2_problem(pn, WP, WR)
    inW = torch.zeros(2 * n, 2 * n, dtype=torch.bool, device=dev)
    inW[WP, WR] = True
    inW[WR, WP] = True
    ia = torch.arange(n, device=dev)
    inW[ia, ia + n] = True
    inW[ia + n, ia] = True
    inW.fill_diagonal_(True)
    cap = add_max if add_max is not None else max(1, n // 2)
    added = [0, 0, -add_every]   # constraints added, additions, iteration of the last one

    def check(state: dict):
        if state["rel_gap"] > 1e-2 or state["infeasibility"] > 1e-2:
            return None
        if state["iter"] - added[2] < add_every and max(state["rel_gap"],
                                                       state["infeasibility"]) > tol:
            return None
        Lab = state["KZ"][:2 * n, :2 * n]
        scale = float(Lab.diagonal().max())
        V = torch.triu((Lab < -add_tol * scale) & ~inW, 1)
        if not bool(V.any()):
            return None
        pi, pk = V.nonzero(as_tuple=True)
        order = torch.argsort(Lab[pi, pk])[:cap]
        pi, pk = pi[order], pk[order]
        inW[pi, pk] = True
        inW[pk, pi] = True
        added[0] += pi.numel()
        added[1] += 1
        added[2] = state["iter"]
        if verbose:
            print(f"[sdp-ipm] it={state['iter']} adding {pi.numel()} of {int(V.sum())} "
                  f"violated entries (working set {rp.n_ineq + pi.numel()})")
        return pi, pk, -2.0 * torch.ones(pi.numel(), dtype=dt, device=dev)

    ni = rp.n_ineq
    y0 = torch.zeros(rp.m, dtype=dt, device=dev)
    eye = torch.eye(q, dtype=dt, device=dev)
    if feasible_dual:
        # strictly feasible dual start (Slater point, small N): every iterate is a bound
        delta, lam0 = pn._slater_point()
        y0[rp.n_quad:rp.n_quad + n] = delta
        tn = torch.linalg.vector_norm(rp.T, dim=1)
        y0[rp.n_quad + n:] = 0.25 * lam0 / max(2.0 * float((tn[WP] * tn[WR]).sum()), 1e-300)
        S0 = None
        s0 = 1.0 / y0[rp.n_quad + n:] if ni else y0[:0]
        s0 = s0 * float(y0[rp.n_quad + n:].min()) if ni else s0
    else:
        y0[rp.n_quad + rp.n_eq:] = 1.0
        S0, s0 = eye, torch.ones(ni, dtype=dt, device=dev)
    res = primal_dual_ipm(rp, Z0=eye, S0=S0, y0=y0, s0=s0, tol=tol, max_iter=max_iter,
                          max_time=max_time, check=check, verbose=verbose)
    # ---- map back and certify on the original data
    nc = n * pn.c
    y = res.y.to(torch.float64)
    Gam = ky * y[:nc].reshape(n, pn.c)
    om = (ky / sx) * y[nc:nc + n]
    N = torch.zeros(2 * n, 2 * n, dtype=torch.float64, device=dev)
    nu = (ky / sx) * y[nc + n:].clamp_min(0)
    Pw, Rw = rp.P[nc + n:], rp.R[nc + n:]
    N[Pw, Rw] = nu
    N[Rw, Pw] = nu
    Z = _unscale_primal(pn, sx, ky, res.Z)
    bound = prob.dual_bound(Gam, om, N, upper=0.5 * float((prob.Y * prob.Y).sum()))
    info = {"ipm_iterations": res.n_iter, "ipm_stop": res.stop_reason,
            "ipm_rel_gap": res.rel_gap, "ipm_infeasibility": res.infeasibility,
            "working_set": rp.n_ineq, "constraints_added": added[0],
            "sdp_primal_estimate": ky * ky * res.primal_value,
            "sdp_dual_estimate": ky * ky * res.dual_value, "history": res.history,
            "multipliers": (Gam, om, N)}
    return bound, Z.to(prob.X), info


def solve_admm(prob: SDPRelaxation, *, tol: float = 1e-4, max_iter: int = 5000,
               max_time: float | None = None, check_every: int | None = None,
               rho: float = 0.3, dtype: torch.dtype | str | None = None,
               neuron_first: int | str | None = "auto", neuron_growth: float = 1.5,
               neuron_max_iter: int = 3000, accel: bool = True, eig: str = "auto",
               verbose: int = 0) -> tuple[DualBound, Tensor, dict]:
    r"""Solve the relaxation with the first-order method :func:`convexnn.solvers.sdp_admm`.

    The relaxation is  min_{Z ⪰ 0} <C, Z> + g(T Z Tᵀ)  with T the rows (α | β | v) of the lift
    (:func:`_congruence`) and g separable over the entries of K = T Z Tᵀ (t = 2n + c):
    K_[αβ] ≥ 0, diag(K_αβ) = 0, ½||K_αv − Y||² on the αv block, free elsewhere. *All* 4n²
    entrywise constraints are kept (no working set); an iteration costs the positive
    eigenpairs of one q x q matrix, O(q² r) products (r: their number) and O(n² (d + c))
    structured ones: T Z Tᵀ, Tᵀ E T and the block Cholesky factor of TᵀT
    (:func:`_lift_factor`).

    **Certificates.** The ADMM multiplier Y = ρU of K = T Z Tᵀ maps onto the certificate's
    multipliers: Γ = 2 Y_αv, ω_i = 2 Y_{α_i β_i}, N = (−Y_[αβ])_+ off those pairs. Two proven
    bounds are computed from it and the larger is returned:

    * "blend" (:meth:`SDPRelaxation.dual_bound`, every ``check_every`` iterations): needs
      λ_min of the dual matrix accurate relative to reg, which is slow to reach when
      reg ≪ ||X|| ||Y||;
    * "neuron" (:mod:`convexnn.formulations.sdp_neuron`): Γ alone, scaled by the proven
      bound of a scale-free neuron SDP, solved by the same ADMM at iterations
      ``neuron_first``, then every ``neuron_growth`` times more (warm-started, about as
      many inner iterations as outer ones since the last call, at most ``neuron_max_iter``)
      and, unless the tolerance was met, once at the end with the full budget, which may
      exceed ``max_time`` by a quarter (``neuron_first=None``: never; ``"auto"``: only the
      final solve — measured at n = 1000, giving the whole time to the outer ADMM and one
      inner solve at the end proves a better bound in the same time than the schedule;
      an int schedule lets the neuron bound stop the run early at loose ``tol``).

    The method stops when the relative gap between the primal estimate
    <C, Z> + ½||Z_αv − Y||² and either the proven "neuron" bound or the "blend" *estimate*
    (the trace bound with the primal estimate standing in for a proven upper bound) is ≤ ``tol``
    and the relative primal residual is ≤ ``tol``/10. The returned ``bound`` and
    ``info["certify"](upper)`` are *proven*; the latter takes any proven upper bound on p_SDP
    (e.g. an extracted network's objective, as :func:`fit_sdp` does), which tightens the trace
    bound.

    ``dtype``: precision of the iterates. Default: from q = 700 on, float32 (an iteration is
    1.8x faster at n = 1000) until the stopping measure (the larger of the gap estimate and 10x the
    primal residual) is below 1e-2 and has improved by less than 5 % over the last 40 checks,
    then float64 from the same iterate and multipliers (penalty reset to ``rho``) — float32
    caps the accuracy of the blend certificate and slows near ~1e-3 (measured at n = 500:
    float32 alone 1.2e-3 after 300 s, float64 1e-3 in 205 s); below q = 700 the data's
    precision; ``"mixed"``: that float32-then-float64 schedule at
    any size. Every certificate is computed in float64.
    ``accel``: restarted momentum in the ADMM and in the inner neuron solves
    (:func:`convexnn.solvers.sdp_admm.sdp_admm`). ``eig``: how the projections' positive
    eigenpairs are computed ("auto": LAPACK's subset driver on CPU, "full", "subset"; see
    :func:`convexnn.solvers.sdp_admm.positive_part`); both give the same iterates.
    """
    from ..solvers.sdp_admm import CongruenceSDP, sdp_admm

    pn, sx, ky = _normalised(prob)
    if neuron_first == "auto":
        final_neuron, neuron_first = True, None
    elif neuron_first is None:
        final_neuron = False
    elif isinstance(neuron_first, int) and neuron_first > 0:
        final_neuron = True
    else:
        raise ValueError(f"neuron_first must be a positive int, 'auto' or None, got "
                         f"{neuron_first!r}")
    pn64 = pn if pn.X.dtype == torch.float64 else SDPRelaxation(
        pn.X.double(), pn.Y.double(), pn.reg, intercept=pn.intercept)
    n, q = pn.n, pn.q
    # precision phases: float32 while it makes progress, then float64 (see the docstring)
    if dtype == "mixed" or (dtype is None and q >= _LARGE_Q and pn.X.dtype == torch.float64):
        phases = [torch.float32, torch.float64]
    elif dtype is None:
        phases = [pn.X.dtype]
    elif isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        phases = [dtype]
    else:
        raise ValueError(f"dtype must be a floating torch dtype, 'mixed' or None, got {dtype!r}")
    ia = torch.arange(n, device=pn.X.device)

    def problem(dt: torch.dtype) -> CongruenceSDP:
        """The ADMM's data for iterates of precision dt."""
        p = pn64 if dt == torch.float64 else SDPRelaxation(
            pn64.X.to(dt), pn64.Y.to(dt), pn64.reg, intercept=pn64.intercept)
        X, Y = p.X, p.Y
        gram, adjoint = _congruence(p)
        C = torch.zeros(q, q, dtype=dt, device=X.device)
        C[n:, n:] = 0.5 * p.reg * torch.eye(q - n, dtype=dt, device=X.device)
        T = _lift_rows(p)

        def prox(V: Tensor, r: float) -> Tensor:      # in place (sdp_admm allows it)
            V[:2 * n, :2 * n].clamp_(min=0)
            V[ia, ia + n] = 0.0       # the complementary pairs (α_i, β_i)
            V[ia + n, ia] = 0.0
            Kav = (Y + 2.0 * r * V[:n, 2 * n:]) / (1.0 + 2.0 * r)
            V[:n, 2 * n:] = Kav
            V[2 * n:, :n] = Kav.T
            return V

        return CongruenceSDP(C=C, G=T.T @ T, gram_fn=gram, adjoint_fn=adjoint, prox_fn=prox,
                             solve_fn=_lift_factor(X, 0.0, p.c))

    def multipliers(Yd: Tensor, scale_g: float = 1.0, scale_n: float = 1.0):
        Yd = Yd.to(torch.float64)
        Gam = scale_g * 2.0 * Yd[:n, 2 * n:]
        om = scale_n * 2.0 * 0.5 * (Yd[ia, ia + n] + Yd[ia + n, ia])
        N = scale_n * (-(0.5 * (Yd[:2 * n, :2 * n] + Yd[:2 * n, :2 * n].T))).clamp_min(0)
        N[ia, ia + n] = 0.0                 # the complementary pairs carry ω, not N
        N[ia + n, ia] = 0.0
        return Gam, om, N

    every = check_every if check_every is not None else (10 if q <= 400 else 25)
    y_half = 0.5 * float((pn64.Y * pn64.Y).sum())
    best: dict = {"est": -math.inf, "Y": None, "obj": math.nan, "rel": math.inf,
                  "neuron": None, "neuron_iter": -1, "warm": None,
                  "next": math.inf if neuron_first is None else neuron_first,
                  "inner_iterations": 0, "inner_seconds": 0.0, "dtype": phases[0]}
    t0 = time.perf_counter()

    def neuron(Yd: Tensor, it: int, final: bool = False) -> DualBound:
        """The "neuron" bound of the multiplier Yd, proven on the original data."""
        Gam = ky * 2.0 * Yd.to(torch.float64)[:n, 2 * n:]
        el = time.perf_counter() - t0
        if final:   # the returned bound: full budget, at most max(time left, el/4) seconds
            budget = neuron_max_iter
            left = None if max_time is None else max(max_time - el, 0.25 * el)
        else:       # about as many as outer iterations since the last call (warm-started)
            budget = min(neuron_max_iter, max(500, it - max(best["neuron_iter"], 0)))
            left = None if max_time is None else max(1.0, max_time - el)
        b, nb = prob.neuron_bound(Gam, tol=tol, max_iter=budget, max_time=left,
                                  dtype=best["dtype"], warm=best["warm"], accel=accel)
        best["warm"] = nb.state
        best["inner_iterations"] += nb.iterations
        best["inner_seconds"] += nb.seconds
        if best["neuron"] is None or b.value > best["neuron"].value:
            best["neuron"] = b
        best["neuron_iter"] = it
        return b

    hist = History()

    def monitor(state: dict) -> bool:
        obj = pn64.objective_matrix(state["Z"].to(torch.float64))
        b = pn64.dual_bound(*multipliers(state["Y"]), upper=y_half)  # Z = 0 is feasible
        # stopping estimate: the trace bound with the primal estimate in place of a proven
        # upper bound (the final certificate uses the extracted network's objective instead)
        est = b.raw_value - 3.0 * max(obj, 0.0) / pn64.reg * max(0.0, -b.lam_min)
        est = max(est, b.value)
        if est > best["est"]:
            best.update(est=est, Y=state["Y"].clone())
        if state["iter"] >= best["next"]:
            best["next"] = max(best["next"] + every, int(neuron_growth * state["iter"]))
            neuron(state["Y"], state["iter"])
        lo = best["est"]
        if best["neuron"] is not None:
            lo = max(lo, best["neuron"].value / (ky * ky))
        rel = relative(max(obj - lo, 0.0), obj)
        best.update(obj=obj, rel=rel)
        hist.append(state["iter"], obj, max(obj - lo, 0.0), rel, time.perf_counter() - t0)
        if verbose:
            nv = best["neuron"].value / ky ** 2 if best["neuron"] is not None else math.nan
            print(f"[sdp-admm] it={state['iter']} primal={obj:.6e} lb_estimate={est:.6e} "
                  f"neuron_lb={nv:.6e} rel_gap={rel:.2e} r_primal={state['r_primal']:.2e} "
                  f"lam_min={b.lam_min:.2e} dtype={best['dtype']} "
                  f"t={time.perf_counter() - t0:.1f}s")
        return rel <= tol and state["r_primal"] <= 0.1 * tol

    if eig not in ("auto", "full", "subset"):
        raise ValueError(f"eig must be 'auto', 'full' or 'subset', got {eig!r}")
    K0 = U0 = None
    it0, rho_ = 0, rho
    for k, dt in enumerate(phases):
        best["dtype"] = dt
        stalled = {"flag": False, "rels": []}
        last_phase = k == len(phases) - 1

        def phase_monitor(state: dict, it0=it0, last_phase=last_phase, stalled=stalled) -> bool:
            state = dict(state, iter=state["iter"] + it0)
            if monitor(state):
                return True
            rels = stalled["rels"]   # best so far of the stopping rule's measure
            m = max(best["rel"], 10.0 * state["r_primal"])
            rels.append(min(m, rels[-1] if rels else math.inf))
            if (not last_phase and len(rels) > _STALL_CHECKS and rels[-1] < _STALL_BELOW
                    and rels[-1] > (1.0 - _STALL_GAIN) * rels[-1 - _STALL_CHECKS]):
                stalled["flag"] = True     # this precision has stopped making progress
                return True
            return False

        left = None if max_time is None else max(max_time - (time.perf_counter() - t0), 0.0)
        res = sdp_admm(problem(dt), K0=K0, U0=U0, rho=rho_, max_iter=max_iter - it0,
                       max_time=left, check_every=every, accel=accel, eig=eig,
                       monitor=phase_monitor, verbose=max(0, verbose - 1))
        it0 += res.n_iter
        if not stalled["flag"] or it0 >= max_iter:
            break
        # same iterate and multiplier Y = ρU, penalty back to its start (the balancing of the
        # float32 phase reacts to rounding noise in the residuals)
        K0 = res.extras["K"].to(phases[k + 1])
        U0 = res.extras["Y"].to(phases[k + 1]) / rho
        rho_ = rho
        best["switch"] = it0
    stop = res.stop_reason if not stalled["flag"] else StopReason.MAX_ITER
    if best["Y"] is None:    # never checked (max_iter < check_every): use the last iterate
        monitor({"Z": res.x, "Y": res.extras["Y"], "iter": it0,
                 "r_primal": res.extras["r_primal"]})
    if (final_neuron and best["neuron_iter"] != it0
            and stop != StopReason.GAP):     # not converged: certify the last one
        neuron(res.extras["Y"], it0, final=True)
    Yd = best["Y"]
    Gam, om, N = multipliers(Yd, ky, ky / sx)
    Z = _unscale_primal(pn64, sx, ky, res.x.to(torch.float64))
    y_half_orig = 0.5 * float((prob.Y * prob.Y).sum())
    nbound = best["neuron"]

    def certify(upper: float | None = None) -> DualBound:
        """Proven bound: the best of the "neuron" bound and the "blend" bound of the selected
        multipliers; ``upper``: any proven upper bound on p_SDP of the original problem
        (default ½||Y||², the value of Z = 0)."""
        up = y_half_orig if upper is None else min(float(upper), y_half_orig)
        dev_ = prob.X.device
        bo = prob.dual_bound(Gam.to(dev_), om.to(dev_), N.to(dev_), upper=up)
        # the normalised problem is the same SDP with value scaled by 1/κ² (data rescaled in
        # float64, a relative perturbation of ~1e-16); its eigenvalue check is better
        # conditioned, so its bound, scaled back, is used when larger
        bn = pn64.dual_bound(*multipliers(Yd), upper=up / (ky * ky))
        if ky * ky * bn.value > bo.value:
            bo = DualBound(value=ky * ky * bn.value, raw_value=ky * ky * bn.raw_value,
                           lam_min=bn.lam_min, theta=bn.theta, lam0=bn.lam0, delta=bn.delta)
        return nbound if nbound is not None and nbound.value > bo.value else bo

    bound = certify()
    info = {"admm_iterations": it0, "admm_stop": stop,
            "admm_rel_gap_estimate": best["rel"], "admm_r_primal": res.extras["r_primal"],
            "admm_r_dual": res.extras["r_dual"], "admm_rho": res.extras["rho"],
            "neuron_iterations": best["inner_iterations"],
            "neuron_seconds": best["inner_seconds"],
            "sdp_primal_estimate": ky * ky * best["obj"], "history": hist,
            "precision_switch_iteration": best.get("switch"),
            "multipliers": (Gam, om, N), "certify": certify}
    return bound, Z.to(prob.X), info


# ------------------------------------------------------------------ network extraction
def _group_lasso_output(H: Tensor, Y: Tensor, reg: float, iters: int = 500) -> Tensor:
    """argmin_V ½||H Vᵀ − Y||² + reg Σ_k ||v_k||₂  (V: c x m) by FISTA."""
    m = H.shape[1]
    Lip = float(torch.linalg.matrix_norm(H, 2)) ** 2 + 1e-12
    V = torch.zeros(Y.shape[1], m, dtype=H.dtype, device=H.device)
    Zv, t = V, 1.0
    for _ in range(iters):
        G = (H @ Zv.T - Y).T @ H
        Vn = Zv - G / Lip
        nrm = torch.linalg.vector_norm(Vn, dim=0, keepdim=True)
        Vn = Vn * (1 - reg / Lip / nrm.clamp_min(1e-300)).clamp_min(0)
        tn = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
        Zv = Vn + ((t - 1) / tn) * (Vn - V)
        V, t = Vn, tn
    return V


def polish_network(net: TwoLayerNetwork, X: Tensor, Y: Tensor, reg: float, *, intercept: bool,
                   max_iter: int = 500) -> TwoLayerNetwork:
    """Local L-BFGS on the non-convex objective from ``net`` (never returns a worse network).

    X here includes the ones column when ``intercept``; the network's bias is its last weight.
    """
    U0 = net.first_layer_weights
    if intercept:
        U0 = torch.cat([U0, net.first_layer_bias[:, None]], 1)
    U = U0.detach().clone().requires_grad_(True)
    V = net.second_layer_weights.detach().clone().requires_grad_(True)

    def f():
        R = torch.relu(X @ U.T) @ V.T - Y
        return 0.5 * (R * R).sum() + 0.5 * reg * ((U * U).sum() + (V * V).sum())

    with torch.no_grad():
        f0 = float(f())
    if max_iter > 0 and U.shape[0] > 0:
        opt = torch.optim.LBFGS([U, V], lr=1.0, max_iter=max_iter, tolerance_grad=1e-12,
                                tolerance_change=1e-15, history_size=20,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            val = f()
            val.backward()
            return val

        opt.step(closure)
    with torch.no_grad():
        f1 = float(f())
    if not math.isfinite(f1) or f1 > f0:
        return net
    Ud, Vd = U.detach(), V.detach()
    if intercept:
        return TwoLayerNetwork(Ud[:, :-1].contiguous(), Ud[:, -1].contiguous(), Vd, "relu")
    return TwoLayerNetwork(Ud.contiguous(), torch.zeros(Ud.shape[0], dtype=Ud.dtype), Vd, "relu")


def extract_network(prob: SDPRelaxation, W: Tensor, *, polish_iter: int = 500,
                    prune: float = 1e-8) -> TwoLayerNetwork:
    """A ReLU network from a factor W (Z ≈ W Wᵀ) of the relaxation (see module docstring).

    Candidate unit directions: ±u-parts of W's principal directions (eigenvectors of W Wᵀ) and
    of W's own columns; optimal output layer by group lasso; dead/zero neurons pruned; then
    local polishing. The result is a heuristic upper bound on p* — the certificate measures it.
    """
    X, Y, reg = prob.X, prob.Y, prob.reg
    Ue, S, _ = torch.linalg.svd(W, full_matrices=False)
    Wpc = Ue * S
    cands = torch.cat([Wpc[prob.su], W[prob.su]], 1)
    cands = torch.cat([cands, -cands], 1)
    nrm = torch.linalg.vector_norm(cands, dim=0)
    cands = cands[:, nrm > 1e-12 * max(float(nrm.max()) if nrm.numel() else 0.0, 1e-300)]
    if cands.shape[1] == 0:
        return prob.network(torch.zeros(prob.d, 1, dtype=X.dtype),
                            torch.zeros(prob.c, 1, dtype=X.dtype))
    Uh = cands / torch.linalg.vector_norm(cands, dim=0, keepdim=True)
    H = torch.relu(X @ Uh)
    V = _group_lasso_output(H, Y, reg)
    a = torch.linalg.vector_norm(V, dim=0)
    keep = a > prune * max(float(a.max()), 1e-300)
    if not bool(keep.any()):
        keep[0] = True
    s = a[keep].clamp_min(1e-300).sqrt()
    U = Uh[:, keep] * s
    Vk = V[:, keep] / s
    net = prob.network(U, Vk)
    return polish_network(net, X, Y, reg, intercept=prob.intercept, max_iter=polish_iter)


# ----------------------------------------------------------------------- fitting backend
def _init_factor(prob: SDPRelaxation, rank: int, rng: np.random.Generator) -> Tensor:
    """A feasible starting factor: the lift of a small random network."""
    scale = math.sqrt(float(torch.linalg.vector_norm(prob.Y)) / max(prob.n, 1)) + 1e-3
    U = torch.as_tensor(rng.standard_normal((prob.d, rank)), dtype=prob.X.dtype) * scale
    U = U / max(1.0, float(torch.linalg.matrix_norm(prob.X, 2)) / math.sqrt(prob.n))
    V = torch.as_tensor(rng.standard_normal((prob.c, rank)), dtype=prob.X.dtype) * scale
    return torch.cat([(-(prob.X @ U)).clamp_min(0), U, V], 0)


def fit_sdp(X: Tensor, Y: Tensor, reg: float, loss: str = "squared", *, intercept: bool,
            solver: str = "auto", random_state: int | None = None, tol: float = 1e-4,
            max_iter: int = 20000, max_time: float | None = None, verbose: int = 0,
            rank: int | None = None, cvxpy_solver: str | None = None,
            polish_iter: int = 5000,
            cert_every_max_q: int = 400, refine_iter: int = 200,
            rho: float = 10.0) -> FitResult:
    """Fit a two-layer ReLU network through the SDP relaxation of its lifted CP program.

    ``X`` (n x d) already contains the ones column when ``intercept``; ``Y`` (n x c). Only the
    squared loss is supported (the relaxation is built for it); for classification pass one-hot
    targets with ``loss="squared"``, as the paper does. ``solver``: ``"cvxpy"`` (Clarabel by
    default, or ``cvxpy_solver``), ``"lowrank"`` (Burer–Monteiro augmented Lagrangian, rank
    ``rank``), ``"ipm"`` (the structured interior-point method :func:`solve_ipm`),
    ``"admm"`` (the first-order method :func:`solve_admm`); ``"auto"`` picks the
    interior-point method up to n = 80 and the ADMM above. ``tol`` is the relative
    primal–dual gap of the SDP at which the low-rank solver and the ADMM stop (the ADMM uses
    max(tol, 1e-4), the interior-point method min(tol, 1e-7)).

    The returned certificate is *global*: ``dual`` is a proven lower bound on the optimum of
    the training problem over networks of every width, ``primal`` the extracted network's
    objective. ``info`` holds the bounds, the solver's SDP value estimate and timings.
    """
    name = loss if isinstance(loss, str) else getattr(loss, "name", str(loss))
    if name != "squared":
        raise ValueError(f"method 'sdp' supports only the squared loss (got {name!r}); for "
                         "classification use one-hot targets with loss='squared' as in the "
                         "paper (Prakhya et al. 2024)")
    if reg <= 0:
        raise ValueError(f"reg must be > 0, got {reg}")
    if solver not in ("auto", "ipm", "admm", "cvxpy", "lowrank"):
        raise ValueError(f"unknown solver {solver!r}; expected 'auto', 'ipm', 'admm', 'cvxpy' "
                         "or 'lowrank'")
    if Y.ndim == 1:
        Y = Y[:, None]
    t0 = time.perf_counter()
    prob = SDPRelaxation(X, Y, reg, intercept=intercept)
    if solver == "auto":
        solver = "ipm" if prob.n <= _AUTO_IPM_MAX_N else "admm"
    rng = np.random.default_rng(random_state)
    hist = History()
    info: dict = {"solver": solver, "n": prob.n, "q": prob.q}
    if solver == "ipm":
        bound, Z, ipm = solve_ipm(prob, tol=min(tol, 1e-7), max_time=max_time, verbose=verbose)
        W = prob.factor_from_matrix(Z)
        sdp_value = ipm["sdp_primal_estimate"]
        stop = ipm["ipm_stop"]
        for k in ("ipm_iterations", "ipm_rel_gap", "ipm_infeasibility", "working_set",
                  "constraints_added"):
            info[k] = ipm[k]
        info["solver_seconds"] = time.perf_counter() - t0
        bound_args = ipm["multipliers"]
    elif solver == "admm":
        bound, Z, adm = solve_admm(prob, tol=max(tol, 1e-4), max_iter=max_iter,
                                   max_time=max_time, verbose=verbose)
        W = prob.factor_from_matrix(Z)
        sdp_value = adm["sdp_primal_estimate"]
        stop = adm["admm_stop"]
        for k in ("admm_iterations", "admm_rel_gap_estimate", "admm_r_primal", "admm_rho",
                  "neuron_iterations", "neuron_seconds", "precision_switch_iteration"):
            info[k] = adm[k]
        info["solver_seconds"] = time.perf_counter() - t0
        hist = adm["history"]
    elif solver == "cvxpy":
        from ..solvers.cvxpy_backend import solve_cvxpy

        problem, handles = prob.to_cvxpy("reduced")
        res = solve_cvxpy(problem, solver=cvxpy_solver or "CLARABEL", verbose=bool(verbose))
        bound, Z = prob.certify_cvxpy(handles)
        W = prob.factor_from_matrix(Z)
        sdp_value = float(problem.value)
        stop = res.stop_reason
        info["cvxpy_status"] = res.extras["status"]
        info["solver_seconds"] = res.seconds
    else:
        from ..solvers.lowrank_sdp import burer_monteiro_al, refine_multipliers

        r = int(rank) if rank is not None else min(prob.q, max(16, 4 * prob.c))
        W0 = _init_factor(prob, r, rng)
        best: dict = {}
        last = {"o": math.inf}

        y_norm = 0.5 * float((prob.Y * prob.Y).sum())  # Z = 0 is feasible: p_SDP ≤ ½||Y||²

        def certify(W_, y_, mu_, refine):
            Gam = prob.predictions(W_) - prob.Y
            cands = [(Gam, y_, mu_)]
            if refine:
                y2, mu2 = refine_multipliers(prob, W_, y_, mu_, iters=refine)
                cands.append((Gam, y2, mu2))
            for cand in cands:
                b = prob.dual_bound(*cand, upper=y_norm)
                if "b" not in best or b.value > best["b"].value:
                    best["b"], best["d"] = b, cand

        def monitor(W_, y_, mu_):
            # the certified bound every outer step on small problems (eigvalsh of q x q);
            # otherwise stop on primal convergence and certify once at the end
            o = float(prob.objective(W_))
            viol = prob.violation(W_)
            change = abs(o - last["o"]) / max(abs(o), 1e-300)
            last["o"] = o
            if prob.q <= cert_every_max_q:
                certify(W_, y_, mu_, refine=0)
                lb = best["b"].value
                gap = max(o - lb, 0.0)
                rel = relative(gap, o)
            else:
                gap, rel = math.nan, math.inf
            if verbose:
                print(f"[sdp] objective={o:.8e} rel_gap={rel:.3e} violation={viol:.2e} "
                      f"change={change:.2e}")
            if viol <= tol and change <= tol:
                rel = 0.0  # primal converged: stop
            return o, gap, rel + viol

        res = burer_monteiro_al(prob, W0, tol=tol, max_iter=max_iter, max_time=max_time,
                                monitor=monitor, verbose=verbose, rho=rho, rho_growth=4.0,
                                inner_iter=500)
        W = res.x
        certify(W, res.extras["y"], res.extras["mu"], refine=refine_iter)
        bound = best["b"]
        sdp_value = float(prob.objective(W))
        stop = res.stop_reason
        hist = res.history
        info["violation"] = prob.violation(W)
        info["rank"] = r
        info["solver_seconds"] = res.seconds
        info["bm_iterations"] = res.n_iter
    t1 = time.perf_counter()
    net = extract_network(prob, W, polish_iter=polish_iter)
    ub = net.objective(X[:, :-1] if intercept else X, Y, reg, "squared")
    if solver in ("lowrank", "ipm"):  # the network's objective tightens the trace bound
        args = best["d"] if solver == "lowrank" else bound_args
        b2 = prob.dual_bound(*args, upper=min(ub, 0.5 * float((prob.Y * prob.Y).sum())))
        bound = b2 if b2.value > bound.value else bound
    elif solver == "admm":
        b2 = adm["certify"](ub)
        bound = b2 if b2.value > bound.value else bound
    lb = bound.value
    gap = max(ub - lb, 0.0)
    cert = Certificate(primal=ub, dual=lb, gap=gap, relative_gap=relative(gap, ub),
                       scope=SCOPE_GLOBAL,
                       problem="two-layer ReLU (any width): doubly-nonnegative SDP relaxation "
                               "of the lifted completely positive program; primal = extracted "
                               "network",
                       n_patterns=0, dual_scale=1.0 - bound.theta,
                       constraint_violation=float(info.get("violation", 0.0)))
    if len(hist) == 0 or hist.objective[-1] != ub:
        hist.append(hist.iteration[-1] if len(hist) else 0, ub, gap, cert.relative_gap,
                    time.perf_counter() - t0)
    info.update({"lower_bound": lb, "upper_bound": ub, "sdp_value_estimate": sdp_value,
                 "tightness": cert.relative_gap, "stop_reason": stop,
                 "dual_theta": bound.theta, "dual_lam_min": bound.lam_min,
                 "bound_method": bound.method,
                 "extract_seconds": time.perf_counter() - t1,
                 "seconds": time.perf_counter() - t0, "n_neurons": net.n_neurons})
    return FitResult(network=net, certificate=cert, history=hist, info=info)
