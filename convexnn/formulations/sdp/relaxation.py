"""The SDP relaxation in reduced coordinates: objective, constraints, dual certificate, CVXPY.

Mathematics in :mod:`convexnn.formulations.sdp` (package docstring).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ...losses import get_loss
from ...networks import TwoLayerNetwork
from .neuron import NeuronBound, neuron_sdp_bound, scaled_gamma_bound

__all__ = ["SDPRelaxation", "DualBound", "normalised", "unscale_primal"]

_EPS = float(np.finfo(np.float64).eps)


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

    def slater_point(self) -> tuple[float, float]:
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
        delta, lam0 = self.slater_point()
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
        the constraints whose duals feed :meth:`dual_bound`).

        ``form="paper"``: the independent reference. The paper's Λ (p x p, p = 2n+d+c) with its
        own selection matrices and constraints, facially reduced through a *numerical*
        orthonormal basis N of null(M) (``scipy.linalg.null_space``, not our lift T):
        Λ = N S Nᵀ, S ⪰ 0. ``form="paper_unreduced"``: Λ ⪰ 0 with M Λ Mᵀ = 0 as in the authors'
        code. That model has no strictly feasible point (M Λ Mᵀ = 0 confines Λ ⪰ 0 to a proper
        face of the PSD cone), so Clarabel ends "optimal_inaccurate" 0.2-0.35 % *below* the
        optimum (n = 6, 12) and SCS takes 31-84 s for 5e-6-1e-3 (benchmarks/results/sdp.md,
        part 9); it is kept only to show this.
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
        p = 2 * n + d + c
        M = np.hstack([-np.eye(n), np.eye(n), X, np.zeros((n, c))])
        if form == "paper":
            from scipy.linalg import null_space

            Nb = null_space(M)                      # p x (p - rank M), orthonormal columns
            S = cp.Variable((Nb.shape[1], Nb.shape[1]), PSD=True)
            L = Nb @ S @ Nb.T
            Pa, Pb, Pv = Nb[:n], Nb[n:2 * n], Nb[2 * n + d:]
            Lav = Pa @ S @ Pv.T
            obj = 0.5 * cp.sum_squares(Lav - Y) + 0.5 * self.reg * cp.trace(
                Nb[2 * n:].T @ Nb[2 * n:] @ S)
            Lab = Pa @ S @ Pb.T
            off = np.flatnonzero(~np.eye(n, dtype=bool).ravel(order="F"))
            # Λ_αα, Λ_ββ ≥ 0; Λ_αβ ≥ 0 off its diagonal, which is = 0 (not also ≥ 0: a
            # duplicate, always-active inequality costs interior-point solvers accuracy)
            cons = [cp.diag(Lab) == 0, Pa @ S @ Pa.T >= 0, Pb @ S @ Pb.T >= 0,
                    cp.vec(Lab, order="F")[off] >= 0]
            return cp.Problem(cp.Minimize(obj), cons), {"S": S, "Lambda": L, "basis": Nb}
        if form == "paper_unreduced":
            L = cp.Variable((p, p), PSD=True)
            Lav = L[:n, 2 * n + d:]
            obj = 0.5 * cp.sum_squares(Lav - Y) + 0.5 * self.reg * (
                cp.trace(L[2 * n:, 2 * n:]))
            cons = [M @ L @ M.T == 0, cp.diag(L[:n, n:2 * n]) == 0, L[:2 * n, :2 * n] >= 0]
            return cp.Problem(cp.Minimize(obj), cons), {"Lambda": L}
        raise ValueError(f"form must be 'reduced', 'paper' or 'paper_unreduced', got {form!r}")

    def neuron_bound(self, Gamma: Tensor, **neuron_kwargs) -> tuple[DualBound, NeuronBound]:
        """The "neuron" certificate of a loss multiplier Γ alone (any Γ, however obtained).

        A proven φ̄ ≥ φ(Γ) from :func:`convexnn.formulations.sdp_neuron.neuron_sdp_bound`
        (keyword arguments passed on), then max_{s ≤ reg/(2√φ̄)} −L*(sΓ) ≤ p_SDP. Returns the
        bound (``method="neuron"``, ``theta`` = 1 − s) and the inner solve's ``NeuronBound``.
        """
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




def normalised(prob: SDPRelaxation) -> tuple[SDPRelaxation, float, float]:
    """The equivalent problem with ||X||₂ = 1 and ||Y||_F = 1 (see :func:`solve_ipm`)."""
    sx = float(torch.linalg.matrix_norm(prob.X, 2))
    ky = float(torch.linalg.vector_norm(prob.Y))
    if sx <= 0 or ky <= 0:
        raise ValueError("X and Y must be nonzero")
    return (SDPRelaxation(prob.X / sx, prob.Y / ky, prob.reg / (sx * ky),
                          intercept=prob.intercept), sx, ky)


def unscale_primal(pn: SDPRelaxation, sx: float, ky: float, Zn: Tensor) -> Tensor:
    """Z of the original problem from Z' of the normalised one (:func:`normalised`)."""
    t = math.sqrt(sx * ky)
    dt, dev = Zn.dtype, Zn.device
    dsc = torch.cat([torch.full((pn.n,), t, dtype=dt, device=dev),
                     torch.full((pn.d,), t / sx, dtype=dt, device=dev),
                     torch.full((pn.c,), ky / t, dtype=dt, device=dev)])
    return dsc[:, None] * Zn * dsc[None, :]
