r"""Exact global optimum of two-layer CNNs with global sum (or average) pooling, for tiny filters.

The copositive machinery of :mod:`convexnn.formulations.copositive` (exact enumeration of the
activation patterns, exact cone-constrained PCA oracle, fully corrective column generation) run
on the *stacked patch matrix*, so the cost is exponential only in the filter size h, not in the
input dimension (Sahiner et al. 2021 §CNNs; Ergen & Pilanci 2021; papers.md §2.5).

Model (signals (N, C, L) with a ``Conv1d``, or images (N, C, H, W) with a ``Conv2d``; K conv
output positions; patch x_{i,k} ∈ R^h, h = C·k (1-D) or C·k² (2-D), plus a ones entry when the
filters have a bias)::

    f(x_i) = Σ_j ( Σ_k (x_{i,k}ᵀ u_j)_+ ) v_jᵀ             (global sum pooling)
    p* = min_{m, u_j, v_j}  L(f(X), Y) + (β/2) Σ_j (||u_j||² + ||v_j||²)

(u_j includes the bias, so the bias is weight-decayed, as in the rest of the library). With
``pooling="avg"`` the inner sum is a mean (``AdaptiveAvgPool``); since (t/K)_+ = t_+/K this is the
same program on the patches scaled by 1/K.

Convex form. Let X = [x_{1,1}; …; x_{1,K}; x_{2,1}; …] ∈ R^{NK × h} (sample-major, as
:func:`convexnn.patterns.stacked_patches`) and S ∈ {0,1}^{N × NK} the row-to-sample summation, so
the pooled feature of a filter u is S (X u)_+. Every (u, v) pair is an atom S (X u)_+ vᵀ, and
the problem is exactly the vector-output program of :mod:`~convexnn.formulations.copositive` with
the feature map u ↦ S (X u)_+ instead of u ↦ (X u)_+. Grouping u by the activation pattern D_p of
the *stacked* matrix (cones K_p = {u : (2D_p − I) X u ≥ 0}) gives the copositive program ::

    min  L( Σ_p S D_p X V_p , Y ) + β Σ_p ||V_p||_{*,K_p}

(the brief's Σ_j 1ᵀ D_j^{(i)} X_i Z_j per sample is row i of S D_j X Z_j). Its dual constraint is
h(Λ) = max_p max_{u ∈ K_p, ||u|| ≤ 1} ||Λᵀ S D_p X u|| ≤ β, and Λᵀ S = (Sᵀ Λ)ᵀ: the *unchanged*
exact oracle (:class:`~convexnn.formulations.copositive.ConeFaces`) on the stacked patch matrix
with each sample's dual row copied to its K patches. Weak duality is the same argument
(Fenchel–Young, Cauchy–Schwarz, ||u|| ||v|| ≤ ½(||u||² + ||v||²)), so −L*(sΛ),
s = min(1, β / max_p h_p(Λ)), is a proven lower bound on p* over networks of *any* width once all
patterns of X are enumerated (:func:`convexnn.patterns.enumerate_patterns`; the number of
patterns is O((NK)^{r−1}), r = rank X ≤ h).

:func:`fit_exact_cnn` alternates the master problem (group lasso over the pooled features of the
current unit filters, :func:`~convexnn.formulations.copositive.solve_master`) with the exact oracle,
adding the maximisers of violated patterns, until the certified relative gap is ≤ ``tol``; then
``certificate.scope == "global"``. The primal value is the objective of the returned network
(:class:`SumPoolCNN`, one filter per atom, balanced ||u|| = ||v||). Refuses (with the count) when
the arrangement of the stacked patch matrix is larger than ``max_patterns``, and when the face
enumeration of the oracle exceeds ``max_faces``.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from torch import Tensor

from ..losses import Loss, get_loss
from ..networks.pooled_cnn import POOLINGS, GlobalPool, SumPoolCNN
from ..patterns.arrangements import ArrangementTooLarge, enumerate_patterns
from ..results import FitResult
from .copositive import ConeFaces, solve_exact_program
from .copositive.cnn import as_input as _as_input
from .copositive.cnn import cnn_patch_matrix
from .copositive.cnn import pooled_features as _pooled

__all__ = ["fit_exact_cnn", "SumPoolCNN", "GlobalPool", "cnn_patch_matrix", "POOLINGS"]

DEFAULT_MAX_PATTERNS = 20_000


def _atoms_to_cnn(U: np.ndarray, G: np.ndarray, shape: tuple[int, ...], intercept: bool,
                  stride: int, padding: int, pooling: str) -> SumPoolCNN:
    """One filter per atom S (X u_k)_+ g_kᵀ (unit u_k), balanced:
    u = u_k √||g_k||, v = g_k / √||g_k||."""
    nrm = np.linalg.norm(G, axis=1)
    keep = nrm > 0
    U, G, nrm = U[keep], G[keep], nrm[keep]
    un = np.linalg.norm(U, axis=1)
    s = np.sqrt(nrm * un)
    W1 = U / np.maximum(un, 1e-300)[:, None] * s[:, None]
    W2 = (G / np.maximum(nrm, 1e-300)[:, None] * s[:, None]).T
    h0 = int(np.prod(shape))
    W = torch.as_tensor(W1[:, :h0].reshape(len(W1), *shape).copy())
    b = torch.as_tensor(W1[:, h0].copy()) if intercept else torch.zeros(len(W1),
                                                                         dtype=torch.float64)
    return SumPoolCNN(W, b, torch.as_tensor(W2.copy()), stride, padding, pooling)


# ============================================================================ solver

def fit_exact_cnn(images, Y, reg: float, loss: str | Loss = "squared", *, kernel_size: int,
                  stride: int = 1, padding: int = 0, intercept: bool = True,
                  pooling: str = "sum", tol: float = 1e-6, max_iter: int = 200,
                  max_time: float | None = None, max_patterns: int = DEFAULT_MAX_PATTERNS,
                  max_faces: int | None = 2_000_000, master: str = "auto",
                  verbose: int = 0) -> FitResult:
    """Global optimum of the two-layer CNN with global sum pooling (module docstring), exact.

    ``images``: signals (N, L) / (N, C, L) (``Conv1d``) or images (N, C, H, W) (``Conv2d``);
    ``Y`` (N,) or (N, c). Enumerates every activation pattern of the stacked patch matrix
    (refusing with the count when its bound exceeds ``max_patterns``) and runs column generation
    with the exact cone-constrained PCA oracle until the *global* certified relative gap is
    ≤ ``tol``. Returns a :class:`~convexnn.results.FitResult` whose network is a
    :class:`SumPoolCNN` attaining ``certificate.primal``; ``certificate.dual`` is a proven lower
    bound on the objective of every network of this architecture, of any width.
    """
    from .._validation import check_reg

    check_reg(reg)
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    lo = get_loss(loss)
    t0 = time.perf_counter()
    Xin = _as_input(images)
    Yn = (Y.detach().cpu().double().numpy() if isinstance(Y, Tensor)
          else np.asarray(Y, dtype=np.float64))
    Yn = Yn[:, None] if Yn.ndim == 1 else Yn
    n = Xin.shape[0]
    if Yn.ndim != 2 or Yn.shape[0] != n or n == 0:
        raise ValueError(f"images ({n} samples) and Y {Yn.shape} must be non-empty with matching "
                         "rows")
    if not (torch.isfinite(Xin).all() and np.isfinite(Yn).all()):
        raise ValueError("images or Y contains NaN or infinity")
    Xs, K = cnn_patch_matrix(Xin, kernel_size, stride, padding, intercept)
    if pooling == "avg":
        Xs = Xs / K
    h = Xs.shape[1]
    try:
        pats = enumerate_patterns(Xs, max_patterns=max_patterns)
    except ArrangementTooLarge as e:
        e.args = (f"fit_exact_cnn refused: the stacked patch matrix ({n}·{K} = {n * K} patches, "
                  f"filter size h = {h}, rank {e.rank}, {e.n_hyperplanes} distinct hyperplanes) "
                  f"has up to {e.count:,} activation patterns, above max_patterns={e.limit:,}. "
                  "Use fewer samples/positions, a smaller filter (or no bias), or raise "
                  "max_patterns.",)
        raise
    t_enum = time.perf_counter() - t0
    try:
        faces = ConeFaces(Xs, pats.gates, max_faces=max_faces, exhaustive=True)
    except ValueError as e:
        raise ValueError(f"fit_exact_cnn refused: {e}") from None
    t_faces = time.perf_counter() - t0 - t_enum

    problem = ("two-layer CNN with global " + pooling + " pooling (copositive program over all "
               "activation patterns of the stacked patch matrix, exact cone-constrained PCA "
               "oracle)")
    out = solve_exact_program(Xs, Yn, reg, lo, patterns=pats, faces=faces, tol=tol,
                              max_iter=max_iter, max_time=max_time, master=master,
                              verbose=verbose, features=lambda U: _pooled(Xs, U, n, K),
                              dual_rows=lambda lam: np.repeat(lam, K, axis=0),  # Sᵀ Λ
                              problem=problem, label="exact-cnn")
    U, G, cert, reason, h_max = (out["U"], out["G"], out["certificate"], out["stop_reason"],
                                 out["h_max"])
    C = Xin.shape[1]
    shape = (C, kernel_size) if Xin.ndim == 3 else (C, kernel_size, kernel_size)
    net = _atoms_to_cnn(U, G, shape, intercept, stride, padding, pooling)
    info = {"method": "exact_cnn", "stop_reason": reason, "n_patterns": pats.n_patterns,
            "rank": pats.info["rank"], "n_faces": faces.n_faces, "n_positions": K,
            "n_patch_rows": n * K, "filter_size": h, "n_filters": int((np.linalg.norm(
                G, axis=1) > 0).sum()), "lower_bound": cert.dual, "upper_bound": cert.primal,
            "h_max_over_reg": h_max / reg, "seconds_enumeration": t_enum,
            "seconds_faces": t_faces, "seconds_total": time.perf_counter() - t0,
            "optimal": cert.relative_gap <= tol}
    if cert.relative_gap > tol:
        warnings.warn(f"fit_exact_cnn stopped ({reason}) at certified relative gap "
                      f"{cert.relative_gap:.2e} > tol={tol:.1e}; the certificate still bounds "
                      "the sub-optimality", RuntimeWarning, stacklevel=2)
    return FitResult(net, cert, out["history"], info)
