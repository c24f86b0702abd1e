"""Master problem of the column generation (group lasso over fixed ReLU features) and the
read-back of atoms as a network; shared input checks."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ...losses import Loss
from ...networks import TwoLayerNetwork
from ...ops.linalg import as_numpy
from ..group_lasso import solve_group_lasso

__all__ = ["solve_master", "atoms_to_network", "atoms_objective", "check_inputs", "dtype_device"]


def solve_master(Phi: np.ndarray, Y: np.ndarray, reg: float, loss: Loss, *,
                 G0: np.ndarray | None = None, backend: str = "auto",
                 tol: float = 1e-10) -> np.ndarray:
    """min_G L(Φ G, Y) + β Σ_k ||G_k||₂ (group lasso over fixed ReLU features Φ = (X U)_+).

    ``backend``: ``"clarabel"`` (squared loss, direct conic QP), ``"cvxpy"``, ``"fista"`` or
    ``"auto"`` (the first available in that order for the loss).
    """
    K, c = Phi.shape[1], Y.shape[1]
    if K == 0:
        return np.zeros((0, c))
    if backend == "auto":
        backend = _auto_backend(loss)
    if backend == "clarabel":
        return _master_clarabel(Phi, Y, reg, tol)
    if backend == "cvxpy":
        import cvxpy as cp

        Gv = cp.Variable((K, c))
        Z = Phi @ Gv
        data = getattr(loss, "base", loss).cvxpy(Z, Y)
        prob = cp.Problem(cp.Minimize(data + reg * cp.sum(cp.norm(Gv, 2, axis=1))))
        try:
            prob.solve(solver="CLARABEL", tol_gap_abs=tol, tol_gap_rel=tol, tol_feas=tol,
                       max_iter=400)
        except Exception:  # noqa: BLE001 - retry with the solver's defaults
            prob.solve(solver="CLARABEL")
        if Gv.value is None:
            raise RuntimeError(f"master problem: solver status {prob.status}")
        return np.asarray(Gv.value)
    return _master_fista(Phi, Y, reg, loss, G0, tol)


def _auto_backend(loss: Loss) -> str:
    """Direct Clarabel for the squared loss (no modelling layer), CVXPY for other losses,
    FISTA when neither is installed."""
    import importlib.util

    if loss.name == "squared" and importlib.util.find_spec("clarabel") is not None:
        return "clarabel"
    return "cvxpy" if importlib.util.find_spec("cvxpy") is not None else "fista"


def _master_clarabel(Phi: np.ndarray, Y: np.ndarray, reg: float, tol: float) -> np.ndarray:
    """Squared-loss group lasso as one conic QP handed straight to Clarabel.

    x = [vec G (row-major, K c), t (K), r (n c)]: min ½||r||² + β Σ t_k
    s.t. (Φ ⊗ I_c) vec G − r = vec Y (zero cone), (t_k, g_k) ∈ SOC(c + 1). The residual form
    keeps Φ's conditioning (ΦᵀΦ would square it). No CVXPY canonicalisation.
    """
    import clarabel
    import scipy.sparse as sp

    n, K, c = Phi.shape[0], Phi.shape[1], Y.shape[1]
    nG, nr = K * c, n * c
    N = nG + K + nr
    ir = np.arange(nG + K, N)
    P = sp.csc_matrix((np.ones(nr), (ir, ir)), shape=(N, N))
    q = np.concatenate([np.zeros(nG), np.full(K, float(reg)), np.zeros(nr)])
    # one COO build (kron/hstack/vstack dominated the master's time at small K):
    # rows i c + j: Σ_k Φ_ik G_kj − r_ij; then per atom k the cone rows (−t_k, −g_k)
    i, k = np.nonzero(Phi)
    j = np.arange(c)
    eq_r = ((i * c)[:, None] + j).ravel()
    eq_c = ((k * c)[:, None] + j).ravel()
    eq_v = np.repeat(Phi[i, k], c)
    rows = np.arange(K * (c + 1))
    cols = np.empty(K * (c + 1), dtype=np.int64)
    blk = rows.reshape(K, c + 1)
    cols[blk[:, 0]] = nG + np.arange(K)  # t_k first in each cone
    cols[blk[:, 1:].ravel()] = np.arange(nG)
    A = sp.csc_matrix((np.concatenate([eq_v, -np.ones(nr), -np.ones(len(rows))]),
                       (np.concatenate([eq_r, np.arange(nr), nr + rows]),
                        np.concatenate([eq_c, ir, cols]))), shape=(nr + len(rows), N))
    b = np.concatenate([Y.ravel(), np.zeros(len(rows))])
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = settings.tol_feas = tol
    settings.max_iter = 400
    cones = [clarabel.ZeroConeT(nr)] + [clarabel.SecondOrderConeT(c + 1)] * K
    sol = clarabel.DefaultSolver(P, q, A, b, cones, settings).solve()
    x = np.asarray(sol.x)
    if x.size != N or not np.isfinite(x).all():
        raise RuntimeError(f"master problem: Clarabel status {sol.status}")
    return x[:nG].reshape(K, c)


def _master_fista(Phi, Y, reg, loss, G0, tol, max_iter: int = 20000) -> np.ndarray:
    G0 = None if G0 is None else torch.as_tensor(G0)
    return solve_group_lasso(torch.as_tensor(Phi), torch.as_tensor(Y), reg, loss, G0=G0,
                             tol=tol, max_iter=max_iter).numpy()


# ======================================================================== network
def atoms_to_network(U: np.ndarray, G: np.ndarray, intercept: bool, dtype=torch.float64,
                     device=None, tol: float = 0.0) -> TwoLayerNetwork:
    """Neurons from atoms (X u_k)_+ g_kᵀ with unit u_k: u = u_k √||g_k||, v = g_k / √||g_k||."""
    nrm = np.linalg.norm(G, axis=1)
    keep = nrm > tol
    U, G, nrm = U[keep], G[keep], nrm[keep]
    un = np.linalg.norm(U, axis=1)
    s = np.sqrt(nrm * un)  # balanced: ||u|| = ||v|| = sqrt(||u_k|| ||g_k||)
    W1 = U / np.maximum(un, 1e-300)[:, None] * s[:, None]
    W2 = (G / np.maximum(nrm, 1e-300)[:, None] * s[:, None]).T
    W1t = torch.as_tensor(W1, dtype=dtype, device=device)
    if intercept:
        W, b = W1t[:, :-1], W1t[:, -1]
    else:
        W, b = W1t, torch.zeros(W1t.shape[0], dtype=dtype, device=device)
    return TwoLayerNetwork(W.contiguous(), b.contiguous(),
                           torch.as_tensor(W2, dtype=dtype, device=device).contiguous(), "relu")


def atoms_objective(Phi, G, Y, reg, loss) -> tuple[float, np.ndarray]:
    F = Phi @ G
    Ft = torch.as_tensor(F)
    Yt = torch.as_tensor(Y)
    val = float(loss.value(Ft, Yt)) + reg * float(np.linalg.norm(G, axis=1).sum())
    return val, loss.grad(Ft, Yt).numpy()


def check_inputs(X, Y, reg):
    from ..._validation import check_reg

    check_reg(reg)
    Xn, Yn = as_numpy(X), as_numpy(Y)
    if Yn.ndim == 1:
        Yn = Yn[:, None]
    if Xn.ndim != 2 or Xn.shape[0] == 0 or Yn.shape[0] != Xn.shape[0]:
        raise ValueError(f"X (n, d) and Y (n, c) must be non-empty with matching rows; got "
                         f"{Xn.shape} and {Yn.shape}")
    if not (np.isfinite(Xn).all() and np.isfinite(Yn).all()):
        raise ValueError("X or Y contains NaN or infinity")
    return Xn, Yn


def dtype_device(X):
    if isinstance(X, Tensor):
        return X.dtype, X.device
    return torch.float64, None

