"""The base classes of every convexnn estimator: one vocabulary, one set of fitted attributes.

A family (two-layer, CNN, parallel) subclasses :class:`ConvexEstimator` (with
:class:`ConvexClassifierMixin` or :class:`ConvexRegressorMixin`) and supplies
``_network_input(X)`` (checked input in the network's layout) and its fit; the base holds what
every family shares:

* the vocabulary: ``reg``, ``fit_intercept``, ``method`` (which convex program), ``n_patterns``,
  ``search_rounds``, ``tol`` (stop at a certified relative duality gap <= tol), ``max_iter``,
  ``max_time``, ``device``, ``dtype``, ``random_state``, ``verbose``; a renamed parameter stays
  as a deprecated alias (``_aliases``) that warns with ``FutureWarning``;
* target encoding: class labels → ±1 column (logistic) or one-hot (cross-entropy, squared);
  regression targets → (n, c) floats;
* ``predict_proba`` through :meth:`convexnn.losses.Loss.link`;
* the fitted attributes ``network_``, ``certificate_``, ``history_`` (a :class:`FitHistory`),
  ``fit_info_``, ``n_iter_``, ``stop_reason_``, ``reg_``, ``n_features_in_``, ``fit_time_``;
* ``save(path)``, read back by :func:`convexnn.estimators.io.load_estimator`.
"""

from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from ..losses import get_loss
from ..results import FitResult
from ..solvers.base import History
from ._cnn_data import check_class_labels, check_targets

__all__ = ["backend_errors", "ConvexEstimator", "ConvexClassifierMixin", "ConvexRegressorMixin",
           "FitHistory", "DEPRECATED"]

#: default of a deprecated alias parameter (a value that no user passes)
DEPRECATED = "deprecated"


@contextmanager
def backend_errors(what: str, hint: str = "") -> Iterator[None]:
    """A solver backend's failure (CVXPY, Clarabel, SCS, ...) as one RuntimeError naming
    ``what`` and ``hint`` (what to change), never the raw third-party exception; bad input
    (ValueError / TypeError) and MemoryError pass through unchanged."""
    try:
        yield
    except (ValueError, TypeError, MemoryError):
        raise
    except Exception as err:  # noqa: BLE001 - any backend's own exception type
        raise RuntimeError(f"{what} failed on this problem ({type(err).__name__}: {err})"
                           f"{hint}") from err


class FitHistory(History):
    """``history_`` of every estimator: the solver trace (iteration, objective, gap,
    relative_gap, seconds per checkpoint). Reading it as a dict (``history_["objective"]``,
    the two-layer estimators' former type) still works and warns (``FutureWarning``)."""

    @classmethod
    def of(cls, history: History | dict | None) -> FitHistory:
        if history is None:
            return cls()
        d = history.as_dict() if isinstance(history, History) else dict(history)
        return cls(**{k: list(d.get(k, [])) for k in
                      ("iteration", "objective", "gap", "relative_gap", "seconds")})

    def __getitem__(self, key: str) -> list:
        warnings.warn(f"history_[{key!r}] is deprecated (history_ is no longer a dict): use "
                      f"history_.{key}", FutureWarning, stacklevel=2)
        if key not in self.as_dict():
            raise KeyError(key)
        return getattr(self, key)

    def keys(self):
        return self.as_dict().keys()


class ConvexEstimator(BaseEstimator):
    """Shared machinery: deprecated aliases, fitted attributes, outputs, export, save."""

    #: deprecated parameter -> (current name, value translation)
    _aliases: ClassVar[dict[str, tuple[str, Callable[[Any], Any]]]] = {}

    # ------------------------------------------------------------- vocabulary
    def _resolve_aliases(self) -> None:
        """Warn for every deprecated alias set; its (translated) value replaces the current
        parameter's for this fit (read through :meth:`_param`)."""
        self._alias_values, self._alias_names = {}, {}
        sig = inspect.signature(type(self).__init__).parameters
        for old, (new, translate) in self._aliases.items():
            value = getattr(self, old, DEPRECATED)
            if isinstance(value, str) and value == DEPRECATED:
                continue
            warnings.warn(f"{type(self).__name__}: parameter {old!r} is deprecated and will be "
                          f"removed; use {new}={translate(value)!r}", FutureWarning, stacklevel=4)
            current = getattr(self, new)
            if current is not sig[new].default and current != sig[new].default:
                raise ValueError(f"pass {new!r} only ({old!r} is its deprecated alias)")
            self._alias_values[new] = translate(value)
            self._alias_names[new] = old

    def _param(self, name: str):
        return getattr(self, "_alias_values", {}).get(name, getattr(self, name))

    def _param_label(self, name: str) -> str:
        """``name`` for error messages, with the deprecated alias the value came from."""
        old = getattr(self, "_alias_names", {}).get(name)
        return name if old is None else f"{name} (given as {old!r})"

    @classmethod
    def _current_params(cls, params: dict) -> dict:
        """Saved parameters with deprecated aliases renamed (files from older versions)."""
        out = dict(params)
        for old, (new, translate) in cls._aliases.items():
            value = out.pop(old, DEPRECATED)
            if not (isinstance(value, str) and value == DEPRECATED):
                out[new] = translate(value)
        return out

    # --------------------------------------------------------- fitted state
    def _set_fitted(self, res: FitResult, *, n_features: int, reg: float, seconds: float,
                    stop_reason: str | None = None, n_iter: int | None = None) -> None:
        info = dict(res.info or {})
        self.network_ = res.network
        self.certificate_ = res.certificate
        self.history_ = FitHistory.of(res.history)
        self.fit_info_ = info
        self.stop_reason_ = stop_reason if stop_reason is not None else \
            str(info.get("stop_reason", "converged"))
        if n_iter is None:
            n_iter = info.get("n_iter", len(self.history_.iteration) and
                              self.history_.iteration[-1])
        self.n_iter_ = int(n_iter)
        self.reg_ = float(reg)
        self.n_features_in_ = int(n_features)
        self.fit_time_ = float(seconds)

    def _fitted(self) -> ConvexEstimator:
        check_is_fitted(self, "network_")
        return self

    # ---------------------------------------------------------------- outputs
    def _network_input(self, X):
        """``X`` checked against the fit, in the layout ``network_.forward`` takes."""
        raise NotImplementedError

    def _outputs(self, X) -> np.ndarray:
        """Raw network outputs (n, c) as a numpy array."""
        self._fitted()
        Xn = self._network_input(X)
        with torch.no_grad():
            Z = self.network_.forward(Xn)
        return Z.detach().cpu().numpy()

    def to_torch(self) -> torch.nn.Module:
        """The fitted network as a torch module computing the same outputs as the estimator."""
        return self._fitted().network_.to_torch()

    # -------------------------------------------------------------------- I/O
    def save(self, path: str | Path) -> None:
        """Save the fitted model: network arrays in ``path`` (.npz, no pickle) + ``path``.json
        metadata; :func:`convexnn.load_estimator` reads it back without executing code."""
        self._fitted()
        path = Path(path)
        self.network_.save(path)
        meta = {"class": type(self).__name__, "params": self._saved_params(),
                **self._meta_fields(), "n_features_in": int(self.n_features_in_),
                "certificate": self.certificate_.as_dict(), "extra": self._extra_state()}
        Path(str(path) + ".json").write_text(json.dumps(meta, default=str))

    def _saved_params(self) -> dict:
        return self._current_params(self.get_params())

    def _meta_fields(self) -> dict:
        return {}

    def _extra_state(self) -> dict:
        return {"reg": float(self.reg_)}

    def _load_extra(self, extra: dict) -> None:
        reg = extra.get("reg", getattr(self, "reg", None))
        self.reg_ = float("nan") if reg is None else float(reg)


class ConvexClassifierMixin(ClassifierMixin):
    """Labels → targets (``classes_``), decision, prediction and probabilities."""

    def _default_loss(self, n_classes: int) -> str:
        return "logistic" if n_classes == 2 else "cross_entropy"

    def _loss_name(self) -> str:
        loss = getattr(self, "loss", None)
        if loss is not None:
            return loss
        return self._default_loss(len(getattr(self, "classes_", ())))

    def _encode_labels(self, y, n: int, *, fitting: bool) -> np.ndarray:
        """±1 column for the logistic loss, one-hot columns otherwise."""
        if fitting:
            self.classes_, idx = check_class_labels(y, n)
            loss = self._loss_name()
            get_loss(loss)  # an unknown loss: a clear error
            if loss == "logistic" and len(self.classes_) != 2:
                raise ValueError(f"loss='logistic' is binary; y has {len(self.classes_)} "
                                 "classes (use loss='cross_entropy')")
        else:
            y = np.asarray(y)
            y = y.ravel() if y.ndim == 2 and y.shape[1] == 1 else y
            idx = np.searchsorted(self.classes_, y)
            if (idx >= len(self.classes_)).any() or (self.classes_[np.minimum(
                    idx, len(self.classes_) - 1)] != y).any():
                raise ValueError("y contains labels not seen during fit")
        if self._loss_name() == "logistic":
            return (2.0 * idx - 1.0)[:, None]
        return np.eye(len(self.classes_))[idx]

    def decision_function(self, X) -> np.ndarray:
        """Scores: (n,) for two classes (positive means ``classes_[1]``), else (n, c)."""
        Z = self._outputs(X)
        if Z.shape[1] == 1:
            return Z[:, 0]
        return Z[:, 1] - Z[:, 0] if Z.shape[1] == 2 else Z

    def predict(self, X) -> np.ndarray:
        Z = self._outputs(X)
        # a tie (output 0) goes to classes_[0], as decision_function > 0 means classes_[1]
        idx = (Z[:, 0] > 0).astype(int) if Z.shape[1] == 1 else np.argmax(Z, axis=1)
        return self.classes_[idx]

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities: ``Loss.link`` of the outputs (sigmoid for one output, softmax
        for one per class). For ``loss="squared"`` the outputs regress the targets and these
        are only monotone scores, not calibrated probabilities."""
        Z = torch.as_tensor(self._outputs(X))
        if Z.shape[1] == 1:
            p = get_loss("logistic").link(Z[:, 0]).numpy()
            return np.stack([1 - p, p], axis=1)
        return get_loss("cross_entropy").link(Z).numpy()

    def _extra_state(self) -> dict:
        return {**super()._extra_state(), "classes": self.classes_.tolist()}

    def _load_extra(self, extra: dict) -> None:
        super()._load_extra(extra)
        self.classes_ = np.asarray(extra["classes"])


class ConvexRegressorMixin(RegressorMixin):
    """Targets (n,) or (n, c) → (n, c) floats; predictions in the shape of the fit's y."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y (n, c): one output per column
        return tags

    def _encode_targets(self, y, n: int) -> np.ndarray:
        y = check_targets(y, n)
        self._y_1d = y.ndim == 1
        return y[:, None] if y.ndim == 1 else y

    def predict(self, X) -> np.ndarray:
        Z = self._outputs(X)
        return Z[:, 0] if self._y_1d else Z

    def _extra_state(self) -> dict:
        return {**super()._extra_state(), "y_1d": bool(self._y_1d)}

    def _load_extra(self, extra: dict) -> None:
        super()._load_extra(extra)
        self._y_1d = bool(extra["y_1d"])
