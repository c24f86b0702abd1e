r"""ADMM for SDPs whose non-PSD part acts entrywise on a congruence T Z Tᵀ.

The class of problems (all matrices symmetric, Frobenius inner product)::

    (P)  min_{Z ⪰ 0}  <C, Z> + g(T Z Tᵀ)

with T (t x q) fixed (if T is rank deficient, C must be ⪰ 0 on null(T); Z is then sought in
range(Tᵀ), which loses nothing) and g *separable over the entries* of the t x t matrix
K = T Z Tᵀ (closed, convex; +∞ encodes constraints such as K_ij ≥ 0 or K_ij = 0). Its dual is

    (D)  max_Y  −g*(Y)   s.t.  S(Y) = C + Tᵀ Y T ⪰ 0.

**Preconditioning.** With any factor G = TᵀT = L Lᵀ and H = L⁻¹, the substitution
Z = Hᵀ Z' H is a bijection of the PSD cone and T' = T Hᵀ has orthonormal columns, so
||T' Z' T'ᵀ − M||² = ||Z' − T'ᵀ M T'||² + const(M). The splitting K = T' Z' T'ᵀ (Z' ⪰ 0, g on
K) is then a two-block ADMM whose Z'-step is a *projection* (the scheme of Oliveira, Wolkowicz
& Xu for facially reduced doubly-nonnegative relaxations)::

    Z' ← Π_{⪰0}(H Tᵀ (K − U) T Hᵀ − H C Hᵀ / ρ)
    K  ← prox_{g/ρ}(T Z Tᵀ + U),      Z = Hᵀ Z' H
    U  ← U + T Z Tᵀ − K                (over-relaxed by ``relax``).

The Z-step's minimiser does not depend on the factor (T has full column rank on range(Tᵀ)),
so neither do the iterates. By default L = G^{1/2} = Q diag(γ)^{1/2} Qᵀ (symmetric; two dense
q x q products per iteration; pseudo-inverse root if G is singular); a caller who knows a
structured factor passes ``solve_fn`` (M ↦ L⁻¹ M, or L⁻ᵀ M), e.g. the block Cholesky factor of
the lifts of :mod:`convexnn.formulations.sdp`, applied in O(n d q) instead of O(q³).

**Restarted momentum** (``accel``, the "fast ADMM" of Goldstein, O'Donoghue, Setzer & Baraniuk,
SIAM J. Imaging Sci. 2014): the map (K, U) ↦ (K⁺, U⁺) above is applied to an extrapolated
point (K, U) + w_k (K − K_prev, U − U_prev) with Nesterov's weights w_k; whenever the combined
residual ||K⁺ − K̂||² + ||U⁺ − Û||² does not fall by the factor ``restart_eta`` the momentum is
dropped and the next step is a plain ADMM step (their safeguard for problems that are not
strongly convex; no bound depends on it, every certificate is checked). It costs a
few t x t additions per iteration and roughly halves the iteration count on the relaxations of
:mod:`convexnn.formulations.sdp` (measured in benchmarks/results/sdp.md).

One iteration costs the positive eigenpairs of one q x q symmetric matrix (all of them with
``eig="full"``; LAPACK's subset driver with ``"subset"``, :func:`positive_part`), two dense
q x q products (none with ``solve_fn``), O(q² r) for Z = W Wᵀ (r positive eigenvalues), the
caller's structured T Z Tᵀ / Tᵀ E T and a few in-place passes over t x t buffers; memory
O(q² + t²) (about ten t x t matrices). No constraint is sampled or dropped: all t² entrywise
terms of g are handled at that cost, where an interior-point method's Schur complement grows
with the number of active constraints.

**Dual iterates.** After the K-step, Y = ρ U ∈ ∂g(K) exactly, and S(Y) ⪰ 0 holds up to the
dual residual, which vanishes at convergence. Certifying Y (λ_min check and repair) is the
caller's job — no value of an unconverged iterate is a bound. The penalty is adapted by
residual balancing; stopping is delegated to a ``monitor`` callback.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import History, SolverResult, StopReason

__all__ = ["CongruenceSDP", "positive_part", "sdp_admm"]


@dataclass
class CongruenceSDP:
    """Data of (P): ``C`` (q x q), ``G = TᵀT`` (q x q), ``gram_fn(W) = T W Tᵀ`` (if it takes
    an ``out`` keyword, the ADMM passes a t x t buffer to write into),
    ``adjoint_fn(E) = Tᵀ E T`` and ``prox_fn(V, rho) = prox_{g/rho}(V)`` (entrywise, on
    symmetric t x t matrices; the Frobenius norm counts each off-diagonal pair twice; it may
    overwrite V and return it);
    optionally ``solve_fn(M, transpose)`` = L⁻¹ M (L⁻ᵀ M if ``transpose``) for a factor
    G = L Lᵀ (nonsingular) that is cheaper to apply than a dense q x q matrix."""

    C: Tensor
    G: Tensor
    gram_fn: Callable[[Tensor], Tensor]
    adjoint_fn: Callable[[Tensor], Tensor]
    prox_fn: Callable[[Tensor, float], Tensor]
    solve_fn: Callable[[Tensor, bool], Tensor] | None = None


def positive_part(A: Tensor, mode: str = "auto") -> tuple[Tensor, Tensor]:
    """(θ, R): the positive eigenvalues (ascending) and orthonormal eigenvectors of symmetric A.

    ``"full"``: all eigenpairs (``torch.linalg.eigh``), then the positive ones. ``"subset"``:
    only the positive ones, by LAPACK's MRRR driver (``syevr`` with a value range, through
    SciPy; CPU only) — exact, and since the ADMM's projections keep a few percent of the
    spectrum, about 3x faster at q = 1000–1500 (benchmarks/results/sdp.md). ``"auto"``: subset
    on CPU, full elsewhere.
    """
    if mode == "auto":
        mode = "subset" if A.device.type == "cpu" else "full"
    if mode == "subset":
        import scipy.linalg as sl

        if A.device.type != "cpu" or A.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"eig='subset' needs a float32/float64 CPU matrix, got {A.dtype} "
                             f"on {A.device}; use eig='full' or 'auto'")

        a = A.detach().numpy()
        w, v = sl.eigh(a, lower=True, subset_by_value=(0.0, math.inf), driver="evr",
                       check_finite=False, overwrite_a=False)
        return torch.from_numpy(w).to(A.dtype), torch.from_numpy(v).to(A.dtype)
    if mode != "full":
        raise ValueError(f"eig must be 'auto', 'full' or 'subset', got {mode!r}")
    evals, evecs = torch.linalg.eigh(A)
    pos = evals > 0
    return evals[pos], evecs[:, pos]


def _check_options(relax: float, rho: float, restart_eta: float, eig: str) -> None:
    if not 0 < relax < 2:
        raise ValueError(f"relax must be in (0, 2), got {relax}")
    if rho <= 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    if not 0 < restart_eta <= 1:
        raise ValueError(f"restart_eta must be in (0, 1], got {restart_eta}")
    if eig not in ("auto", "full", "subset"):
        raise ValueError(f"eig must be 'auto', 'full' or 'subset', got {eig!r}")


def _preconditioner(prob: CongruenceSDP):
    """(M ↦ H M Hᵀ, V ↦ Hᵀ V) for H = L⁻¹ with G = L Lᵀ: the problem's factor if it supplies
    one, else the pseudo-inverse square root of G."""
    if prob.solve_fn is not None:
        solve = prob.solve_fn

        def congr(M: Tensor) -> Tensor:       # H M Hᵀ = L⁻¹ M L⁻ᵀ for symmetric M
            return solve(solve(M, False).T, False)

        def back(V: Tensor) -> Tensor:        # Hᵀ V = L⁻ᵀ V
            return solve(V, True)
        return congr, back
    G = prob.G
    gam, Q = torch.linalg.eigh(0.5 * (G + G.T))
    # pseudo-inverse root on range(Tᵀ): directions in null(T) only carry <C, Z>, and with
    # C ⪰ 0 there they are zero at an optimum (see the class docstring)
    keep = gam > 1e-12 * max(float(gam[-1]), 1e-300)
    H = (Q[:, keep] * gam[keep].rsqrt()) @ Q[:, keep].T

    def congr(M: Tensor) -> Tensor:
        return H @ M @ H

    def back(V: Tensor) -> Tensor:
        return H @ V
    return congr, back


class _Step:
    """The ADMM map (K, U) ↦ (K⁺, U⁺) on preallocated t x t buffers.

    The iterates are updated in place: allocating a fresh t x t matrix costs as much as several
    passes over it (page faults), which made the element-wise updates cost more than the
    eigendecomposition at t = 3000."""

    def __init__(self, prob: CongruenceSDP, Cp: Tensor, congr, back, relax: float, eig: str,
                 like: Tensor):
        self.prob, self.Cp, self.congr, self.back = prob, Cp, congr, back
        self.relax, self.eig = relax, eig
        self.D = torch.empty_like(like)                  # work space
        self.gram_out = "out" in inspect.signature(prob.gram_fn).parameters
        self.TZb = torch.empty_like(like) if self.gram_out else None

    def __call__(self, Kh: Tensor, Uh: Tensor, rho: float, Kn: Tensor, Un: Tensor):
        """One ADMM step from (Kh, Uh), written into (Kn, Un); returns Z and T Z Tᵀ."""
        prob, D, relax = self.prob, self.D, self.relax
        torch.sub(Kh, Uh, out=D)
        A = self.congr(prob.adjoint_fn(D))
        A.sub_(self.Cp, alpha=1.0 / rho)
        evals, evecs = positive_part(0.5 * (A + A.T), self.eig)
        W = self.back(evecs * evals.sqrt())
        Z = W @ W.T
        TZ = prob.gram_fn(Z, out=self.TZb) if self.gram_out else prob.gram_fn(Z)
        torch.mul(TZ, relax, out=D)          # D = relaxed T Z Tᵀ
        D.add_(Kh, alpha=1.0 - relax)
        torch.add(D, Uh, out=Kn)
        Kp = prob.prox_fn(Kn, rho)
        if Kp is not Kn:
            Kn.copy_(Kp)
        torch.add(Uh, D, out=Un)
        Un.sub_(Kn)
        return Z, TZ

    def sqdist(self, A: Tensor, B: Tensor) -> float:
        return float(torch.linalg.matrix_norm(torch.sub(A, B, out=self.D))) ** 2


def sdp_admm(prob: CongruenceSDP, *, K0: Tensor | None = None, U0: Tensor | None = None,
             rho: float = 1.0, max_iter: int = 5000, max_time: float | None = None,
             check_every: int = 10, balance_every: int = 50, balance_ratio: float = 10.0,
             relax: float = 1.6, accel: bool = False, restart_eta: float = 0.999,
             eig: str = "auto",
             monitor: Callable[[dict], bool] | None = None,
             verbose: int = 0) -> SolverResult:
    """Run the ADMM of the module docstring; returns Z (``x``) and the multipliers.

    ``monitor(state)`` is called every ``check_every`` iterations with ``Z, K, Y = ρU, rho,
    r_primal, r_dual, iter, seconds, history``; returning True stops with
    ``StopReason.GAP``. ``relax`` ∈ (0, 2) is the over-relaxation (1 = plain ADMM);
    ``accel`` turns on the restarted momentum, ``restart_eta`` ∈ (0, 1] is its restart factor;
    ``eig``: how the projection's eigenpairs are computed (:func:`positive_part`).
    """
    _check_options(relax, rho, restart_eta, eig)
    t0 = time.perf_counter()
    C = prob.C
    congr, back = _preconditioner(prob)
    Cp = congr(C)
    t = prob.gram_fn(torch.zeros_like(C)).shape[0]
    K = torch.zeros(t, t, dtype=C.dtype, device=C.device) if K0 is None else K0.clone()
    U = torch.zeros_like(K) if U0 is None else U0.clone()
    hist = History()
    stop = StopReason.MAX_ITER
    it = 0
    rp = rd = math.inf

    step = _Step(prob, Cp, congr, back, relax, eig, K)
    fmap, sqdist = step, step.sqdist
    bK, bU = [K, torch.empty_like(K), torch.empty_like(K)], [U, torch.empty_like(U),
                                                              torch.empty_like(U)]

    Z = torch.zeros_like(C)
    iK = ih = 0              # buffers of the iterate and of the point fmap is applied to
    mom, comb = 1.0, math.inf
    for it in range(1, max_iter + 1):
        f = 3 - iK - ih if ih != iK else (iK + 1) % 3        # a free buffer
        Kh, Uh = bK[ih], bU[ih]
        Z, TZ = fmap(Kh, Uh, rho, bK[f], bU[f])
        K, U = bK[f], bU[f]
        do_check = it % check_every == 0 or it == max_iter
        do_balance = balance_every > 0 and it % balance_every == 0
        if do_check or do_balance:
            rd = math.sqrt(sqdist(K, bK[iK])) / max(float(torch.linalg.matrix_norm(U)), 1e-300)
        nh = f                                # the next fmap point: the iterate itself ...
        if accel:
            cn = sqdist(K, Kh) + sqdist(U, Uh)
            if cn < restart_eta * comb:       # ... or its extrapolation, in the third buffer
                mn = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * mom * mom))
                w = (mom - 1.0) / mn
                nh = 3 - f - iK
                for b in (bK, bU):            # x + w (x − x_prev)
                    torch.sub(b[f], b[iK], out=b[nh])
                    b[nh].mul_(w).add_(b[f])
                mom, comb = mn, cn
            else:                             # restart the momentum
                mom, comb = 1.0, comb / restart_eta
        iK, ih = f, nh
        if do_check or do_balance:
            rp = math.sqrt(sqdist(TZ, K)) / max(
                float(torch.linalg.matrix_norm(TZ)), float(torch.linalg.matrix_norm(K)), 1e-300)
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
            fb = 2.0 if rp > balance_ratio * rd else 0.5 if rd > balance_ratio * rp else 1.0
            if fb != 1.0:       # new penalty: rescale U (Y = ρU kept), restart the momentum
                rho = fb * rho
                U.div_(fb)
                ih, mom, comb = iK, 1.0, math.inf
    K, U = bK[iK], bU[iK]
    return SolverResult(x=Z, history=hist, stop_reason=stop, n_iter=it,
                        seconds=time.perf_counter() - t0,
                        extras={"K": K, "Y": rho * U, "U": U, "rho": rho, "r_primal": rp,
                                "r_dual": rd})
