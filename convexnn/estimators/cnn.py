"""scikit-learn estimators for convex CNNs (Ergen & Pilanci, ICLR 2021).

``ConvexCNNClassifier`` / ``ConvexCNNRegressor`` reach every CNN program of
:mod:`convexnn.formulations.cnn` (see there for what is exact) through ``program``:

* ``"cone"`` (default): two-layer CNN conv → ReLU → pooling (``pooling``: ``"avg"``, ``"max"``,
  ``"none"``; ``pool_size=None`` is global) → Linear, the paper's cone-constrained group lasso
  over sampled (``patterns="sample"``) or all (``patterns="enumerate"``) patterns. Exact for a
  scalar output with global average pooling, or global max pooling with ``patterns="enumerate"``
  (the arrangement that also fixes every window's arg-max); otherwise the output-separable
  restriction. ``activation="gated"``: the group nuclear-norm program, exact for the gated CNN.
* ``"shared"``: filters fixed at the gate directions and shared by every output (ReLU only).
* ``"circular"``: ``n_circular`` circular convolutions with full-size filters, one ReLU, the
  ℓ1-in-Fourier program (single-channel inputs; ``kernel_size``/``stride``/``padding``/
  ``pooling`` are not used). Exact for ``n_circular=1`` and a scalar output.
* ``"three_layer"``: conv → ReLU → hidden unit → ReLU → Linear with the ℓ1 path regulariser,
  ``n_outer`` sampled outer patterns.

X is images (N, C, H, W) / (N, H, W), or 2-D (N, d) reshaped to ``input_shape`` ((C, H, W) or
(H, W); default (1, 1, d): d one-pixel-high columns, so only ``kernel_size=1`` fits). The
objective is loss summed over samples + (reg/2)·(squared weights) (path norm for
``"three_layer"``). ``network_`` is the read-back network, ``certificate_`` its duality-gap
certificate (its ``problem`` says ``NOT CONVERGED`` when the solve stopped above ``tol``, which
also issues a ``ConvergenceWarning``), ``history_`` the solver trace.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import validate_data

from .._validation import resolve_device, resolve_dtype, to_tensor
from ..pipelines.cnn import build_program, solve
from ..results import FitResult
from ._base import ConvexEstimator
from ._cnn_data import check_class_labels, check_images, check_targets, is_flat, reshape_flat
from ._params import CNN_METHODS, check_cnn_params

__all__ = ["ConvexCNNClassifier", "ConvexCNNRegressor", "check_images", "PROGRAMS"]

PROGRAMS = CNN_METHODS


class _ConvexCNNBase(ConvexEstimator):
    def __init__(self, kernel_size=3, stride=1, padding=0, pooling="avg", pool_size=None,
                 reg=1e-3, n_patterns=100, activation="relu", loss=None, patterns="sample",
                 gate_kind="gaussian", intercept=True, random_state=None, device="cpu",
                 dtype="float64", solver="auto", tol=1e-4, max_iter=2000, max_time=None,
                 verbose=0, program="cone", input_shape=None, n_circular=1, n_outer=8):
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
        self.intercept = intercept
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.max_time = max_time
        self.verbose = verbose
        self.program = program
        self.input_shape = input_shape
        self.n_circular = n_circular
        self.n_outer = n_outer

    # ---------------------------------------------------------------- fitting
    def _validate_params(self) -> None:
        check_cnn_params(self)

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
            self._flat = False
            self.n_features_in_ = int(np.prod(Xa.shape[1:]))
            return Xa, y
        self._fitted()
        if is_flat(X):
            Xa = validate_data(self, X, dtype=np.float64, reset=False)
            return reshape_flat(Xa, self.input_shape_), None
        return check_images(X, shape=self.input_shape_), None

    def _fit(self, X: np.ndarray, Yenc: np.ndarray, loss: str):
        self._validate_params()
        dt, dev = resolve_dtype(self.dtype), resolve_device(self.device)
        prog = build_program(
            self.program, to_tensor(X, dt, dev), to_tensor(Yenc, dt, dev), float(self.reg),
            loss, activation=self.activation, kernel_size=int(self.kernel_size),
            stride=int(self.stride), padding=int(self.padding), intercept=bool(self.intercept),
            pooling=self.pooling, pool_size=self.pool_size, patterns=self.patterns,
            n_patterns=int(self.n_patterns), gate_kind=self.gate_kind,
            random_state=self.random_state, n_circular=int(self.n_circular),
            n_outer=int(self.n_outer))
        x, cert, res = solve(prog, solver=self.solver, tol=float(self.tol),
                             max_iter=int(self.max_iter), max_time=self.max_time,
                             verbose=int(self.verbose))
        self.network_ = prog.to_network(x)
        self.certificate_ = cert
        self.history_ = res.history
        self.stop_reason_ = res.stop_reason
        self.n_iter_ = int(res.n_iter)
        self.fit_result_ = FitResult(self.network_, cert, res.history,
                                     {"stop_reason": res.stop_reason, "n_iter": res.n_iter,
                                      "seconds": res.seconds, "problem": prog.description(),
                                      "n_patterns": int(prog.patterns.n_patterns)})
        self.input_shape_ = tuple(int(s) for s in X.shape[1:])
        self.n_patterns_ = int(prog.patterns.n_patterns)
        return self

    def _network_input(self, X) -> np.ndarray:
        return self._images(X, fitting=False)[0]

    def _fitted(self):
        if not hasattr(self, "network_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet; "
                                 "call fit first")
        return self

    def _meta_fields(self) -> dict:
        return {"input_shape": list(self.input_shape_), "flat": bool(self._flat)}


class ConvexCNNClassifier(ClassifierMixin, _ConvexCNNBase):
    """Convex CNN classifier; ``loss``: ``"cross_entropy"`` (default; one output per class,
    softmax) or ``"squared"`` (one-hot targets). See the module docstring."""

    def fit(self, X, y):
        Xa, y = self._images(X, y, fitting=True)
        loss = self.loss or "cross_entropy"
        if loss not in ("cross_entropy", "squared"):
            raise ValueError(f"loss must be 'cross_entropy' or 'squared', got {loss!r}")
        self.classes_, idx = check_class_labels(y, Xa.shape[0])
        return self._fit(Xa, np.eye(len(self.classes_))[idx], loss)

    def decision_function(self, X) -> np.ndarray:
        """Scores (N, c); (N,) margins (positive means ``classes_[1]``) for two classes."""
        Z = self._outputs(X)
        return Z[:, 1] - Z[:, 0] if Z.shape[1] == 2 else Z

    def predict(self, X) -> np.ndarray:
        Z = self._outputs(X)
        return self.classes_[Z.argmax(1)]

    def _has_proba(self) -> bool:
        return (self.loss or "cross_entropy") == "cross_entropy"

    @available_if(_has_proba)
    def predict_proba(self, X) -> np.ndarray:
        """Softmax of the outputs (``loss="cross_entropy"`` only)."""
        Z = torch.as_tensor(self._outputs(X))
        return torch.softmax(Z, 1).numpy()

    def _extra_state(self) -> dict:
        return {"classes": self.classes_.tolist()}


class ConvexCNNRegressor(RegressorMixin, _ConvexCNNBase):
    """Convex CNN regressor (squared loss); y (N,) or (N, c)."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y (N, c): one output per column
        return tags

    def fit(self, X, y):
        Xa, y = self._images(X, y, fitting=True, regressor=True)
        y = check_targets(y, Xa.shape[0])
        if (self.loss or "squared") != "squared":
            raise ValueError("ConvexCNNRegressor supports loss='squared' only")
        self._y_1d = y.ndim == 1
        return self._fit(Xa, y[:, None] if y.ndim == 1 else y, "squared")

    def predict(self, X) -> np.ndarray:
        Z = self._outputs(X)
        return Z[:, 0] if self._y_1d else Z

    def _extra_state(self) -> dict:
        return {"y_1d": bool(self._y_1d)}

