"""Independent exact CVXPY form of the copositive program for rank ≤ 3 (test reference)."""

from __future__ import annotations

import time

import numpy as np

from ...ops.linalg import as_numpy, row_space
from ...patterns import PatternSet

__all__ = ["exact_sdp_reference"]


def _extreme_rays(R: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Extreme rays (k x r, unit) of {u : R u ≥ 0} in R^r, r ≤ 3, by brute force, in fan order."""
    r = R.shape[1]
    if r == 1:
        return np.array([[np.sign(y[0])]])
    if r == 2:
        cand = np.stack([-R[:, 1], R[:, 0]], 1)
    else:
        i, j = np.triu_indices(R.shape[0], 1)
        cand = np.cross(R[i], R[j])
        cand = cand[np.linalg.norm(cand, axis=1) > 1e-9]
    cand = cand / np.linalg.norm(cand, axis=1, keepdims=True)
    cand = np.concatenate([cand, -cand], 0)
    cand = cand[(cand @ R.T).min(1) >= -1e-9]
    _, keep = np.unique(np.round(cand, 9), axis=0, return_index=True)
    cand = cand[np.sort(keep)]
    if r == 3:  # order by angle around the interior direction
        E = np.linalg.svd(y[None, :])[2][1:].T
        C = cand @ E
        cand = cand[np.argsort(np.arctan2(C[:, 1], C[:, 0]))]
    return cand


def exact_sdp_reference(X, Y, reg: float, patterns: PatternSet, *, solver: str = "CLARABEL",
                        **options) -> dict:
    """Independent exact CVXPY form of the copositive program for rank(X) ≤ 3, squared loss.

    Every cone K_p is triangulated (fan of its extreme rays, found by brute force) into
    simplicial cones K_{p,t} = E_t R^r_+, and ||V||_{*,K_p} = min Σ_t ||V_t||_{*,K_{p,t}} over
    V = Σ_t V_t with ||V_t||_{*,K_t} = min ½(tr A + tr B) s.t. [[A, V_t], [V_tᵀ, B]] ⪰ 0,
    E_t⁻¹ A E_t⁻ᵀ ≥ 0 — exact for r ≤ 4 (module docstring). Only meaningful with exhaustive
    patterns; returns ``{"value", "prediction", "status", "seconds"}``.
    """
    import cvxpy as cp

    Xn, Yn = as_numpy(X), as_numpy(Y)
    if Yn.ndim == 1:
        Yn = Yn[:, None]
    B, Vr = row_space(Xn)
    r = Vr.shape[1]
    if r > 3:
        raise ValueError(f"exact_sdp_reference supports rank ≤ 3, got rank {r}")
    c = Yn.shape[1]
    G = as_numpy(patterns.gates)
    M = Xn @ G >= 0
    rn = np.linalg.norm(B, axis=1)
    nz = rn > 1e-9 * rn.max()
    pred = 0
    pen = 0
    cons = []
    for p in range(G.shape[1]):
        R = (2.0 * M[nz, p] - 1.0)[:, None] * B[nz] / rn[nz, None]
        rays = _extreme_rays(R, Vr.T @ G[:, p])
        if r == 3:
            simplices = [np.stack([rays[0], rays[k], rays[k + 1]], 1)
                         for k in range(1, len(rays) - 1)]
        else:
            simplices = [rays.T]
        DB = M[:, p:p + 1] * B
        for E in simplices:
            F = np.linalg.inv(E)
            W = cp.Variable((r + c, r + c), PSD=True)
            A, V = W[:r, :r], W[:r, r:]
            cons.append(F @ A @ F.T >= 0)
            pen = pen + 0.5 * (cp.trace(A) + cp.trace(W[r:, r:]))
            pred = pred + DB @ V
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(pred - Yn) + reg * pen), cons)
    t0 = time.perf_counter()
    prob.solve(solver=solver, **options)
    return {"value": float(prob.value), "prediction": np.asarray(pred.value),
            "status": prob.status, "seconds": time.perf_counter() - t0}

