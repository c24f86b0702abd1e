"""Driver of the structured interior-point method on the relaxation (working set, certificate)."""

from __future__ import annotations

import torch
from torch import Tensor

from ...formulations.sdp.lifting import congruence, lift_rows
from ...formulations.sdp.relaxation import DualBound, SDPRelaxation, normalised, unscale_primal
from ...solvers.sdp_ipm import Rank2SDP, primal_dual_ipm

__all__ = ["solve_ipm", "rank2_problem", "seed_pairs"]


def rank2_problem(prob: SDPRelaxation, WP: Tensor, WR: Tensor):
    """(P)/(D) of :mod:`convexnn.solvers.sdp_ipm` for the reduced relaxation.

    Rows of T (t = 2n + c): a_i = e_{b_i} + x_i (on u), b_i = e_{b_i}, v_k = e_{v_k}, so
    T Z Tᵀ holds Λ_[αβ] = T_ab Z T_abᵀ, Λ_αv and Z_vv. Constraints: Q = Λ_αv entries (targets
    Y), E = diag(Λ_αβ), I = −2 Λ_e ≤ 0 for the working set of pairs e = (p, p') of the
    2n x 2n block. The dual variables are exactly (Γ, ω, N) of :meth:`lagrangian_matrix`.
    """
    Y, n, d, c, q = prob.Y, prob.n, prob.d, prob.c, prob.q
    dt, dev = prob.X.dtype, prob.X.device
    T = lift_rows(prob.X, prob.c)
    ia = torch.arange(n, device=dev)
    P = torch.cat([ia.repeat_interleave(c), ia, WP.to(dev)])
    R = torch.cat([(2 * n + torch.arange(c, device=dev)).repeat(n), ia + n, WR.to(dev)])
    coef = torch.cat([torch.ones(n * c + n, dtype=dt, device=dev),
                      -2.0 * torch.ones(WP.numel(), dtype=dt, device=dev)])
    C = torch.zeros(q, q, dtype=dt, device=dev)
    C[n:, n:] = 0.5 * prob.reg * torch.eye(d + c, dtype=dt, device=dev)

    gram, adjoint = congruence(prob.X)
    return Rank2SDP(T=T, C=C, P=P, R=R, coef=coef, b=Y.reshape(-1).clone(), n_quad=n * c,
                    n_eq=n, gram_fn=gram, adjoint_fn=adjoint)


def seed_pairs(X: Tensor, neighbors: int) -> tuple[Tensor, Tensor]:
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
       (seeded by :func:`seed_pairs`); once the interior-point iterate is within 1e-2 of
       optimality, entries of T Z Tᵀ that are < −``add_tol``·max diag Λ outside the set are added
       (up to ``add_max`` per iteration), until none is violated at the final iterate. A dual
       point with N = 0 off the working set is a dual point of the full problem, so the bound in
       step 3 is valid whatever the working set; it is tight once no constraint is violated.
    3. *Certificate*: the multipliers (Γ', ω', N') are mapped back (Γ = κΓ', ω = κω'/s,
       N = κN'/s) and passed to :meth:`SDPRelaxation.dual_bound` on the *original* data, which
       checks λ_min(S) in float64 with a rounding margin and repairs if needed.

    Returns ``(bound, Z, info)`` with Z in the original coordinates.
    """
    pn, sx, ky = normalised(prob)
    n = pn.n
    WP, WR = seed_pairs(pn.X, neighbors)
    rp = rank2_problem(pn, WP, WR)
    cap = add_max if add_max is not None else max(1, n // 2)
    added = [0, 0, -add_every]   # constraints added, additions, iteration of the last one
    check = _working_set_check(rp, _working_set_mask(n, WP, WR), added, tol=tol,
                               add_tol=add_tol, cap=cap, add_every=add_every, verbose=verbose)
    y0, S0, s0, eye = _start(pn, rp, WP, WR, feasible_dual)
    res = primal_dual_ipm(rp, Z0=eye, S0=S0, y0=y0, s0=s0, tol=tol, max_iter=max_iter,
                          max_time=max_time, check=check, verbose=verbose)
    # ---- map back and certify on the original data
    Gam, om, N = _original_multipliers(res.y, rp, pn, sx, ky)
    Z = unscale_primal(pn, sx, ky, res.Z)
    bound = prob.dual_bound(Gam, om, N, upper=0.5 * float((prob.Y * prob.Y).sum()))
    info = {"ipm_iterations": res.n_iter, "ipm_stop": res.stop_reason,
            "ipm_rel_gap": res.rel_gap, "ipm_infeasibility": res.infeasibility,
            "working_set": rp.n_ineq, "constraints_added": added[0],
            "sdp_primal_estimate": ky * ky * res.primal_value,
            "sdp_dual_estimate": ky * ky * res.dual_value, "history": res.history,
            "multipliers": (Gam, om, N)}
    return bound, Z.to(prob.X), info


def _working_set_mask(n: int, WP: Tensor, WR: Tensor) -> Tensor:
    """Entries of the 2n x 2n block already constrained (working set, complementary pairs,
    diagonal)."""
    dev = WP.device
    inW = torch.zeros(2 * n, 2 * n, dtype=torch.bool, device=dev)
    inW[WP, WR] = True
    inW[WR, WP] = True
    ia = torch.arange(n, device=dev)
    inW[ia, ia + n] = True
    inW[ia + n, ia] = True
    inW.fill_diagonal_(True)
    return inW


def _working_set_check(rp: Rank2SDP, inW: Tensor, added: list, *, tol: float, add_tol: float,
                       cap: int, add_every: int, verbose: int):
    """The IPM's callback adding the most violated entries outside the working set ``inW``
    (updated in place, as is the count ``added``)."""
    n = inW.shape[0] // 2
    dt, dev = rp.T.dtype, rp.T.device

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

    return check


def _start(pn: SDPRelaxation, rp: Rank2SDP, WP: Tensor, WR: Tensor, feasible_dual: bool):
    """(y0, S0, s0, Z0 = I) of the IPM: a strictly feasible dual start (Slater point, small N;
    S0 = None) or the identity start."""
    n, q = pn.n, pn.q
    dt, dev = pn.X.dtype, pn.X.device
    ni = rp.n_ineq
    y0 = torch.zeros(rp.m, dtype=dt, device=dev)
    eye = torch.eye(q, dtype=dt, device=dev)
    if feasible_dual:
        # strictly feasible dual start (Slater point, small N): every iterate is a bound
        delta, lam0 = pn.slater_point()
        y0[rp.n_quad:rp.n_quad + n] = delta
        tn = torch.linalg.vector_norm(rp.T, dim=1)
        y0[rp.n_quad + n:] = 0.25 * lam0 / max(2.0 * float((tn[WP] * tn[WR]).sum()), 1e-300)
        S0 = None
        s0 = 1.0 / y0[rp.n_quad + n:] if ni else y0[:0]
        s0 = s0 * float(y0[rp.n_quad + n:].min()) if ni else s0
    else:
        y0[rp.n_quad + rp.n_eq:] = 1.0
        S0, s0 = eye, torch.ones(ni, dtype=dt, device=dev)
    return y0, S0, s0, eye


def _original_multipliers(y: Tensor, rp: Rank2SDP, pn: SDPRelaxation, sx: float, ky: float):
    """(Γ, ω, N) on the original data from the IPM's multipliers (Γ = κΓ', ω = κω'/s,
    N = κN'/s)."""
    n = pn.n
    nc = n * pn.c
    y = y.to(torch.float64)
    Gam = ky * y[:nc].reshape(n, pn.c)
    om = (ky / sx) * y[nc:nc + n]
    N = torch.zeros(2 * n, 2 * n, dtype=torch.float64, device=pn.X.device)
    nu = (ky / sx) * y[nc + n:].clamp_min(0)
    Pw, Rw = rp.P[nc + n:], rp.R[nc + n:]
    N[Pw, Rw] = nu
    N[Rw, Pw] = nu
    return Gam, om, N
