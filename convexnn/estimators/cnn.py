"""scikit-learn estimators for convex CNNs (Ergen & Pilanci, ICLR 2021).

``ConvexCNNClassifier`` / ``ConvexCNNRegressor`` reach every CNN program of
:mod:`convexnn.formulations.cnn` (see there for what is exact) through ``method`` (formerly
``program``, a deprecated alias):

* ``"cone"`` (default): two-layer CNN conv → ReLU → pooling (``pooling``: ``"avg"``, ``"max"``,
  ``"none"``; ``pool_size=None`` is global) → Linear, the paper's cone-constrained group lasso
  over sampled (``patterns="sample"``) or all (``patterns="enumerate"``) patterns. Exact for a
  scalar output with global average pooling, or global max pooling with ``patterns="enumerate"``
  (the arrangement that also fixes every window's arg-max); otherwise the output-separable
  restriction. ``activation="gated"``: the group nuclear-norm program, exact for the gated CNN.
* ``"shared"``: filters fixed at the gate directions and shared by every output (ReLU only).
* ``"circular"``: ``n_circular`` circular convolutions with full-size filters, one ReLU, the
  ℓ1-in-Fourier program (single-channel inputs; ``kernel_size``/``stride``/``padding``/
  ``pooling``/``fit_intercept`` are not used). Exact for ``n_circular=1`` and a scalar output.
* ``"three_layer"``: conv → ReLU → hidden unit → ReLU → Linear with the ℓ1 path regulariser,
  ``n_outer`` sampled outer patterns (no pooling).

A non-default value of a parameter the chosen configuration does not read (above; ``n_circular``
/ ``n_outer`` outside their method, ``pool_size`` with ``pooling="none"``, ``n_patterns`` /
``gate_kind`` with ``patterns="enumerate"``, ``max_iter`` / ``max_time`` with
``solver="cvxpy"``) is a ``ValueError`` naming it; so is an ``input_shape`` that differs from
the shape of image inputs.

X is images (N, C, H, W) / (N, H, W), or 2-D (N, d) reshaped to ``input_shape`` ((C, H, W) or
(H, W); default (1, 1, d): d one-pixel-high columns, so only ``kernel_size=1`` fits). The
objective is loss summed over samples + (reg/2)·(squared weights) (path norm for
``"three_layer"``); ``fit_intercept`` (formerly ``intercept``) gives the filters a bias.
``network_`` is the read-back network, ``certificate_`` its duality-gap certificate (its
``problem`` says ``NOT CONVERGED`` when the solve stopped above ``tol``, which also issues a
``ConvergenceWarning``), ``history_`` the solver trace; the other fitted attributes are those
of every estimator (:mod:`convexnn.estimators._base`).
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.utils.validation import validate_data

from .._validation import resolve_device, resolve_dtype, to_tensor
from ..pipelines.cnn import build_program, solve
from ..results import FitResult
from ._base import (
    DEPRECATED,
    ConvexClassifierMixin,
    ConvexEstimator,
    ConvexRegressorMixin,
    backend_errors,
)
from ._cnn_data import check_images, is_flat, reshape_flat
from ._params import CNN_METHODS, check_cnn_params

__all__ = ["ConvexCNNClassifier", "ConvexCNNRegressor", "check_images", "PROGRAMS"]

PROGRAMS = CNN_METHODS  # the former name


def _same(value):
    return value


class _ConvexCNNBase(ConvexEstimator):
    _aliases = {"intercept": ("fit_intercept", _same), "program": ("method", _same)}

    def __init__(self, kernel_size=3, stride=1, padding=0, pooling="avg", pool_size=None,
                 reg=1e-3, n_patterns=100, activation="relu", loss=None, patterns="sample",
                 gate_kind="gaussian", fit_intercept=True, random_state=None, device="cpu",
                 dtype="float64", solver="auto", tol=1e-4, max_iter=2000, max_time=None,
                 verbose=0, method="cone", input_shape=None, n_circular=1, n_outer=8,
                 intercept=DEPRECATED, program=DEPRECATED):
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.pooling = pooling
        self.pool_size = pool_size
        self.reg = reg
        self.n_patterns = n_patterns
        self.activation = activation
        self.loss = loss
        self.patterns = patterns
        self.gate_kind = gate_kind
        self.fit_intercept = fit_intercept
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.max_time = max_time
        self.verbose = verbose
        self.method = method
        self.input_shape = input_shape
        self.n_circular = n_circular
        self.n_outer = n_outer
        self.intercept = intercept
        self.program = program

    # ---------------------------------------------------------------- fitting
    def _start_fit(self) -> float:
        self._resolve_aliases()
        check_cnn_params(self)
        return time.perf_counter()

    def _images(self, X, y=None, *, fitting: bool, regressor: bool = False):
        """(images (N, C, H, W), y) from 2-D X (reshaped to ``input_shape``) or images."""
        if fitting:
            if is_flat(X):
                Xa, y = validate_data(self, X, y, dtype=np.float64, multi_output=regressor,
                                      y_numeric=regressor)
                self._flat = True
                return reshape_flat(Xa, self.input_shape), y
            Xa = check_images(X)
            if y is None:
                raise ValueError(f"{type(self).__name__} requires y to be passed, but the "
                                 "target y is None")
            self._check_image_shape(Xa)
            self._flat = False
            self.n_features_in_ = int(np.prod(Xa.shape[1:]))
            return Xa, y
        self._fitted()
        if is_flat(X):
            Xa = validate_data(self, X, dtype=np.float64, reset=False)
            return reshape_flat(Xa, self.input_shape_), None
        return check_images(X, shape=self.input_shape_), None

    def _check_image_shape(self, images: np.ndarray) -> None:
        """``input_shape`` reshapes 2-D X; given with images, it must be their shape."""
        if self.input_shape is None:
            return
        shape = reshape_flat(images.reshape(len(images), -1), self.input_shape).shape[1:]
        if shape != images.shape[1:]:
            raise ValueError(f"input_shape={self.input_shape!r} does not match the images' "
                             f"shape {images.shape[1:]} (input_shape reshapes 2-D X; leave it "
                             "None for images)")

    def _fit(self, X: np.ndarray, Yenc: np.ndarray, loss: str, t0: float):
        dt, dev = resolve_dtype(self.dtype), resolve_device(self.device)
        prog = build_program(
            self._param("method"), to_tensor(X, dt, dev), to_tensor(Yenc, dt, dev),
            float(self.reg), loss, activation=self.activation,
            kernel_size=int(self.kernel_size), stride=int(self.stride),
            padding=int(self.padding), intercept=bool(self._param("fit_intercept")),
            pooling=self.pooling, pool_size=self.pool_size, patterns=self.patterns,
            n_patterns=int(self.n_patterns), gate_kind=self.gate_kind,
            random_state=self.random_state, n_circular=int(self.n_circular),
            n_outer=int(self.n_outer))
        with backend_errors(f"the CNN program's {self.solver!r} solver",
                            "; solver='auto' needs no external solver"):
            x, cert, res = solve(prog, solver=self.solver, tol=float(self.tol),
                                 max_iter=int(self.max_iter), max_time=self.max_time,
                                 verbose=int(self.verbose))
        n_patterns = int(prog.patterns.n_patterns)
        self.fit_result_ = FitResult(prog.to_network(x), cert, res.history,
                                     {"stop_reason": res.stop_reason, "n_iter": res.n_iter,
                                      "seconds": res.seconds, "problem": prog.description(),
                                      "n_patterns": n_patterns})
        self._set_fitted(self.fit_result_, n_features=int(np.prod(X.shape[1:])),
                         reg=float(self.reg), seconds=time.perf_counter() - t0,
                         stop_reason=res.stop_reason, n_iter=res.n_iter)
        self.input_shape_ = tuple(int(s) for s in X.shape[1:])
        self.n_patterns_ = n_patterns
        return self

    def _network_input(self, X) -> np.ndarray:
        return self._images(X, fitting=False)[0]

    def _meta_fields(self) -> dict:
        return {"input_shape": list(self.input_shape_), "flat": bool(self._flat)}


class ConvexCNNClassifier(ConvexClassifierMixin, _ConvexCNNBase):
    """Convex CNN classifier; ``loss``: ``"cross_entropy"`` (default; one output per class,
    softmax) or ``"squared"`` (one-hot targets). See the module docstring."""

    def _default_loss(self, n_classes: int) -> str:
        return "cross_entropy"

    def fit(self, X, y):
        t0 = self._start_fit()
        loss = self.loss or "cross_entropy"
        if loss not in ("cross_entropy", "squared"):
            raise ValueError(f"loss must be 'cross_entropy' or 'squared', got {loss!r}")
        Xa, y = self._images(X, y, fitting=True)
        return self._fit(Xa, self._encode_labels(y, Xa.shape[0], fitting=True), loss, t0)


class ConvexCNNRegressor(ConvexRegressorMixin, _ConvexCNNBase):
    """Convex CNN regressor (squared loss); y (N,) or (N, c)."""

    def fit(self, X, y):
        t0 = self._start_fit()
        if (self.loss or "squared") != "squared":
            raise ValueError("ConvexCNNRegressor supports loss='squared' only")
        Xa, y = self._images(X, y, fitting=True, regressor=True)
        return self._fit(Xa, self._encode_targets(y, Xa.shape[0]), "squared", t0)
