"""``load_estimator``: read back any estimator written by ``save`` (JSON + npz, no pickle).

The network archive's format tag names the family; each family's loader checks the metadata
against the arrays and raises one :class:`convexnn.model_io.ModelFileError` naming the file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..model_io import ModelFileError, other_family_loader, read_estimator_meta

__all__ = ["load_estimator"]


def load_estimator(path: str | Path):
    """Load an estimator saved by ``save`` (JSON + npz; no code is executed)."""
    loader = other_family_loader(path)  # CNN estimators
    if loader is not None:
        return loader(path)
    return _load_two_layer(path)


def _load_two_layer(path: str | Path):
    from ..certificates import Certificate
    from ..networks import load_network
    from .two_layer import ConvexReLUClassifier, ConvexReLURegressor

    path = Path(path)
    classes = {"ConvexReLURegressor": ConvexReLURegressor,
               "ConvexReLUClassifier": ConvexReLUClassifier}
    meta = read_estimator_meta(path, classes)  # checked: one ValueError naming the file
    est = classes[meta["class"]](**meta["params"])
    est.network_ = load_network(path)
    est.n_features_in_ = meta["n_features_in"]
    est.certificate_ = Certificate(**meta["certificate"])
    est._load_extra(meta["extra"])
    return est


def load_cnn_estimator(path: str | Path):
    """Load a CNN estimator saved by ``save`` (called by :func:`load_estimator`)."""
    from ..certificates import Certificate
    from ..networks_cnn import load_cnn
    from .cnn import ConvexCNNClassifier, ConvexCNNRegressor

    classes = {"ConvexCNNClassifier": ConvexCNNClassifier,
               "ConvexCNNRegressor": ConvexCNNRegressor}
    jpath = Path(str(path) + ".json")
    try:
        meta = json.loads(jpath.read_text(encoding="utf-8"))
        cls = classes[meta["class"]]
        params = dict(meta["params"])
        if isinstance(params.get("input_shape"), list):  # JSON has no tuples
            params["input_shape"] = tuple(params["input_shape"])
        est = cls(**params)
        est.network_ = load_cnn(path)
        est.certificate_ = Certificate(**meta["certificate"])
        est.input_shape_ = tuple(int(s) for s in meta["input_shape"])
        est.n_features_in_ = int(meta["n_features_in"])
        est._flat = bool(meta["flat"])
        extra = meta["extra"]
        if cls is ConvexCNNClassifier:
            est.classes_ = np.asarray(extra["classes"])
        else:
            est._y_1d = bool(extra["y_1d"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ModelFileError(f"{path}: not a loadable convexnn CNN estimator "
                             f"({type(err).__name__}: {err})") from err
    if not math.prod(est.input_shape_) == est.n_features_in_:
        raise ModelFileError(f"{path}: input_shape {est.input_shape_} does not match "
                             f"n_features_in {est.n_features_in_}")
    return est
