r"""Patches of images, pooling windows and activation patterns over patches (convex CNNs).

Images are (N, C, H, W). A convolution with kernel k, stride s and zero padding p sees, at each
of its K = H_out · W_out output positions, the patch x_{n,k} ∈ R^h, h = C·k² (+1 when the first
layer has a bias: a constant 1 is appended to every patch, also to patches that overlap the
padding, exactly as ``nn.Conv2d`` adds its bias everywhere). The patch layout matches
``Conv2d.weight.reshape(out_channels, -1)``, so a filter u ∈ R^h and the conv output agree:
conv(x)[n, :, k] = x_{n,k}ᵀ u.

Patterns. A gate g ∈ R^h defines one activation pattern *per position*:
D_{g,k} = diag(1[X_k g ≥ 0]) with X_k = [x_{1,k} … x_{N,k}]ᵀ. The tuple (D_{g,1}, …, D_{g,K}) is
the pattern of g in the arrangement of the *stacked* patch matrix [X_1; …; X_K] ∈ R^{NK×h},
whose rank r ≤ h: the number of patterns is O((NK)^r), polynomial in N and K for a fixed filter
size (Ergen & Pilanci 2021). We keep gates, never NK × P masks; masks are recomputed with
``conv2d`` in sample chunks.

* :func:`sample_patch_gates` — random gates (Gaussian or data-aware, via
  :func:`convexnn.patterns.sample_gates`) deduplicated by their stacked mask.
* :func:`enumerate_patch_patterns` — *exact* enumeration of every pattern of the stacked patch
  matrix: an angular sweep when its rank is ≤ 2 (1x1 kernel plus a bias, 1-D kernel 2), the
  cell enumeration of :mod:`convexnn.patterns.arrangements` otherwise (small filters, e.g. 2x2;
  refused with the count beyond ``max_patterns``). Every u ∈ R^h lies in the closed cone of a
  full-dimensional region, so the regions' patterns suffice for exact programs. Larger filters:
  use sampling (the program is then a restriction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .sampling import DEFAULT_CHUNK, PatternSet, deduplicate_gates, sample_gates

__all__ = ["extract_patches", "iter_patch_chunks", "conv_output_shape", "PoolingWindows",
           "pooling_windows", "stacked_patches", "sample_patch_gates",
           "enumerate_patch_patterns", "enumerate_max_pool_patterns", "patch_masks",
           "POOLINGS", "MAX_POOL_SOURCE"]

#: ``PatternSet.info["source"]`` of :func:`enumerate_max_pool_patterns`
MAX_POOL_SOURCE = "max_pool_patches"

POOLINGS = ("avg", "max", "none")


def conv_output_shape(H: int, W: int, kernel_size: int, stride: int = 1,
                      padding: int = 0) -> tuple[int, int]:
    ho = (H + 2 * padding - kernel_size) // stride + 1
    wo = (W + 2 * padding - kernel_size) // stride + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"kernel_size={kernel_size} with padding={padding} does not fit images "
                         f"of size {H}x{W}")
    return ho, wo


def extract_patches(images: Tensor, kernel_size: int, stride: int = 1, padding: int = 0,
                    intercept: bool = False) -> Tensor:
    """Patches (N, K, h) of ``images`` (N, C, H, W) via strided ``Tensor.unfold`` views
    (O(N K h) memory; ``F.unfold``/im2col was found very slow for float64 on CPU)."""
    N, C = images.shape[:2]
    Xp = F.pad(images, (padding,) * 4) if padding else images
    P = Xp.unfold(2, kernel_size, stride).unfold(3, kernel_size, stride)  # (N, C, Ho, Wo, k, k)
    P = P.permute(0, 2, 3, 1, 4, 5).reshape(N, -1, C * kernel_size * kernel_size)
    if intercept:
        P = torch.cat([P, torch.ones(*P.shape[:2], 1, dtype=P.dtype, device=P.device)], 2)
    return P


def iter_patch_chunks(images: Tensor, kernel_size: int, stride: int = 1, padding: int = 0,
                      intercept: bool = False, chunk: int = 256):
    """Yield ``(start, end, patches)`` over sample chunks (bounded memory for big inputs)."""
    N = images.shape[0]
    for s in range(0, N, chunk):
        e = min(s + chunk, N)
        yield s, e, extract_patches(images[s:e], kernel_size, stride, padding, intercept)


def stacked_patches(images: Tensor, kernel_size: int, stride: int = 1, padding: int = 0,
                    intercept: bool = False) -> Tensor:
    """The stacked patch matrix [X_1; …; X_K] as (N·K, h) (rows ordered sample-major)."""
    P = extract_patches(images, kernel_size, stride, padding, intercept)
    return P.reshape(-1, P.shape[2])


def patch_masks(images: Tensor, gates: Tensor, kernel_size: int, stride: int = 1,
                padding: int = 0, intercept: bool = False) -> Tensor:
    """Boolean masks (N, P, K): 1[x_{n,k}ᵀ g_p ≥ 0], computed with one ``conv2d``."""
    C = images.shape[1]
    h0 = C * kernel_size * kernel_size
    Wt = gates[:h0].T.reshape(-1, C, kernel_size, kernel_size)
    b = gates[h0] if intercept else None
    out = F.conv2d(images, Wt, b, stride=stride, padding=padding)
    return (out >= 0).flatten(2)


@dataclass
class PoolingWindows:
    """Pooling after the conv: ``a`` windows of ``size`` positions each.

    ``index`` (a, size) lists the conv-output positions (row-major over H_out x W_out) of each
    window; ``weight`` is the averaging weight π (1/size for avg; 1 for max and none).
    ``grid`` is the pooled output grid (a = grid[0]·grid[1]), which is also the Flatten order.
    """

    kind: str
    index: Tensor
    weight: float
    grid: tuple[int, int]
    pool_size: int | None  # None: global pooling

    @property
    def n_windows(self) -> int:
        return int(self.index.shape[0])

    @property
    def size(self) -> int:
        return int(self.index.shape[1])


def pooling_windows(out_shape: tuple[int, int], pooling: str = "avg",
                    pool_size: int | None = None) -> PoolingWindows:
    """Windows of ``nn.AvgPool2d(p)`` / ``nn.MaxPool2d(p)`` (stride p, floor), global pooling
    (``pool_size=None``: ``AdaptiveAvgPool2d(1)`` / ``AdaptiveMaxPool2d(1)``) or ``"none"``
    (each position its own window: Flatten → Linear)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    ho, wo = out_shape
    grid_idx = torch.arange(ho * wo).reshape(ho, wo)
    if pooling == "none":
        return PoolingWindows("none", grid_idx.reshape(-1, 1), 1.0, (ho, wo), 1)
    if pool_size is None:
        w = 1.0 / (ho * wo) if pooling == "avg" else 1.0
        return PoolingWindows(pooling, grid_idx.reshape(1, -1), w, (1, 1), None)
    p = int(pool_size)
    if p < 1 or p > min(ho, wo):
        raise ValueError(f"pool_size={p} must be in [1, {min(ho, wo)}] for a {ho}x{wo} conv output")
    ha, wa = ho // p, wo // p
    win = grid_idx[:ha * p, :wa * p].reshape(ha, p, wa, p).permute(0, 2, 1, 3).reshape(ha * wa,
                                                                                      p * p)
    w = 1.0 / (p * p) if pooling == "avg" else 1.0
    return PoolingWindows(pooling, win, w, (ha, wa), p)


def sample_patch_gates(images: Tensor, n_patterns: int, kernel_size: int, stride: int = 1,
                       padding: int = 0, intercept: bool = False,
                       random_state: int | np.random.Generator | None = None, *,
                       kind: str = "gaussian", chunk: int = DEFAULT_CHUNK) -> PatternSet:
    """Random gates (h x P) over the stacked patch matrix, one per distinct stacked pattern."""
    X = stacked_patches(images, kernel_size, stride, padding, intercept)
    ps = sample_gates(X, n_patterns, random_state, kind=kind, intercept_column=intercept,
                      chunk=chunk)
    ps.info.update({"source": "patches", "kernel_size": kernel_size})
    return ps


def _angular_sweep(Xr: np.ndarray) -> np.ndarray:
    """Gates (2 x R) with one gate in every full-dimensional region of the central arrangement
    of the rows of Xr (n x 2): the midpoints between consecutive critical angles."""
    nz = np.linalg.norm(Xr, axis=1) > 0
    if not nz.any():
        return np.array([[1.0], [0.0]])
    ang = np.arctan2(Xr[nz, 1], Xr[nz, 0])
    crit = np.concatenate([ang + math.pi / 2, ang - math.pi / 2]) % (2 * math.pi)
    crit = np.unique(np.round(crit, 12))
    nxt = np.concatenate([crit[1:], [crit[0] + 2 * math.pi]])
    mid = 0.5 * (crit + nxt)
    return np.stack([np.cos(mid), np.sin(mid)])


def enumerate_patch_patterns(images: Tensor, kernel_size: int, stride: int = 1,
                             padding: int = 0, intercept: bool = False, *,
                             rank_tol: float = 1e-10,
                             max_patterns: int | None = 20_000) -> PatternSet:
    """All activation patterns of the stacked patch matrix [X_1; …; X_K] (N·K x h), exactly.

    Rank ≤ 2 (e.g. 1-D signals with kernel 2, or a 1x1 kernel plus a bias): project onto the
    row space (SVD) and sweep the angle, one gate per full-dimensional region. Higher ranks:
    the cell enumeration of :func:`convexnn.patterns.enumerate_patterns` (exponential only
    in the rank r ≤ h: O((N·K)^{r−1}) patterns), which refuses with the count
    (:class:`~convexnn.patterns.arrangements.ArrangementTooLarge`, a ``ValueError``) when its bound
    exceeds ``max_patterns`` — use :func:`sample_patch_gates` then. Every u ∈ R^h lies in the
    closed cone of a full-dimensional region, so these patterns suffice for exact programs;
    the result has ``exhaustive=True``.
    """
    X = stacked_patches(images, kernel_size, stride, padding, intercept)
    Xn = X.detach().cpu().double().numpy()
    _, s, Vt = np.linalg.svd(Xn, full_matrices=False)
    r = int((s > rank_tol * max(s[0] if s.size else 0.0, 1e-300)).sum())
    if r > 2:
        from .arrangements import enumerate_patterns

        ps = enumerate_patterns(Xn, max_patterns=max_patterns)
        gates = torch.as_tensor(ps.gates.detach().cpu().numpy(), dtype=X.dtype,
                                device=X.device)
        info = dict(ps.info)
        info.update({"kind": "enumerated", "rank": r, "source": "patches"})
        return PatternSet(gates, exhaustive=True, info=info)
    if r == 0:
        G = np.zeros((X.shape[1], 1))
        G[0, 0] = 1.0
    else:
        V = Vt[:r].T  # h x r
        Xr = Xn @ V
        if r == 1:
            Gr = np.array([[1.0, -1.0]])
        else:
            Gr = _angular_sweep(Xr)
        G = V @ Gr
    gates = torch.as_tensor(G, dtype=X.dtype, device=X.device)
    gates = deduplicate_gates(X, gates, drop_zero=True)
    return PatternSet(gates, exhaustive=True, info={"kind": "enumerated", "rank": r,
                                                    "source": "patches"})


def enumerate_max_pool_patterns(images: Tensor, kernel_size: int, stride: int = 1,
                                padding: int = 0, intercept: bool = False, *,
                                pool_size: int | None = None,
                                max_patterns: int | None = 20_000) -> PatternSet:
    """All max-pooling patterns, exactly: one gate per cell of the arrangement of the patch
    rows x_{n,k} and the differences x_{n,k} − x_{n,k'} of positions in the same pooling
    window. Inside a cell every window's arg-max and the sign of its maximum are fixed, so the
    max-pooling cones K_{pq} of these gates cover R^h (the exact program for global max
    pooling and a scalar output). Refuses with the count (a ``ValueError``) above
    ``max_patterns``; ``info["source"]`` is :data:`MAX_POOL_SOURCE`.
    """
    from .arrangements import enumerate_patterns

    X = extract_patches(images, kernel_size, stride, padding, intercept)  # (N, K, h)
    N, K, h = X.shape
    out = conv_output_shape(images.shape[2], images.shape[3], kernel_size, stride, padding)
    win = pooling_windows(out, "max", pool_size).index
    rows = [X.reshape(-1, h)]
    for q in range(win.shape[0]):
        idx = win[q].tolist()
        for j in range(len(idx)):
            for j2 in range(j + 1, len(idx)):
                rows.append(X[:, idx[j]] - X[:, idx[j2]])
    ps = enumerate_patterns(torch.cat(rows).detach().cpu().double().numpy(),
                            max_patterns=max_patterns)
    gates = torch.as_tensor(ps.gates.detach().cpu().numpy(), dtype=X.dtype, device=X.device)
    info = dict(ps.info)
    info.update({"kind": "enumerated", "source": MAX_POOL_SOURCE, "pool_size": pool_size})
    return PatternSet(gates, exhaustive=True, info=info)
