"""Estimators for path-regularised deep parallel ReLU networks trained by their convex program.

``ConvexParallelReLURegressor`` / ``ConvexParallelReLUClassifier`` fit
f(x) = Σ_k ( Σ_j (w_kjᵀ x + b_kj)_+ a_kj )_+ v_k  (``depth=3``, ``width`` = m neurons per
sub-network; ``depth=2``: f(x) = Σ_k (w_kᵀx + b_k)_+ v_k) with objective
``loss(f(X), Y) + reg · R(θ)``, R the l2 path norm per sub-network summed over sub-networks
(:mod:`convexnn.networks_parallel`), by solving the exact convex program
(:mod:`convexnn.formulations.parallel`) over pattern blocks:

* ``method="cg"`` (default): column generation (:mod:`convexnn.pipelines.parallel_cg`) —
  start from ``n_patterns`` sampled blocks, repeatedly add the blocks whose dual constraint a
  batched pattern search finds violated, re-solve (``max_rounds``, ``max_new``, ``n_starts``,
  ``max_time``);
* ``method="sampled"``: the program over ``n_patterns`` sampled blocks only;
* ``method="exhaustive"``: the program over every block (exact enumeration, for low-rank data
  or with ``rank=``; at most ``max_blocks`` blocks): the exact program, a *global* certificate.

``reg=None`` (default): 0.1 · reg_max (regression) or 0.01 · reg_max (classification), the
fractions the two-layer estimators use, with reg_max the smallest ``reg`` whose optimum is the
zero network, estimated by the pattern search at the zero network
(:func:`convexnn.pipelines.parallel.reg_max`); the value used is ``reg_``. The defaults
(``n_patterns=8``, ``max_rounds=4``, ``n_starts=64``, 8 new blocks per direction and round,
intermediate rounds solved to 1e-4) take 9–29 s of CPU on one thread on scikit-learn's
bundled datasets (standardised features; benchmarks/results/parallel.md).

``rank=r`` switches to the polynomial-time approximation (program on the rank-r truncation of
[X, 1]); its guarantee factor is reported in ``fit_info_['approximation']``.

Fitted attributes: ``network_`` (:class:`ParallelReLUNetwork`), ``certificate_`` (duality gap of
the read-back network for the program over the blocks used: optimal over those blocks, scope
"sampled patterns"; no global claim), ``history_``, ``fit_info_`` (for ``"cg"``: the rounds and
the last search's largest ⟨−Λ, g⟩/β — above 1 proves the network is not globally optimal),
``n_features_in_``, ``reg_``. The number K of sub-networks is chosen by the group sparsity of
the solution
(``network_.n_subnetworks``).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets

from .._validation import (
    add_intercept,
    check_X,
    check_X_y,
    resolve_device,
    resolve_dtype,
    to_tensor,
)
from ..pipelines.parallel import fit_parallel, reg_max
from ._base import ConvexEstimator
from ._params import check_parallel_params

__all__ = ["ConvexParallelReLURegressor", "ConvexParallelReLUClassifier"]


class _ParallelBase(ConvexEstimator):
    def __init__(self, depth: int = 3, width: int = 2, reg: float | None = None,
                 n_patterns: int = 8, loss: str = "auto", random_state=None,
                 device: str = "cpu", dtype: str = "float64", solver: str = "auto",
                 tol: float = 1e-6, max_iter: int = 5000, max_time: float | None = None,
                 verbose: int = 0, rank: int | None = None, gate_kind: str = "gaussian",
                 method: str = "cg", max_rounds: int = 4, max_new: int | None = None,
                 n_starts: int = 64, max_blocks: int = 20000):
        self.depth = depth
        self.width = width
        self.reg = reg
        self.n_patterns = n_patterns
        self.loss = loss
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.max_time = max_time
        self.verbose = verbose
        self.rank = rank
        self.gate_kind = gate_kind
        self.method = method
        self.max_rounds = max_rounds
        self.max_new = max_new
        self.n_starts = n_starts
        self.max_blocks = max_blocks

    def _check_params(self) -> None:
        check_parallel_params(self)

    def _fit(self, X, Yenc: np.ndarray, loss: str):
        self._check_params()
        dt, dev = resolve_dtype(self.dtype), resolve_device(self.device)
        Xt = add_intercept(to_tensor(X, dt, dev))
        Yt = to_tensor(Yenc, dt, dev)
        # intermediate rounds to 1e-4 (only the final solve needs ``tol``); 8 new blocks per
        # residual direction and round
        cg = {"max_rounds": int(self.max_rounds), "n_starts": int(self.n_starts),
              "round_tol": max(float(self.tol), 1e-4),
              "max_new": 16 * Yt.shape[1] if self.max_new is None else int(self.max_new)}
        self.reg_ = float(self.reg) if self.reg is not None else \
            self._REG_FRACTION * reg_max(Xt, Yt, loss, depth=int(self.depth),
                                         width=int(self.width), random_state=self.random_state)
        res = fit_parallel(Xt, Yt, reg=self.reg_, depth=int(self.depth),
                           width=int(self.width), n_patterns=int(self.n_patterns), loss=loss,
                           random_state=self.random_state, intercept=True, rank=self.rank,
                           method=self.method, solver=self.solver, tol=float(self.tol),
                           max_iter=int(self.max_iter), max_time=self.max_time,
                           verbose=int(self.verbose), gate_kind=self.gate_kind,
                           cg_options=cg if self.method == "cg" else None,
                           max_blocks=int(self.max_blocks))
        self.network_ = res.network
        self.certificate_ = res.certificate
        self.history_ = res.history
        self.fit_info_ = res.info
        self.loss_ = loss
        self.n_features_in_ = X.shape[1]
        return self

    def _network_input(self, X) -> torch.Tensor:
        Xa = check_X(X, n_features=self.n_features_in_)
        W = self.network_.first_layer_weights
        return torch.as_tensor(Xa, dtype=W.dtype, device=W.device)


class ConvexParallelReLURegressor(RegressorMixin, _ParallelBase):
    """Path-regularised parallel ReLU regression (squared loss) by its convex program."""

    _REG_FRACTION = 0.1

    def fit(self, X, y):
        Xa, ya = check_X_y(X, y)
        if not np.isfinite(ya.astype(np.float64)).all():
            raise ValueError("y contains NaN or infinity")
        if self.loss not in ("auto", "squared"):
            raise ValueError(f"the regressor uses the squared loss, got loss={self.loss!r}")
        self._y_1d = ya.ndim == 1
        Y = ya.reshape(len(ya), -1).astype(np.float64)
        return self._fit(Xa, Y, "squared")

    def predict(self, X) -> np.ndarray:
        Z = self._outputs(X)
        return Z[:, 0] if self._y_1d else Z


class ConvexParallelReLUClassifier(ClassifierMixin, _ParallelBase):
    """Path-regularised parallel ReLU classifier: logistic loss for two classes, cross-entropy
    (one output per class, single-output sub-networks) for more."""

    _REG_FRACTION = 0.01

    def fit(self, X, y):
        Xa, ya = check_X_y(X, y, multi_output=False)
        ya = ya.ravel()
        check_classification_targets(ya)
        self.classes_ = np.unique(ya)
        k = len(self.classes_)
        if k < 2:
            raise ValueError(f"need at least 2 classes, got {k}")
        idx = np.searchsorted(self.classes_, ya)
        loss = self.loss
        if loss == "auto":
            loss = "logistic" if k == 2 else "cross_entropy"
        if loss == "logistic":
            if k != 2:
                raise ValueError("loss='logistic' needs exactly 2 classes")
            Y = np.where(idx == 1, 1.0, -1.0)[:, None]
        elif loss == "cross_entropy":
            Y = np.eye(k)[idx]
        elif loss == "squared":
            Y = np.where(idx == 1, 1.0, -1.0)[:, None] if k == 2 else np.eye(k)[idx]
        else:
            raise ValueError(f"unknown loss {loss!r}")
        return self._fit(Xa, Y, loss)

    def decision_function(self, X) -> np.ndarray:
        Z = self._outputs(X)
        return Z[:, 0] if Z.shape[1] == 1 else Z

    def predict_proba(self, X) -> np.ndarray:
        Z = torch.as_tensor(self._outputs(X))
        if Z.shape[1] == 1:
            p = torch.sigmoid(Z[:, 0]).detach().cpu().numpy()
            return np.stack([1 - p, p], 1)
        return torch.softmax(Z, 1).detach().cpu().numpy()

    def predict(self, X) -> np.ndarray:
        Z = self._outputs(X)
        idx = (Z[:, 0] > 0).astype(int) if Z.shape[1] == 1 else Z.argmax(1)
        return self.classes_[idx]
