"""Regularisation paths of the default ReLU fit, warm-started, and their cross-validation.

A path fits the descent (:mod:`convexnn.pipelines.descent`) at decreasing weight decays, each
fit starting from the previous network (topped up with fresh data-aware neurons), in the
standardised units of :mod:`convexnn.pipelines.two_layer`; networks come back in the user's
units. :func:`cv_path_scores` runs one path per fold and scores every network on its held-out
fold: what ``ConvexReLU*CV`` estimators choose ``reg`` from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..certificates import Certificate
from ..losses import get_loss
from ..networks import TwoLayerNetwork
from . import descent
from .local import threads_for
from .two_layer import (
    DEFAULT_MAX_TIME,
    certificate_to_user,
    default_width,
    network_to_user,
    standardise,
)

__all__ = ["reg_grid", "fit_path", "cv_path_scores"]


def reg_grid(X: np.ndarray, Y: np.ndarray, loss: str, *, n_regs: int = 8,
             ratio: float = 2e-3, fit_intercept: bool = True, random_state=None) -> np.ndarray:
    """``n_regs`` weight decays (user units), geometric from reg_max/2 down to ``ratio``·reg_max/2,
    reg_max the smallest reg whose optimum is the zero network (:func:`descent.reg_max`)."""
    Xs, Ys, _, _, sy = standardise(X, Y, loss, center=fit_intercept)
    rm = descent.reg_max(torch.as_tensor(Xs), torch.as_tensor(Ys), get_loss(loss),
                         intercept=fit_intercept, offset=fit_intercept,
                         random_state=random_state)
    top = 0.5 * (rm if rm > 0 else 1.0) * sy
    return np.geomspace(top, top * ratio, n_regs)


def fit_path(X: np.ndarray, Y: np.ndarray, regs: Sequence[float], *, loss: str,
             fit_intercept: bool = True, n_neurons: int | None = None,
             max_time: float | None = None, dtype=torch.float64, device="cpu",
             random_state=None, polish: str = "anneal"
             ) -> list[tuple[TwoLayerNetwork, Certificate]]:
    """Descent fits at each reg (largest first, each warm-started from the previous network);
    returns (network, certificate) per reg in the order given, in the user's units.
    ``max_time`` bounds the whole path (default: DEFAULT_MAX_TIME per reg); ``polish``: the
    descent's polish ("anneal", "adam" or "none", :func:`descent.fit_relu_descent`)."""
    regs = np.asarray(regs, dtype=np.float64)
    t0 = time.perf_counter()
    budget = DEFAULT_MAX_TIME * len(regs) if max_time is None else float(max_time)
    Xs, Ys, mu, sd, sy = standardise(X, Y, loss, center=fit_intercept)
    Xt = torch.as_tensor(Xs, dtype=dtype, device=device)
    Yt = torch.as_tensor(Ys, dtype=dtype, device=device)
    base = get_loss(loss)
    width = n_neurons or default_width(*Xt.shape)
    out: list = [None] * len(regs)
    init = None
    order = np.argsort(-regs, kind="stable")
    for i, k in enumerate(order):
        left = budget - (time.perf_counter() - t0)
        share = max(left / (len(regs) - i), 1e-3)  # an equal share of what is left
        with threads_for(Xt.numel() * width):
            net, cert, _, _ = descent.fit_relu_descent(
                Xt, Yt, float(regs[k]) / sy, base, n_neurons=width, intercept=fit_intercept,
                offset=fit_intercept, max_time=share, init=init, polish=polish,
                random_state=random_state + i if isinstance(random_state, int) else random_state)
        b2 = net.output_bias if net.output_bias is not None else torch.zeros(
            Yt.shape[1], dtype=Xt.dtype, device=Xt.device)
        init = [net.first_layer_weights, net.first_layer_bias, net.second_layer_weights, b2]
        out[k] = (network_to_user(net, mu, sd, sy), certificate_to_user(cert, sy))
    return out


def cv_path_scores(X: np.ndarray, Y: np.ndarray, regs: Sequence[float], folds,
                   score: Callable[[np.ndarray, np.ndarray], float], *, loss: str,
                   fit_intercept: bool = True, n_neurons: int | None = None,
                   max_time: float | None = None, random_state=None, verbose: int = 0,
                   polish: str = "none") -> np.ndarray:
    """(n_folds, n_regs) held-out scores: one warm-started path per (train, test) index pair
    in ``folds``; ``score(Y_test, outputs)`` on the network's raw outputs (higher is better).
    The fits skip the polish by default (``polish``; the smoothed rounds' networks rank the
    regs as the polished ones do: benchmarks/results/cv.md)."""
    folds = list(folds)
    t0 = time.perf_counter()
    scores = np.empty((len(folds), len(regs)))
    for f, (tr, te) in enumerate(folds):
        left = None if max_time is None else max(
            (max_time - (time.perf_counter() - t0)) / (len(folds) - f), 1e-3)
        path = fit_path(X[tr], Y[tr], regs, loss=loss, fit_intercept=fit_intercept,
                        n_neurons=n_neurons, max_time=left, random_state=random_state,
                        polish=polish)
        Xte = torch.as_tensor(X[te], dtype=torch.float64)
        for k, (net, _) in enumerate(path):
            with torch.no_grad():
                scores[f, k] = score(Y[te], net.forward(Xte).cpu().numpy())
        if verbose:
            print(f"[cv {time.perf_counter() - t0:6.2f}s] fold {f}: best reg "
                  f"{regs[int(np.argmax(scores[f]))]:.4g} (score {scores[f].max():.4f})")
    return scores
