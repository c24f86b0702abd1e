"""Closed-form soft-thresholded SVD solution with its conditions checked (package docstring)."""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from ...certificates import SCOPE_GLOBAL, Certificate, relative, scaled_dual
from ...losses import Loss, get_loss
from ...networks import TwoLayerNetwork
from ...patterns.arrangements import DEFAULT_MAX_PATTERNS, count_patterns, enumerate_patterns
from ...results import FitResult
from ...solvers.base import History
from .master import check_inputs, dtype_device
from .oracle import ConeFaces

__all__ = ["fit_svd"]


def _svd_certificate(net: TwoLayerNetwork, Xn, Yn, reg, lo, h_of_lam, problem, X_user):
    F = net.forward(torch.as_tensor(X_user)).double()
    Yt = torch.as_tensor(Yn)
    primal = net.to(dtype=torch.float64).objective(torch.as_tensor(X_user), Yt, reg, lo)
    lam = lo.grad(F, Yt)
    h = h_of_lam(lam.numpy())
    dual, s = scaled_dual(lo, lam, Yt, h, reg)
    gap = max(primal - dual, 0.0)
    return Certificate(primal=primal, dual=dual, gap=gap, relative_gap=relative(gap, primal),
                       scope=SCOPE_GLOBAL, problem=problem, dual_scale=s)


def _spike_free(Xn: np.ndarray, max_patterns: int, problems: list) -> bool | None:
    """Whether X (orthonormal columns) is spike-free, verified over all patterns (None, with a
    problem noted, when there are more than ``max_patterns``)."""
    n = Xn.shape[0]
    cnt = count_patterns(Xn)["bound"]
    if cnt > max_patterns:
        problems.append(f"spike-free property cannot be verified: {cnt:,} activation "
                        f"patterns > max_patterns={max_patterns:,}")
        return None
    pats = enumerate_patterns(Xn, max_patterns=max_patterns)
    fc = ConeFaces(Xn, pats.gates, exhaustive=True)
    Pm = fc.masks.astype(float)
    resid = max(float(np.abs((np.eye(n) - Xn @ Xn.T) @ (Pm[:, p:p + 1] * Xn)).max())
                for p in range(fc.P))
    hx, _ = fc.oracle(Xn)  # max_{u∈K_p} ||Xᵀ D_p X u||
    spike_free = resid <= 1e-8 and float(hx.max()) <= 1 + 1e-8
    if not spike_free:
        problems.append("X is not spike-free: some (Xu)_+ is not of the form Xz with "
                        f"||z|| ≤ ||u|| (range residual {resid:.2e}, max ||Xᵀ(Xu)_+|| = "
                        f"{float(hx.max()):.6f})")
    return spike_free


def _thresholded_network(Zdir: np.ndarray, feats: np.ndarray, S: np.ndarray, Vt: np.ndarray,
                         reg: float, tol: float, intercept: bool,
                         problems: list) -> TwoLayerNetwork:
    """The network of the singular triplets with σ > reg, shrunk by reg (signs made
    non-negative on the features; a retained vector that is not sign-definite is noted)."""
    keep = S > reg
    a = feats[:, keep]
    sgn = np.where(a.sum(0) >= 0, 1.0, -1.0)
    a = a * sgn
    bad = (a < -tol * np.abs(a).max(0, initial=1.0)).any(0) if a.size else np.zeros(0, bool)
    if bad.any():
        problems.append(f"{int(bad.sum())} of the {int(keep.sum())} retained singular vectors "
                        "are not sign-definite: the ReLU cannot represent them, so the soft-"
                        "thresholded SVD is only a lower bound")
    scale = np.sqrt(S[keep] - reg)
    U1 = (Zdir[:, keep] * sgn).T * scale[:, None]  # (k, d)
    W2 = (Vt[keep].T * sgn) * scale[None, :]  # (c, k)
    W1 = torch.as_tensor(U1)
    if intercept:
        return TwoLayerNetwork(W1[:, :-1].contiguous(), W1[:, -1].contiguous(),
                               torch.as_tensor(W2).contiguous())
    return TwoLayerNetwork(W1, torch.zeros(W1.shape[0], dtype=torch.float64),
                           torch.as_tensor(W2).contiguous())


def fit_svd(X, Y, reg: float, loss: str | Loss = "squared", *, intercept: bool,
            on_violation: str = "raise", tol: float = 1e-8,
            max_patterns: int = DEFAULT_MAX_PATTERNS, random_state=None) -> FitResult:
    """Closed-form soft-thresholded SVD solution, with its conditions checked (see module doc).

    Conditions: (A) XXᵀ = I (whitened, n ≤ d) and every left singular vector a_k of Y with
    σ_k > β sign-definite; or (B) XᵀX = I, X spike-free (verified exactly over all patterns;
    refused when the arrangement is too large to enumerate) and X z_k sign-definite for the
    retained left singular vectors z_k of XᵀY. ``on_violation="raise"`` refuses otherwise;
    ``"warn"`` returns the soft-thresholded network anyway with a warning, ``info["conditions"]``
    and an honest certificate (its lower bound uses only globally valid norm bounds).
    """
    lo = get_loss(loss)
    if lo.name != "squared":
        raise ValueError(f"fit_svd supports the squared loss only, got {lo.name!r}")
    if on_violation not in ("raise", "warn"):
        raise ValueError("on_violation must be 'raise' or 'warn'")
    Xn, Yn = check_inputs(X, Y, reg)
    n, d = Xn.shape
    t0 = time.perf_counter()
    problems = []
    whitened = n <= d and np.abs(Xn @ Xn.T - np.eye(n)).max() <= tol * 10
    orthocols = n >= d and np.abs(Xn.T @ Xn - np.eye(d)).max() <= tol * 10
    Xop = float(np.linalg.norm(Xn, 2))
    if whitened:
        case = "whitened"
        Ua, S, Vt = np.linalg.svd(Yn, full_matrices=False)
        Zdir = Xn.T @ Ua  # z_k = Xᵀ a_k (unit)
        feats = Ua

        def h_of_lam(lam):  # spike-free with ||X||₂ = 1: ||Λᵀ(Xu)_+|| ≤ ||Λ||₂
            return float(np.linalg.norm(lam, 2))
    elif orthocols:
        case = "orthonormal columns"
        Ua, S, Vt = np.linalg.svd(Xn.T @ Yn, full_matrices=False)
        Zdir = Ua
        feats = Xn @ Ua
        spike_free = _spike_free(Xn, max_patterns, problems)

        def h_of_lam(lam):
            if spike_free:  # (Xu)_+ = Xz, ||z|| ≤ 1  ⇒  ||Λᵀ(Xu)_+|| ≤ ||XᵀΛ||₂
                return float(np.linalg.norm(Xn.T @ lam, 2))
            return float(np.linalg.norm(lam, 2)) * Xop
    else:
        raise ValueError("fit_svd: the closed form needs whitened data (X Xᵀ = I, n ≤ d) or "
                         "orthonormal columns (Xᵀ X = I) — neither holds for this X; use "
                         "method='exact' or 'relaxation'")
    net = _thresholded_network(Zdir, feats, S, Vt, reg, tol, intercept, problems)
    X_user = Xn[:, :-1] if intercept else Xn
    if problems and on_violation == "raise":
        raise ValueError("fit_svd refused: " + "; ".join(problems))
    if problems:
        warnings.warn("fit_svd conditions violated: " + "; ".join(problems), RuntimeWarning,
                      stacklevel=2)
    cert = _svd_certificate(net, Xn, Yn, reg, lo, h_of_lam,
                            f"soft-thresholded SVD ({case} data)", X_user)
    hist = History()
    hist.append(0, cert.primal, cert.gap, cert.relative_gap, time.perf_counter() - t0)
    dt, dev = dtype_device(X)
    info = {"method": "svd", "case": case, "conditions_hold": not problems,
            "conditions": problems, "n_neurons": net.n_neurons,
            "singular_values": S.tolist(), "lower_bound": cert.dual, "upper_bound": cert.primal}
    return FitResult(net.to(device=dev, dtype=dt), cert, hist, info)
