"""scikit-learn estimators for two-layer convex CNNs (Ergen & Pilanci, ICLR 2021).

``ConvexCNNClassifier`` / ``ConvexCNNRegressor`` fit conv → ReLU → pooling → Flatten → Linear
by solving a convex program (see :mod:`convexnn.formulations.cnn` for what is exact):

* ``program="cone"`` (default): :class:`~convexnn.formulations.cnn.ConvTwoLayerProgram`, the
  paper's cone-constrained group lasso over sampled (or, ``patterns="enumerate"``, all) patch
  patterns — exact for a single pooled output (global average pooling) and a scalar target;
  otherwise the output-separable restriction (every filter feeds one pooled output and one
  class); ``activation="gated"`` gives the group nuclear-norm program, exact for the gated
  CNN. Solved by ADMM with cutting planes over the cone rows (``solver="auto"``).
* ``program="shared"``: :class:`~convexnn.formulations.cnn.ConvSharedFilterProgram`, filters
  fixed at the gate directions and shared by every output (group lasso on the output weights;
  also a restriction of the exact program) — usually much better than the output-separable
  program for many classes or local pooling, given many patterns. ReLU only.

Images are (N, C, H, W) (or (N, H, W) for one channel). The objective is the papers' convention:
loss summed over samples + (reg/2)·(||filters||² + ||biases||² + ||linear||²), ``reg`` in those
units. ``network_`` is the read-back :class:`convexnn.networks_cnn.ConvNetwork`,
``certificate_`` its duality-gap certificate, ``history_`` the solver trace.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from .._validation import check_positive_int, check_reg, resolve_device, resolve_dtype, to_tensor
from ..formulations.cnn import ConvSharedFilterProgram, ConvTwoLayerProgram
from ..patches import POOLINGS, enumerate_patch_patterns, sample_patch_gates
from ..pipelines.cnn import solve
from ..results import FitResult

__all__ = ["ConvexCNNClassifier", "ConvexCNNRegressor", "check_images"]


def check_images(X, *, shape: tuple | None = None) -> np.ndarray:
    """A finite float array (N, C, H, W); (N, H, W) gains a channel axis."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if hasattr(X, "toarray") and not isinstance(X, np.ndarray):
        raise TypeError("images: sparse input is not supported")
    arr = np.asarray(X)
    if arr.dtype == object or arr.dtype.kind not in "fiub":
        raise ValueError(f"images must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W) or (N, H, W), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError("images is empty: got 0 samples")
    if not np.isfinite(arr).all():
        raise ValueError("images contain NaN or infinity")
    if shape is not None and tuple(arr.shape[1:]) != tuple(shape):
        raise ValueError(f"images have shape {arr.shape[1:]} per sample, but the estimator was "
                         f"fitted on {tuple(shape)}")
    return arr


class _ConvexCNNBase(BaseEstimator):
    _default_loss = "squared"

    def __init__(self, kernel_size=3, stride=1, padding=0, pooling="avg", pool_size=None,
                 reg=1e-3, n_patterns=100, activation="relu", loss=None, patterns="sample",
                 gate_kind="gaussian", intercept=True, random_state=None, device="cpu",
                 dtype="float64", solver="auto", tol=1e-4, max_iter=2000, max_time=None,
                 verbose=0, program="cone"):
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

    # ---------------------------------------------------------------- fitting
    def _validate_params(self) -> None:
        check_positive_int(self.kernel_size, "kernel_size")
        check_positive_int(self.stride, "stride")
        if isinstance(self.padding, bool) or not isinstance(self.padding, (int, np.integer)) \
                or self.padding < 0:
            raise ValueError(f"padding must be an integer >= 0, got {self.padding!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.pool_size is not None:
            check_positive_int(self.pool_size, "pool_size")
        check_reg(self.reg)
        check_positive_int(self.n_patterns, "n_patterns")
        if self.activation not in ("relu", "gated"):
            raise ValueError(f"activation must be 'relu' or 'gated', got {self.activation!r}")
        if self.patterns not in ("sample", "enumerate"):
            raise ValueError(f"patterns must be 'sample' or 'enumerate', got {self.patterns!r}")
        if self.program not in ("cone", "shared"):
            raise ValueError(f"program must be 'cone' or 'shared', got {self.program!r}")
        if self.program == "shared" and self.activation != "relu":
            raise ValueError("program='shared' is a ReLU program; use activation='relu'")
        check_positive_int(self.max_iter, "max_iter")
        if not (isinstance(self.tol, (float, int)) and self.tol > 0):
            raise ValueError(f"tol must be > 0, got {self.tol!r}")

    def _fit(self, X, Yenc: np.ndarray, loss: str):
        self._validate_params()
        dt, dev = resolve_dtype(self.dtype), resolve_device(self.device)
        Xt = to_tensor(X, dt, dev)
        Yt = to_tensor(Yenc, dt, dev)
        k = int(self.kernel_size)
        H, W = X.shape[2:]
        if (H + 2 * self.padding - k) // self.stride + 1 < 1 or \
                (W + 2 * self.padding - k) // self.stride + 1 < 1:
            raise ValueError(f"kernel_size={k} (padding={self.padding}) does not fit images of "
                             f"size {H}x{W}")
        common = dict(kernel_size=k, stride=int(self.stride), padding=int(self.padding),
                      intercept=bool(self.intercept))
        if self.patterns == "enumerate":
            pats = enumerate_patch_patterns(Xt, **common)
        else:
            pats = sample_patch_gates(Xt, int(self.n_patterns), random_state=self.random_state,
                                      kind=self.gate_kind, **common)
        if self.program == "shared":
            prog = ConvSharedFilterProgram(Xt, Yt, pats, float(self.reg), loss,
                                           pooling=self.pooling, pool_size=self.pool_size,
                                           **common)
        else:
            prog = ConvTwoLayerProgram(Xt, Yt, pats, float(self.reg), loss, self.activation,
                                       pooling=self.pooling, pool_size=self.pool_size, **common)
        x, cert, res = solve(prog, solver=self.solver, tol=float(self.tol),
                             max_iter=int(self.max_iter), max_time=self.max_time,
                             verbose=int(self.verbose))
        self.network_ = prog.to_network(x)
        self.certificate_ = cert
        self.history_ = res.history
        self.stop_reason_ = res.stop_reason
        self.fit_result_ = FitResult(self.network_, cert, res.history,
                                     {"stop_reason": res.stop_reason, "n_iter": res.n_iter,
                                      "seconds": res.seconds, "problem": prog.description(),
                                      "n_patterns": prog.P})
        self.input_shape_ = tuple(X.shape[1:])
        self.n_patterns_ = prog.P
        return self

    def decision_function(self, X) -> np.ndarray:
        """Raw network outputs (N, c) (c = 1 squeezed for scalar regression)."""
        Xa = check_images(X, shape=self._fitted().input_shape_)
        with torch.no_grad():
            Z = self.network_.forward(Xa)
        return Z.detach().cpu().numpy()

    def _fitted(self):
        if not hasattr(self, "network_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit first")
        return self

    def to_torch(self) -> torch.nn.Module:
        """``nn.Sequential(Conv2d, ReLU, pooling, Flatten, Linear)`` with the same outputs."""
        return self._fitted().network_.to_torch()


class ConvexCNNClassifier(ClassifierMixin, _ConvexCNNBase):
    """Two-layer convex CNN classifier; ``loss``: ``"cross_entropy"`` (default; one output per
    class, softmax) or ``"squared"`` (one-hot targets). See the module docstring."""

    def fit(self, X, y):
        Xa = check_images(X)
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != Xa.shape[0]:
            raise ValueError(f"y must be 1-D with {Xa.shape[0]} labels, got shape {y.shape}")
        self.classes_, idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("need at least two classes to fit a classifier")
        loss = self.loss or "cross_entropy"
        if loss not in ("cross_entropy", "squared"):
            raise ValueError(f"loss must be 'cross_entropy' or 'squared', got {loss!r}")
        Yenc = np.eye(len(self.classes_))[idx]
        return self._fit(Xa, Yenc, loss)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.decision_function(X).argmax(1)]

    def predict_proba(self, X) -> np.ndarray:
        if (self.loss or "cross_entropy") != "cross_entropy":
            raise AttributeError("predict_proba needs loss='cross_entropy'")
        Z = torch.as_tensor(self.decision_function(X))
        return torch.softmax(Z, 1).numpy()


class ConvexCNNRegressor(RegressorMixin, _ConvexCNNBase):
    """Two-layer convex CNN regressor (squared loss); y (N,) or (N, c)."""

    def fit(self, X, y):
        Xa = check_images(X)
        y = np.asarray(y, dtype=np.float64)
        if y.ndim not in (1, 2) or y.shape[0] != Xa.shape[0]:
            raise ValueError(f"y must be (N,) or (N, c) with N = {Xa.shape[0]}, got {y.shape}")
        if not np.isfinite(y).all():
            raise ValueError("y contains NaN or infinity")
        if (self.loss or "squared") != "squared":
            raise ValueError("ConvexCNNRegressor supports loss='squared' only")
        self._y_1d = y.ndim == 1
        return self._fit(Xa, y[:, None] if y.ndim == 1 else y, "squared")

    def predict(self, X) -> np.ndarray:
        Z = self.decision_function(X)
        return Z[:, 0] if self._y_1d else Z
