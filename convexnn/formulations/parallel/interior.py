r"""Interior-point solvers for the path-regularised parallel program over a block set.

Program over blocks s = 1..B (:mod:`convexnn.formulations.parallel`), U_{sj} = X q_{sj} ∈ R^n:

    min  L(Z(q)) + β Σ_s ||q_s||_F   s.t.  S1_{sj} ⊙ X q_{sj} ≥ 0,
                                           S2_s ⊙ Σ_j σ_{sj} M1_{sj} ⊙ X q_{sj} ≥ 0,

Z(q)_{:,t} = Σ_{s: t_s = t} ε_s M2_s ⊙ Σ_j σ_{sj} M1_{sj} ⊙ X q_{sj} (S = 2M − 1). Second-layer
rows that are vacuous (no active first-layer neuron) or implied by the first layer (every active
neuron's sign agrees with the row's required sign) are left out; this is exact.

Two methods share one structured linear algebra:

* :func:`solve_pd` (default) — primal-dual interior point with Mehrotra's predictor–corrector
  and Nesterov–Todd scaling of the second-order cones (t_s ≥ ||q_s||_F); the primal iterate
  stays strictly feasible and typically 20–45 iterations reach a 1e-7 relative gap.
* :func:`solve_barrier` — feasible-start log-barrier method (Boyd & Vandenberghe §11.3) on
  φ_μ(q) = L(Z(q)) + Σ_s ψ_μ(q_s) − μ Σ_rows log(slack), where ψ_μ(q) = μ + s − μ log(2μ(μ+s)/β²),
  s = √(μ² + β²||q||²), is the second-order-cone barrier with t minimised out (exactly); slower
  (≈ 100 Newton steps) but globalised by a line search: the fallback.

**Start.** Every block carries a *witness* q̄_s (the gate vectors defining its patterns); when no
data point lies on a witness hyperplane, q̄_s is in the interior of its cone (checked, else
:class:`NotStrictlyFeasible`). The start is the best non-negative combination of the unit
witnesses (a B-variable lasso), so every iterate is strictly feasible and the network read back
from it has *exactly* the block patterns and the convex objective.

**Newton system.** The matrix is block-diagonal over blocks ((md + 1)² each: Xᵀ D X terms of the
cone rows — one GEMM against the d² row products — and the cone scaling) plus the data term
ΦᵀHΦ (Φ = ∂Z/∂q, H = ∇²L per sample). It is solved by the Woodbury identity: batched Cholesky
factorisations of the blocks and one n x n Cholesky per output (squared loss, or one output;
(nc) x (nc) for the cross-entropy): O(B (n m² d² + n² m d)) per iteration in a few large tensor
products, on CPU or GPU.

**Multipliers and certificate.** The dual iterate ν ≥ 0 of the cone rows is handed to
:meth:`ParallelProgram.certificate`, which evaluates the dual bound honestly at the network's
gradient Λ = ∇L(f(X)); the methods stop when that certified relative gap is ≤ ``tol`` and return
the best certificate met. (For the barrier method ν is the primal-dual estimate
(μ/s)(1 − Δs/s) from the last Newton step: the plain μ/s leaves a stationarity residual that the
ill-conditioned barrier Hessian hides from the Newton decrement.)
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from ...ops.cones import (
    jordan_divide,
    jordan_product,
    linear_step_length,
    nt_scaling,
    soc_step_length,
)
from ...solvers.base import History, SolverResult, StopReason
from .kkt import BarrierTerms, NotStrictlyFeasible, check_witness, witness_weights, woodbury_solver

__all__ = ["solve_pd", "solve_barrier", "solve_interior", "NotStrictlyFeasible"]


def solve_barrier(prog, *, tol: float = 1e-7, mu_factor: float = 20.0, max_newton: int = 400,
                  max_time: float | None = None, verbose: int = 0, x0: Tensor | None = None,
                  mu0: float | None = None, centre: float = 1e-10
                  ) -> tuple[Tensor, tuple[Tensor, Tensor], SolverResult]:
    """Solve ``prog`` (a :class:`ParallelProgram`) by the barrier method (module docstring).

    ``x0`` (strictly feasible where non-zero) and ``mu0`` start elsewhere. Returns
    ``(x, ν, result)``: x strictly feasible, ν ≥ 0 the multipliers of the best certificate met
    (relative gap in ``result.history``); after centring at μ, ν = (μ/s)(1 − Δs/s) from the last
    Newton step Δ, which makes the stationarity residual second order in Δ. Raises
    :class:`NotStrictlyFeasible` when a block's witness is on its cone's boundary."""
    t0 = time.perf_counter()
    hist = History()
    if prog.B == 0:
        return prog.zeros(), prog.zero_multipliers(), SolverResult(
            prog.zeros(), hist, StopReason.CONVERGED, 0, 0.0, {})
    bar = BarrierTerms(prog)
    W, tau = _unit_witnesses(prog, bar)
    if x0 is None:
        # start: the best non-negative combination of the unit witnesses (a B-variable lasso),
        # plus τ on every block (strictly inside every cone)
        q = (witness_weights(bar, W) + tau)[:, None, None] * W
    else:
        nrm = prog.group_norms(x0)
        q = torch.where((nrm > 0)[:, None, None], x0.to(W), tau * W)
        s1, s2 = bar.slacks(bar.state(q))
        if bool((s1 <= 0).any()) or bool((s2 <= 0).any()):
            raise NotStrictlyFeasible("x0 is not strictly inside its cones")
    f0 = prog.objective(q)
    mu = (max(f0, 1e-12) if mu0 is None else mu0) / bar.n_barrier
    centre_tol = centre * max(1.0, abs(f0))
    reason = StopReason.MAX_ITER
    it, worse = 0, 0
    best: tuple | None = None

    def out_of_budget(it: int) -> bool:
        return it >= max_newton or (max_time is not None
                                    and time.perf_counter() - t0 > max_time)

    while True:
        q, dq, it = _centre(bar, q, mu, centre_tol, it, out_of_budget, verbose)
        qc, nu = _multiplier_estimate(bar, q, dq, mu)
        cert = prog.certificate(qc, prog.row_multipliers(*nu))
        hist.append(it, cert.primal, cert.gap, cert.relative_gap, time.perf_counter() - t0)
        if verbose:
            print(f"[barrier] mu {mu:.3e}  newton {it}  objective {cert.primal:.10g}  "
                  f"rel.gap {cert.relative_gap:.3e}")
        if best is None or cert.relative_gap < best[2].relative_gap:
            best, worse = (qc, nu, cert), 0
        else:
            worse += 1
        if cert.relative_gap <= tol:
            reason = StopReason.GAP
            break
        if out_of_budget(it):
            reason = StopReason.MAX_TIME if it < max_newton else StopReason.MAX_ITER
            break
        if worse >= 2:  # the gap stopped improving: working precision reached
            reason = StopReason.STALLED
            break
        mu /= mu_factor
    q, nu, cert = best
    return q, prog.row_multipliers(*nu), SolverResult(
        x=q, history=hist, stop_reason=reason, n_iter=it, seconds=time.perf_counter() - t0,
        extras={"mu": mu, "relative_gap": cert.relative_gap})


def _unit_witnesses(prog, bar: BarrierTerms) -> tuple[Tensor, float]:
    """The blocks' witnesses scaled to unit norm (checked strictly inside their cones) and the
    margin τ added to every block of a start."""
    W = prog.blocks.gates.to(prog.X)
    check_witness(bar, W)
    W = W / torch.linalg.vector_norm(W.reshape(prog.B, -1), dim=1)[:, None, None]
    L0 = float(prog.loss.value(torch.zeros_like(prog.Y), prog.Y))
    return W, 1e-3 * max(L0, 1e-12) / (prog.reg * prog.B)


def _centre(bar: BarrierTerms, q: Tensor, mu: float, centre_tol: float, it: int,
            out_of_budget, verbose: int) -> tuple[Tensor, Tensor, int]:
    """Damped Newton on φ_μ from q until the decrement is ≤ ``centre_tol``, the line search
    fails or the budget ends; returns (q, the last Newton step at q, Newton steps so far)."""
    while True:
        dq, dec = bar.newton(q, mu)
        it += 1
        if dec / 2 <= centre_tol or out_of_budget(it):
            break
        alpha = min(1.0, 0.99 * bar.max_step(q, dq))
        fcur = bar.value(q, mu)
        while alpha > 1e-14:
            if bar.value(q + alpha * dq, mu) <= fcur - 0.25 * alpha * dec:
                break
            alpha *= 0.5
        if alpha <= 1e-14:
            break
        if verbose > 1:
            print(f"    newton {it}: decrement {dec:.3e} step {alpha:.3g}")
        q = q + alpha * dq
    return q, dq, it


def _multiplier_estimate(bar: BarrierTerms, q: Tensor, dq: Tensor, mu: float
                         ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """(point, ν) to certify after centring: q + Δq with ν = (μ/s)(1 − Δs/s)₊ when the full
    Newton step is feasible (second-order stationarity residual), else q with ν = μ/s."""
    U, dU = bar.state(q), bar.state(dq)
    s1, s2 = bar.slacks(U)
    if bar.max_step(q, dq) > 1.0:  # full step feasible: primal-dual estimate
        ds1 = bar.S1 * dU
        ds2 = bar.upper(dU)
        nu = ((mu * bar.v1 / s1 * (1 - ds1 / s1)).clamp_min(0),
              (mu * bar.need2 / s2 * (1 - ds2 / s2)).clamp_min(0))
        return q + dq, nu
    return q, (mu * bar.v1 / s1, mu * bar.need2 / s2)


def solve_pd(prog, *, tol: float = 1e-7, max_iter: int = 100, max_time: float | None = None,
             verbose: int = 0, start_mu: float = 10.0, start_newton: int = 30,
             start_tol: float = 1e-3, x0: Tensor | None = None
             ) -> tuple[Tensor, tuple[Tensor, Tensor], SolverResult]:
    """Primal-dual interior-point method (Mehrotra predictor–corrector, Nesterov–Todd scaling).

    Variables (q_s, t_s) with the cones G_s q_s ≥ 0 and ||q_s||_F ≤ t_s; the primal iterate stays
    strictly feasible (every iterate is a network with exactly the block patterns), the dual
    (ν for the cone rows, ζ_s for the norms) approaches feasibility. Each iteration factors the
    structured Newton matrix once (block Cholesky + Woodbury, as :meth:`BarrierTerms.newton`) and
    solves twice. Start: the non-negative lasso over the blocks' unit witnesses (or, with
    ``x0``, over x0's directions where it is non-zero, started at its norms), centred by at most
    ``start_newton`` barrier Newton steps (until the decrement is ≤ ``start_tol``·f0) at
    μ0 = ``start_mu``·f0/N (N cone rows; 0.01·f0/N for a warm start). Returns ``(x, ν, result)``
    with ν of the best certificate met."""
    t0 = time.perf_counter()
    hist = History()
    if prog.B == 0:
        return prog.zeros(), prog.zero_multipliers(), SolverResult(
            prog.zeros(), hist, StopReason.CONVERGED, 0, 0.0, {})
    bar = BarrierTerms(prog)
    B, md = bar.B, bar.m * bar.d
    kw = {"dtype": bar.X.dtype, "device": bar.X.device}
    N = float(bar.v1.sum() + bar.need2.sum()) + B
    q, t, l1, l2, lQ = _pd_start(prog, bar, x0, N, start_mu, start_newton, start_tol)
    best, reason, it = None, StopReason.MAX_ITER, 0
    e = torch.zeros(B, 1 + md, **kw)
    e[:, 0] = 1.0

    small = 0
    for it in range(1, max_iter + 1):
        try:
            q, t, l1, l2, lQ, alpha, sigma, mu = _pd_iteration(bar, prog, q, t, l1, l2, lQ, N, e)
        except torch.linalg.LinAlgError:
            if best is None:
                raise
            reason = StopReason.STALLED  # the Newton matrix lost definiteness: working precision
            break
        cert = prog.certificate(q, prog.row_multipliers(l1, l2))
        hist.append(it, cert.primal, cert.gap, cert.relative_gap, time.perf_counter() - t0)
        if verbose:
            print(f"[pd] it {it}: mu {mu:.3e} sigma {sigma:.3f} step {alpha:.3f} objective "
                  f"{cert.primal:.10g} rel.gap {cert.relative_gap:.3e}")
        if best is None or cert.relative_gap < best[2].relative_gap:
            best = (q, (l1, l2), cert)
        if cert.relative_gap <= tol:
            reason = StopReason.GAP
            break
        if max_time is not None and time.perf_counter() - t0 > max_time:
            reason = StopReason.MAX_TIME
            break
        small = small + 1 if alpha < 1e-6 else 0
        if small >= 3 or not math.isfinite(cert.primal):
            reason = StopReason.STALLED
            break
    q, nu, cert = best
    return q, prog.row_multipliers(*nu), SolverResult(
        x=q, history=hist, stop_reason=reason, n_iter=it, seconds=time.perf_counter() - t0,
        extras={"relative_gap": cert.relative_gap})


def _pd_start(prog, bar: BarrierTerms, x0: Tensor | None, N: float, start_mu: float,
              start_newton: int, start_tol: float):
    """Central start (q, t, λ₁, λ₂, λ_Q) of the primal-dual method (see :func:`solve_pd`)."""
    B, md = bar.B, bar.m * bar.d
    X = bar.X
    v1, n2 = bar.v1, bar.need2
    W0, tau = _unit_witnesses(prog, bar)
    if x0 is None:
        q = (witness_weights(bar, W0) + tau)[:, None, None] * W0
        f0 = prog.objective(q)
        mu0 = start_mu * max(f0, 1e-12) / N
    else:
        # warm start: x0 where non-zero (must be strictly inside), τ·witness elsewhere; centred
        # at a 1 %-gap level μ0 = 0.01 f0 / N
        nrm = prog.group_norms(x0)
        # directions: x0 pulled 5 % towards its witness (strictly inside the same cone) where
        # x0 ≠ 0, the witness elsewhere; magnitudes re-fitted by the non-negative lasso over
        # these directions, started at x0's norms
        x0 = x0.to(X)
        Dn = torch.where((nrm > 0)[:, None, None], 0.95 * x0 + 0.05 * nrm[:, None, None] * W0, W0)
        Dn = Dn / torch.linalg.vector_norm(Dn.reshape(B, -1), dim=1)[:, None, None]
        check_witness(bar, Dn)
        q = (witness_weights(bar, Dn, c0=nrm) + tau)[:, None, None] * Dn
        f0 = prog.objective(q)
        mu0 = 0.01 * max(f0, 1e-12) / N
    # a central start: a few damped Newton steps on the barrier problem at μ0, then the
    # central-path relations t = (μ + √(μ² + β²||q||²))/β, λ = μ s⁻¹ (Jordan inverse)
    for _ in range(start_newton):
        dq_, dec_ = bar.newton(q, mu0)
        if dec_ / 2 <= start_tol * max(1.0, abs(f0)):
            break
        al = min(1.0, 0.99 * bar.max_step(q, dq_))
        fc = bar.value(q, mu0)
        while al > 1e-14 and bar.value(q + al * dq_, mu0) > fc - 0.25 * al * dec_:
            al *= 0.5
        q = q + al * dq_
    _, _, sn = bar.norm_terms(q, mu0)
    t = (mu0 + sn) / prog.reg
    U = bar.state(q)
    s1, s2 = bar.slacks(U)
    l1, l2 = mu0 / s1 * v1, mu0 / s2 * n2
    sQ = torch.cat([t[:, None], q.reshape(B, md)], 1)
    sJs = sQ[:, 0] ** 2 - (sQ[:, 1:] ** 2).sum(1)
    lQ = mu0 * torch.cat([sQ[:, :1], -sQ[:, 1:]], 1) / sJs[:, None]
    return q, t, l1, l2, lQ


def _pd_iteration(bar, prog, q, t, l1, l2, lQ, N, e):
    """One Mehrotra predictor–corrector step; returns the new iterate and (α, σ, μ)."""
    B, m, d, n = bar.B, bar.m, bar.d, bar.n
    md = m * d
    X = bar.X
    v1, n2 = bar.v1, bar.need2

    def lp_adjoint(w1: Tensor, w2: Tensor) -> Tensor:
        GU = v1 * bar.S1 * w1 + bar.upper_adjoint(w2)
        return (X.T @ GU.reshape(n, -1)).reshape(d, B, m).permute(1, 2, 0).reshape(B, md)

    def lp_apply(dq: Tensor) -> tuple[Tensor, Tensor]:
        dU = bar.state(dq.reshape(B, m, d))
        return bar.S1 * dU * v1, bar.upper(dU) * n2

    U = bar.state(q)
    s1, s2 = bar.slacks(U)
    Z = bar.predict(U)
    lam = prog.loss.grad(Z, prog.Y)
    GUd = (lam @ bar.E.T)[:, :, None] * bar.P
    gq = (X.T @ GUd.reshape(n, -1)).reshape(d, B, m).permute(1, 2, 0).reshape(B, md)
    # dual residual r = ∇f − Gᵀλ (t-part first)
    r = torch.cat([(prog.reg - lQ[:, 0])[:, None], gq - lp_adjoint(l1, l2) - lQ[:, 1:]], 1)
    sQ = torch.cat([t[:, None], q.reshape(B, md)], 1)
    mu = float(((s1 * l1).sum() + (s2 * l2).sum() + (sQ * lQ).sum()) / N)
    Wq, Wqi, ltQ = nt_scaling(sQ, lQ)
    Wq2i = Wqi @ Wqi
    # structured Newton matrix: LP rows with weights λ/s, SOC block W⁻², data (Woodbury)
    w1 = l1 / s1 * v1
    w2 = l2 / s2 * n2
    K = (w1.reshape(n, B * m).T @ bar.XX).reshape(B, m, d, d)
    K = torch.diag_embed(K.permute(0, 2, 3, 1)).permute(0, 3, 1, 4, 2)
    if bool(n2.any()):
        K = K + (bar.upper_gram(w2).T @ bar.XX).reshape(B, m, m, d, d).permute(0, 1, 3, 2, 4)
    Kf = Wq2i.clone()
    Kf[:, 1:, 1:] += K.reshape(B, md, md)
    solve = woodbury_solver(bar, Kf, Z, offset=1)

    def directions(c1: Tensor, c2: Tensor, cQ: Tensor):
        """Step for W⁻¹r_c = (c1, c2, cQ) (LP parts already divided by s)."""
        rhs = -r + torch.cat([cQ[:, :1], lp_adjoint(c1, c2) + cQ[:, 1:]], 1)
        dx = solve(rhs)
        ds1, ds2 = lp_apply(dx[:, 1:])
        dsQ = dx
        dl1 = (c1 - w1 * ds1) * v1
        dl2 = (c2 - w2 * ds2) * n2
        dlQ = cQ - (Wq2i @ dsQ[..., None])[..., 0]
        return dx, ds1, ds2, dsQ, dl1, dl2, dlQ

    def step_len(ds1, ds2, dsQ, dl1, dl2, dlQ) -> float:
        return min(linear_step_length(s1, ds1, v1), linear_step_length(s2, ds2, n2),
                   soc_step_length(sQ, dsQ), linear_step_length(l1, dl1, v1),
                   linear_step_length(l2, dl2, n2), soc_step_length(lQ, dlQ))

    # predictor (affine scaling): W⁻¹r_c = −λ
    aff = directions(-l1, -l2, -lQ)
    a_aff = min(1.0, step_len(*aff[1:]))
    _, ds1a, ds2a, dsQa, dl1a, dl2a, dlQa = aff
    mu_aff = float((((s1 + a_aff * ds1a) * (l1 + a_aff * dl1a)).sum()
                    + ((s2 + a_aff * ds2a) * (l2 + a_aff * dl2a)).sum()
                    + ((sQ + a_aff * dsQa) * (lQ + a_aff * dlQa)).sum()) / N)
    sigma = min(1.0, max(mu_aff / mu, 0.0) ** 3)
    # corrector: W⁻¹r_c with r_c = λ̃ \ (σμe − λ̃∘λ̃ − (W⁻¹Δs_aff)∘(WΔλ_aff))
    c1 = ((sigma * mu - s1 * l1 - ds1a * dl1a) / s1) * v1
    c2 = ((sigma * mu - s2 * l2 - ds2a * dl2a) / s2) * n2
    sa = (Wqi @ dsQa[..., None])[..., 0]
    za = (Wq @ dlQa[..., None])[..., 0]
    rcQ = jordan_divide(ltQ, sigma * mu * e - jordan_product(ltQ, ltQ) - jordan_product(sa, za))
    cQ = (Wqi @ rcQ[..., None])[..., 0]
    dx, ds1, ds2, dsQ, dl1, dl2, dlQ = directions(c1, c2, cQ)
    alpha = min(1.0, 0.99 * step_len(ds1, ds2, dsQ, dl1, dl2, dlQ))
    q = q + alpha * dx[:, 1:].reshape(B, m, d)
    t = t + alpha * dx[:, 0]
    l1, l2, lQ = l1 + alpha * dl1, l2 + alpha * dl2, lQ + alpha * dlQ
    return q, t, l1, l2, lQ, alpha, sigma, mu


def solve_interior(prog, *, method: str = "pd", tol: float = 1e-7, max_time: float | None = None,
                   verbose: int = 0, **options
                   ) -> tuple[Tensor, tuple[Tensor, Tensor], SolverResult]:
    """``method="pd"`` (primal-dual; falls back to the barrier method when it ends more than
    100x above ``tol``) or ``"barrier"``. Raises :class:`NotStrictlyFeasible` as they do."""
    if method not in ("pd", "barrier"):
        raise ValueError(f"method must be 'pd' or 'barrier', got {method!r}")
    t0 = time.perf_counter()
    if method == "pd":
        x, nu, res = solve_pd(prog, tol=tol, max_time=max_time, verbose=verbose, **options)
        gap = res.extras.get("relative_gap", math.inf)
        left = None if max_time is None else max_time - (time.perf_counter() - t0)
        if gap <= 100 * tol or (left is not None and left <= 0):
            return x, nu, res
        xb, nub, resb = solve_barrier(prog, tol=tol, max_time=left, verbose=verbose)
        if resb.extras.get("relative_gap", math.inf) < gap:
            resb.extras["fallback"] = "barrier"
            return xb, nub, resb
        return x, nu, res
    return solve_barrier(prog, tol=tol, max_time=max_time, verbose=verbose, **options)
