"""scikit-learn estimators for two-layer ReLU / gated-ReLU networks trained by convex programs.

The fitted model minimises (papers' convention, loss summed over samples)

    loss(f(X), Y) + (reg/2) (||W1||_F² + ||b1||² + ||W2||_F²)

over two-layer networks f(x) = W2 relu(W1 x + b1) (``fit_intercept=True`` appends a ones column:
the bias is regularised like the weights; there is no output offset). ``method`` selects the
convex model:

* ``"convex"`` (default): the convex program over sampled activation patterns
  (:mod:`convexnn.formulations.two_layer`); certificate scope "sampled patterns".
* ``"exact"`` (global optimum for low-rank data, certificate scope "global"), ``"svd"``
  (soft-thresholded SVD, conditions checked), ``"relaxation"`` (copositive relaxation: lower
  bound, read-back network, tightness), ``"column_generation"`` (active-set over sampled
  patterns): the vector-output copositive methods of :mod:`convexnn.formulations.copositive`;
  ``"sdp"``: the completely positive program's SDP relaxation
  (:mod:`convexnn.formulations.sdp`). ``method_options`` passes extra keyword arguments to them
  (e.g. ``{"on_violation": "warn"}`` for ``"svd"``).

After ``fit``: ``network_`` (the read-back non-convex network), ``certificate_`` (primal, dual,
gap, relative_gap, scope), ``history_`` (per-checkpoint objective, gap, seconds), ``to_torch()``.
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from .._validation import (
    add_intercept,
    check_X,
    check_X_y,
    resolve_device,
    resolve_dtype,
    to_tensor,
)
from ..losses import get_loss
from ..networks import TwoLayerNetwork
from ..pipelines.two_layer import fit_two_layer
from ..results import FitResult
from ._base import ConvexEstimator
from ._params import METHODS, backend, check_two_layer_params
from .io import load_estimator

__all__ = ["ConvexReLURegressor", "ConvexReLUClassifier", "load_estimator", "METHODS"]

class _ConvexTwoLayer(ConvexEstimator):
    """Shared fitting logic; see the module docstring."""

    _loss_default = "squared"

    def __init__(self, reg: float | None = None, *, n_patterns: int | None = None,
                 activation: str = "relu", method: str = "convex", fit_intercept: bool = True,
                 gate_kind: str = "data", gates=None, solver: str = "auto", tol: float = 1e-6,
                 max_iter: int = 10000, max_time: float | None = None, device: str = "cpu",
                 dtype: str = "float64", random_state=None, verbose: int = 0,
                 cvxpy_solver: str | None = None, method_options: dict | None = None,
                 search_rounds: int | None = None, warn_gap: float | None = 0.5):
        self.reg = reg
        self.n_patterns = n_patterns
        self.activation = activation
        self.method = method
        self.fit_intercept = fit_intercept
        self.gate_kind = gate_kind
        self.gates = gates
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.max_time = max_time
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose
        self.cvxpy_solver = cvxpy_solver
        self.method_options = method_options
        self.search_rounds = search_rounds
        self.warn_gap = warn_gap

    # ------------------------------------------------------------------ checks
    def _path(self) -> str:
        if self.method != "convex":
            return self.method
        if self.activation == "relu" and self.gates is None and self.solver in (
                "auto", "descent"):
            return "descent"
        return "program"

    def _check_params(self) -> None:
        check_two_layer_params(self)

    def _loss_name(self) -> str:
        return self._loss_default

    # --------------------------------------------------------------------- fit
    def _fit(self, Xa: np.ndarray, Y: np.ndarray):
        self._check_params()
        get_loss(self._loss_name())
        dtype, device = resolve_dtype(self.dtype), resolve_device(self.device)
        t0 = time.perf_counter()
        if self.method == "convex":
            if self.gates is not None:
                G = np.asarray(self.gates, dtype=np.float64)
                d = Xa.shape[1] + bool(self.fit_intercept)
                if G.ndim != 2 or G.shape[0] != d or G.shape[1] == 0:
                    raise ValueError(f"gates must have shape ({d}, P) (features"
                                     f"{' + 1 for the intercept' if self.fit_intercept else ''}"
                                     f" x patterns), got {G.shape}")
                if not np.isfinite(G).all():
                    raise ValueError("gates contain NaN or infinity")
            try:
                res, extras = fit_two_layer(
                    Xa, Y, reg=self.reg, loss=self._loss_name(), activation=self.activation,
                    solver=self.solver, n_patterns=self.n_patterns, gates=self.gates,
                    gate_kind=self.gate_kind, fit_intercept=bool(self.fit_intercept),
                    tol=self.tol, max_iter=self.max_iter, max_time=self.max_time,
                    search_rounds=self.search_rounds, dtype=dtype, device=device,
                    random_state=self.random_state, verbose=self.verbose,
                    cvxpy_solver=self.cvxpy_solver)
            except (ValueError, TypeError, MemoryError):
                raise
            except Exception as err:  # a backend's failure, never a raw third-party error
                raise RuntimeError(
                    f"the {self.solver!r} solver failed on this problem "
                    f"({type(err).__name__}: {err}); the default solver='auto' "
                    "(descent for ReLU, FISTA for gated) needs no external solver") from err
            self.reg_ = extras["reg"]
            self.patterns_ = extras["patterns"]
            self.stop_reason_ = extras["stop_reason"]
            self.n_iter_ = extras["n_iter"]
            self.search_ = extras["search"]
            self.solver_ = extras["solver"]
        else:
            res = self._fit_method(Xa, Y, dtype, device)
            self.reg_ = float(self.reg)
        self.fit_time_ = time.perf_counter() - t0
        self.network_ = res.network
        self.certificate_ = res.certificate
        self.history_ = res.history.as_dict()
        self.fit_info_ = res.info
        self.n_features_in_ = Xa.shape[1]
        self._warn_certificate()
        return self

    def _fit_method(self, Xa: np.ndarray, Y: np.ndarray, dtype, device) -> FitResult:
        if self.reg is None:
            raise ValueError(f"method={self.method!r} needs an explicit reg (weight decay)")
        loss = get_loss(self._loss_name())
        X = to_tensor(Xa, dtype, device)
        Yt = to_tensor(Y, dtype, device)
        Xaug = add_intercept(X) if self.fit_intercept else X
        fn = backend(self.method)
        accepted = inspect.signature(fn).parameters
        common = {"random_state": self.random_state, "tol": self.tol,
                  "max_time": self.max_time, "verbose": self.verbose,
                  "n_patterns": self.n_patterns, "max_iter": self.max_iter}
        if self.solver != "auto":
            common["solver"] = self.solver
        if self.cvxpy_solver is not None:
            common["cvxpy_solver" if "cvxpy_solver" in accepted else "solver"] = \
                self.cvxpy_solver
        kwargs = {k: v for k, v in common.items() if k in accepted and v is not None}
        options = dict(self.method_options or {})
        unknown = set(options) - set(accepted)
        if unknown:
            raise ValueError(f"method {self.method!r} does not take options "
                             f"{sorted(unknown)}; it takes {sorted(accepted)}")
        try:
            return fn(Xaug, Yt, float(self.reg), loss.name, intercept=bool(self.fit_intercept),
                      **{**kwargs, **options})
        except (ValueError, TypeError, MemoryError):
            raise
        except Exception as err:
            raise RuntimeError(f"method {self.method!r} failed on this problem "
                               f"({type(err).__name__}: {err})") from err

    def _warn_certificate(self) -> None:
        cert = self.certificate_
        if not (math.isfinite(cert.primal) and math.isfinite(cert.dual)):
            raise RuntimeError(f"the fit produced a non-finite certificate ({cert.primal}, "
                               f"{cert.dual}); the data may be degenerate")
        if self.warn_gap is not None and cert.relative_gap > self.warn_gap:
            warnings.warn(f"the certified relative gap is {cert.relative_gap:.3g} (> warn_gap="
                          f"{self.warn_gap}): the network is only proven within that factor of "
                          f"the optimum of {cert.problem!r}; raise max_time, or set warn_gap",
                          ConvergenceWarning, stacklevel=3)

    # ----------------------------------------------------------------- predict
    def _network_input(self, X) -> torch.Tensor:
        Xa = check_X(X, n_features=self.n_features_in_, owner=type(self).__name__)
        W = self.network_.first_layer_weights
        return to_tensor(Xa, W.dtype, W.device)

    def objective(self, X, y) -> float:
        """Non-convex training objective of the fitted network on (X, y)."""
        check_is_fitted(self, "network_")
        Xa, ya = check_X_y(X, y)
        Y = self._encode_targets(ya, fitting=False)
        return self.network_.objective(Xa, Y, float(self.reg_), self._loss_name())

    # --------------------------------------------------------------------- I/O
    def save(self, path: str | Path) -> None:
        """Save the fitted model: network arrays in ``path`` (.npz) + ``path``.json metadata.

        Loading executes no code (no pickle): see :func:`load_estimator`.
        """
        check_is_fitted(self, "network_")
        if not isinstance(self.network_, TwoLayerNetwork):
            raise TypeError("save() supports two-layer networks only")
        super().save(path)

    def _saved_params(self) -> dict:
        return {k: v for k, v in self.get_params().items() if k != "gates"}

    def _extra_state(self) -> dict:
        return {"reg": float(self.reg_)}

    def _load_extra(self, extra: dict) -> None:
        self.reg_ = float(extra.get("reg", self.reg if self.reg is not None else math.nan))


class ConvexReLURegressor(RegressorMixin, _ConvexTwoLayer):
    """Two-layer ReLU regression trained to the optimum of its convex program (squared loss).

    Parameters
    ----------
    reg : weight decay β > 0 (user units; the loss is summed over samples).
    n_patterns : number of gate vectors sampled (distinct patterns kept).
    activation : ``"relu"`` (cone-constrained program) or ``"gated"`` (gated ReLU network).
    method : ``"convex"`` or a registered method (``"exact"``, ``"svd"``, ``"relaxation"``,
        ``"sdp"``).
    fit_intercept : give the first layer a (regularised) bias via a ones column.
    gate_kind : ``"data"`` (scale-aware hyperplanes through data midpoints) or ``"gaussian"``.
    gates : optional user gates, shape (n_features [+1], P); overrides sampling.
    solver : ``"auto"``, ``"admm"``, ``"fista"`` (gated), ``"al"``, ``"active_set"`` (ReLU),
        ``"cvxpy"`` — see :func:`convexnn.formulations.two_layer.solve`.
    search_rounds : rounds of pattern search (column generation,
        :func:`convexnn.formulations.two_layer.solve_with_search`): after each solve, the
        patterns whose dual constraint a local search finds violated, and the read-back
        network's own patterns, join the program, which is re-solved warm. 0 disables it.
        The certificate is then optimal over the patterns sampled *and found*
        (``search_`` records each round).
    tol : stop when the certified relative duality gap is ≤ tol.
    max_iter, max_time : iteration and wall-clock limits (the reason is in ``stop_reason_``).
    device, dtype : torch device (``"cpu"``, ``"cuda"``) and ``"float32"`` / ``"float64"``.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _encode_targets(self, y: np.ndarray, fitting: bool) -> np.ndarray:
        ya = y.astype(np.float64)
        if not np.isfinite(ya).all():
            raise ValueError("y contains NaN or infinity")
        if fitting:
            self._y_1d = ya.ndim == 1
        return ya[:, None] if ya.ndim == 1 else ya

    def fit(self, X, y):
        Xa, ya = check_X_y(X, y)
        return self._fit(Xa, self._encode_targets(ya, fitting=True))

    def predict(self, X) -> np.ndarray:
        Z = self._outputs(X)
        return Z[:, 0] if getattr(self, "_y_1d", False) else Z

    def _extra_state(self) -> dict:
        return {**super()._extra_state(), "y_1d": bool(self._y_1d)}

    def _load_extra(self, extra: dict) -> None:
        super()._load_extra(extra)
        self._y_1d = bool(extra["y_1d"])


class ConvexReLUClassifier(ClassifierMixin, _ConvexTwoLayer):
    """Two-layer ReLU classifier trained to the optimum of its convex program.

    ``loss``: ``"cross_entropy"`` (softmax over one output per class, default), ``"logistic"``
    (binary problems; one output) or ``"squared"`` (one-hot targets, as in the papers'
    vector-output experiments). Other parameters as in :class:`ConvexReLURegressor`.
    """

    def __init__(self, reg: float | None = None, *, loss: str | None = None,
                 n_patterns: int | None = None, activation: str = "relu", method: str = "convex",
                 fit_intercept: bool = True, gate_kind: str = "data", gates=None,
                 solver: str = "auto", tol: float = 1e-6, max_iter: int = 10000,
                 max_time: float | None = None, device: str = "cpu", dtype: str = "float64",
                 random_state=None, verbose: int = 0, cvxpy_solver: str | None = None,
                 method_options: dict | None = None, search_rounds: int | None = None,
                 warn_gap: float | None = 0.5):
        super().__init__(reg, n_patterns=n_patterns, activation=activation, method=method,
                         fit_intercept=fit_intercept, gate_kind=gate_kind, gates=gates,
                         solver=solver, tol=tol, max_iter=max_iter, max_time=max_time,
                         device=device, dtype=dtype, random_state=random_state,
                         verbose=verbose, cvxpy_solver=cvxpy_solver,
                         method_options=method_options, search_rounds=search_rounds,
                         warn_gap=warn_gap)
        self.loss = loss

    def _loss_name(self) -> str:
        if self.loss is not None:
            return self.loss
        return "logistic" if len(getattr(self, "classes_", ())) == 2 else "cross_entropy"

    def _encode_targets(self, y: np.ndarray, fitting: bool) -> np.ndarray:
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn("A column-vector y was passed when a 1d array was expected; it is "
                          "flattened", DataConversionWarning, stacklevel=3)
            y = y.ravel()
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D class labels, got shape {y.shape}")
        if fitting:
            if self.loss is not None:
                get_loss(self.loss)  # unknown loss → clear error
            check_classification_targets(y)  # continuous targets → "Unknown label type"
            enc = LabelEncoder().fit(y)
            self.classes_ = enc.classes_
            if len(self.classes_) < 2:
                raise ValueError(f"y has only one class ({self.classes_[0]!r}); a classifier "
                                 "needs at least two")
            if self._loss_name() == "logistic" and len(self.classes_) != 2:
                raise ValueError(f"loss='logistic' is binary; y has {len(self.classes_)} "
                                 "classes (use loss='cross_entropy')")
        idx = np.searchsorted(self.classes_, y)
        if (idx >= len(self.classes_)).any() or (self.classes_[np.minimum(
                idx, len(self.classes_) - 1)] != y).any():
            raise ValueError("y contains labels not seen during fit")
        if self._loss_name() == "logistic":
            return (2.0 * idx - 1.0)[:, None]
        return np.eye(len(self.classes_))[idx]

    def fit(self, X, y):
        Xa, ya = check_X_y(X, y, multi_output=False)
        return self._fit(Xa, self._encode_targets(ya, fitting=True))

    def decision_function(self, X) -> np.ndarray:
        """Scores: (n,) for binary problems (positive means ``classes_[1]``), else (n, c)."""
        Z = self._outputs(X)
        if Z.shape[1] == 1:
            return Z[:, 0]
        return Z[:, 1] - Z[:, 0] if Z.shape[1] == 2 else Z

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities: the sigmoid / softmax of the network's outputs.

        For ``loss="squared"`` the outputs regress one-hot targets and their softmax is only a
        monotone score, not a calibrated probability.
        """
        Z = self._outputs(X)
        if self._loss_name() == "logistic":
            p = 1.0 / (1.0 + np.exp(-Z[:, 0]))
            return np.stack([1 - p, p], axis=1)
        Z = Z - Z.max(axis=1, keepdims=True)
        E = np.exp(Z)
        return E / E.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        Z = self._outputs(X)
        if self._loss_name() == "logistic":
            return self.classes_[(Z[:, 0] >= 0).astype(int)]
        return self.classes_[np.argmax(Z, axis=1)]

    def _extra_state(self) -> dict:
        return {**super()._extra_state(), "classes": self.classes_.tolist()}

    def _load_extra(self, extra: dict) -> None:
        super()._load_extra(extra)
        self.classes_ = np.asarray(extra["classes"])

