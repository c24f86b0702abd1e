r"""Certify a loss multiplier Γ of the SDP relaxation by scaling it (the *neuron SDP*).

Notation of :mod:`convexnn.formulations.sdp`: Z ⪰ 0 on the coordinates (b | u | v), the lifted
rows α = b + X u and β = b, Λ = T Z Tᵀ, weight decay β_reg = ``reg``. For Γ (n x c) let
B = ½ [Γ; XᵀΓ] act on the (b, u) coordinates, so <BBᵀ, W> = ¼ tr(Γᵀ Λ_αα(W) Γ), and ::

    φ(Γ) = max { <BBᵀ, W> :  W ⪰ 0 ((n+d) x (n+d)),  Λ_[αβ](W) ≥ 0,  diag Λ_αβ(W) = 0,
                              tr W_uu ≤ 1 }.

For a true unit neuron, W = (b, u)(b, u)ᵀ with b = (−Xu)_+, this is ¼||Γᵀ(Xu)_+||², the
quantity the dual constraint of the convex two-layer program bounds by reg²/4 (Pilanci & Ergen);
φ is its doubly-nonnegative relaxation, exactly as the relaxation relaxes the network.

**The bound.** If φ̄ ≥ φ(Γ), then for every 0 ≤ s ≤ reg / (2√φ̄) and every Z feasible for the
relaxation, objective(Z) ≥ −L*(sΓ), L*(Γ) = ½||Γ||² + <Γ, Y>. Proof: Fenchel–Young gives
½||P − Y||² ≥ <sΓ, P> − L*(sΓ) for P = Λ_αv = [I X] R, R = Z_(bu)v, and <sΓ, P> = 2s <B, R>.
As Z ⪰ 0, |<B, R>| ≤ √<BBᵀ, W> · √tr Z_vv with W = Z_(bu)(bu), and W / tr W_uu is feasible
for φ, so <BBᵀ, W> ≤ φ̄ tr W_uu. By AM–GM (reg/2)(tr W_uu + tr Z_vv) ≥ reg √(tr W_uu tr Z_vv)
≥ 2s√φ̄ √(tr W_uu tr Z_vv) ≥ −<sΓ, P>. Hence p* ≥ p_SDP ≥ max_{0 ≤ s ≤ reg/(2√φ̄)} −L*(sΓ),
which is a one-dimensional concave maximisation solved in closed form.

**The upper bound φ̄.** φ is an SDP of the congruence class of :mod:`convexnn.solvers.sdp_admm`
(rows α | β | u on (b, u); g: K_[αβ] ≥ 0 off the pairs (α_i, β_i), = 0 on them,
Σ_k K_{u_k u_k} ≤ 1, free elsewhere), solved in min form with C = −BBᵀ. For any multiplier Y
(made sign-feasible: ≤ 0 on the inequality entries, t·I on the uu diagonal with t ≥ 0, 0 on the
free entries) and every feasible W,
<BBᵀ, W> = −<S, W> + <Y, T W Tᵀ> ≤ t + ε tr W ≤ t + ε (1 + ||X||₂²), with S = −BBᵀ + Tᵀ Y T,
ε = max(0, −λ_min(S)) in float64 with a rounding margin, and tr W_bb ≤ ||X||₂² tr W_uu (from
diag Λ_αβ = 0, as in :meth:`SDPRelaxation.dual_bound`).

**Why it helps.** The relaxation's own certificate needs λ_min of its dual matrix accurate
relative to reg, the only strictly feasible margin of that dual; when reg ≪ ||X|| ||Y|| (e.g.
digits at n = 1000: reg ≈ 6e-5 after normalisation) a first-order method gets there very
slowly. φ is scale-free: with ||X||₂ = 1 and BBᵀ normalised, its repair costs ε relative to φ
itself, and an error δ in Γ only costs O(δ²) in the bound near the optimum (the scaled point
stays on the boundary of the dual feasible set).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ...losses import get_loss
from ...solvers.sdp_admm import CongruenceSDP, sdp_admm
from .lifting import lift_factor, off_pair_mask

__all__ = ["NeuronBound", "neuron_sdp_bound", "scaled_gamma_bound", "neuron_congruence"]

_EPS = float(np.finfo(np.float64).eps)


@dataclass
class NeuronBound:
    """A proven φ̄ ≥ φ(Γ) (original scale of X) and how the inner solve went."""

    phi_upper: float        # proven upper bound on φ(Γ)
    phi_estimate: float     # primal estimate of φ(Γ) from the last inner iterate (not a bound)
    t: float                # multiplier of tr W_uu ≤ 1 (normalised problem)
    lam_min: float          # λ_min of the repaired dual matrix (normalised problem)
    iterations: int
    seconds: float
    state: dict             # ADMM state (K, U, rho) for a warm start


def neuron_congruence(X: Tensor):
    """(W ↦ T W Tᵀ, E ↦ Tᵀ E T) for the rows T = (α | β | u) on (b, u), t = 2n + d."""
    n, d = X.shape

    def gram(W: Tensor, out: Tensor | None = None) -> Tensor:
        Wb, Wu = W[:n], W[n:]
        A = torch.addmm(Wb, X, Wu)
        K = W.new_empty(2 * n + d, 2 * n + d) if out is None else out
        K[:n, :n].copy_(A[:, :n]).addmm_(A[:, n:], X.T)               # Λ_αα
        K[:n, n:2 * n] = A[:, :n]
        K[n:2 * n, :n] = A[:, :n].T
        K[:n, 2 * n:] = A[:, n:]                                       # α rows, u columns
        K[2 * n:, :n] = A[:, n:].T
        K[n:2 * n, n:2 * n] = Wb[:, :n]
        K[n:2 * n, 2 * n:] = Wb[:, n:]
        K[2 * n:, n:2 * n] = Wb[:, n:].T
        K[2 * n:, 2 * n:] = Wu[:, n:]
        return K

    def adjoint(E: Tensor) -> Tensor:
        Eaa, Eab, Eau = E[:n, :n], E[:n, n:2 * n], E[:n, 2 * n:]
        Ebb, Ebu, Euu = E[n:2 * n, n:2 * n], E[n:2 * n, 2 * n:], E[2 * n:, 2 * n:]
        Sbb = Eaa + Eab + Eab.T + Ebb
        Sbu = (Eaa + Eab.T) @ X + Eau + Ebu
        XEau = X.T @ Eau
        Suu = X.T @ Eaa @ X + XEau + XEau.T + Euu
        return torch.cat([torch.cat([Sbb, Sbu], 1), torch.cat([Sbu.T, Suu], 1)], 0)

    return gram, adjoint


def _block_shift(S: Tensor, n: int, x2: float, eps: float, margin: float) -> float:
    """min over shifts of  μ x2 + Δ  with S + diag(μ I_b, Δ I_u) ⪰ 0 (proven, float64).

    For every feasible W, −<S, W> ≤ μ tr W_bb + Δ tr W_uu ≤ μ x2 + Δ (tr W_uu ≤ 1,
    tr W_bb ≤ x2 tr W_uu). For a grid of μ the least Δ is the Schur complement's
    −λ_min(S_uu − S_ub (S_bb + μI)⁻¹ S_bu); the chosen pair is then *verified* by one
    eigendecomposition of the shifted matrix, whose residual violation is added to both shifts
    (rounding margin included). μ = Δ = ε (the plain repair) is on the grid.
    """
    Sbb, Sbu, Suu = S[:n, :n], S[:n, n:], S[n:, n:]
    eye = torch.eye(n, dtype=S.dtype)
    best = (eps * x2 + eps, eps, eps)
    for mu in eps * np.geomspace(1e-3, 10.0, 13):
        L, bad = torch.linalg.cholesky_ex(Sbb + float(mu) * eye)
        if int(bad) != 0:
            continue
        Sch = Suu - Sbu.T @ torch.cholesky_solve(Sbu, L)
        dl = max(0.0, -float(torch.linalg.eigvalsh(0.5 * (Sch + Sch.T))[0]))
        if mu * x2 + dl < best[0]:
            best = (mu * x2 + dl, float(mu), dl)
    _, mu, dl = best
    shift = torch.cat([torch.full((n,), mu, dtype=S.dtype),
                       torch.full((S.shape[0] - n,), dl, dtype=S.dtype)])
    lam = float(torch.linalg.eigvalsh(S + torch.diag(shift))[0])
    e = max(0.0, -(lam - margin))
    return (mu + e) * x2 + dl + e


def _neuron_prox(n: int, d: int, dev) -> Callable[[Tensor, float], Tensor]:
    """prox of g (the neuron SDP's entrywise part) on V = T Z Tᵀ + U, in place: [αβ] ≥ 0, the
    complementary pairs zero, the u-block's diagonal onto Σ diag ≤ 1."""
    iu = torch.arange(d, device=dev) + 2 * n
    ia = torch.arange(n, device=dev)

    def prox(V: Tensor, r: float) -> Tensor:      # in place (sdp_admm allows it)
        V[:2 * n, :2 * n].clamp_(min=0)
        V[ia, ia + n] = 0.0       # the complementary pairs (α_i, β_i)
        V[ia + n, ia] = 0.0
        dg = V[iu, iu]
        V[iu, iu] = dg - max(0.0, (float(dg.sum()) - 1.0) / d)   # onto Σ diag ≤ 1
        return V

    return prox


def _neuron_certificate(Yd: Tensor, C64: Tensor, adjoint64, offd64: Tensor, iu64: Tensor,
                        n: int, x2: float) -> tuple[float, float, float]:
    """(proven upper bound, t, λ_min) from the ADMM multiplier Yd (float64, CPU): Yd snapped
    to the dual cone, then λ_min of the dual matrix with a rounding margin repaired."""
    q = C64.shape[0]   # n + d
    Y = Yd.detach().to(torch.float64).cpu()
    Yc = torch.zeros_like(Y)
    blk = 0.5 * (Y[:2 * n, :2 * n] + Y[:2 * n, :2 * n].T)
    Yc[:2 * n, :2 * n] = torch.where(offd64, blk.clamp_max(0.0), blk)
    t = max(0.0, float(Y[iu64, iu64].mean()))
    Yc[iu64, iu64] = t
    S = C64 + adjoint64(Yc)
    lam = float(torch.linalg.eigvalsh(S)[0])
    margin = 1e3 * q * _EPS * (float(torch.linalg.matrix_norm(S)) + 1.0)
    eps = max(0.0, -(lam - margin))
    ub = t + eps * (1.0 + x2)
    if eps > 0:
        ub = min(ub, t + _block_shift(S, n, x2, eps, margin))
    return ub, t, lam


def neuron_sdp_bound(X: Tensor, Gamma: Tensor, *, tol: float = 1e-3, max_iter: int = 3000,
                     max_time: float | None = None, rho: float = 0.1,
                     dtype: torch.dtype | None = None, check_every: int = 25,
                     warm: dict | None = None, accel: bool = True) -> NeuronBound:
    """A proven upper bound φ̄ ≥ φ(Γ) (module docstring) by the ADMM on the neuron SDP.

    Stops when the proven bound is within ``tol`` (relative) of the primal estimate and the
    primal residual is ≤ ``tol``, or at ``max_iter`` / ``max_time``; the bound is proven
    whenever it stops. ``dtype``: the iterates' precision (the certificate is float64);
    ``warm``: the ``state`` of a previous call on the same X (a nearby Γ).
    """
    if Gamma.ndim != 2 or Gamma.shape[0] != X.shape[0]:
        raise ValueError(f"Gamma must be (n, c) with n = {X.shape[0]}, got "
                         f"{tuple(Gamma.shape)}")
    t0 = time.perf_counter()
    X64 = X.detach().to(torch.float64)
    n, d = X64.shape
    sx = float(torch.linalg.matrix_norm(X64, 2))
    if not sx > 0:
        raise ValueError("X must be nonzero")
    Xn = X64 / sx                                  # φ(Γ; X) = sx² φ(Γ; X / sx)
    B = 0.5 * torch.cat([Gamma.to(torch.float64), Xn.T @ Gamma.to(torch.float64)], 0)
    gs = float(torch.linalg.matrix_norm(B, 2)) ** 2
    if not gs > 0:                                 # Γ = 0: φ = 0
        return NeuronBound(0.0, 0.0, 0.0, 0.0, 0, time.perf_counter() - t0, {})
    C64 = -(B @ B.T) / gs
    dt = dtype or torch.float64
    dev = X.device
    Xi = Xn.to(dt).to(dev)
    gram, adjoint = neuron_congruence(Xi)
    gram64, adjoint64 = neuron_congruence(Xn)
    G = adjoint(torch.eye(2 * n + d, dtype=dt, device=dev))      # TᵀT, from the same map
    iu = torch.arange(d, device=dev) + 2 * n
    prox = _neuron_prox(n, d, dev)
    offd64, iu64, C64 = off_pair_mask(n), iu.cpu(), C64.cpu()   # certificates: CPU
    x2 = 1.0 + 1e-12                               # ||Xn||₂² (normalised; rounding slack)
    best = {"ub": math.inf, "lo": 0.0, "t": 0.0, "lam": 0.0}

    def monitor(st: dict) -> bool:
        ub, t, lam = _neuron_certificate(st["Y"], C64, adjoint64, offd64, iu64, n, x2)
        if ub < best["ub"]:
            best.update(ub=ub, t=t, lam=lam)
        W = st["Z"].to(torch.float64).cpu()
        tu = float(torch.trace(W[n:, n:]))
        lo = float(-(C64 * W).sum()) / max(tu, 1e-300)
        best["lo"] = lo
        return abs(best["ub"] - lo) <= tol * best["ub"] and st["r_primal"] <= tol

    w = {k: (v.to(dt) if isinstance(v, Tensor) else v) for k, v in (warm or {}).items()}
    res = sdp_admm(CongruenceSDP(C=C64.to(dt).to(dev), G=G, gram_fn=gram, adjoint_fn=adjoint,
                                 prox_fn=prox, solve_fn=lift_factor(Xi, 1.0, 0)),
                   K0=w.get("K"), U0=w.get("U"), rho=w.get("rho", rho), max_iter=max_iter,
                   max_time=max_time, check_every=check_every, accel=accel, monitor=monitor)
    if best["ub"] == math.inf:                      # stopped before the first check
        monitor({"Y": res.extras["Y"], "Z": res.x, "r_primal": math.inf})
    scale = gs * sx * sx
    return NeuronBound(phi_upper=best["ub"] * scale, phi_estimate=best["lo"] * scale,
                       t=best["t"], lam_min=best["lam"], iterations=res.n_iter,
                       seconds=time.perf_counter() - t0,
                       state={"K": res.extras["K"], "U": res.extras["U"],
                              "rho": res.extras["rho"]})


def scaled_gamma_bound(Gamma: Tensor, Y: Tensor, reg: float,
                       phi_upper: float) -> tuple[float, float]:
    """max_{0 ≤ s ≤ reg/(2√φ̄)} −L*(sΓ) and its s: a proven lower bound on p_SDP ≤ p* when
    φ̄ ≥ φ(Γ) (module docstring)."""
    G64, Y64 = Gamma.to(torch.float64), Y.to(torch.float64)
    g2 = float((G64 * G64).sum())
    gy = float((G64 * Y64).sum())
    if g2 == 0.0:
        return 0.0, 0.0
    s_max = math.inf if phi_upper <= 0 else reg / (2.0 * math.sqrt(phi_upper))
    s = min(s_max, max(0.0, -gy / g2))
    sq = get_loss("squared")
    return float(-sq.conjugate(s * G64, Y64)), s
