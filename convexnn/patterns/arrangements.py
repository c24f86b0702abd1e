r"""Exact enumeration of all activation patterns of low-rank data (hyperplane arrangements).

For data X (n x d, with the ones column when the first layer has a bias) the activation patterns
are D(u) = diag(1[X u ≥ 0]), u ∈ R^d. Only the row space of X matters: with X = U S Vᵀ of rank r,
u = V_r y + (null part) has X u = U_r S_r y, so we work with the n hyperplanes {y : b_iᵀ y = 0} in
R^r (b_i = row i of X V_r). Their *central arrangement* cuts R^r into open polyhedral cones
(cells); every u lies in the closure of some cell C and on that closure (X u)_+ = D_C X u, so the
patterns of the full-dimensional cells are all the programs need (lower-dimensional faces add no
new ReLU features). The number of cells is at most

    P ≤ 2 Σ_{k<r} C(m−1, k)        (m distinct hyperplanes; equality in general position)

— polynomial in n for fixed r (Cover 1965; Pilanci & Ergen 2020).

Algorithm (exact, any small r). The arrangement has no lineality space (rank r), so every cell is
a pointed cone and has an extreme ray; an extreme ray v is the intersection of r − 1 independent
hyperplanes. Near v the cells containing v in their closure are in one-to-one correspondence with
the cells of the *local* arrangement of the hyperplanes through v, a central arrangement of rank
r − 1 in v^⊥ (recursion; r = 1 has the two cells y > 0, y < 0). A local cell with interior point w
gives the point v + ε w of the global cell, with ε small enough that no hyperplane not through v
changes sign. Visiting all rays ±v of all (r − 1)-subsets therefore visits every cell; cells are
deduplicated by their sign vectors and each gate is the normalised mean of all points found for
its cell (a convex combination of interior points, so strictly interior and better centred).
For rays in general position (exactly r − 1 hyperplanes through v) the 2^{r−1} local cells are
solved in closed form and batched; degenerate rays (more hyperplanes through v) recurse.
Cost: O(m^{r−1}) rays, each O(m r) work — exponential only in the rank.

Numerical notes: hyperplanes are deduplicated (parallel and anti-parallel rows are one
hyperplane) and incidences decided with a relative tolerance ``tol``; every returned gate is
checked to have strict margins |x_iᵀ g| > 0 on all non-zero rows, otherwise an error is raised
rather than a wrong pattern returned. Rows of X that are numerically zero are active in every
pattern (1[0 ≥ 0] = 1).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import Tensor

from ..ops.linalg import as_numpy, row_space
from .sampling import PatternSet

__all__ = ["enumerate_patterns", "count_patterns", "arrangement_rank", "ArrangementTooLarge",
           "DEFAULT_MAX_PATTERNS"]

#: Default refusal threshold for exact enumeration.
DEFAULT_MAX_PATTERNS = 20_000

#: Working memory of one chunk of rays / gates (float64 temporaries are built per chunk, so
#: the enumeration holds O(P·n/8) bytes of sign keys, not the O(P·n) floats of X G at once)
_CHUNK_BYTES = 2 ** 26


class ArrangementTooLarge(ValueError):
    """Raised when the arrangement has more cells than the caller allows (never a fallback)."""

    def __init__(self, count: int, limit: int, rank: int, n_hyperplanes: int):
        self.count, self.limit, self.rank, self.n_hyperplanes = count, limit, rank, n_hyperplanes
        super().__init__(
            f"exact enumeration refused: the hyperplane arrangement of X (rank {rank}, "
            f"{n_hyperplanes} distinct hyperplanes) has up to {count:,} activation patterns "
            f"(bound 2·Σ_{{k<r}} C(m−1,k)), above max_patterns={limit:,}. Reduce the data rank "
            "(e.g. PCA to 2–3 components), subsample rows, raise max_patterns, or use a sampled "
            "method (its result is then only optimal over the sampled patterns).")


# ------------------------------------------------------------------------ helpers
def _distinct_hyperplanes(B: np.ndarray, tol: float) -> np.ndarray:
    """Unit normals (m x r) of the distinct hyperplanes b_iᵀ y = 0 (zero rows dropped)."""
    nrm = np.linalg.norm(B, axis=1)
    scale = nrm.max() if nrm.size else 0.0
    keep = nrm > tol * max(scale, 1e-300)
    H = B[keep] / nrm[keep, None]
    if H.shape[0] == 0:
        return H
    # canonical sign: largest-magnitude coordinate positive (anti-parallel rows merge)
    piv = np.argmax(np.abs(H), axis=1)
    H = H * np.sign(H[np.arange(len(H)), piv])[:, None]
    G = np.abs(H @ H.T)
    taken = np.zeros(len(H), dtype=bool)
    out = []
    for i in range(len(H)):
        if taken[i]:
            continue
        dup = G[i] > 1.0 - 1e-12
        taken |= dup
        out.append(i)
    return H[out]


def _count_bound(m: int, r: int) -> int:
    if r == 0:
        return 1
    return 2 * sum(math.comb(m - 1, k) for k in range(r)) if m > 0 else 1


def arrangement_rank(X, tol: float = 1e-10) -> int:
    """Numerical rank of X (the r of the O(n^r) bound)."""
    return row_space(as_numpy(X), tol)[1].shape[1]


def count_patterns(X, tol: float = 1e-10) -> dict:
    """Upper bound on the number of activation patterns, before enumerating.

    Returns ``{"bound": 2 Σ_{k<r} C(m−1, k), "rank": r, "n_hyperplanes": m}``; the bound is
    exact for hyperplanes in general position.
    """
    B, Vr = row_space(as_numpy(X), tol)
    H = _distinct_hyperplanes(B, 1e-9)
    r = Vr.shape[1]
    return {"bound": _count_bound(H.shape[0], r), "rank": r, "n_hyperplanes": int(H.shape[0])}


def _sign_keys(S: np.ndarray) -> np.ndarray:
    """Row-wise hashable keys of ±1 matrices (packed bits)."""
    return np.packbits(S > 0, axis=1)


# --------------------------------------------------------------------- recursion
def _cells(H: np.ndarray, tol: float) -> np.ndarray:
    """Interior points (N x r) of all cells of the central arrangement with unit normals H (m x r).

    Hyperplanes must be distinct; H may be rank deficient (then the lineality space is split off).
    """
    m, r = H.shape
    if m == 0:
        e = np.zeros((1, r))
        if r:
            e[0, 0] = 1.0
        return e
    _, S, Vt = np.linalg.svd(H, full_matrices=False)
    k = int((S > 1e-9 * S[0]).sum())
    if k < r:  # lineality space: work in the row space of H and lift
        Vk = Vt[:k]
        Hk = H @ Vk.T
        Hk /= np.linalg.norm(Hk, axis=1, keepdims=True)
        return _cells(Hk, tol) @ Vk
    if r == 1:
        return np.array([[1.0], [-1.0]])
    rays = _rays(H, tol)  # (R, r) unit, one per line (both directions are used)
    step = max(1, _CHUNK_BYTES // (8 * m * (2 ** (r - 1) + 2)))
    keys, sums = [], []
    for a in range(0, len(rays), step):
        rc = rays[a:a + step]
        T = H @ rc.T  # (m, c)
        inc = np.abs(T) <= tol
        gen = inc.sum(0) == r - 1
        points = []
        if gen.any():
            points.append(_general_rays(H, rc[gen], inc[:, gen], T[:, gen]))
        for j in np.nonzero(~gen)[0]:
            points.append(_degenerate_ray(H, rc[j], inc[:, j], T[:, j], tol))
        k, sm = _cell_sums(H, np.concatenate(points, 0))
        keys.append(k)
        sums.append(sm)
    _, C = _sum_by_key(np.concatenate(keys), np.concatenate(sums))
    return C / np.linalg.norm(C, axis=1, keepdims=True)


def _null_basis(v: np.ndarray) -> np.ndarray:
    """Orthonormal bases of v^⊥ for unit rows v (R x r) -> (R, r, r−1)."""
    _, _, Vt = np.linalg.svd(v[:, None, :], full_matrices=True)
    return np.transpose(Vt[:, 1:, :], (0, 2, 1))


def _rays(H: np.ndarray, tol: float) -> np.ndarray:
    """One unit direction per 1-D intersection of r−1 independent hyperplanes (deduplicated)."""
    m, r = H.shape
    if r == 2:
        V = np.stack([-H[:, 1], H[:, 0]], 1)
    else:
        idx = np.array(list(itertools.combinations(range(m), r - 1)), dtype=np.int64)
        if idx.size == 0:
            return np.zeros((0, r))
        A = H[idx]  # (R, r-1, r)
        if r == 3:
            V = np.cross(A[:, 0], A[:, 1])
            ok = np.linalg.norm(V, axis=1) > 1e-9
        else:
            _, S, Vt = np.linalg.svd(A, full_matrices=True)
            V = Vt[:, -1, :]
            ok = S[:, -1] > 1e-9
        V = V[ok]
    V = V / np.linalg.norm(V, axis=1, keepdims=True)
    # a line is identified by its signed incidence vector; dedupe up to sign (in chunks)
    step = max(1, _CHUNK_BYTES // (8 * m))
    keys = []
    for a in range(0, len(V), step):
        Vc = V[a:a + step]  # a view: flipped in place
        T = H @ Vc.T
        sg = np.where(np.abs(T) <= tol, 0, np.sign(T)).astype(np.int8).T  # (c, m)
        first = np.argmax(sg != 0, axis=1)
        flip = sg[np.arange(len(sg)), first] < 0
        sg[flip] *= -1
        Vc[flip] *= -1
        keys.append(np.packbits(np.concatenate([sg != 0, sg > 0], 1), axis=1))
    _, keep = np.unique(np.concatenate(keys), axis=0, return_index=True)
    return V[np.sort(keep)]


def _eps(T_out: np.ndarray, HW: np.ndarray) -> np.ndarray:
    """Step ε keeping every hyperplane not through the ray on its side: ½ min|hᵀv| / max|hᵀw|."""
    den = np.abs(HW).max(axis=0)
    return 0.5 * np.abs(T_out).min() / np.maximum(den, 1e-300)


def _general_rays(H, V, inc, T) -> np.ndarray:
    """Cells around rays through exactly r−1 hyperplanes: local cells are all sign choices."""
    m, r = H.shape
    R = V.shape[0]
    Q = _null_basis(V)  # (R, r, r-1)
    S_idx = np.argsort(~inc, axis=0, kind="stable")[: r - 1].T  # (R, r-1) incident rows
    L = np.einsum("Rkr,Rrj->Rkj", H[S_idx], Q)  # (R, r-1, r-1)
    sig = np.array(list(itertools.product([1.0, -1.0], repeat=r - 1))).T  # (r-1, 2^{r-1})
    Wl = np.linalg.solve(L, np.broadcast_to(sig, (R,) + sig.shape))  # (R, r-1, 2^{r-1})
    W = np.einsum("Rrj,Rjs->Rrs", Q, Wl)  # (R, r, S)
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    HW = np.einsum("mr,Rrs->Rms", H, W)  # (R, m, S)
    Tout = np.where(inc.T, np.inf, np.abs(T.T))  # (R, m)
    eps = 0.5 * Tout.min(1)[:, None] / np.maximum(np.abs(HW).max(1), 1e-300)  # (R, S)
    pts = [V[:, :, None] + eps[:, None, :] * W, -V[:, :, None] + eps[:, None, :] * W]
    return np.concatenate([p.transpose(0, 2, 1).reshape(-1, r) for p in pts], 0)


def _degenerate_ray(H, v, inc, T, tol) -> np.ndarray:
    """Cells around a ray through more than r−1 hyperplanes: recurse in v^⊥."""
    Q = _null_basis(v[None])[0]  # (r, r-1)
    L = H[inc] @ Q
    L /= np.linalg.norm(L, axis=1, keepdims=True)
    L = _distinct_hyperplanes(L, 1e-12)
    Wl = _cells(L, tol)  # (N, r-1)
    W = Wl @ Q.T
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    eps = _eps(T[~inc], H @ W.T)  # (N,)
    return np.concatenate([v[None] + eps[:, None] * W, -v[None] + eps[:, None] * W], 0)


def _cell_sums(H: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sign keys of the cells the points P (N x r) lie in, and the sum of their normalised
    points per cell (the cell's gate is the normalised sum over every chunk)."""
    P = P / np.linalg.norm(P, axis=1, keepdims=True)
    S = H @ P.T  # (m, N)
    if (np.abs(S) == 0).any():
        raise RuntimeError("arrangement enumeration produced a point on a hyperplane")
    return _sum_by_key(_sign_keys(np.sign(S).T), P)


def _sum_by_key(keys: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct keys, sum of the rows of P per key), keys sorted."""
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    C = np.zeros((len(uniq), P.shape[1]))
    np.add.at(C, inv.reshape(-1), P)
    return uniq, C


def _mask_keys(Xn: np.ndarray, G: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Packed masks 1[X g ≥ 0] per gate (P, ⌈n/8⌉), whether each is active anywhere, and the
    smallest margin |x_iᵀ g| / (||x_i|| ||g||) over non-zero rows; X G in column chunks."""
    rown = np.linalg.norm(Xn, axis=1)
    nz = rown > 1e-9 * max(rown.max(), 1e-300)
    gn = np.linalg.norm(G, axis=0)
    step = max(1, _CHUNK_BYTES // (8 * max(Xn.shape[0], 1)))
    keys, active, margin = [], [], 1.0 if not (nz.any() and G.shape[1]) else math.inf
    for a in range(0, G.shape[1], step):
        XG = Xn @ G[:, a:a + step]
        if nz.any():
            margin = min(margin, float((np.abs(XG[nz]) / (rown[nz, None] * gn[None, a:a + step]))
                                       .min()))
        M = XG >= 0
        keys.append(np.packbits(M.T, axis=1))
        active.append(M.any(0))
    if not keys:
        return np.zeros((0, (Xn.shape[0] + 7) // 8), np.uint8), np.zeros(0, bool), margin
    return np.concatenate(keys), np.concatenate(active), margin


# ------------------------------------------------------------------------- public
def enumerate_patterns(X, *, max_patterns: int | None = DEFAULT_MAX_PATTERNS,
                       drop_zero: bool = True, tol: float = 1e-9) -> PatternSet:
    """All activation patterns of ``X`` (n x d): one strictly interior gate per cell.

    Returns ``PatternSet(gates (d x P), exhaustive=True)``. Raises :class:`ArrangementTooLarge`
    (with the count) when the bound 2 Σ_{k<r} C(m−1, k) exceeds ``max_patterns`` (None: no
    limit). ``drop_zero`` removes the all-inactive pattern (it contributes no feature).
    ``info`` holds ``rank``, ``n_hyperplanes``, ``bound`` and ``min_margin`` (the smallest
    |x_iᵀ g| / (||x_i|| ||g||) over non-zero rows, a measure of how interior the gates are).
    """
    Xn = as_numpy(X)
    if Xn.ndim != 2 or Xn.shape[0] == 0:
        raise ValueError(f"X must be a non-empty 2-D array, got shape {Xn.shape}")
    if not np.isfinite(Xn).all():
        raise ValueError("X contains NaN or infinity")
    B, Vr = row_space(Xn, 1e-10)
    r = Vr.shape[1]
    H = _distinct_hyperplanes(B, 1e-9)
    bound = _count_bound(H.shape[0], r)
    if max_patterns is not None and bound > max_patterns:
        raise ArrangementTooLarge(bound, max_patterns, r, H.shape[0])
    d = Xn.shape[1]
    if r == 0 or H.shape[0] == 0:  # all rows (numerically) zero: one all-active pattern
        G = Vr[:, :1] if r else np.zeros((d, 1))
    else:
        G = Vr @ _cells(H, tol).T  # (d, P)
    dtype = X.dtype if isinstance(X, Tensor) else torch.float64
    device = X.device if isinstance(X, Tensor) else None
    keys, active, margin = _mask_keys(Xn, G)
    if margin <= 0:
        raise RuntimeError("exact enumeration failed: a gate lies on a hyperplane")
    _, first = np.unique(keys, axis=0, return_index=True)
    keep = np.sort(first)
    if drop_zero:
        keep = keep[active[keep]]
    G = G[:, keep]
    gates = torch.as_tensor(G, dtype=dtype, device=device)
    if dtype == torch.float32:  # re-check the masks at the working precision
        k32 = _mask_keys(Xn.astype(np.float32), G.astype(np.float32))[0]
        if not np.array_equal(k32, keys[keep]):
            raise RuntimeError("gates are too close to hyperplanes for float32; pass float64 X")
    return PatternSet(gates, exhaustive=True,
                      info={"kind": "enumerated", "rank": r, "n_hyperplanes": int(H.shape[0]),
                            "bound": bound, "min_margin": margin})
