r"""Pruning a two-layer ReLU network to at most n·c + 1 neurons, same predictions and objective.

Write a network as atoms: neuron k contributes t_k a_k with the unit atom a_k = (X û_k)_+ v̂_kᵀ
(û_k, v̂_k unit first/second-layer directions, in the penalty frame) and t_k = ||u_k|| ||v_k|| ≥ 0.
The predictions are F = Σ_k t_k a_k and, once balanced (||u_k|| = ||v_k||, which never raises
the objective), the penalty is β Σ_k t_k. Both are linear in t, so any t' ≥ 0 with
[vec a_k; 1] t' = [vec a_k; 1] t keeps the predictions and the objective. Carathéodory: such a t'
with at most rank([vec a_k; 1]) ≤ n·c + 1 non-zeros exists and is found by walking along null
vectors δ of that matrix until a coefficient hits zero (Sahiner et al. 2021 use the same argument
for the bound n·c on optimal networks; at an optimum ⟨a_k, ∇L⟩ = −β for every active atom, so
the ones row is implied and n·c suffices). Cost: one SVD of an (n·c + 1) x K matrix plus O(K q)
per removed atom (q = null-space dimension).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ...certificates import Certificate, relative
from ...networks import TwoLayerNetwork

__all__ = ["caratheodory_reduce", "prune_atoms", "prune_network", "prune_solution"]


def caratheodory_reduce(A: np.ndarray, t: np.ndarray, rtol: float = 1e-12) -> np.ndarray:
    """Non-negative t' with A t' = A t and Σ t' = Σ t, supported on ≤ rank([A; 1]) columns.

    ``A`` is (m, K), ``t`` (K,) non-negative. Null vectors are those of [A; 1] with singular
    values ≤ ``rtol`` · the largest (the residual A(t' − t) is of that relative size).
    """
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, None).copy()
    on = np.nonzero(t > 0)[0]
    if len(on) <= 1:
        return t
    M = np.vstack([A[:, on], np.ones((1, len(on)))])
    scale = np.linalg.norm(M, axis=0)
    Ms = M / scale  # column scaling: null vectors of M are those of Ms rescaled
    _, S, Vt = np.linalg.svd(Ms, full_matrices=True)
    rank = int((S > rtol * S[0]).sum())
    N = Vt[rank:].T / scale[:, None]  # (K_on, q)
    tt = t[on]
    alive = np.ones(len(tt), dtype=bool)
    i = 0
    while i < N.shape[1]:
        d = np.where(alive, N[:, i], 0.0)
        i += 1
        big = np.abs(d).max()
        if big == 0:
            continue
        if d.max() < big * 1e-12:
            d = -d
        pos = np.nonzero((d > 1e-12 * big) & alive)[0]
        r = tt[pos] / d[pos]
        tt = np.where(alive, tt - r.min() * d, 0.0)
        j = pos[np.argmin(r)]
        N[:, i:] -= np.outer(d, N[j, i:] / d[j])  # remaining null vectors vanish on atom j
        dead = alive & (tt <= 1e-14 * max(tt.max(), 1e-300))
        dead[j] = False
        # ties: Gaussian elimination, one pivot vector consumed per further atom dropped
        for k in np.nonzero(dead)[0]:
            if i < N.shape[1] and np.abs(N[k, i:]).max() > 0:
                piv = i + int(np.argmax(np.abs(N[k, i:])))
                N[:, [i, piv]] = N[:, [piv, i]]
                N[:, i + 1:] -= np.outer(N[:, i], N[k, i + 1:] / N[k, i])
                i += 1
        dead[j] = True
        tt[dead] = 0.0
        alive &= ~dead
        tt = np.clip(tt, 0.0, None)
    # refine on the support (elimination without pivoting can lose digits): least squares
    S = np.nonzero(tt > 0)[0]
    ref = np.linalg.lstsq(M[:, S], M @ t[on], rcond=None)[0]
    if (ref >= 0).all():
        tt[S] = ref
    t[on] = tt
    return t


def prune_atoms(Phi: np.ndarray, G: np.ndarray, rtol: float = 1e-12) -> np.ndarray:
    """Reduce atoms φ_k g_kᵀ (features Φ (n, K) of unit directions, outputs G (K, c)):
    returns G' (rows scaled by t'_k / t_k, at most n·c + 1 non-zero) with Φ G' = Φ G and
    Σ ||g'_k|| = Σ ||g_k|| up to the relative residual ``rtol``."""
    t = np.linalg.norm(G, axis=1)
    if len(t) == 0:
        return G
    Gd = G / np.maximum(t, 1e-300)[:, None]
    A = (Phi[:, :, None] * Gd[None, :, :]).transpose(0, 2, 1).reshape(-1, len(t))  # (n c, K)
    t2 = caratheodory_reduce(A, t, rtol)
    return Gd * t2[:, None]


def prune_network(network: TwoLayerNetwork, X, rtol: float = 1e-12) -> TwoLayerNetwork:
    """A balanced ReLU network with at most n·c + 1 neurons, the same predictions on ``X`` (raw
    inputs as passed to ``network.forward``) and an objective no larger (equal when the input
    network is balanced; any loss, any reg)."""
    if not isinstance(network, TwoLayerNetwork) or network.activation != "relu":
        raise TypeError("prune_network needs a convexnn TwoLayerNetwork with ReLU activation")
    W, b = network.frame_weights()
    un = torch.sqrt((W ** 2).sum(1) + b ** 2).detach().cpu().double().numpy()
    V = network.second_layer_weights.detach().cpu().double().numpy()
    vn = np.linalg.norm(V, axis=0)
    H = network.hidden(X).detach().cpu().double().numpy()  # (n, m) = ||u_k|| (X û_k)_+
    live = (un > 0) & (vn > 0)
    Phi = np.where(live, H / np.maximum(un, 1e-300), 0.0)
    G = (V * un).T * live[:, None]  # g_k = ||u_k|| v_k
    G2 = prune_atoms(Phi, G, rtol)
    t2 = np.linalg.norm(G2, axis=1)
    keep = np.nonzero(t2 > 0)[0]
    if len(keep) == 0:
        keep = np.array([0])
    s_in = np.sqrt(t2[keep]) / np.maximum(un[keep], 1e-300)  # ||u'|| = ||v'|| = √t'
    s_out = np.sqrt(t2[keep]) / np.maximum(vn[keep], 1e-300)
    dt, dev = network.first_layer_weights.dtype, network.first_layer_weights.device
    si = torch.as_tensor(s_in, dtype=dt, device=dev)
    so = torch.as_tensor(s_out, dtype=dt, device=dev)
    idx = torch.as_tensor(keep, device=dev)
    return replace(network,
                   first_layer_weights=network.first_layer_weights[idx] * si[:, None],
                   first_layer_bias=network.first_layer_bias[idx] * si,
                   second_layer_weights=network.second_layer_weights[:, idx] * so[None, :])


def prune_solution(U: np.ndarray, G: np.ndarray, Phi: np.ndarray, Y: np.ndarray, reg: float,
                   loss, cert: Certificate | None = None
                   ) -> tuple[np.ndarray, np.ndarray, Certificate | None]:
    """Prune a column-generation solution (unit atoms U, outputs G, features Φ) and re-state its
    certificate's primal value (the objective of the pruned atoms; the dual bound is unchanged)."""
    if len(G) == 0:
        return U, G, cert
    G2 = prune_atoms(Phi, G)
    keep = np.linalg.norm(G2, axis=1) > 0
    U, G2 = U[keep], G2[keep]
    if cert is not None:
        from .master import atoms_objective

        primal = atoms_objective(Phi[:, keep], G2, Y, reg, loss)[0]
        gap = max(primal - cert.dual, 0.0)
        cert = replace(cert, primal=primal, gap=gap, relative_gap=relative(gap, primal))
    return U, G2, cert
