r"""ADMM for SDPs whose non-PSD part acts entrywise on a congruence T Z Tᵀ.

The class of problems (all matrices symmetric, Frobenius inner product)::

    (P)  min_{Z ⪰ 0}  <C, Z> + g(T Z Tᵀ)

with T (t x q) fixed (if T is rank deficient, C must be ⪰ 0 on null(T); Z is then sought in
range(Tᵀ), which loses nothing) and g *separable over the entries* of the t x t matrix
K = T Z Tᵀ (closed, convex; +∞ encodes constraints such as K_ij ≥ 0 or K_ij = 0). Its dual is

    (D)  max_Y  −g*(Y)   s.t.  S(Y) = C + Tᵀ Y T ⪰ 0.

**Preconditioning.** With G = TᵀT = Q diag(γ) Qᵀ (one eigendecomposition) and H = G^{-1/2},
the substitution Z = H Z' H is a bijection of the PSD cone and T' = T H has orthonormal
columns, so ||T' Z' T'ᵀ − M||² = ||Z' − T'ᵀ M T'||² + const(M). The splitting
K = T' Z' T'ᵀ (Z' ⪰ 0, g on K) is then a two-block ADMM whose Z'-step is a *projection*
(the scheme of Oliveira, Wolkowicz & Xu for facially reduced doubly-nonnegative relaxations)::

    Z' ← Π_{⪰0}(H Tᵀ (K − U) T H − H C H / ρ)
    K  ← prox_{g/ρ}(T Z Tᵀ + U),      Z = H Z' H
    U  ← U + T Z Tᵀ − K                (over-relaxed by ``relax``).

**Restarted momentum** (``accel``, the "fast ADMM" of Goldstein, O'Donoghue, Setzer & Baraniuk,
SIAM J. Imaging Sci. 2014): the map (K, U) ↦ (K⁺, U⁺) above is applied to an extrapolated
point (K, U) + w_k (K − K_prev, U − U_prev) with Nesterov's weights w_k; whenever the combined
residual ||K⁺ − K̂||² + ||U⁺ − Û||² does not fall by the factor ``restart_eta`` the momentum is
dropped and the next step is a plain ADMM step (their safeguard for problems that are not
strongly convex; no bound depends on it, every certificate is checked). It costs a
few t x t additions per iteration and roughly halves the iteration count on the relaxations of
:mod:`convexnn.formulations.sdp` (measured in benchmarks/results/sdp.md).

One iteration costs one q x q symmetric eigendecomposition, four q x q products and the
caller's structured T Z Tᵀ / Tᵀ E T; memory O(q² + t²). No constraint is sampled or dropped:
all t² entrywise terms of g are handled at that cost, where an interior-point method's Schur
complement grows with the number of active constraints.

**Dual iterates.** After the K-step, Y = ρ U ∈ ∂g(K) exactly, and S(Y) ⪰ 0 holds up to the
dual residual, which vanishes at convergence. Certifying Y (λ_min check and repair) is the
caller's job — no value of an unconverged iterate is a bound. The penalty is adapted by
residual balancing; stopping is delegated to a ``monitor`` callback.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import History, SolverResult, StopReason

__all__ = ["CongruenceSDP", "sdp_admm"]


@dataclass
class CongruenceSDP:
    """Data of (P): ``C`` (q x q), ``G = TᵀT`` (q x q), ``gram_fn(W) = T W Tᵀ``,
    ``adjoint_fn(E) = Tᵀ E T`` and ``prox_fn(V, rho) = prox_{g/rho}(V)`` (entrywise, on
    symmetric t x t matrices; the Frobenius norm counts each off-diagonal pair twice)."""

    C: Tensor
    G: Tensor
    gram_fn: Callable[[Tensor], Tensor]
    adjoint_fn: Callable[[Tensor], Tensor]
    prox_fn: Callable[[Tensor, float], Tensor]


def sdp_admm(prob: CongruenceSDP, *, K0: Tensor | None = None, U0: Tensor | None = None,
             rho: float = 1.0, max_iter: int = 5000, max_time: float | None = None,
             check_every: int = 10, balance_every: int = 50, balance_ratio: float = 10.0,
             relax: float = 1.6, accel: bool = False, restart_eta: float = 0.999,
             monitor: Callable[[dict], bool] | None = None,
             verbose: int = 0) -> SolverResult:
    """Run the ADMM of the module docstring; returns Z (``x``) and the multipliers.

    ``monitor(state)`` is called every ``check_every`` iterations with ``Z, K, Y = ρU, rho,
    r_primal, r_dual, iter, seconds, history``; returning True stops with
    ``StopReason.GAP``. ``relax`` ∈ (0, 2) is the over-relaxation (1 = plain ADMM);
    ``accel`` turns on the restarted momentum, ``restart_eta`` ∈ (0, 1] is its restart factor.
    """
    if not 0 < relax < 2:
        raise ValueError(f"relax must be in (0, 2), got {relax}")
    if rho <= 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    if not 0 < restart_eta <= 1:
        raise ValueError(f"restart_eta must be in (0, 1], got {restart_eta}")
    t0 = time.perf_counter()
    C, G = prob.C, prob.G
    gam, Q = torch.linalg.eigh(0.5 * (G + G.T))
    # pseudo-inverse root on range(Tᵀ): directions in null(T) only carry <C, Z>, and with C ⪰ 0
    # there they are zero at an optimum (see the class docstring)
    keep = gam > 1e-12 * max(float(gam[-1]), 1e-300)
    H = (Q[:, keep] * gam[keep].rsqrt()) @ Q[:, keep].T
    Cp = H @ C @ H
    t = prob.gram_fn(torch.zeros_like(C)).shape[0]
    K = torch.zeros(t, t, dtype=C.dtype, device=C.device) if K0 is None else K0.clone()
    U = torch.zeros_like(K) if U0 is None else U0.clone()
    hist = History()
    stop = StopReason.MAX_ITER
    it = 0
    rp = rd = math.inf

    def fmap(K: Tensor, U: Tensor, rho: float):
        A = H @ prob.adjoint_fn(K - U) @ H - Cp / rho
        evals, evecs = torch.linalg.eigh(0.5 * (A + A.T))
        pos = evals > 0
        W = H @ (evecs[:, pos] * evals[pos].sqrt())
        Z = W @ W.T
        TZ = prob.gram_fn(Z)
        TZr = relax * TZ + (1.0 - relax) * K
        Kn = prob.prox_fn(TZr + U, rho)
        return Kn, U + TZr - Kn, Z, TZ

    Z = torch.zeros_like(C)
    Kh, Uh = K, U            # the points fmap is applied to (extrapolated when accel)
    mom, comb = 1.0, math.inf
    for it in range(1, max_iter + 1):
        Kold, Uold = K, U
        K, U, Z, TZ = fmap(Kh, Uh, rho)
        if accel:
            cn = float(torch.linalg.matrix_norm(K - Kh)) ** 2 + float(
                torch.linalg.matrix_norm(U - Uh)) ** 2
            if cn < restart_eta * comb:
                mn = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * mom * mom))
                w = (mom - 1.0) / mn
                Kh, Uh = K + w * (K - Kold), U + w * (U - Uold)
                mom, comb = mn, cn
            else:                        # restart the momentum
                mom, comb = 1.0, comb / restart_eta
                Kh, Uh = K, U
        else:
            Kh, Uh = K, U
        do_check = it % check_every == 0 or it == max_iter
        do_balance = balance_every > 0 and it % balance_every == 0
        if do_check or do_balance:
            rp = float(torch.linalg.matrix_norm(TZ - K)) / max(
                float(torch.linalg.matrix_norm(TZ)), float(torch.linalg.matrix_norm(K)), 1e-300)
            rd = float(torch.linalg.matrix_norm(K - Kold)) / max(
                float(torch.linalg.matrix_norm(U)), 1e-300)
        if do_check:
            state = {"Z": Z, "K": K, "Y": rho * U, "rho": rho, "r_primal": rp, "r_dual": rd,
                     "iter": it, "seconds": time.perf_counter() - t0, "history": hist}
            if verbose:
                print(f"[sdp-admm] it={it} rho={rho:.3e} r_primal={rp:.2e} r_dual={rd:.2e}")
            if monitor is not None and monitor(state):
                stop = StopReason.GAP
                break
        if max_time is not None and time.perf_counter() - t0 > max_time:
            stop = StopReason.MAX_TIME
            break
        if do_balance and 0 < rp < math.inf and 0 < rd < math.inf:
            f = 2.0 if rp > balance_ratio * rd else 0.5 if rd > balance_ratio * rp else 1.0
            if f != 1.0:        # new penalty: rescale U (Y = ρU kept), restart the momentum
                rho, U = f * rho, U / f
                Kh, Uh, mom, comb = K, U, 1.0, math.inf
    return SolverResult(x=Z, history=hist, stop_reason=stop, n_iter=it,
                        seconds=time.perf_counter() - t0,
                        extras={"K": K, "Y": rho * U, "U": U, "rho": rho, "r_primal": rp,
                                "r_dual": rd})
