"""``reg`` chosen by cross-validation along warm-started paths (the default ReLU fit).

``ConvexReLURegressorCV`` / ``ConvexReLUClassifierCV`` fit one regularisation path per fold
(:mod:`convexnn.pipelines.two_layer_path`: decreasing reg, each fit warm-started from the
previous network), score every reg on the held-out fold (R² / accuracy), pick the best mean
score and refit ``ConvexReLURegressor`` / ``ConvexReLUClassifier`` at that reg on all the data.

After ``fit``: ``reg_`` (chosen), ``regs_`` (the grid, user units), ``cv_scores_``
(n_folds x n_regs), ``best_estimator_`` (the refit), and the attributes every estimator has
(:mod:`convexnn.estimators._base`), taken from the refit: ``network_``, ``certificate_``,
``history_``, ``fit_info_``, ``n_iter_``, ``stop_reason_``; ``fit_time_`` is the whole ``fit``.
``to_torch()``, ``save(path)`` and :func:`convexnn.load_estimator` as for every estimator (the
file keeps ``reg_``, ``regs_``, ``cv_scores_``; the loaded ``best_estimator_`` holds the network).
"""

from __future__ import annotations

import numbers
import time

import numpy as np
import torch
from sklearn.model_selection import check_cv

from .._validation import check_X, check_X_y, to_tensor
from ..pipelines.two_layer_path import cv_path_scores, reg_grid
from ._base import ConvexClassifierMixin, ConvexEstimator, ConvexRegressorMixin
from .two_layer import ConvexReLUClassifier, ConvexReLURegressor

__all__ = ["ConvexReLURegressorCV", "ConvexReLUClassifierCV"]


class _CVBase(ConvexEstimator):
    _final = ConvexReLURegressor

    def __init__(self, regs=None, *, n_regs: int = 8, reg_ratio: float = 2e-3, cv=5,
                 fit_intercept: bool = True, n_patterns: int | None = None,
                 max_time: float | None = None, random_state=None, verbose: int = 0):
        self.regs = regs
        self.n_regs = n_regs
        self.reg_ratio = reg_ratio
        self.cv = cv
        self.fit_intercept = fit_intercept
        self.n_patterns = n_patterns
        self.max_time = max_time
        self.random_state = random_state
        self.verbose = verbose

    def _check_params(self) -> None:
        if self.regs is not None:
            r = np.asarray(self.regs, dtype=np.float64)
            if r.ndim != 1 or r.size == 0 or not np.isfinite(r).all() or (r <= 0).any():
                raise ValueError(f"regs must be a non-empty 1-D sequence of positive finite "
                                 f"numbers, got {self.regs!r}")
        for name, lo in (("n_regs", 1), ("verbose", 0)):
            v = getattr(self, name)
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if not (isinstance(self.reg_ratio, numbers.Real) and 0 < self.reg_ratio <= 1):
            raise ValueError(f"reg_ratio must be in (0, 1], got {self.reg_ratio!r}")
        if self.max_time is not None and not (isinstance(self.max_time, numbers.Real)
                                              and np.isfinite(self.max_time)
                                              and self.max_time > 0):
            raise ValueError(f"max_time must be a positive number or None, got "
                             f"{self.max_time!r}")
        if not isinstance(self.fit_intercept, (bool, np.bool_)):
            raise ValueError(f"fit_intercept must be True or False, got {self.fit_intercept!r}")

    def _final_params(self) -> dict:
        return {"n_patterns": self.n_patterns, "fit_intercept": self.fit_intercept,
                "random_state": self.random_state, "verbose": self.verbose}

    def _search(self, X: np.ndarray, Y: np.ndarray, y_split, loss: str, score, classifier):
        self._check_params()
        self.regs_ = (np.sort(np.asarray(self.regs, dtype=np.float64))[::-1]
                      if self.regs is not None else
                      reg_grid(X, Y, loss, n_regs=self.n_regs, ratio=self.reg_ratio,
                               fit_intercept=self.fit_intercept,
                               random_state=self.random_state))
        folds = check_cv(self.cv, y_split, classifier=classifier)
        # max_time bounds the whole fit: the paths get their share of the fits (one per fold
        # and reg), the refit what is left (:meth:`_refit`)
        n_fits = folds.get_n_splits(X, y_split) * len(self.regs_)
        budget = None if self.max_time is None else self.max_time * n_fits / (n_fits + 1)
        self.cv_scores_ = cv_path_scores(
            X, Y, self.regs_, folds.split(X, y_split), score, loss=loss,
            fit_intercept=self.fit_intercept, n_neurons=self.n_patterns,
            max_time=budget, random_state=self.random_state, verbose=self.verbose)
        self.reg_ = float(self.regs_[int(np.argmax(self.cv_scores_.mean(0)))])

    def _refit(self, X, y, t0: float, **extra):
        """Refit at ``reg_`` on all the data; the fitted attributes every estimator has
        (:mod:`convexnn.estimators._base`) are the refit's, except ``fit_time_`` (the whole
        ``fit``, cross-validation included) and ``reg_`` (the chosen reg)."""
        left = None if self.max_time is None else max(
            self.max_time - (time.perf_counter() - t0), 1e-3)
        best = self._final(reg=self.reg_, max_time=left, **self._final_params(), **extra)
        self.best_estimator_ = best.fit(X, y)
        for name in ("network_", "certificate_", "history_", "fit_info_", "n_iter_",
                     "stop_reason_"):
            setattr(self, name, getattr(best, name))
        self.n_features_in_ = X.shape[1]
        self.fit_time_ = time.perf_counter() - t0
        return self

    # --------------------------------------------------------------------- I/O
    def _saved_params(self) -> dict:
        """JSON-ready parameters: ``regs`` as a list; ``cv`` a number of folds (a splitter
        object is saved as the number of folds it made)."""
        params = super()._saved_params()
        if self.regs is not None:
            params["regs"] = np.asarray(self.regs, dtype=np.float64).tolist()
        if isinstance(self.cv, numbers.Integral):
            params["cv"] = int(self.cv)
        elif self.cv is not None:
            params["cv"] = int(self.cv_scores_.shape[0])
        return params

    def _extra_state(self) -> dict:
        return {**super()._extra_state(), "regs": self.regs_.tolist(),
                "cv_scores": self.cv_scores_.tolist()}

    def _load_extra(self, extra: dict) -> None:
        """CV state, checked (a ``ValueError`` on a bad file), and ``best_estimator_``: the
        refit's class at ``reg_`` holding the loaded network."""
        super()._load_extra(extra)
        regs = np.asarray(extra["regs"], dtype=np.float64)
        scores = np.asarray(extra["cv_scores"], dtype=np.float64)
        if regs.ndim != 1 or regs.size == 0 or not (np.isfinite(regs).all() and
                                                    (regs > 0).all()):
            raise ValueError("extra.regs must be a non-empty list of positive numbers")
        if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] != regs.size:
            raise ValueError(f"extra.cv_scores must have shape (n_folds, {regs.size}), got "
                             f"{scores.shape}")
        if self.reg_ not in regs:
            raise ValueError(f"extra.reg {self.reg_!r} is not one of extra.regs")
        self.regs_, self.cv_scores_ = regs, scores
        best = self._final(reg=self.reg_, **self._final_params(), **self._refit_options(extra))
        best.network_, best.certificate_ = self.network_, self.certificate_
        best.n_features_in_ = self.n_features_in_
        best._load_extra(extra)
        self.best_estimator_ = best

    def _refit_options(self, extra: dict) -> dict:
        return {}

    def _network_input(self, X) -> torch.Tensor:
        Xa = check_X(X, n_features=self.n_features_in_, owner=type(self).__name__)
        W = self.network_.first_layer_weights
        return to_tensor(Xa, W.dtype, W.device)


class ConvexReLURegressorCV(ConvexRegressorMixin, _CVBase):
    """ReLU network regression (squared loss) with ``reg`` chosen by K-fold CV (R²).

    Parameters: ``regs`` (None: ``n_regs`` values geometric from reg_max/2 down by
    ``reg_ratio``), ``cv`` (folds or a scikit-learn splitter), and ``fit_intercept``,
    ``n_patterns``, ``random_state``, ``verbose`` as in :class:`ConvexReLURegressor`;
    ``max_time`` bounds the whole fit (cross-validation and refit; None: each fit has the
    default budget).
    """

    def fit(self, X, y):
        t0 = time.perf_counter()
        Xa, ya = check_X_y(X, y, multi_output=True)
        Y = self._encode_targets(ya, Xa.shape[0])

        def r2(Yt, Z):
            return 1.0 - ((Yt - Z) ** 2).sum() / max(((Yt - Yt.mean(0)) ** 2).sum(), 1e-300)

        self._search(Xa, Y, ya if ya.ndim == 1 else None, "squared", r2, classifier=False)
        return self._refit(Xa, ya, t0)


class ConvexReLUClassifierCV(ConvexClassifierMixin, _CVBase):
    """ReLU network classification with ``reg`` chosen by stratified K-fold CV (accuracy).

    ``loss``: None (logistic for two classes, cross-entropy otherwise), ``"logistic"``,
    ``"cross_entropy"``; other parameters as :class:`ConvexReLURegressorCV`.
    """

    _final = ConvexReLUClassifier

    def __init__(self, regs=None, *, loss: str | None = None, n_regs: int = 8,
                 reg_ratio: float = 2e-3, cv=5, fit_intercept: bool = True,
                 n_patterns: int | None = None, max_time: float | None = None,
                 random_state=None, verbose: int = 0):
        super().__init__(regs, n_regs=n_regs, reg_ratio=reg_ratio, cv=cv,
                         fit_intercept=fit_intercept, n_patterns=n_patterns,
                         max_time=max_time, random_state=random_state, verbose=verbose)
        self.loss = loss

    def fit(self, X, y):
        t0 = time.perf_counter()
        Xa, ya = check_X_y(X, y, multi_output=False)
        if self.loss not in (None, "logistic", "cross_entropy"):
            raise ValueError(f"loss must be None, 'logistic' or 'cross_entropy', got "
                             f"{self.loss!r}")
        Y = self._encode_labels(ya, Xa.shape[0], fitting=True)  # sets classes_

        def accuracy(Yt, Z):
            if Z.shape[1] == 1:
                return float(((Z[:, 0] > 0) == (Yt[:, 0] > 0)).mean())  # 0 → classes_[0]
            return float((Z.argmax(1) == Yt.argmax(1)).mean())

        ya = ya.ravel()
        self._search(Xa, Y, ya, self._loss_name(), accuracy, classifier=True)
        return self._refit(Xa, ya, t0, loss=self._loss_name())

    def _refit_options(self, extra: dict) -> dict:
        return {"loss": self.loss or self._default_loss(len(extra["classes"]))}
