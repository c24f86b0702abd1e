r"""Primal–dual interior-point method for SDPs whose constraint matrices have rank two.

The class of problems (all matrices symmetric, ``sym(a bᵀ) = (a bᵀ + b aᵀ)/2``)::

    (P)  min_{Z ⪰ 0}  <C, Z> + ½ ||𝒜_Q(Z) − b||²   s.t.  𝒜_E(Z) = 0,   𝒜_I(Z) ≤ 0
    (D)  max_{y}      −½ ||y_Q||² − <b, y_Q>        s.t.  S(y) = C + Σ_j y_j A_j ⪰ 0,  y_I ≥ 0

where every constraint matrix is  A_j = coef_j · sym(t_{P_j} t_{R_j}ᵀ)  for rows t_k of one fixed
matrix T (t x q), so 𝒜(Z)_j = <A_j, Z> = coef_j · (T Z Tᵀ)[P_j, R_j]. The constraints come in
three consecutive blocks: Q (a least-squares term with targets b), E (equalities, free
multipliers) and I (inequalities, multipliers ≥ 0). Weak duality: for y feasible for (D) and Z
feasible for (P), (P) − (D) = <Z, S> + <s, y_I> + ½||y_Q + b − 𝒜_Q Z||² ≥ 0, s = −𝒜_I(Z).

**Method.** Infeasible primal–dual path following (Z, s; y, S) with the HKM direction
(ΔZ = σμ S⁻¹ − Z − sym(Z ΔS S⁻¹)) and Mehrotra's predictor–corrector. Eliminating ΔZ, ΔS and
the slacks leaves the Schur-complement system  (M + D) Δy = r,

    M_ij = <A_i, Z A_j S⁻¹>,    D = diag(1 on Q, 0 on E, s / y_I on I),

and the rank-two structure makes M cheap: with K_Z = T Z Tᵀ and K_S = T S⁻¹ Tᵀ (t x t),

    M_ij = ¼ coef_i coef_j [K_Z(P_i,P_j) K_S(R_i,R_j) + K_Z(R_i,R_j) K_S(P_i,P_j)
                             + K_Z(P_i,R_j) K_S(R_i,P_j) + K_Z(R_i,P_j) K_S(P_i,R_j)].

Cost per iteration: the Gram products (O(t q²), or less when the problem supplies a structured
``gram``), O(q³) for the factorisations of Z and S, O(m²) to form M and O(m³/3) to factor it
(m = number of constraints). A generic conic solver instead factors a dense block of size
(q(q+1)/2)², which is what makes CVXPY + Clarabel impractical beyond q ≈ 100 here. Interior-point
iteration counts do not grow with the conditioning of the data, which is what defeats the
first-order methods on this class (measured in benchmarks/results/sdp.md).

Constraints can be added while the method runs (``check`` callback): a cutting-plane /
working-set strategy for problems with many inequality constraints of which few are active.

The solver returns iterates only; a *certified* bound is the caller's job (e.g. verify S(y) ⪰ 0
with a rounding margin, repair if not): no primal or dual value of an inexact solve is a proof.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .base import History, StopReason
from .sdp_ipm_steps import (
    NewtonSystem,
    cholesky_psd,
    max_step_psd,
    max_step_vec,
    newton_direction,
    schur_matrix,
)

__all__ = ["Rank2SDP", "IPMResult", "primal_dual_ipm", "max_step_psd"]


@dataclass
class Rank2SDP:
    """Data of (P)/(D). ``P``, ``R`` index rows of ``T``; blocks are ordered Q, E, I.

    ``gram_fn(Z) -> T Z Tᵀ`` and ``adjoint_fn(E) -> Tᵀ E T`` (E symmetric, t x t) may be given to
    exploit structure in T; by default dense products are used.
    """

    T: Tensor
    C: Tensor
    P: Tensor
    R: Tensor
    coef: Tensor
    b: Tensor
    n_quad: int
    n_eq: int
    gram_fn: Callable[[Tensor], Tensor] | None = None
    adjoint_fn: Callable[[Tensor], Tensor] | None = None

    def __post_init__(self) -> None:
        m = self.P.numel()
        if self.R.numel() != m or self.coef.numel() != m:
            raise ValueError("P, R and coef must have the same length")
        if self.b.numel() != self.n_quad or self.n_quad + self.n_eq > m:
            raise ValueError("inconsistent block sizes")
        if self.C.shape != (self.T.shape[1], self.T.shape[1]):
            raise ValueError("C must be q x q with q = T.shape[1]")

    @property
    def m(self) -> int:
        return self.P.numel()

    @property
    def n_ineq(self) -> int:
        return self.m - self.n_quad - self.n_eq

    def add_inequalities(self, P: Tensor, R: Tensor, coef: Tensor) -> None:
        """Append inequality constraints (rows P, R of T; coefficients ``coef``)."""
        self.P = torch.cat([self.P, P.to(self.P)])
        self.R = torch.cat([self.R, R.to(self.R)])
        self.coef = torch.cat([self.coef, coef.to(self.coef)])

    def gram(self, Z: Tensor) -> Tensor:
        """T Z Tᵀ (t x t); 𝒜(Z) = coef · gram[P, R]."""
        if self.gram_fn is not None:
            return self.gram_fn(Z)
        return self.T @ Z @ self.T.T

    def apply(self, K: Tensor) -> Tensor:
        """𝒜(Z) from K = T Z Tᵀ."""
        return self.coef * K[self.P, self.R]

    def adjoint(self, y: Tensor) -> Tensor:
        """Σ_j y_j A_j = Tᵀ sym(E) T with E the scattered coefficients y_j coef_j."""
        t = self.T.shape[0]
        E = torch.zeros(t, t, dtype=self.T.dtype, device=self.T.device)
        E.index_put_((self.P, self.R), y * self.coef, accumulate=True)
        E = 0.5 * (E + E.T)
        if self.adjoint_fn is not None:
            return self.adjoint_fn(E)
        return self.T.T @ E @ self.T

    def dual_matrix(self, y: Tensor) -> Tensor:
        return self.C + self.adjoint(y)

    def dual_objective(self, y: Tensor) -> float:
        yq = y[:self.n_quad]
        return float(-0.5 * (yq * yq).sum() - (yq * self.b).sum())

    def primal_objective(self, Z: Tensor, K: Tensor | None = None) -> float:
        K = self.gram(Z) if K is None else K
        aq = self.apply(K)[:self.n_quad]
        return float((self.C * Z).sum() + 0.5 * ((aq - self.b) ** 2).sum())


@dataclass
class IPMResult:
    y: Tensor                     # multipliers (dual feasible iff S(y) ⪰ 0 and y_I ≥ 0)
    Z: Tensor                     # primal iterate
    s: Tensor                     # inequality slacks (s = −𝒜_I(Z) at primal feasibility)
    dual_value: float             # (D) at y — a lower bound on (P) only if y is dual feasible
    primal_value: float           # (P) objective at Z — not a bound unless Z is feasible
    rel_gap: float
    infeasibility: float          # max relative primal / dual residual
    stop_reason: str
    n_iter: int
    seconds: float
    history: History = field(default_factory=History)


def _residuals(prob: Rank2SDP, S: Tensor, y: Tensor, s: Tensor, KZ: Tensor, AZ: Tensor,
               dual_feasible: bool):
    """(R_d, r_Q, r_E, r_I, relative infeasibility) at the iterate."""
    nq, ne, ni = prob.n_quad, prob.n_eq, prob.n_ineq
    Rd = torch.zeros_like(S) if dual_feasible else S - prob.dual_matrix(y)
    r_q = y[:nq] + prob.b - AZ[:nq]
    r_e = -AZ[nq:nq + ne]
    r_i = s + AZ[nq + ne:]
    zscale = 1.0 + float(KZ.abs().max())
    bscale = 1.0 + (float(prob.b.abs().max()) if nq else 0.0)
    infeas = max(float(r_q.abs().max()) / bscale if nq else 0.0,
                 float(r_e.abs().max()) / zscale if ne else 0.0,
                 float(r_i.abs().max()) / zscale if ni else 0.0,
                 float(Rd.abs().max()) / (1.0 + float(prob.C.abs().max())))
    return Rd, r_q, r_e, r_i, infeas


def _add_inequalities(prob: Rank2SDP, out: tuple, y: Tensor, s: Tensor, S: Tensor, Ls: Tensor,
                      mu: float, dual_feasible: bool):
    """Append the callback's constraints with multiplier √μ and slack μ/√μ (shrunk until
    S(y) ≻ 0 in the dual-feasible variant); returns the new (y, s, S, chol S)."""
    dt, dev = prob.T.dtype, prob.T.device
    Pn, Rn, cn = out
    prob.add_inequalities(Pn, Rn, cn)
    k = Pn.numel()
    r = math.sqrt(max(mu, 1e-24))
    yk = torch.full((k,), r, dtype=dt, device=dev)
    if dual_feasible:   # keep S(y) ≻ 0: shrink the new multipliers if needed
        for _ in range(60):
            S_try = prob.dual_matrix(torch.cat([y, yk]))
            L_try = cholesky_psd(S_try)
            if L_try is not None:
                break
            yk = 0.25 * yk
        else:
            raise RuntimeError("could not add constraints keeping S ≻ 0")
        S, Ls = S_try, L_try
    s = torch.cat([s, torch.full((k,), mu / float(yk[0]), dtype=dt, device=dev)])
    return torch.cat([y, yk]), s, S, Ls


def _factor_schur(prob: Rank2SDP, KZ: Tensor, Sinv: Tensor, s: Tensor, yi: Tensor):
    """(M + D, its diagonal scaling, Cholesky factor of the scaled matrix), or None when it
    is not numerically positive definite even with a 1e-12 shift."""
    nq, ne = prob.n_quad, prob.n_eq
    KS = prob.gram(Sinv)
    M = schur_matrix(prob, KZ, KS)
    del KS
    Dd = torch.zeros(prob.m, dtype=KZ.dtype, device=KZ.device)
    Dd[:nq] = 1.0
    if prob.n_ineq:
        Dd[nq + ne:] = s / yi
    M.diagonal().add_(Dd)
    dsc = M.diagonal().clamp_min(1e-300).rsqrt()
    M.mul_(dsc[:, None]).mul_(dsc[None, :])
    Lm, info = torch.linalg.cholesky_ex(M)
    if int(info) != 0:
        M.diagonal().add_(1e-12)
        Lm, info = torch.linalg.cholesky_ex(M)
        if int(info) != 0:
            return None
    return M, dsc, Lm


def _verified_steps(prob: Rank2SDP, Z: Tensor, S: Tensor, y: Tensor, dZ: Tensor, dS: Tensor,
                    dy: Tensor, ap: float, ad: float, equal_steps: bool, dual_feasible: bool):
    """Shrink the step lengths until Z + α_p ΔZ and the new S factor by Cholesky; returns
    (α_p, α_d, chol Z, chol S, S) with None factors when 60 reductions did not suffice."""
    Lz_new = Ls_new = S_try = None
    for _ in range(60):
        Lz_new = cholesky_psd(Z + ap * dZ)
        if Lz_new is None:
            ap *= 0.7
            ad = min(ad, ap) if equal_steps else ad
            continue
        S_try = prob.dual_matrix(y + ad * dy) if dual_feasible else S + ad * dS
        Ls_new = cholesky_psd(S_try)
        if Ls_new is None:
            ad *= 0.7
            ap = min(ap, ad) if equal_steps else ap
            continue
        break
    return ap, ad, Lz_new, Ls_new, S_try


def _mehrotra(prob: Rank2SDP, ctx: NewtonSystem, S: Tensor, Lz: Tensor, Ls: Tensor, *,
              exact: bool, step_frac: float, equal_steps: bool):
    """Predictor (affine) step, centring σ = (μ_aff/μ)³, corrector with the second-order
    terms; returns the direction (Δy, ΔS, ΔZ, Δs, Δy_I) and the step lengths (α_p, α_d)."""
    Z, s, yi, mu, Sinv = ctx.Z, ctx.s, ctx.yi, ctx.mu, ctx.Sinv
    q, ni = Z.shape[0], prob.n_ineq
    dy, dS, dZ, ds, dyi = newton_direction(prob, ctx, 0.0, None, 0.0)
    ap = min(max_step_psd(Lz, dZ, exact=exact), max_step_vec(s, ds))
    ad = min(max_step_psd(Ls, dS, exact=exact), max_step_vec(yi, dyi))
    mu_aff = (float(((Z + ap * dZ) * (S + ad * dS)).sum())
              + float(((s + ap * ds) * (yi + ad * dyi)).sum())) / (q + ni)
    sigma = min(1.0, max(0.0, mu_aff / mu) ** 3)
    G = dZ @ dS @ Sinv
    dy, dS, dZ, ds, dyi = newton_direction(prob, ctx, sigma, 0.5 * (G + G.T),
                                           ds * dyi if ni else 0.0)
    ap = min(1.0, step_frac * min(max_step_psd(Lz, dZ, exact=exact), max_step_vec(s, ds)))
    ad = min(1.0, step_frac * min(max_step_psd(Ls, dS, exact=exact), max_step_vec(yi, dyi)))
    if equal_steps:
        ap = ad = min(ap, ad)
    return dy, dS, dZ, ds, dyi, ap, ad


def _checked_start(prob: Rank2SDP, Z0: Tensor, S0: Tensor | None, y0: Tensor, s0: Tensor):
    """The start in the problem's precision (S0 None: S(y0)), checked strictly interior;
    returns (Z, S, y, s, chol Z, chol S)."""
    dt, dev = prob.T.dtype, prob.T.device
    nq, ne = prob.n_quad, prob.n_eq
    Z = 0.5 * (Z0 + Z0.T).to(dtype=dt, device=dev)
    y = y0.clone().to(dtype=dt, device=dev)
    S = prob.dual_matrix(y) if S0 is None else 0.5 * (S0 + S0.T).to(dtype=dt, device=dev)
    s = s0.clone().to(dtype=dt, device=dev)
    if y.numel() != prob.m or s.numel() != prob.n_ineq:
        raise ValueError("y0 / s0 do not match the number of constraints")
    if prob.n_ineq and (bool((y[nq + ne:] <= 0).any()) or bool((s <= 0).any())):
        raise ValueError("the start must have positive inequality slacks and multipliers")
    Ls, Lz = cholesky_psd(S), cholesky_psd(Z)
    if Ls is None or Lz is None:
        raise ValueError("Z0 and S0 (default S(y0)) must be positive definite")
    return Z, S, y, s, Lz, Ls


def primal_dual_ipm(prob: Rank2SDP, *, Z0: Tensor, S0: Tensor | None, y0: Tensor, s0: Tensor,
                    tol: float = 1e-8, max_iter: int = 100, max_time: float | None = None,
                    step_frac: float = 0.98, exact_steps: bool | None = None,
                    patience: int = 15, equal_steps: bool = True,
                    check: Callable[[dict], tuple[Tensor, Tensor, Tensor] | bool | None]
                    | None = None,
                    verbose: int = 0) -> IPMResult:
    """Solve (P)/(D) from a strictly interior start (Z0 ≻ 0, S0 ≻ 0, s0 > 0, y0_I > 0).

    ``S0=None`` selects the *dual-feasible* variant: S ≡ S(y) at every iterate (y0 must be
    strictly dual feasible), every accepted dual step and every added constraint keeps S(y) ≻ 0
    (verified by Cholesky), so every iterate's dual value is a lower bound (up to rounding).
    Otherwise the dual residual S − S(y) is driven to zero with the primal one.

    Stops when the relative gap |(P) − (D)| / (1 + |(D)|) and the relative residuals are ≤
    ``tol``, when progress stalls (neither μ nor the residuals halved in ``patience``
    iterations: the numerical limit), or on ``max_iter`` / ``max_time``. ``equal_steps``: take
    the same step length in the primal and the dual (measured: separate lengths lose centrality
    and stall on the degenerate SDP relaxations this solver was written for).

    ``check(state)`` is called every iteration with a dict (``iter``, ``rel_gap``,
    ``infeasibility``, ``mu``, ``KZ`` = T Z Tᵀ, ``Z``, ``y``, ``prob``). It may return ``True``
    (stop, reason ``"callback"``) or a tuple ``(P, R, coef)`` of inequality constraints to add;
    they enter with slack and multiplier √μ (on the central path) and the primal residual
    absorbs their current violation (the method is an infeasible one).
    """
    t0 = time.perf_counter()
    q = prob.T.shape[1]
    nq, ne = prob.n_quad, prob.n_eq
    dual_feasible = S0 is None
    Z, S, y, s, Lz, Ls = _checked_start(prob, Z0, S0, y0, s0)
    exact = (q <= 400) if exact_steps is None else exact_steps
    hist = History()
    reason = StopReason.MAX_ITER
    rel_gap = infeas = math.inf
    pobj = math.nan
    best = (math.inf, 0)
    steps = ""
    it = 0
    for it in range(max_iter + 1):
        m, ni = prob.m, prob.n_ineq
        Sinv = torch.cholesky_inverse(Ls)
        KZ = prob.gram(Z)
        AZ = prob.apply(KZ)
        yi = y[nq + ne:]
        mu = (float((Z * S).sum()) + float((s * yi).sum())) / (q + ni)
        pobj = prob.primal_objective(Z, KZ)
        dobj = prob.dual_objective(y)
        Rd, r_q, r_e, r_i, infeas = _residuals(prob, S, y, s, KZ, AZ, dual_feasible)
        rel_gap = abs(pobj - dobj) / (1.0 + abs(dobj))
        elapsed = time.perf_counter() - t0
        hist.append(it, pobj, pobj - dobj, rel_gap, elapsed)
        if verbose:
            print(f"[ipm] it={it:3d} mu={mu:.2e} primal={pobj:.10e} dual={dobj:.10e} "
                  f"rel_gap={rel_gap:.1e} infeas={infeas:.1e} m={m} steps={steps} "
                  f"t={elapsed:.2f}s", flush=True)
        if check is not None:
            out = check({"iter": it, "rel_gap": rel_gap, "infeasibility": infeas, "mu": mu,
                         "KZ": KZ, "Z": Z, "y": y, "prob": prob})
            if out is True:
                reason = "callback"
                break
            if isinstance(out, tuple) and out[0].numel():
                y, s, S, Ls = _add_inequalities(prob, out, y, s, S, Ls, mu, dual_feasible)
                best = (math.inf, it)
                continue
        if max(rel_gap, infeas) <= tol:
            reason = StopReason.GAP
            break
        # stall: neither mu nor the residuals halved during the last `patience` iterations
        merit = max(mu, infeas)
        if merit < 0.5 * best[0]:
            best = (merit, it)
        elif it - best[1] >= patience:
            reason = StopReason.STALLED
            break
        if it == max_iter:
            break
        if max_time is not None and elapsed >= max_time:
            reason = StopReason.MAX_TIME
            break
        # ---- Schur complement system
        factored = _factor_schur(prob, KZ, Sinv, s, yi)
        if factored is None:
            reason = StopReason.STALLED
            break
        M, dsc, Lm = factored
        G0 = Z @ Rd @ Sinv
        E0 = 0.5 * (G0 + G0.T) - Z

        ctx = NewtonSystem(mu=mu, Sinv=Sinv, E0=E0, Z=Z, Rd=Rd, r_q=r_q, r_e=r_e, r_i=r_i,
                           s=s, yi=yi, dsc=dsc, Lm=Lm, M=M)
        dy, dS, dZ, ds, dyi, ap, ad = _mehrotra(prob, ctx, S, Lz, Ls, exact=exact,
                                                step_frac=step_frac, equal_steps=equal_steps)
        ap, ad, Lz_new, Ls_new, S_try = _verified_steps(prob, Z, S, y, dZ, dS, dy, ap, ad,
                                                        equal_steps, dual_feasible)
        if Lz_new is None or Ls_new is None:
            reason = StopReason.STALLED
            break
        Z = 0.5 * ((Z + ap * dZ) + (Z + ap * dZ).T)
        S = 0.5 * (S_try + S_try.T)
        Lz, Ls = Lz_new, Ls_new
        s = s + ap * ds
        y = y + ad * dy
        steps = f"{ap:.2f}/{ad:.2f}"
    return IPMResult(y=y, Z=Z, s=s, dual_value=prob.dual_objective(y), primal_value=pobj,
                     rel_gap=rel_gap, infeasibility=infeas, stop_reason=reason, n_iter=it,
                     seconds=time.perf_counter() - t0, history=hist)
