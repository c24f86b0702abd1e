"""Estimators for path-regularised deep parallel ReLU networks trained by their convex program.

``ConvexParallelReLURegressor`` / ``ConvexParallelReLUClassifier`` fit
f(x) = Σ_k ( Σ_j (w_kjᵀ x + b_kj)_+ a_kj )_+ v_k  (``depth=3``, ``width`` = m neurons per
sub-network; ``depth=2``: f(x) = Σ_k (w_kᵀx + b_k)_+ v_k) with objective
``loss(f(X), Y) + reg · R(θ)``, R the l2 path norm per sub-network summed over sub-networks
(:mod:`convexnn.networks.parallel`); ``depth`` = L ≥ 4: every sub-network a tree of depth L
with branching ``width`` at every level (``width``^(L−2) first-layer neurons,
:class:`convexnn.networks.TreeParallelReLUNetwork`), by solving the exact convex program
(:mod:`convexnn.formulations.parallel`) over pattern blocks:

* ``patterns="search"`` (default): column generation (:mod:`convexnn.pipelines.parallel_cg`) —
  start from ``n_patterns`` sampled blocks, repeatedly add the blocks whose dual constraint a
  batched pattern search finds violated, re-solve (``search_rounds``, ``max_new``,
  ``n_starts``, ``max_time``);
* ``patterns="sample"``: the program over ``n_patterns`` sampled blocks only;
* ``patterns="enumerate"``: the program over every block (exact enumeration, for low-rank data
  or with ``rank=``; at most ``max_blocks`` blocks): the exact program, a *global* certificate.

``patterns`` was ``method`` (``"cg"``, ``"sampled"``, ``"exhaustive"``) and ``search_rounds``
was ``max_rounds``; the old names are deprecated aliases (``FutureWarning``).
``fit_intercept=True`` gives every first-layer neuron a bias (a ones column).
A non-default value of a parameter the configuration does not read is a ``ValueError`` naming
it: ``search_rounds`` / ``max_new`` (and ``n_starts`` unless ``reg=None``) outside
``patterns="search"``, ``max_blocks`` outside ``"enumerate"``, ``n_patterns`` / ``gate_kind``
with ``"enumerate"``, ``max_iter`` except with ``patterns="sample", solver="al"``,
``width`` > 1 with ``depth=2``, and with ``solver="cvxpy"`` ``tol`` (and ``max_time`` outside
``"search"``).

``reg=None`` (default): 0.1 · reg_max (regression) or 0.01 · reg_max (classification), the
fractions the two-layer estimators use, with reg_max the smallest ``reg`` whose optimum is the
zero network, estimated by the pattern search at the zero network
(:func:`convexnn.pipelines.parallel.reg_max`, ``n_starts`` starts per direction); the value
used is ``reg_``. The defaults
(``n_patterns=8``, ``search_rounds=4``, ``n_starts=64``, 8 new blocks per direction and round,
intermediate rounds solved to 1e-4) take 9–29 s of CPU on one thread on scikit-learn's
bundled datasets (standardised features; benchmarks/results/parallel.md).

``rank=r`` switches to the polynomial-time approximation (program on the rank-r truncation of
[X, 1]); its guarantee factor is reported in ``fit_info_['approximation']``.

Fitted attributes (those of every estimator, :mod:`convexnn.estimators._base`): ``network_``
(:class:`ParallelReLUNetwork`), ``certificate_`` (duality gap of the read-back network for the
program over the blocks used: optimal over those blocks, scope "sampled patterns"; no global
claim), ``history_``, ``n_iter_``, ``stop_reason_``, ``fit_info_`` (for ``"search"``: the rounds and
the last search's largest ⟨−Λ, g⟩/β — above 1 proves the network is not globally optimal),
``n_features_in_``, ``reg_``. The number K of sub-networks is chosen by the group sparsity of
the solution
(``network_.n_subnetworks``).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .._validation import (
    add_intercept,
    check_X,
    check_X_y,
    resolve_device,
    resolve_dtype,
    to_tensor,
)
from ..pipelines.parallel import fit_parallel, reg_max
from ._base import (
    DEPRECATED,
    ConvexClassifierMixin,
    ConvexEstimator,
    ConvexRegressorMixin,
    backend_errors,
)
from ._params import PARALLEL_PATTERNS, check_parallel_params

__all__ = ["ConvexParallelReLURegressor", "ConvexParallelReLUClassifier"]

_OLD_METHODS = {"cg": "search", "sampled": "sample", "exhaustive": "enumerate"}


def _patterns_of_method(method):
    return _OLD_METHODS.get(method, method)


def _same(value):
    return value


class _ParallelBase(ConvexEstimator):
    _aliases = {"method": ("patterns", _patterns_of_method),
                "max_rounds": ("search_rounds", _same)}

    def __init__(self, depth: int = 3, width: int = 2, reg: float | None = None,
                 n_patterns: int = 8, loss: str | None = None, random_state=None,
                 device: str = "cpu", dtype: str = "float64", solver: str = "auto",
                 tol: float = 1e-6, max_iter: int = 5000, max_time: float | None = None,
                 verbose: int = 0, rank: int | None = None, gate_kind: str = "gaussian",
                 patterns: str = "search", search_rounds: int = 4, max_new: int | None = None,
                 n_starts: int = 64, max_blocks: int = 20000, fit_intercept: bool = True,
                 method=DEPRECATED, max_rounds=DEPRECATED):
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
        self.patterns = patterns
        self.search_rounds = search_rounds
        self.max_new = max_new
        self.n_starts = n_starts
        self.max_blocks = max_blocks
        self.fit_intercept = fit_intercept
        self.method = method
        self.max_rounds = max_rounds

    def _start_fit(self) -> float:
        self._resolve_aliases()
        check_parallel_params(self)
        return time.perf_counter()

    def _fit(self, X, Yenc: np.ndarray, loss: str, t0: float):
        dt, dev = resolve_dtype(self.dtype), resolve_device(self.device)
        intercept = bool(self._param("fit_intercept"))
        Xt = to_tensor(X, dt, dev)
        Xt = add_intercept(Xt) if intercept else Xt
        Yt = to_tensor(Yenc, dt, dev)
        method = PARALLEL_PATTERNS[self._param("patterns")]
        # intermediate rounds to 1e-4 (only the final solve needs ``tol``); 8 new blocks per
        # residual direction and round
        cg = {"max_rounds": int(self._param("search_rounds")), "n_starts": int(self.n_starts),
              "round_tol": max(float(self.tol), 1e-4),
              "max_new": 16 * Yt.shape[1] if self.max_new is None else int(self.max_new)}
        reg = float(self.reg) if self.reg is not None else \
            self._REG_FRACTION * reg_max(Xt, Yt, loss, depth=int(self.depth),
                                         width=int(self.width), random_state=self.random_state,
                                         n_starts=int(self.n_starts))
        with backend_errors(f"the parallel program's {self.solver!r} solver",
                            "; solver='auto' needs no external solver"):
            res = fit_parallel(Xt, Yt, reg=reg, depth=int(self.depth),
                               width=int(self.width), n_patterns=int(self.n_patterns),
                               loss=loss, random_state=self.random_state, intercept=intercept,
                               rank=self.rank, method=method, solver=self.solver,
                               tol=float(self.tol), max_iter=int(self.max_iter),
                               max_time=self.max_time, verbose=int(self.verbose),
                               gate_kind=self.gate_kind,
                               cg_options=cg if method == "cg" else None,
                               max_blocks=int(self.max_blocks))
        self._set_fitted(res, n_features=X.shape[1], reg=reg,
                         seconds=time.perf_counter() - t0)
        self.loss_ = loss
        return self

    def _network_input(self, X) -> torch.Tensor:
        Xa = check_X(X, n_features=self.n_features_in_, owner=type(self).__name__)
        W = self.network_.first_layer_weights
        return torch.as_tensor(Xa, dtype=W.dtype, device=W.device)

    def _extra_state(self) -> dict:
        return {**super()._extra_state(), "loss": self.loss_}

    def _load_extra(self, extra: dict) -> None:
        super()._load_extra(extra)
        self.loss_ = str(extra["loss"])


class ConvexParallelReLURegressor(ConvexRegressorMixin, _ParallelBase):
    """Path-regularised parallel ReLU regression (squared loss) by its convex program."""

    _REG_FRACTION = 0.1

    def fit(self, X, y):
        t0 = self._start_fit()
        if self.loss not in (None, "auto", "squared"):
            raise ValueError(f"the regressor uses the squared loss, got loss={self.loss!r}")
        Xa, ya = check_X_y(X, y)
        return self._fit(Xa, self._encode_targets(ya, Xa.shape[0]), "squared", t0)


class ConvexParallelReLUClassifier(ConvexClassifierMixin, _ParallelBase):
    """Path-regularised parallel ReLU classifier: logistic loss for two classes, cross-entropy
    (one output per class, single-output sub-networks) for more; ``loss="squared"`` regresses
    one-hot targets."""

    _REG_FRACTION = 0.01

    def _loss_name(self) -> str:
        if self.loss == "auto":  # the former default, same as None
            return self._default_loss(len(getattr(self, "classes_", ())))
        return super()._loss_name()

    def fit(self, X, y):
        t0 = self._start_fit()
        Xa, ya = check_X_y(X, y, multi_output=False)
        Y = self._encode_labels(ya, Xa.shape[0], fitting=True)
        return self._fit(Xa, Y, self._loss_name(), t0)
