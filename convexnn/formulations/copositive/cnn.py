r"""Feature map of the two-layer CNN with global pooling: u ↦ S (X u)_+ on the stacked patch
matrix X (see :mod:`convexnn.formulations.copositive_cnn` for the model and the driver)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...patterns.patches import extract_patches

__all__ = ["as_input", "cnn_patch_matrix", "pooled_features"]


def as_input(X) -> Tensor:
    """(N, L) → (N, 1, L); (N, C, L) and (N, C, H, W) unchanged; float64."""
    Xt = X if isinstance(X, Tensor) else torch.as_tensor(np.asarray(X))
    Xt = Xt.detach().to(torch.float64)
    if Xt.ndim == 2:
        Xt = Xt[:, None]
    if Xt.ndim not in (3, 4):
        raise ValueError("inputs must be signals (N, L) / (N, C, L) or images (N, C, H, W); got "
                         f"shape {tuple(Xt.shape)}")
    return Xt


def _patches_1d(signals: Tensor, k: int, stride: int, padding: int, intercept: bool) -> Tensor:
    """Patches (N, K, C·k) of signals (N, C, L), laid out like ``Conv1d.weight.reshape(m, -1)``."""
    N = signals.shape[0]
    Xp = F.pad(signals, (padding, padding)) if padding else signals
    P = Xp.unfold(2, k, stride).permute(0, 2, 1, 3).reshape(N, -1, signals.shape[1] * k)
    if intercept:
        P = torch.cat([P, torch.ones(*P.shape[:2], 1, dtype=P.dtype)], 2)
    return P


def cnn_patch_matrix(X, kernel_size: int, stride: int = 1, padding: int = 0,
                     intercept: bool = True) -> tuple[np.ndarray, int]:
    """The stacked patch matrix (N·K, h) (sample-major) and K, for 1-D or 2-D inputs.

    2-D images use :func:`convexnn.patterns.extract_patches` (the CNN work's patch code); 1-D
    signals the same layout with a 1-D window.
    """
    Xt = as_input(X)
    if Xt.ndim == 4:
        P = extract_patches(Xt, kernel_size, stride, padding, intercept)
    else:
        if Xt.shape[2] + 2 * padding < kernel_size:
            raise ValueError(f"kernel_size={kernel_size} with padding={padding} does not fit "
                             f"signals of length {Xt.shape[2]}")
        P = _patches_1d(Xt, kernel_size, stride, padding, intercept)
    return P.reshape(-1, P.shape[2]).numpy(), int(P.shape[1])


def pooled_features(Xs: np.ndarray, U: np.ndarray, n: int, K: int) -> np.ndarray:
    """S (X U ᵀ)_+ : (n, m)."""
    if len(U) == 0:
        return np.zeros((n, 0))
    return np.maximum(Xs @ U.T, 0.0).reshape(n, K, len(U)).sum(1)

