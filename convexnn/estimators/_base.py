"""The base class of every convexnn estimator: fitted network, torch export, save.

A family (two-layer, CNN, parallel) subclasses :class:`ConvexEstimator` and supplies
``_network_input(X)`` (checked input in the network's layout), ``_extra_state()`` (the
class-specific state written to the JSON metadata) and, where it needs them, ``_saved_params()``
and ``_meta_fields()``. :func:`convexnn.estimators.io.load_estimator` reads every family back.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

__all__ = ["ConvexEstimator"]


class ConvexEstimator(BaseEstimator):
    """Shared machinery: fitted check, raw outputs, ``to_torch`` and ``save``."""

    # ---------------------------------------------------------------- outputs
    def _fitted(self) -> ConvexEstimator:
        check_is_fitted(self, "network_")
        return self

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
        return self.get_params()

    def _meta_fields(self) -> dict:
        return {}

    def _extra_state(self) -> dict:
        return {}
