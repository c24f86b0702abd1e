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

After ``fit``: the attributes every estimator shares (:mod:`convexnn.estimators._base`):
``network_`` (the read-back non-convex network), ``certificate_`` (primal, dual, gap,
relative_gap, scope), ``history_`` (:class:`~convexnn.estimators._base.FitHistory`: objective,
gap, seconds per checkpoint), ``fit_info_``, ``n_iter_``, ``stop_reason_``, ``reg_``; and
``to_torch()``, ``save(path)``.
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
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
from ._base import ConvexClassifierMixin, ConvexEstimator, ConvexRegressorMixin, backend_errors
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
            with backend_errors(f"the {self.solver!r} solver",
                                "; the default solver='auto' (descent for ReLU, FISTA for "
                                "gated) needs no external solver"):
                res, extras = fit_two_layer(
                    Xa, Y, reg=self.reg, loss=self._loss_name(), activation=self.activation,
                    solver=self.solver, n_patterns=self.n_patterns, gates=self.gates,
                    gate_kind=self.gate_kind, fit_intercept=bool(self.fit_intercept),
                    tol=self.tol, max_iter=self.max_iter, max_time=self.max_time,
                    search_rounds=self.search_rounds, dtype=dtype, device=device,
                    random_state=self.random_state, verbose=self.verbose,
                    cvxpy_solver=self.cvxpy_solver)
            self.patterns_ = extras["patterns"]
            self.search_ = extras["search"]
            self.solver_ = extras["solver"]
            self._set_fitted(res, n_features=Xa.shape[1], reg=extras["reg"],
                             seconds=time.perf_counter() - t0,
                             stop_reason=extras["stop_reason"], n_iter=extras["n_iter"])
        else:
            res = self._fit_method(Xa, Y, dtype, device)
            self._set_fitted(res, n_features=Xa.shape[1], reg=float(self.reg),
                             seconds=time.perf_counter() - t0)
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
        with backend_errors(f"method {self.method!r}"):
            return fn(Xaug, Yt, float(self.reg), loss.name, intercept=bool(self.fit_intercept),
                      **{**kwargs, **options})

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
        Y = self._objective_targets(ya)
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


class ConvexReLURegressor(ConvexRegressorMixin, _ConvexTwoLayer):
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

    def fit(self, X, y):
        Xa, ya = check_X_y(X, y)
        return self._fit(Xa, self._encode_targets(ya, Xa.shape[0]))

    def _objective_targets(self, y) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        return y[:, None] if y.ndim == 1 else y


class ConvexReLUClassifier(ConvexClassifierMixin, _ConvexTwoLayer):
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

    def fit(self, X, y):
        Xa, ya = check_X_y(X, y, multi_output=False)
        return self._fit(Xa, self._encode_labels(ya, Xa.shape[0], fitting=True))

    def _objective_targets(self, y) -> np.ndarray:
        return self._encode_labels(y, len(y), fitting=False)
